#!/usr/bin/env bash
# ruff over the package, the tests and the documentation tooling.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m ruff check src tests conftest.py docs/hooks
