#!/usr/bin/env bash
# Print a hash of the package sources under src/xpdiff (file names and contents;
# caches left out). ci/fetch-wheels.sh records it beside the xpdiff wheel it builds;
# ci/gpu-check.sh installs that wheel only when the tree it runs in has the same hash.
set -euo pipefail
cd "$(dirname "$0")/../src"
find xpdiff -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64
