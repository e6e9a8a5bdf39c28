#!/usr/bin/env bash
# With the audit trail unavailable, vigil neither serves patient data nor
# acknowledges readings (the record of a change and the change commit
# together, or neither does), says so in its log, and recovers by itself
# when the trail is back.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_enroll dev1
vg_assign dev1 p1
pub dev1 "$(reading 8867-4 71 /min)" || bail "first reading" "$PUB_OUT"
before=$(readings_count)

# Make every audit insert fail (as a full or failing disk would).
db "CREATE TRIGGER test_block_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END;" ||
    bail "install the blocking trigger"

api GET "/fhir/Observation?patient=p1"
check_eq "trail down: FHIR read refused with 503" 503 "$API_STATUS"
check_contains "trail down: problem says the audit trail is unavailable" "Audit trail unavailable" "$API_BODY"
check_not_contains "trail down: no observation in the answer" '"Observation"' "$API_BODY"

# No PUBACK is expected: wait 3 s for it, not the default 10.
res=$(VG_MQTT_TIMEOUT=3 mqtt_session dev1 --topic vigil/v1/d/dev1/obs --pub "$(reading 8867-4 73.25 /min)" --qos 1)
check_eq "trail down: the QoS 1 reading is not acknowledged" "[false]" "$(jget "$res" 'j["puback"]')"
check_eq "trail down: nothing stored" "$before" "$(readings_count)"
check "trail down: the log says the batch was not committed" grep -q "batch not committed" "$VG_LOG"

db "DROP TRIGGER test_block_audit;" || bail "remove the blocking trigger"
res=$(mqtt_session dev1 --topic vigil/v1/d/dev1/obs --pub "$(reading 8867-4 74 /min)" --qos 1)
check_eq "trail back: the reading is acknowledged" "[true]" "$(jget "$res" 'j["puback"]')"
check_eq "trail back: it is stored" "$((before + 1))" "$(readings_count)"
check "trail back: the log says commits succeed again" grep -q "commits succeed again" "$VG_LOG"
api GET "/fhir/Observation?patient=p1"
check_eq "trail back: FHIR read served" 200 "$API_STATUS"
vg_stop
out=$("$VIGIL" audit verify "$VG_DIR" 2>&1)
check_eq "the trail verifies after the outage" 0 "$?"
vg_finish
