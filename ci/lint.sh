#!/usr/bin/env bash
# ruff over the package and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m ruff check src tests
