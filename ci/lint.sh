#!/usr/bin/env bash
# ruff over the package, the tests and the documentation tooling; the import layers of
# docs/design.md (import-linter, contracts in pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m ruff check src tests conftest.py docs/hooks
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" lint-imports
