#!/usr/bin/env bash
# Install xpdiff with its test extra and run the test suite (the README's test command).
# The test extra includes the dask extra (dask[array,distributed], zarr): tests/test_dask.py needs it.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[test]"
python -m pytest "$@"
