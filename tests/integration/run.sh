#!/usr/bin/env bash
# Runs every tests/integration/test_*.sh against $VIGIL (default
# /work/main/build/vigil) and prints "PASS name" / "FAIL name" per test and
# finally "N passed, M failed". Exits non-zero if any test failed.
#
#   VIGIL=build-asan/vigil tests/integration/run.sh [NAME...]
#
# NAME limits the run to some tests (test_roundtrip or roundtrip). Each test
# runs in its own temporary directory and kills the server it started.
# VG_TEST_TIMEOUT caps one test's run time in seconds (default 300).
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export VIGIL=${VIGIL:-$repo/build/vigil}
case "$VIGIL" in /*) ;; *) VIGIL="$PWD/$VIGIL" ;; esac
export VIGIL

if [ ! -x "$VIGIL" ]; then
    echo "run.sh: vigil binary not found or not executable: $VIGIL (build it, or set VIGIL)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

tests=()
if [ $# -gt 0 ]; then
    for n in "$@"; do
        n=${n%.sh}
        n=${n#test_}
        [ -f "$here/test_$n.sh" ] || { echo "run.sh: no such test: $n" >&2; exit 2; }
        tests+=("$here/test_$n.sh")
    done
else
    for t in "$here"/test_*.sh; do
        [ -f "$t" ] && tests+=("$t")
    done
fi

echo "# vigil integration tests: $VIGIL"
passed=0
failed=0
checks_ok=0
checks_failed=0
failed_names=()
start=$SECONDS
for t in "${tests[@]}"; do
    name=$(basename "$t" .sh)
    t0=$SECONDS
    out=$(timeout -k 10 "${VG_TEST_TIMEOUT:-300}" bash "$t" </dev/null 2>&1)
    rc=$?
    printf '%s\n' "$out" | sed 's/^/    /'
    checks_ok=$((checks_ok + $(printf '%s\n' "$out" | grep -c '^ok - ')))
    checks_failed=$((checks_failed + $(printf '%s\n' "$out" | grep -c '^not ok - ')))
    if [ $rc -eq 0 ] && ! printf '%s\n' "$out" | grep -q '^not ok - '; then
        echo "PASS $name ($((SECONDS - t0)) s)"
        passed=$((passed + 1))
    else
        [ $rc -eq 124 ] && echo "    # $name timed out after ${VG_TEST_TIMEOUT:-300} s"
        echo "FAIL $name (exit $rc, $((SECONDS - t0)) s)"
        failed=$((failed + 1))
        failed_names+=("$name")
    fi
done
echo "# checks: $checks_ok ok, $checks_failed failed; $((SECONDS - start)) s"
[ $failed -eq 0 ] || echo "# failed: ${failed_names[*]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
