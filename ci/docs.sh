#!/usr/bin/env bash
# Build the documentation site strictly (any warning fails: broken links, missing
# API objects, a figure that does not draw). Output in site/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[docs]"
NO_MKDOCS_2_WARNING=1 python -m mkdocs build --strict --site-dir "${1:-site}"
