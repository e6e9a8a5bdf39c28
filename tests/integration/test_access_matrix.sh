#!/usr/bin/env bash
# The one decision point, seen through every door: each role x each action x
# (own patient, other patient, none) through the real API and real MQTT
# clients, with zero unexpected allows and zero unexpected denials, and the
# audit records every decision on patient data needs.
. "$(dirname "$0")/lib.sh"
VG_NO_PRINCIPALS=1 vg_start
mkdir -p "$VG_TMP/certs-matrix"
out=$(timeout -k 5 "$(vg_t 120)" "$PY" "$IT_DIR/access_matrix.py" "$VG_DIR" "$VG_API_PORT" "$VG_MQTT_PORT" "$VG_TMP/certs-matrix" 2>&1)
rc=$?
echo "$out" | grep -E '^(ok|not ok|#)' | sed 's/^/    /' | sed 's/^    ok/ok/; s/^    not ok/not ok/'
VG_CHECKS_OK=$((VG_CHECKS_OK + $(echo "$out" | grep -c '^ok')))
VG_CHECKS_FAILED=$((VG_CHECKS_FAILED + $(echo "$out" | grep -c '^not ok')))
[ $rc -eq 0 ] || [ "$(echo "$out" | grep -c '^not ok')" -gt 0 ] || not_ok "access_matrix.py ran" "exit $rc: $(echo "$out" | tail -5 | tr '\n' ' ')"
vg_stop
vg_finish
