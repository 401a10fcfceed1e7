#!/usr/bin/env bash
# Download, on a machine WITH a package registry, the wheels that ci/gpu-check.sh
# installs on a GPU machine WITHOUT one (it has numpy, CuPy, torch and JAX, but not
# xpdiff's other dependencies nor its test tools).
#
# Usage: ci/fetch-wheels.sh [DIR]        (default DIR: wheels/, ignored by git)
#
# Environment overrides:
#   PY_VERSIONS   CPython versions to fetch compiled wheels for (default "3.10 3.11 3.12 3.13")
#   PLATFORMS     manylinux tags tried for compiled wheels (default: manylinux_2_17..2_28 x86_64)
#
# Also builds the xpdiff wheel from this tree and records the tree's source hash
# (ci/source-hash.sh) beside it: gpu-check.sh installs that wheel only where the tree
# it runs in has the same sources (else it uses src/ and says so).  Rerun this script
# after changing src/ and before a GPU run.
#
# Pure-Python wheels (py3-none-any) are fetched once; optree, the only compiled one,
# once per Python version, so the script does not need to know the GPU machine's
# Python. Versions are pinned to what the test suite runs with here; gpu-check.sh
# installs only the ones whose module the GPU machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-wheels}"
mkdir -p "$DIR"

# xpdiff's runtime dependencies (numpy is on the GPU machine) and the test tools.
PURE=(
    "array-api-compat==1.16.0"
    "array-api-strict==2.6.1"
    "typing-extensions==4.15.0"       # optree's dependency
    "pytest==9.0.3" "iniconfig==2.3.0" "pluggy==1.6.0" "packaging==26.2" "pygments==2.20.0"
    "hypothesis==6.155.2" "attrs==26.1.0" "sortedcontainers==2.4.0"
    "exceptiongroup==1.3.2"           # pytest's and hypothesis' dependency on Python 3.10
    "tqdm==4.70.1"                    # progress bar of `xpdiff check` (optional)
)
# compiled (or per-version) wheels: one per CPython version; tomli only matters on 3.10
COMPILED=("optree==0.20.0" "tomli==2.5.0")
PY_VERSIONS="${PY_VERSIONS:-3.10 3.11 3.12 3.13}"
read -r -a PLATS <<< "${PLATFORMS:-manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64}"
plat_args=()
for p in "${PLATS[@]}"; do plat_args+=(--platform "$p"); done

echo "fetching pure-Python wheels into $DIR/"
python -m pip download -q --only-binary=:all: --no-deps -d "$DIR" "${PURE[@]}"
for v in $PY_VERSIONS; do
    for pkg in "${COMPILED[@]}"; do
        echo "fetching $pkg for CPython $v (x86_64 manylinux)"
        if ! python -m pip download -q --only-binary=:all: --no-deps -d "$DIR" \
            --python-version "$v" --implementation cp "${plat_args[@]}" "$pkg"; then
            echo "  no wheel of $pkg for CPython $v: skipped" >&2
        fi
    done
done
echo "building the xpdiff wheel from this tree"
rm -f "$DIR"/xpdiff-*.whl
python -m pip wheel -q --no-deps -w "$DIR" .
ci/source-hash.sh > "$DIR/xpdiff.source-hash"
ls -1 "$DIR"
du -sh "$DIR"
