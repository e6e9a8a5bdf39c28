#!/usr/bin/env bash
# The device inventory: a device describes itself on vigil/v1/d/{id}/info
# (invalid descriptions are refused and audited), an engineer records its
# location, the API and `vigil device list|show` show it all with the
# credential, last sighting and TLS of its session; quarantine closes the
# live session and refuses new ones until released; revocation refuses for
# good; each is audited with its reason; a clinician may not read the
# inventory.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_enroll ox1
vg_enroll bp2
vg_assign ox1 p1

info='{"manufacturer":"Acme Medical","model":"OX-200","serial":"SN-0042","firmware":"2.1.7","class":"pulse-oximeter"}'
pub -t vigil/v1/d/ox1/info ox1 "$info" -r
check_eq "the device's info publish is acknowledged" 0 "$?"
check_contains "with a PUBACK" "PUBACK" "$PUB_OUT"
api GET /api/v1/devices/ox1
check_eq "GET /api/v1/devices/ox1: 200" 200 "$API_STATUS"
check_eq "firmware, model, maker, serial and class as the device said" \
    "2.1.7 OX-200 Acme Medical SN-0042 pulse-oximeter" \
    "$(jget "$API_BODY" '" ".join([j["firmware"], j["model"], j["manufacturer"], j["serial"], j["class"]])')"
check_eq "the assigned patient and the credential are shown" "p1 EC P-256 x509" \
    "$(jget "$API_BODY" '" ".join([j["patient"], j["credential"]["key_type"], j["credential"]["kind"]])')"
check "the certificate's expiry is shown" test -n "$(jget "$API_BODY" 'j["credential"]["not_after"]')"
check_eq "the description is audited" 1 \
    "$(audit_count "action = 'device.info' AND outcome = 'success' AND actor = 'device:ox1'")"

# Refusals: unknown member, unknown class, control characters, not JSON,
# and another device's info topic.
before=$(audit_count "action = 'device.info' AND outcome = 'refused'")
pub -t vigil/v1/d/ox1/info ox1 '{"firmware":"3.0","patient":"p1"}'
pub -t vigil/v1/d/ox1/info ox1 '{"class":"toaster"}'
pub -t vigil/v1/d/ox1/info ox1 "{\"firmware\":\"3.0\\u0007\"}"
pub -t vigil/v1/d/ox1/info ox1 'firmware=3.0'
vg_wait_for 10 audit_at_least $((before + 4)) "action = 'device.info' AND outcome = 'refused'"
check_eq "four invalid descriptions refused and audited" $((before + 4)) \
    "$(audit_count "action = 'device.info' AND outcome = 'refused'")"
api GET /api/v1/devices/ox1
check_eq "none of them changed the inventory" "2.1.7 pulse-oximeter" \
    "$(jget "$API_BODY" 'j["firmware"] + " " + j["class"]')"
pub -t vigil/v1/d/ox1/info bp2 '{"firmware":"9.9"}'
api GET /api/v1/devices/ox1
check_eq "another device cannot describe ox1" "2.1.7" "$(jget "$API_BODY" 'j["firmware"]')"

# What an engineer records.
out=$(vg_cli device set bp2 --location "Ward 4, bed 12" --class bp-cuff --token-file "$VG_DIR/admin.token")
check_eq "vigil device set exits 0" 0 "$?"
api PATCH /api/v1/devices/bp2 '{"class":"toaster"}'
check_eq "an unknown class: 400" 400 "$API_STATUS"
api PATCH /api/v1/devices/bp2 '{"location":"x","patient":"p1"}'
check_eq "a member the route does not take: 400" 400 "$API_STATUS"
api PATCH /api/v1/devices/nosuch '{"location":"x"}'
check_eq "an unknown device: 404" 404 "$API_STATUS"

# Sightings: written every few seconds and at disconnect.
vg_wait_for 15 sh -c "[ \"\$(sqlite3 '$VG_DIR/vigil.db' \"SELECT last_seen_ms > 0 FROM devices WHERE id = 'ox1'\")\" = 1 ]"
out=$(vg_cli device list --token-file "$VG_DIR/admin.token")
check_eq "vigil device list exits 0" 0 "$?"
check_contains "the list shows bp2's location" "Ward 4, bed 12" "$out"
check_contains "and ox1's firmware" "2.1.7" "$out"
api GET /api/v1/devices
check_eq "ox1's last session: TLS 1.3 from loopback" "TLSv1.3 127.0.0.1" \
    "$(jget "$API_BODY" '[d for d in j["devices"] if d["id"] == "ox1"][0]["last_seen"]["tls"] + " " + [d for d in j["devices"] if d["id"] == "ox1"][0]["last_seen"]["source"].rsplit(":", 1)[0]')"

tok=$(vg_person nora '["clinician"]') || bail "make a clinician"
api GET /api/v1/devices "" "$tok"
check_eq "a clinician may not read the inventory: 403" 403 "$API_STATUS"
api POST /api/v1/devices/ox1/quarantine '{"reason":"suspicious traffic seen"}' "$tok"
check_eq "nor quarantine a device: 403" 403 "$API_STATUS"

# Quarantine: the live session is closed, new ones refused, readings kept.
pub ox1 "$(reading 8867-4 72 /min)" || bail "ox1 reading" "$PUB_OUT"
connects=$(audit_count "action = 'mqtt.connect' AND outcome = 'success' AND actor = 'device:ox1'")
mqtt_session ox1 --linger "$(vg_t 8)" >"$VG_TMP/live.json" &
live=$!
vg_wait_for 10 audit_at_least $((connects + 1)) "action = 'mqtt.connect' AND outcome = 'success' AND actor = 'device:ox1'"
api POST /api/v1/devices/ox1/quarantine '{"reason":"short"}'
check_eq "quarantine without a real reason: 400" 400 "$API_STATUS"
api POST /api/v1/devices/ox1/quarantine '{"reason":"flood alarm under investigation"}'
check_eq "quarantine: 200" 200 "$API_STATUS"
check_eq "the device shows as quarantined with the reason" "flood alarm under investigation" \
    "$(jget "$API_BODY" 'j["quarantine"]["reason"]')"
wait "$live"
check_eq "its live session was closed by the server" true "$(jget "$(cat "$VG_TMP/live.json")" 'j.get("closed_by_server")')"
res=$(mqtt_session ox1)
check_eq "a new connection is refused (CONNACK 5)" 5 "$(jget "$res" 'j["connack"]')"
check_eq "the refusal is audited" 1 "$(audit_count "action = 'mqtt.connect' AND outcome = 'refused' AND detail = 'device is quarantined'")"
check_eq "its readings are kept" 1 "$(db "SELECT count(*) FROM readings WHERE device_id = 'ox1';")"
out=$(vg_cli device release ox1 --reason "traffic explained: firmware update burst" --token-file "$VG_DIR/admin.token")
check_eq "vigil device release exits 0" 0 "$?"
res=$(mqtt_session ox1)
check_eq "after release it connects again" 0 "$(jget "$res" 'j["connack"]')"
check_eq "quarantine and release are audited with their reasons" 2 \
    "$(audit_count "action IN ('device.quarantine', 'device.release') AND outcome = 'success' AND detail LIKE 'reason: %'")"

# Revocation is for good.
out=$(vg_cli device revoke bp2 --reason "device reported stolen from ward 4" --token-file "$VG_DIR/admin.token")
check_eq "vigil device revoke exits 0" 0 "$?"
res=$(mqtt_session bp2)
check_eq "a revoked device is refused (CONNACK 5)" 5 "$(jget "$res" 'j["connack"]')"
check_eq "the revocation is audited" 1 "$(audit_count "action = 'device.revoke' AND detail LIKE '%stolen%'")"

vg_finish
