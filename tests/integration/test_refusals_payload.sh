#!/usr/bin/env bash
# Refusals of connected, authenticated devices: wrong topic, refused
# readings, foreign subscriptions. Each is acknowledged (QoS 1 PUBACK) so the
# device does not resend it forever, and nothing is stored.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_enroll dev1
vg_enroll dev2 # never assigned
vg_assign dev1 p1

pub dev1 "$(reading 8867-4 70 /min)" || bail "control: dev1 publishes a valid reading" "$PUB_OUT"
check_eq "control: a valid reading is stored" 1 "$(readings_count)"

# refused_publish "what" DEVICE PAYLOAD [pub options...]
refused_publish() {
    local what=$1 dev=$2 payload=$3
    shift 3
    local before
    before=$(readings_count)
    if pub "$@" "$dev" "$payload"; then
        ok "$what: mosquitto_pub exits 0"
    else
        not_ok "$what: mosquitto_pub exits 0" "$(echo "$PUB_OUT" | tail -2 | tr '\n' ' ')"
    fi
    check_contains "$what: acknowledged (PUBACK)" "received PUBACK" "$PUB_OUT"
    check_nothing_stored "$what" "$before"
}

# -- publishing to another device's topic, and to any other topic
before_topic=$(audit_count "actor = 'device:dev1' AND action = 'mqtt.publish' AND outcome = 'refused'")
refused_publish "dev1 publishes to dev2's topic" dev1 "$(reading 8867-4 71 /min)" -t vigil/v1/d/dev2/obs
after_topic=$(audit_count "actor = 'device:dev1' AND action = 'mqtt.publish' AND outcome = 'refused'")
check_eq "dev1 publishes to dev2's topic: an audit row with outcome 'refused'" \
    $((before_topic + 1)) "$after_topic"
check_eq "dev1 publishes to dev2's topic: the audit row names the topic rule" 1 \
    "$(audit_count "actor = 'device:dev1' AND action = 'mqtt.publish' AND outcome = 'refused' AND detail LIKE '%vigil/v1/d/%'" | awk '{print ($1 >= 1)}')"
check_eq "dev1 publishes to dev2's topic: dev2 has no readings either" 0 \
    "$(db "SELECT count(*) FROM readings WHERE device_id = 'dev2';")"
refused_publish "dev1 publishes to an arbitrary topic" dev1 "$(reading 8867-4 71 /min)" -t hospital/all/obs
refused_publish "dev1 publishes to its rejects topic" dev1 "$(reading 8867-4 71 /min)" -t vigil/v1/d/dev1/rejects

# -- refused readings on the device's own topic
refused_publish "implausible value (heart rate 400 /min)" dev1 "$(reading 8867-4 400 /min)"
refused_publish "negative heart rate" dev1 "$(reading 8867-4 -5 /min)"
refused_publish "unknown LOINC code" dev1 "$(reading 99999-9 72 /min)"
refused_publish "unit not allowed for the code (HR in Cel)" dev1 "$(reading 8867-4 72 Cel)"
refused_publish "malformed JSON" dev1 '{"code":"8867-4","value":72,'
refused_publish "not JSON at all" dev1 'heart rate 72'
refused_publish "missing value" dev1 '{"code":"8867-4","unit":"/min"}'
refused_publish "value as a string" dev1 '{"code":"8867-4","value":"72","unit":"/min"}'
refused_publish "payload names a patient" dev1 '{"code":"8867-4","value":72,"unit":"/min","patient":"p1"}'
refused_publish "time one hour in the future" dev1 "$(reading 8867-4 72 /min "$(now_rfc3339 '+1 hour')")"
refused_publish "unassigned device" dev2 "$(reading 8867-4 72 /min)"
check_eq "readings refused for reasons are audited (readings.refuse or mqtt.publish refused)" 1 \
    "$(audit_count "actor = 'device:dev1' AND outcome = 'refused' AND (action = 'readings.refuse' OR action = 'mqtt.publish')" | awk '{print ($1 >= 9)}')"

# Just inside the future-time tolerance is fine.
before=$(readings_count)
pub dev1 "$(reading 8867-4 67 /min "$(now_rfc3339 '+3 minutes')")"
check_eq "time 3 minutes ahead (within tolerance): stored" $((before + 1)) "$(readings_count)"

# A batch with one bad reading stores the good one and only that.
before=$(readings_count)
pub dev1 "[$(reading 8867-4 66 /min),$(reading 8867-4 400 /min)]"
check_eq "array with one implausible reading: only the plausible one is stored" \
    $((before + 1)) "$(readings_count)"

# -- the rejects topic explains a refusal; other subscriptions get 0x80
res=$(mqtt_session dev1 --sub vigil/v1/d/dev1/rejects \
    --pub "$(reading 8867-4 400 /min)" --pub '{"code":"8867-4",' --expect 2)
check_eq "paho: SUBACK grants QoS 0 on vigil/v1/d/dev1/rejects" "[[0]]" "$(jget "$res" 'j["granted"]')"
check_eq "paho: both refused publishes are PUBACKed" "[true, true]" "$(jget "$res" 'j["puback"]')"
check_eq "paho: two notices arrive on vigil/v1/d/dev1/rejects" \
    '["vigil/v1/d/dev1/rejects", "vigil/v1/d/dev1/rejects"]' "$(jget "$res" '[m["topic"] for m in j["messages"]]')"
# A notice carries "reason" for a refused payload, or "rejected": [{"reason"}]
# per refused reading of an accepted payload.
reasons=$(jget "$res" '[[n.get("reason")] + [r.get("reason") for r in n.get("rejected", [])] for n in (json.loads(m["payload"]) for m in j["messages"])]')
check_contains "rejects notice for HR 400 has reason implausible-value" "implausible-value" "$reasons"
check_contains "rejects notice for broken JSON has reason malformed-json" "malformed-json" "$reasons"
check_not_contains "rejects notices do not echo the refused value" "400" \
    "$(jget "$res" '[m["payload"] for m in j["messages"]]')"

res=$(mqtt_session dev1 --sub vigil/v1/d/dev1/rejects --topic vigil/v1/d/dev2/obs \
    --pub "$(reading 8867-4 72 /min)" --expect 1)
check_contains "rejects notice for a foreign topic has reason topic-not-permitted" \
    "topic-not-permitted" "$(jget "$res" '[json.loads(m["payload"]).get("reason") for m in j["messages"]]')"
res=$(mqtt_session dev2 --sub vigil/v1/d/dev2/rejects --pub "$(reading 8867-4 72 /min)" --expect 1)
check_contains "rejects notice for the unassigned device has reason device-unassigned" \
    "device-unassigned" "$(jget "$res" '[[r.get("reason") for r in json.loads(m["payload"]).get("rejected", [])] for m in j["messages"]]')"

res=$(mqtt_session dev1 --sub '#')
check_eq "paho: SUBACK 0x80 for #" "[[128]]" "$(jget "$res" 'j["granted"]')"
res=$(mqtt_session dev1 --sub vigil/v1/d/dev2/rejects)
check_eq "paho: SUBACK 0x80 for another device's rejects topic" "[[128]]" "$(jget "$res" 'j["granted"]')"
res=$(mqtt_session dev1 --sub vigil/v1/d/dev1/obs --sub vigil/v1/d/+/rejects)
check_eq "paho: SUBACK 0x80 for its own obs topic and for a wildcard" "[[128], [128]]" "$(jget "$res" 'j["granted"]')"
vg_wait_for 5 audit_at_least 4 "actor = 'device:dev1' AND action = 'mqtt.subscribe' AND outcome = 'denied'"
check_eq "denied subscriptions are audited" 1 \
    "$(audit_count "actor = 'device:dev1' AND action = 'mqtt.subscribe' AND outcome = 'denied'" | awk '{print ($1 >= 4)}')"

# -- nothing refused leaked into the patient's record
api GET "/fhir/Observation?patient=p1"
printf '%s' "$API_BODY" >"$VG_TMP/bundle.json"
check "the API shows exactly the three accepted readings (70, 67, 66)" \
    "$PY" "$IT_DIR/check_fhir.py" "$VG_TMP/bundle.json" --patient p1 --total 3 \
    --obs "8867-4,70,/min" --obs "8867-4,67,/min" --obs "8867-4,66,/min"

vg_stop
vg_finish
