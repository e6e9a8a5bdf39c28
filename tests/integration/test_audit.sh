#!/usr/bin/env bash
# The audit trail records the round trip's security-relevant events and is
# append-only at the SQL level.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_enroll dev1
vg_assign dev1 p1
pub dev1 "$(reading 8310-5 37.2345 Cel)" || bail "dev1 publishes body temperature 37.2345" "$PUB_OUT"
vg_cli obs list p1 >/dev/null || not_ok "vigil obs list p1" "$VG_CLI_ERR"
api GET "/fhir/Observation?patient=p1" "" "bad-token"
check_eq "a bad token is refused" 401 "$API_STATUS"

# has_audit "what" WHERE
has_audit() {
    if vg_wait_for 5 audit_at_least 1 "$2"; then
        ok "audit: $1"
    else
        not_ok "audit: $1" "no row WHERE $2; have: $(db "SELECT group_concat(actor || ' ' || action || ' ' || outcome, '; ') FROM audit;")"
    fi
}

has_audit "patient.create by user:admin" "actor = 'user:admin' AND action = 'patient.create' AND target = 'patient:p1' AND outcome = 'success'"
has_audit "device.enroll of dev1" "action = 'device.enroll' AND target = 'device:dev1' AND outcome = 'success'"
has_audit "device.assign of dev1" "action = 'device.assign' AND target = 'device:dev1' AND outcome = 'success'"
has_audit "mqtt.connect success by device:dev1" "actor = 'device:dev1' AND action = 'mqtt.connect' AND outcome = 'success'"
has_audit "readings.store for patient:p1" "actor = 'device:dev1' AND action = 'readings.store' AND target = 'patient:p1' AND outcome = 'success'"
has_audit "obs.read of patient:p1" "actor = 'user:it-reader' AND action = 'obs.read' AND target = 'patient:p1' AND outcome = 'success'"
has_audit "api.auth refused after the bad token" "action = 'api.auth' AND outcome = 'refused'"
has_audit "mqtt.disconnect of device:dev1 after mosquitto_pub's DISCONNECT" "actor = 'device:dev1' AND action = 'mqtt.disconnect'"
has_audit "vigil.start" "action = 'vigil.start' AND outcome = 'success'"
# (4 decimals: cannot be the seconds.millis of a timestamp in a detail)
check_eq "audit rows carry no reading value" 0 "$(audit_count "instr(detail, '37.2345') > 0")"
check_eq "audit sequence numbers are 1..N without gaps" "1" \
    "$(db "SELECT min(seq) = 1 AND max(seq) = count(*) FROM audit;")"
check_eq "every audit row has a 32-byte hash and prev" 0 \
    "$(audit_count "length(hash) != 32 OR length(prev) != 32")"
check_eq "the audit rows form a chain (each prev is the previous row's hash)" 0 \
    "$(db "SELECT count(*) FROM audit a JOIN audit b ON b.seq = a.seq - 1 WHERE a.prev != b.hash;")"

# Append-only: UPDATE and DELETE are refused by triggers, even while serving.
n=$(audit_count "1")
if out=$(db "UPDATE audit SET outcome = 'success' WHERE action = 'api.auth';" 2>&1); then
    not_ok "audit: UPDATE is refused" "sqlite3 exit 0"
else
    ok "audit: UPDATE is refused"
fi
check_contains "audit: UPDATE error says append-only" "append-only" "$out"
if out=$(db "DELETE FROM audit WHERE action = 'api.auth';" 2>&1); then
    not_ok "audit: DELETE is refused" "sqlite3 exit 0"
else
    ok "audit: DELETE is refused"
fi
check_contains "audit: DELETE error says append-only" "append-only" "$out"
check_eq "audit: the api.auth row is unchanged" "refused" \
    "$(db "SELECT outcome FROM audit WHERE action = 'api.auth' LIMIT 1;")"
check_eq "audit: row count unchanged after the refused edits" "$n" "$(audit_count "1")"

vg_stop
has_audit "vigil.stop" "action = 'vigil.stop' AND outcome = 'success'"
# Also refused when the server is not running.
if db "DELETE FROM audit;" >/dev/null 2>&1; then
    not_ok "audit: DELETE refused with the server stopped" "sqlite3 exit 0"
else
    ok "audit: DELETE refused with the server stopped"
fi
check_eq "audit: rows still there" 1 "$(audit_count "1" | awk '{print ($1 > 0)}')"
vg_finish
