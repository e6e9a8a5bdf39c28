#!/usr/bin/env bash
# Crash consistency, short version of bench/crash.sh: 5 cycles of kill -9
# under QoS 1 load from several devices, restart, and check that every
# acknowledged reading is stored exactly once with its value, that
# PRAGMA integrity_check is ok and that `vigil audit verify` passes; then a
# clean SIGTERM stop. bench/crash.sh 50 is the long version.
. "$(dirname "$0")/lib.sh"

CYCLES=${VG_CRASH_CYCLES:-5}
work=$VG_TMP/crash
out=$VG_TMP/crash.out
t0=$SECONDS
VIGIL=$VIGIL VG_TIMEOUT_SCALE=$VG_TIMEOUT_SCALE CRASH_WORKDIR=$work CRASH_KEEP=1 \
    timeout -k 10 "$(vg_t 150)" bash "$IT_DIR/../../bench/crash.sh" "$CYCLES" </dev/null >"$out" 2>&1
rc=$?
echo "# bench/crash.sh $CYCLES: exit $rc in $((SECONDS - t0)) s"
sed -n 's/^crash: \(.*\)$/#   \1/p' "$out" | grep -v 'run kept in'

for ((c = 1; c <= CYCLES; c++)); do
    line=$(grep -E "^cycle $c/$CYCLES: " "$out")
    if [ -z "$line" ]; then
        not_ok "cycle $c: kill -9 under load, restart, checks" "the cycle did not run"
    elif [[ "$line" == *"; ok"* ]]; then
        ok "cycle $c: after kill -9 and restart every acknowledged reading is stored once, integrity_check ok, audit chain verifies"
    else
        not_ok "cycle $c: kill -9 under load, restart, checks" "$(grep -E '^crash: FAIL cycle '"$c"':' "$out" | head -3 | tr '\n' ' ')"
    fi
done
summary=$(grep -E '^crash: [0-9]+ cycles, ' "$out" | tail -1)
check_eq "summary: no acknowledged reading lost, none duplicated" \
    "0 lost, 0 duplicated" "$(sed -E 's/.* readings checked, //' <<<"$summary")"
checked=$(sed -nE 's/.* cycles, ([0-9]+) acknowledged readings checked.*/\1/p' <<<"$summary")
check "some readings were acknowledged and checked (${checked:-none})" test "${checked:-0}" -gt 0
check_not_contains "the final SIGTERM stop and the checks after it pass" "crash: FAIL final" "$(cat "$out")"
check_not_contains "after the final stop: integrity_check ok and audit verify passes" \
    "FAIL after the final SIGTERM" "$(cat "$out")"
check_eq "bench/crash.sh exits 0" 0 "$rc"

if [ "$VG_CHECKS_FAILED" -ne 0 ]; then
    grep -E '^crash: FAIL|^cycle ' "$out" | head -20 | sed 's/^/#   /'
    for f in "$work"/cycle-*/check.out; do
        [ -f "$f" ] && grep -q '^FAIL' "$f" && grep '^FAIL' "$f" | head -10 | sed "s|^|#   $(basename "$(dirname "$f")"): |"
    done
    echo "# the run's directory: $work (set VG_KEEP_ON_FAIL=1 to keep it)"
fi
vg_finish
