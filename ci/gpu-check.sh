#!/usr/bin/env bash
# One prepared check of xpdiff on a machine with an NVIDIA GPU and no package registry.
#
# Prepare (on a machine with a registry):   ci/fetch-wheels.sh      -> wheels/
# Run (from the repository root, GPU box):  ci/gpu-check.sh [LOG]   (default LOG: gpu-check.log)
#
# The GPU machine is expected to have python3 with numpy, CuPy, torch (CUDA) and
# JAX; whatever else xpdiff and its tests import (array-api-compat, array-api-strict,
# optree, pytest, hypothesis, ...) is installed from wheels/ with
# `pip install --no-index --target`, only where the module is missing.  xpdiff
# itself is used from src/ through PYTHONPATH (nothing is built).
#
# Steps, each under its own time limit (about 5.5 minutes in all):
#   1. xpdiff info                                        (backends, devices)
#   2. xpdiff check --backend cupy                        (op-table checks + residency)
#   3. the test suite on CuPy and on torch CUDA tensors   (XPDIFF_TEST_BACKENDS=cupy,torch-cuda;
#      torch runs under torch.cuda.set_sync_debug_mode("error"); only tests that take
#      the `backend` fixture: the CPU-only tests are CI's job)
#   4. a GPU benchmark: python -m xpdiff bench --backend cupy --quick  (if the bench exists)
# Everything goes to stdout and to LOG.  Without a usable GPU, steps 2-4 are skipped
# with a message and the script exits 0 (a dry run of the setup).
#
# Environment overrides: PYTHON (default python3), WHEELS (default wheels), SITE (the
# --target directory; default a fresh temporary one), T_CHECK / T_TESTS / T_BENCH
# (seconds; defaults 80 / 180 / 60), BENCH_ARGS (default "--quick --size small"),
# BENCH_OUT (default gpu-bench-out).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
LOG="${1:-gpu-check.log}"
PY="${PYTHON:-python3}"
WHEELS="${WHEELS:-wheels}"
if [[ -z "${SITE:-}" ]]; then
    SITE="$(mktemp -d "${TMPDIR:-/tmp}/xpdiff-site.XXXXXX")"
    trap 'rm -rf "$SITE"' EXIT
fi
T_CHECK="${T_CHECK:-80}"
T_TESTS="${T_TESTS:-180}"
T_BENCH="${T_BENCH:-60}"
BENCH_ARGS="${BENCH_ARGS:---quick --size small}"
BENCH_OUT="${BENCH_OUT:-gpu-bench-out}"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1

START=$SECONDS
FAILED=()
say() { printf '\n=== %s (t=%ss)\n' "$*" "$((SECONDS - START))"; }
step() {  # step NAME SECONDS CMD...: run with a time limit, record a failure
    local name="$1" limit="$2"
    shift 2
    say "$name (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        echo "--- $name: TIMED OUT after ${limit}s"
        FAILED+=("$name (timeout)")
    elif [[ $rc -ne 0 ]]; then
        echo "--- $name: FAILED (exit $rc)"
        FAILED+=("$name (exit $rc)")
    else
        echo "--- $name: ok"
    fi
}

say "xpdiff GPU check in $ROOT; log: $LOG"
echo "python: $(command -v "$PY") ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
    echo "nvidia-smi: not found"
fi

# --- dependencies from wheels/ (only the missing ones) -------------------------------------------
say "dependencies"
# module:distribution pairs; the distribution's wheel is taken from $WHEELS
NEEDED="array_api_compat:array-api-compat array_api_strict:array-api-strict optree:optree
typing_extensions:typing-extensions pytest:pytest iniconfig:iniconfig pluggy:pluggy
packaging:packaging pygments:pygments hypothesis:hypothesis attr:attrs
sortedcontainers:sortedcontainers tqdm:tqdm"
if "$PY" -c 'import sys; sys.exit(sys.version_info >= (3, 11))'; then
    NEEDED="$NEEDED exceptiongroup:exceptiongroup tomli:tomli"
fi
MISSING=()
for pair in $NEEDED; do
    mod="${pair%%:*}"
    dist="${pair##*:}"
    if "$PY" -c "import $mod" >/dev/null 2>&1; then
        echo "  have    $mod"
    else
        echo "  missing $mod -> install $dist from $WHEELS/"
        MISSING+=("$dist")
    fi
done
if [[ ${#MISSING[@]} -gt 0 ]]; then
    if [[ ! -d "$WHEELS" ]]; then
        echo "no $WHEELS/ folder: run ci/fetch-wheels.sh on a machine with a package registry first"
        exit 2
    fi
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --find-links "$WHEELS" \
        --target "$SITE" "${MISSING[@]}"; then
        echo "installing ${MISSING[*]} from $WHEELS/ failed (see above); run ci/fetch-wheels.sh"
        exit 2
    fi
    echo "installed into $SITE: ${MISSING[*]}"
fi
export PYTHONPATH="$ROOT/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import xpdiff, array_api_compat, optree; print("xpdiff", xpdiff.__version__, "from", xpdiff.__file__)' \
    || { echo "xpdiff does not import with PYTHONPATH=$PYTHONPATH"; exit 2; }

step "xpdiff info" 60 "$PY" -m xpdiff info

# --- is there a GPU? -----------------------------------------------------------------------------
HAVE_CUPY=0
HAVE_TORCH_CUDA=0
"$PY" - <<'EOF' && HAVE_CUPY=1
import sys
try:
    import cupy
    n = cupy.cuda.runtime.getDeviceCount()
except Exception as e:
    print(f"CuPy: not usable here ({type(e).__name__}: {e})")
    sys.exit(1)
print(f"CuPy {cupy.__version__}: {n} GPU(s)")
sys.exit(0 if n > 0 else 1)
EOF
"$PY" - <<'EOF' && HAVE_TORCH_CUDA=1
import sys
try:
    import torch
except Exception as e:
    print(f"torch: not usable here ({type(e).__name__}: {e})")
    sys.exit(1)
ok = torch.cuda.is_available()
print(f"torch {torch.__version__}: CUDA {'available' if ok else 'not available'}")
sys.exit(0 if ok else 1)
EOF

if [[ $HAVE_CUPY -eq 0 && $HAVE_TORCH_CUDA -eq 0 ]]; then
    say "no usable GPU (neither CuPy nor torch sees one): SKIPPING the GPU steps"
    echo "skipped: xpdiff check --backend cupy; test suite on cupy,torch-cuda; GPU benchmark"
    step "CPU sanity check (xpdiff check --backend numpy)" 120 \
        "$PY" -m xpdiff check --backend numpy --no-progress
    say "done in $((SECONDS - START))s: GPU parts skipped (no GPU)"
    if [[ ${#FAILED[@]} -gt 0 ]]; then
        echo "FAILED steps: ${FAILED[*]}"
        exit 1
    fi
    exit 0
fi

# --- 2. op-table checks on CuPy ------------------------------------------------------------------
if [[ $HAVE_CUPY -eq 1 ]]; then
    step "xpdiff check --backend cupy" "$T_CHECK" "$PY" -m xpdiff check --backend cupy --no-progress
else
    say "CuPy sees no GPU: SKIPPING xpdiff check --backend cupy"
fi

# --- 3. the test suite on the GPU backends -------------------------------------------------------
BACKENDS=""
[[ $HAVE_CUPY -eq 1 ]] && BACKENDS="cupy"
[[ $HAVE_TORCH_CUDA -eq 1 ]] && BACKENDS="${BACKENDS:+$BACKENDS,}torch-cuda"
step "pytest on $BACKENDS" "$T_TESTS" env XPDIFF_TEST_BACKENDS="$BACKENDS" \
    XPDIFF_TEST_BACKEND_ONLY=1 "$PY" -m pytest tests -q -p no:cacheprovider -rfE --tb=line \
    -o addopts=""

# --- 4. GPU benchmark ------------------------------------------------------------------------------
if [[ $HAVE_CUPY -eq 1 ]] && "$PY" -m xpdiff bench --help 2>/dev/null | grep -q -- "--backend"; then
    # shellcheck disable=SC2086
    step "python -m xpdiff bench --backend cupy $BENCH_ARGS" "$T_BENCH" \
        "$PY" -m xpdiff bench --backend cupy $BENCH_ARGS --out "$BENCH_OUT" --no-progress
else
    say "SKIPPING the GPU benchmark: \`python -m xpdiff bench --backend cupy\` is not available here"
fi

say "done in $((SECONDS - START))s"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "FAILED steps: ${FAILED[*]}"
    exit 1
fi
echo "all GPU steps passed"
