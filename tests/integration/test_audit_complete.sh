#!/usr/bin/env bash
# Completeness: a scripted session with one action of every kind vigil
# audits today leaves exactly the expected records — no fewer (a missing
# record is a hole in the trail) and no more (noise hides what matters).
# Compared as a sorted list of "actor action target outcome" lines.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_cli patient add p1 >/dev/null 2>&1            # refused: already exists
vg_enroll dev1
vg_cli device enroll dev1 --out "$VG_TMP/again" >/dev/null 2>&1   # refused: already enrolled
vg_assign dev1 p1
vg_cli device assign dev1 nobody >/dev/null 2>&1 # refused: no such patient
pub dev1 "$(reading 8867-4 72 /min)" || not_ok "valid publish" "$PUB_OUT"
pub dev1 "$(reading 8867-4 400 /min)" || not_ok "implausible publish" "$PUB_OUT"
pub -t vigil/v1/d/other/obs dev1 "$(reading 8867-4 72 /min)" || not_ok "foreign-topic publish" "$PUB_OUT"
pub dev1 'not json' || not_ok "malformed publish" "$PUB_OUT"
mqtt_session dev1 --sub vigil/v1/d/other/obs >/dev/null    # SUBSCRIBE refused
pub -i someone-else dev1 "$(reading 8867-4 72 /min)" >/dev/null 2>&1   # CONNACK 2
timeout -k 5 "$(vg_t 10)" mosquitto_pub -h 127.0.0.1 -p "$VG_MQTT_PORT" --cafile "$VG_DIR/pki/ca.pem" \
    -i dev1 -t x -m y </dev/null >/dev/null 2>&1           # no client certificate
vg_cli obs list p1 >/dev/null || not_ok "obs list" "$VG_CLI_ERR"
api GET "/fhir/Observation?patient=p1" "" "vgt_not-a-real-token"
check_eq "bad token refused" 401 "$API_STATUS"
vg_cli audit list --limit 5 >/dev/null || not_ok "audit list" "$VG_CLI_ERR"
vg_stop

got=$(db "SELECT actor || ' ' || action || ' ' || coalesce(nullif(target, ''), '-') || ' ' || outcome FROM audit ORDER BY 1;")
expected=$(sort <<'TXT'
system vigil.init - success
system principal.create user:admin success
system vigil.start - success
user:admin user.create user:it-reader success
user:admin token.issue user:it-reader success
user:admin user.create user:it-auditor success
user:it-auditor user.login user:it-auditor success
user:admin patient.create patient:p1 success
user:admin patient.create patient:p1 failure
user:admin device.enroll device:dev1 success
user:admin device.enroll device:dev1 failure
user:admin device.assign device:dev1 success
user:admin device.assign device:dev1 failure
device:dev1 mqtt.connect device:dev1 success
device:dev1 readings.store patient:p1 success
device:dev1 mqtt.disconnect device:dev1 success
device:dev1 mqtt.connect device:dev1 success
device:dev1 readings.refuse patient:p1 refused
device:dev1 mqtt.disconnect device:dev1 success
device:dev1 mqtt.connect device:dev1 success
device:dev1 mqtt.publish device:dev1 refused
device:dev1 mqtt.disconnect device:dev1 success
device:dev1 mqtt.connect device:dev1 success
device:dev1 mqtt.publish device:dev1 refused
device:dev1 mqtt.disconnect device:dev1 success
device:dev1 mqtt.connect device:dev1 success
device:dev1 mqtt.subscribe device:dev1 denied
device:dev1 mqtt.disconnect device:dev1 success
device:dev1 mqtt.connect device:dev1 refused
peer tls.handshake - refused
user:it-reader obs.read patient:p1 success
peer api.auth - refused
user:it-auditor audit.read - success
system vigil.stop - success
TXT
)
expected=$(echo "$expected" | LC_ALL=C sort)
got=$(echo "$got" | LC_ALL=C sort)
if [ "$got" = "$expected" ]; then
    ok "the trail holds exactly the $(echo "$expected" | wc -l) expected records"
else
    not_ok "the trail holds exactly the expected records" "diff (- expected, + got): $(diff <(echo "$expected") <(echo "$got") | grep '^[<>]' | tr '\n' ';')"
fi
check_eq "no record carries a reading value" 0 "$(audit_count "instr(detail, '72 /min') > 0 OR instr(detail, '400') > 0 AND action LIKE 'readings.%'")"
verify_out=$("$VIGIL" audit verify "$VG_DIR" 2>&1)
check_eq "the completed trail verifies" 0 "$?"
vg_finish
