#!/usr/bin/env bash
# Round trip: init -> serve -> patient add -> device enroll -> assign ->
# MQTT/TLS publish (mosquitto_pub, then paho) -> `vigil obs list` and the
# FHIR API show the readings.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_enroll dev1
vg_assign dev1 p1

check "enrolled key file is 0600" test "$(stat -c %a "$VG_CERTS/dev1.key")" = 600

# 1. mosquitto_pub at QoS 1 (it waits for the PUBACK before exiting 0)
t1=$(now_rfc3339 "-2 minutes")
if pub dev1 "$(reading 8867-4 72 /min "$t1")"; then
    ok "mosquitto_pub QoS 1 exits 0"
else
    not_ok "mosquitto_pub QoS 1 exits 0" "$(echo "$PUB_OUT" | tail -3 | tr '\n' ' ')"
fi
check_contains "mosquitto_pub got a PUBACK" "received PUBACK" "$PUB_OUT"
check_eq "one row in readings" 1 "$(readings_count)"

if out=$(vg_cli obs list p1); then
    ok "vigil obs list p1 exits 0"
else
    not_ok "vigil obs list p1 exits 0" "$VG_CLI_ERR"
fi
row=$(echo "$out" | grep -E '^[0-9T:.Z-]+ +8867-4 ')
check "obs list shows the heart rate 72 /min from dev1" \
    grep -Eq '8867-4 +Heart rate +72 /min +dev1$' <<<"$row"
check_contains "obs list counts 1 of 1" "1 of 1 readings" "$out"

api GET "/fhir/Observation?patient=p1"
check_eq "GET /fhir/Observation?patient=p1 is 200" 200 "$API_STATUS"
check_eq "FHIR search answers application/fhir+json" "application/fhir+json" "$API_CTYPE"
printf '%s' "$API_BODY" >"$VG_TMP/bundle1.json"
check "FHIR Bundle has LOINC 8867-4, value 72, UCUM /min, subject Patient/p1, effective $t1" \
    "$PY" "$IT_DIR/check_fhir.py" "$VG_TMP/bundle1.json" --patient p1 --total 1 \
    --obs "8867-4,72,/min,$t1"

if json=$(vg_cli obs list p1 --json); then
    printf '%s' "$json" >"$VG_TMP/bundle1cli.json"
    check "vigil obs list --json prints the same Bundle" \
        "$PY" "$IT_DIR/check_fhir.py" "$VG_TMP/bundle1cli.json" --patient p1 --total 1 \
        --obs "8867-4,72,/min,$t1"
else
    not_ok "vigil obs list p1 --json exits 0" "$VG_CLI_ERR"
fi

# 2. paho at QoS 1, waiting for on_publish (the PUBACK)
res=$(mqtt_session dev1 --pub "$(reading 59408-5 97.5 %)")
check_eq "paho: CONNACK 0" 0 "$(jget "$res" 'j["connack"]')"
check_eq "paho: on_publish (PUBACK) for the QoS 1 publish" "[true]" "$(jget "$res" 'j["puback"]')"
check_eq "paho: no error" "null" "$(jget "$res" 'j["error"]')"
check_eq "two rows in readings" 2 "$(readings_count)"

out=$(vg_cli obs list p1)
check "obs list shows the SpO2 97.5 % from paho" grep -Eq '59408-5 .* 97.5 % +dev1$' <<<"$out"
check_contains "obs list counts 2 of 2" "2 of 2 readings" "$out"

api GET "/fhir/Observation?patient=p1"
printf '%s' "$API_BODY" >"$VG_TMP/bundle2.json"
check "FHIR Bundle has both readings" \
    "$PY" "$IT_DIR/check_fhir.py" "$VG_TMP/bundle2.json" --patient p1 --total 2 \
    --obs "8867-4,72,/min,$t1" --obs "59408-5,97.5,%"

# 3. QoS 0 (no PUBACK: wait for the row)
if pub -q 0 dev1 "$(reading 9279-1 14 /min)"; then ok "mosquitto_pub QoS 0 exits 0"; else
    not_ok "mosquitto_pub QoS 0 exits 0" "$(echo "$PUB_OUT" | tail -2 | tr '\n' ' ')"; fi
vg_wait_for 10 bash -c "[ \$(sqlite3 -cmd '.timeout 5000' '$VG_DIR/vigil.db' 'SELECT count(*) FROM readings') -ge 3 ]"
check_eq "QoS 0 reading stored (three rows)" 3 "$(readings_count)"

# 4. time as epoch milliseconds
ms=$(( $(date -u -d "$(now_rfc3339 '-90 seconds')" +%s) * 1000 + 250 ))
t_ms=$(date -u -d "@$((ms / 1000))" +%Y-%m-%dT%H:%M:%S).250Z
res=$(mqtt_session dev1 --pub "{\"code\":\"8310-5\",\"value\":36.6,\"unit\":\"Cel\",\"time\":$ms}")
check_eq "paho: reading with epoch-millisecond time acknowledged" "[true]" "$(jget "$res" 'j["puback"]')"
api GET "/fhir/Observation?patient=p1&code=8310-5"
printf '%s' "$API_BODY" >"$VG_TMP/bundle4.json"
check "FHIR shows the temperature 36.6 Cel at $t_ms" \
    "$PY" "$IT_DIR/check_fhir.py" "$VG_TMP/bundle4.json" --patient p1 --total 1 \
    --obs "8310-5,36.6,Cel,$t_ms"

# 5. an array of readings in one publish
res=$(mqtt_session dev1 --pub "[$(reading 8480-6 121 'mm[Hg]'),$(reading 8462-4 79 'mm[Hg]')]")
check_eq "paho: array of two readings acknowledged" "[true]" "$(jget "$res" 'j["puback"]')"
api GET "/fhir/Observation?patient=p1&code=http://loinc.org%7C8480-6"
printf '%s' "$API_BODY" >"$VG_TMP/bundle3.json"
check "FHIR code search finds the systolic 121 mm[Hg] from the array" \
    "$PY" "$IT_DIR/check_fhir.py" "$VG_TMP/bundle3.json" --patient p1 --total 1 \
    --obs "8480-6,121,mm[Hg]"
check_eq "six rows in readings" 6 "$(readings_count)"

# 6. reassignment: readings follow the assignment at receive time
api GET "/fhir/Observation?patient=p1"
p1_total=$(jget "$API_BODY" 'j["total"]')
vg_patient p2
vg_assign dev1 p2
pub dev1 "$(reading 8867-4 99 /min)" || not_ok "dev1 publishes after reassignment" "$PUB_OUT"
api GET "/fhir/Observation?patient=p2"
printf '%s' "$API_BODY" >"$VG_TMP/bundle_p2.json"
check "after reassignment to p2: the new reading is p2's" \
    "$PY" "$IT_DIR/check_fhir.py" "$VG_TMP/bundle_p2.json" --patient p2 --total 1 --obs "8867-4,99,/min"
api GET "/fhir/Observation?patient=p1"
check_eq "after reassignment: p1 keeps its $p1_total readings, no more" "$p1_total" "$(jget "$API_BODY" 'j["total"]')"

vg_stop
vg_finish
