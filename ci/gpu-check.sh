#!/usr/bin/env bash
# One prepared check of xpdiff on a machine with an NVIDIA GPU and no package registry.
#
# Prepare (on a machine with a registry):   ci/fetch-wheels.sh          -> wheels/
# Run (repository root, on the GPU machine): ci/gpu-check.sh OUT
# Rehearse on a CPU (CI does):               ci/gpu-check.sh --dry-run OUT
#
# The GPU machine is expected to have python3 with numpy, CuPy, torch (CUDA) and JAX.
# What xpdiff and its tests import beside them (array-api-compat, array-api-strict,
# optree, pytest, hypothesis, ...) and xpdiff itself (--no-deps) are installed from
# wheels/ with `pip install --no-index --find-links wheels --target <temp dir>`, never
# from the network; only modules that are missing are installed.  The xpdiff wheel is
# used only when it was built from these sources (ci/source-hash.sh); otherwise src/
# is used through PYTHONPATH and the summary says so.
#
# Parts, in this order, each under its own time limit (seconds; environment overrides):
#   gpu        a one-kernel CuPy smoke test, BEFORE installing anything: without CuPy
#              or without a usable GPU the script stops here, exit 3 / 2, saying which
#   install    the missing modules and xpdiff from wheels/                       (60)
#   info       xpdiff info                                                        (30)
#   check-f32  xpdiff check --backend cupy --dtype float32          T_CHECK      (40)
#   check-f64  xpdiff check --backend cupy --dtype float64          T_CHECK      (40)
#   tests      the test suite on GPU_TEST_BACKENDS (default cupy; e.g. cupy,torch-cuda)
#              with XPDIFF_TEST_BACKEND_ONLY=1 (the tests that take a backend)    T_TESTS (120)
#   bench-f32  python -m xpdiff.bench --backend cupy --size gpu --dtype float32   T_BENCH (200)
#   bench-f64  the same in float64                                                T_BENCH (200)
# Worst case about 11 minutes, benchmarks 2 x 200 s of it.  The benchmark compares
# xpdiff (eager; jitted as the xpdiff-jit column once xpdiff.jit exists, "not
# available" before), JAX jit and torch.func on the same GPU (JAX with
# XLA_PYTHON_CLIENT_PREALLOCATE=false so the peers share the card), at sizes where
# each workload's largest array is 1/64 of the card (BENCH_RESULT_BYTES overrides),
# with the peak memory of one call of each peer.  It starts no workload after
# T_BENCH - 30 s and rewrites its report after every workload.
#
# Everything goes to OUT as it happens: log.txt (all output), parts.jsonl (one line
# per finished part), summary.md (rewritten after every part), check-float32.txt,
# check-float64.txt, tests.txt, bench/gpu-float32.{md,json}, bench/gpu-float64.{md,json}.
# A run stopped early keeps every part done so far.
#
# Exit status: 0 all parts passed; 1 a part failed or timed out; 2 no usable GPU;
# 3 CuPy is not installed; 4 a missing module has no wheel in wheels/; 64 usage.
# --dry-run runs every part on the CPU instead (NumPy, tiny sizes and four workloads, a
# single op-table entry, test collection only): the GPU parts report "skipped: no GPU" and only this
# mode exits 0 without a GPU.  It takes well under a minute.
set -uo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY=1
    shift
fi
if [[ $# -ne 1 || "$1" == -* ]]; then
    echo "usage: $0 [--dry-run] OUT_DIR" >&2
    exit 64
fi
OUT="$1"
mkdir -p "$OUT" || exit 64
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PY="${PYTHON:-python3}"
WHEELS="${WHEELS:-wheels}"
T_CHECK="${T_CHECK:-40}"
T_TESTS="${T_TESTS:-120}"
T_BENCH="${T_BENCH:-200}"
GPU_TEST_BACKENDS="${GPU_TEST_BACKENDS:-cupy}"
SITE="$(mktemp -d "${TMPDIR:-/tmp}/xpdiff-site.XXXXXX")"
trap 'rm -rf "$SITE"' EXIT
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false

: > "$OUT/log.txt"
: > "$OUT/parts.jsonl"
exec > >(tee -a "$OUT/log.txt") 2>&1

START=$SECONDS
FAILED=()
SUMMARY=()
say() { printf '\n=== %s (t=%ss)\n' "$*" "$((SECONDS - START))"; }

record() {  # record PART STATUS SECONDS DETAIL: parts.jsonl + summary.md, right away
    "$PY" -c 'import json, sys
print(json.dumps({"part": sys.argv[1], "status": sys.argv[2], "seconds": int(sys.argv[3]),
                  "detail": sys.argv[4]}))' "$@" >> "$OUT/parts.jsonl"
    SUMMARY+=("| $1 | $2 | $3 | ${4//|/\\|} |")
    {
        echo "# xpdiff GPU check$([[ $DRY -eq 1 ]] && echo ' (dry run on the CPU)')"
        echo
        echo "Started $(date -u -d "@$T0" '+%Y-%m-%d %H:%M:%S UTC' 2>/dev/null || echo "$T0"); output in \`$OUT\`."
        echo
        echo "| part | status | seconds | detail |"
        echo "| --- | --- | --- | --- |"
        printf '%s\n' "${SUMMARY[@]}"
    } > "$OUT/summary.md.tmp" && mv "$OUT/summary.md.tmp" "$OUT/summary.md"
}
T0="$(date +%s)"

OK_LABEL=""
DETAIL=""
part() {  # part NAME LIMIT LOGFILE CMD...: run under a time limit, log, record the outcome
    # (a success is recorded as $OK_LABEL when set: the dry run's stand-ins for GPU parts)
    local name="$1" limit="$2" logfile="$3"
    shift 3
    say "$name (limit ${limit}s): $*"
    local t=$SECONDS
    if [[ -n "$logfile" ]]; then
        timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$logfile"
    else
        timeout --kill-after=10 "$limit" "$@"
    fi
    local rc=${PIPESTATUS[0]}
    local dt=$((SECONDS - t))
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        echo "--- $name: TIMED OUT after ${limit}s (what it wrote is kept)"
        FAILED+=("$name")
        record "$name" "timed out" "$dt" "limit ${limit}s"
    elif [[ $rc -ne 0 ]]; then
        echo "--- $name: FAILED (exit $rc)"
        FAILED+=("$name")
        record "$name" "failed" "$dt" "exit $rc${logfile:+; see $logfile}"
    else
        echo "--- $name: ok"
        record "$name" "${OK_LABEL:-ok}" "$dt" "${logfile:+see $logfile}${DETAIL:-}"
    fi
}

skipped() {  # skipped NAME WHAT-RAN-INSTEAD
    say "$1: skipped: no GPU${2:+ (dry run: $2)}"
    record "$1" "skipped: no GPU" 0 "${2:+dry run: $2}"
}

say "xpdiff GPU check$([[ $DRY -eq 1 ]] && echo ' -- DRY RUN on the CPU') in $ROOT; output: $OUT"
echo "python: $(command -v "$PY") ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"

# --- gpu: a one-kernel smoke test before anything is installed -------------------------
if [[ $DRY -eq 1 ]]; then
    skipped gpu "no smoke test"
else
    say "gpu: one-kernel CuPy smoke test"
    t=$SECONDS
    "$PY" - <<'EOF'
import shutil, subprocess, sys
try:
    import cupy
except ImportError as e:
    gpu = "unknown"
    if shutil.which("nvidia-smi"):
        r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        gpu = r.stdout.strip() or r.stderr.strip()
    print(f"CuPy is not installed ({e}); the GPU check needs it (GPUs: {gpu}). "
          "Install CuPy for this CUDA (pip install cupy-cuda12x or cupy-cuda13x) and rerun.")
    sys.exit(3)
try:
    n = cupy.cuda.runtime.getDeviceCount()
    y = (cupy.arange(8, dtype=cupy.float32) * 2).get()  # one elementwise kernel, read back
    if n < 1 or y.tolist() != [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]:
        raise RuntimeError(f"{n} device(s); kernel gave {y.tolist()}")
    dev = cupy.cuda.Device(0)
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    free, total = dev.mem_info
except Exception as e:
    print(f"no usable GPU: CuPy {cupy.__version__} could not run a kernel "
          f"({type(e).__name__}: {e})")
    sys.exit(2)
print(f"GPU ok: {n} device(s); device 0 {name}, {total / 2**30:.1f} GiB "
      f"({free / 2**30:.1f} GiB free); CuPy {cupy.__version__}, "
      f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
EOF
    rc=$?
    if [[ $rc -ne 0 ]]; then
        record gpu "failed" $((SECONDS - t)) "$([[ $rc -eq 3 ]] && echo 'CuPy is not installed' || echo 'no usable GPU')"
        say "stopping: $([[ $rc -eq 3 ]] && echo 'CuPy is not installed' || echo 'no usable GPU') (exit $rc); nothing was tested"
        exit $rc
    fi
    record gpu ok $((SECONDS - t)) "one kernel ran"
fi

# --- install: the missing modules and xpdiff, from wheels/ only ---------------------------
say "install (from $WHEELS/, never from the network)"
t=$SECONDS
# module:distribution pairs; tqdm (progress bars) is optional: installed when its wheel is there
NEEDED="array_api_compat:array-api-compat array_api_strict:array-api-strict optree:optree
typing_extensions:typing-extensions pytest:pytest iniconfig:iniconfig pluggy:pluggy
packaging:packaging pygments:pygments hypothesis:hypothesis attr:attrs
sortedcontainers:sortedcontainers exceptiongroup:exceptiongroup tomli:tomli tqdm:tqdm?"
# one interpreter start for all: prints "have MOD" / "missing MOD DIST" (exceptiongroup and
# tomli are only needed before Python 3.11)
# shellcheck disable=SC2086
readarray -t LINES < <("$PY" - $NEEDED <<'EOF'
import importlib.util, sys
for pair in sys.argv[1:]:
    mod, dist = pair.split(":")
    if mod in ("exceptiongroup", "tomli") and sys.version_info >= (3, 11):
        continue
    print(("have " + mod) if importlib.util.find_spec(mod) else f"missing {mod} {dist}")
EOF
)
MISSING=()
for line in "${LINES[@]}"; do
    read -r state mod dist <<< "$line"
    if [[ $state == have ]]; then
        echo "  have    $mod"
    elif [[ $dist == *\? ]]; then
        dist="${dist%\?}"
        if ls "$WHEELS"/"${dist//-/_}"-*.whl >/dev/null 2>&1; then
            echo "  missing $mod -> $dist from $WHEELS/"
            MISSING+=("$dist")
        else
            echo "  missing $mod (optional, no wheel: left out)"
        fi
    else
        echo "  missing $mod -> $dist from $WHEELS/"
        MISSING+=("$dist")
    fi
done
XPDIFF_FROM="src/ (PYTHONPATH)"
if [[ -f "$WHEELS/xpdiff.source-hash" ]] && ls "$WHEELS"/xpdiff-*.whl >/dev/null 2>&1; then
    if [[ "$(cat "$WHEELS/xpdiff.source-hash")" == "$(ci/source-hash.sh)" ]]; then
        MISSING+=("xpdiff")
        XPDIFF_FROM="the wheel in $WHEELS/ (built from these sources)"
    else
        echo "  the xpdiff wheel in $WHEELS/ was built from other sources: using src/ instead" \
             "(rerun ci/fetch-wheels.sh to test the wheel)"
        XPDIFF_FROM="src/ (PYTHONPATH): the wheel in $WHEELS/ is stale"
    fi
else
    echo "  no xpdiff wheel in $WHEELS/: using src/"
fi
if [[ ${#MISSING[@]} -gt 0 ]]; then
    if [[ ! -d "$WHEELS" ]]; then
        echo "missing ${MISSING[*]} and there is no $WHEELS/ folder: run ci/fetch-wheels.sh on a" \
             "machine with a package registry first and bring $WHEELS/ along"
        record install failed $((SECONDS - t)) "no $WHEELS/ folder for: ${MISSING[*]}"
        exit 4
    fi
    if ! timeout 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --find-links "$WHEELS" \
        --target "$SITE" "${MISSING[@]}"; then
        echo "installing ${MISSING[*]} from $WHEELS/ failed (see above): rerun ci/fetch-wheels.sh"
        record install failed $((SECONDS - t)) "pip install --no-index of ${MISSING[*]} failed"
        exit 4
    fi
    echo "installed into a temporary folder: ${MISSING[*]}"
fi
if [[ "$XPDIFF_FROM" == src/* ]]; then
    export PYTHONPATH="$ROOT/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c 'import xpdiff, array_api_compat, array_api_strict, optree, pytest
print("xpdiff", xpdiff.__version__, "from", xpdiff.__file__)'; then
    record install failed $((SECONDS - t)) "xpdiff or a test dependency does not import"
    exit 4
fi
record install ok $((SECONDS - t)) "installed: ${MISSING[*]:-nothing}; xpdiff from $XPDIFF_FROM"

part info 30 "" "$PY" -m xpdiff info

# --- op-table checks, both dtypes --------------------------------------------------------
for dt in float32 float64; do
    if [[ $DRY -eq 1 ]]; then
        OK_LABEL="skipped: no GPU (dry run: numpy, op sin: ok)"
        part "check-${dt/float/f}" "$T_CHECK" "check-$dt.txt" \
            "$PY" -m xpdiff check --backend numpy --dtype "$dt" --select sin --no-progress
    else
        part "check-${dt/float/f}" "$T_CHECK" "check-$dt.txt" \
            "$PY" -m xpdiff check --backend cupy --dtype "$dt" --no-progress
    fi
done

# --- the test suite on the GPU backends ----------------------------------------------------
PYTEST=("$PY" -m pytest tests -q -p no:cacheprovider -o addopts= -rfE --tb=short)
if [[ $DRY -eq 1 ]]; then
    OK_LABEL="skipped: no GPU (dry run: collected on numpy: ok)"
    part tests "$T_TESTS" tests.txt env XPDIFF_TEST_BACKENDS=numpy XPDIFF_TEST_BACKEND_ONLY=1 \
        "${PYTEST[@]}" --collect-only
else
    part tests "$T_TESTS" tests.txt env XPDIFF_TEST_BACKENDS="$GPU_TEST_BACKENDS" \
        XPDIFF_TEST_BACKEND_ONLY=1 "${PYTEST[@]}"
fi

# --- benchmarks at sizes that fill the card ---------------------------------------------
DEADLINE=$((T_BENCH > 60 ? T_BENCH - 30 : T_BENCH / 2))
for dt in float32 float64; do
    if [[ $DRY -eq 1 ]]; then
        OK_LABEL="skipped: no GPU (dry run: numpy, tiny sizes: ok)"
        BENCH=(--backend numpy --result-bytes 65536 --repeat 1 --malloc default
               --workloads elementwise-jac,hessian,per-sample-grad,overhead)
    else
        BENCH=(--backend cupy ${BENCH_RESULT_BYTES:+--result-bytes "$BENCH_RESULT_BYTES"})
    fi
    DETAIL="see bench/gpu-$dt.md"
    part "bench-${dt/float/f}" "$T_BENCH" "" "$PY" -m xpdiff.bench "${BENCH[@]}" --size gpu \
        --dtype "$dt" --peers xpdiff-jit,jax-jit,torch --peak-memory --quick \
        --deadline "$DEADLINE" --out "$OUT/bench" --name "gpu-$dt" --no-progress
done
OK_LABEL=""
DETAIL=""
record done "$([[ ${#FAILED[@]} -eq 0 ]] && echo ok || echo failed)" $((SECONDS - START)) \
    "${FAILED[*]:+failed: ${FAILED[*]}}"

say "done in $((SECONDS - START))s$([[ $DRY -eq 1 ]] && echo ': dry run, GPU parts skipped (no GPU)')"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "FAILED parts: ${FAILED[*]}"
    exit 1
fi
echo "all parts passed; results in $OUT (summary.md)"
exit 0
