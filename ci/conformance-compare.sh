#!/usr/bin/env bash
# Run a slice of the array API conformance suite (data-apis/array-api-tests) on a plain
# namespace and on xpdiff's traced one, and fail if the traced namespace fails any test
# that the plain one passes.
#
# Usage: ci/conformance-compare.sh [SUITE] [pytest args...]
#
#   SUITE   path of an array-api-tests checkout with its spec submodule (default:
#           $ARRAY_API_TESTS_DIR). When it is absent, the script says so and exits 0:
#           the suite is fetched separately and is not needed by the test suite.
#   ...     the slice, passed to pytest unchanged (default: -k linalg).
#
# Environment overrides:
#   PLAIN_MODULE    the reference namespace (default: array_api_compat.numpy)
#   TRACED_MODULE   the namespace compared with it (default: xpdiff.testing.array_api_traced)
#   MAX_EXAMPLES, ARRAY_API_TESTS_VERSION   as for ci/conformance.sh
#   CONFORMANCE_DIR where the logs and junit files go (default: a new temporary folder)
#
# Prints both summary lines and the tests the traced namespace fails beyond the plain one.
set -euo pipefail

SUITE="${1:-${ARRAY_API_TESTS_DIR:-}}"
if [[ -z "$SUITE" || ! -d "$SUITE/array_api_tests" ]]; then
    echo "conformance-compare: skipped: no array-api-tests checkout" \
         "(pass its path or set ARRAY_API_TESTS_DIR)"
    exit 0
fi
shift $(( $# >= 1 ? 1 : 0 ))
if [[ $# -eq 0 ]]; then
    set -- -k linalg
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PLAIN="${PLAIN_MODULE:-array_api_compat.numpy}"
TRACED="${TRACED_MODULE:-xpdiff.testing.array_api_traced}"
DIR="${CONFORMANCE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/conformance-compare.XXXXXX")}"
mkdir -p "$DIR"

for side in plain traced; do
    module="$PLAIN"; [[ $side == traced ]] && module="$TRACED"
    echo "== $side: $module"
    # the suite's own failures are compared below, not fatal here; a broken run
    # (no junit file written) is
    CONFORMANCE_LOG="$DIR/$side.log" CONFORMANCE_JUNIT="$DIR/$side.xml" \
        "$HERE/conformance.sh" "$SUITE" "$module" "$@" | tail -1 || true
    if [[ ! -s "$DIR/$side.xml" ]]; then
        echo "conformance-compare: the $side run wrote no results; see $DIR/$side.log" >&2
        exit 2
    fi
done

python - "$DIR/plain.xml" "$DIR/traced.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET


def outcomes(path):
    out = {}
    for case in ET.parse(path).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        bad = any(c.tag in ("failure", "error") for c in case)
        skipped = any(c.tag == "skipped" for c in case)
        out[name] = "failed" if bad else "skipped" if skipped else "passed"
    return out


plain, traced = outcomes(sys.argv[1]), outcomes(sys.argv[2])
worse = sorted(n for n, o in traced.items() if o == "failed" and plain.get(n) == "passed")
better = sorted(n for n, o in traced.items() if o == "passed" and plain.get(n) == "failed")
count = lambda d: sum(o == "failed" for o in d.values())  # noqa: E731
print(f"plain fails {count(plain)}, traced fails {count(traced)} of {len(traced)} tests; "
      f"traced passes {len(better)} that plain fails")
for n in worse:
    print(f"FAILED on traced only: {n}")
if worse:
    print(f"conformance-compare: {len(worse)} test(s) fail on the traced namespace only")
    sys.exit(1)
print("conformance-compare: ok (traced fails no test that plain passes)")
PY
