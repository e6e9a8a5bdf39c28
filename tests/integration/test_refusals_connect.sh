#!/usr/bin/env bash
# Connection-level refusals on the MQTT/TLS listener: every one must keep the
# device out and store nothing.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_enroll dev1
vg_assign dev1 p1

# Positive control: the same device and payload shape are accepted, so the
# refusals below are refusals and not a broken setup.
pub dev1 "$(reading 8867-4 70 /min)" || bail "control: dev1 publishes a valid reading" "$PUB_OUT"
check_eq "control: the valid reading is stored" 1 "$(readings_count)"
base=$(readings_count)

# -- no client certificate
PUB_OUT=$(timeout -k 5 "$(vg_t 20)" mosquitto_pub -d -h 127.0.0.1 -p "$VG_MQTT_PORT" \
    --cafile "$VG_DIR/pki/ca.pem" -i dev1 -q 1 -t vigil/v1/d/dev1/obs \
    -m "$(reading 8867-4 71 /min)" </dev/null 2>&1)
rc=$?
if [ $rc -ne 0 ]; then ok "no client certificate: mosquitto_pub fails (exit $rc)"; else
    not_ok "no client certificate: mosquitto_pub fails" "exit 0: $(echo "$PUB_OUT" | tr '\n' ' ')"; fi
check_not_contains "no client certificate: no CONNACK" "received CONNACK (0)" "$PUB_OUT"
check_nothing_stored "no client certificate" "$base"

# -- a certificate from another CA, with the CN of an enrolled device
mkdir -p "$VG_TMP/evil"
vg_mint_ca "$VG_TMP/evil/ca" "evil CA"
vg_mint_client "$VG_TMP/evil/ca" dev1 "$VG_CERTS/evil-dev1"
if pub -i dev1 evil-dev1 "$(reading 8867-4 72 /min)"; then
    not_ok "certificate from another CA: mosquitto_pub fails" "exit 0: $(echo "$PUB_OUT" | tr '\n' ' ')"
else
    ok "certificate from another CA: mosquitto_pub fails"
fi
check_not_contains "certificate from another CA: no CONNACK" "received CONNACK (0)" "$PUB_OUT"
res=$(mqtt_session evil-dev1 --id dev1 --pub "$(reading 8867-4 72 /min)")
check_eq "certificate from another CA: paho gets no CONNACK 0" "no" \
    "$(jget "$res" '"yes" if j.get("connack") == 0 else "no"')"
check_nothing_stored "certificate from another CA" "$base"

# -- plaintext MQTT on the TLS port
PUB_OUT=$(timeout -k 5 "$(vg_t 20)" mosquitto_pub -d -h 127.0.0.1 -p "$VG_MQTT_PORT" \
    -i dev1 -q 1 -t vigil/v1/d/dev1/obs -m "$(reading 8867-4 73 /min)" </dev/null 2>&1)
rc=$?
if [ $rc -ne 0 ]; then ok "plaintext MQTT: mosquitto_pub fails (exit $rc)"; else
    not_ok "plaintext MQTT: mosquitto_pub fails" "exit 0"; fi
check_not_contains "plaintext MQTT: no CONNACK" "received CONNACK" "$PUB_OUT"
check_nothing_stored "plaintext MQTT" "$base"

# -- TLS 1.2 clients (valid device certificate, so only the version differs)
timeout -k 5 "$(vg_t 20)" openssl s_client -tls1_2 -connect "127.0.0.1:$VG_MQTT_PORT" \
    -CAfile "$VG_DIR/pki/ca.pem" -cert "$VG_CERTS/dev1.pem" -key "$VG_CERTS/dev1.key" \
    </dev/null >"$VG_TMP/s_client12.out" 2>&1
rc=$?
# s_client prints "New, TLSv1.2, Cipher is ..." only for an established session.
if [ $rc -ne 0 ] && ! grep -q '^New, TLSv1' "$VG_TMP/s_client12.out"; then
    ok "openssl s_client -tls1_2: handshake fails (exit $rc)"
else
    not_ok "openssl s_client -tls1_2: handshake fails" \
        "exit $rc: $(grep -E 'Protocol|^New|Cipher is' "$VG_TMP/s_client12.out" | head -3 | tr '\n' ' ')"
fi
timeout -k 5 "$(vg_t 20)" openssl s_client -tls1_3 -connect "127.0.0.1:$VG_MQTT_PORT" \
    -CAfile "$VG_DIR/pki/ca.pem" -cert "$VG_CERTS/dev1.pem" -key "$VG_CERTS/dev1.key" \
    </dev/null >"$VG_TMP/s_client13.out" 2>&1
check "control: openssl s_client -tls1_3 completes the handshake" \
    grep -q '^New, TLSv1.3' "$VG_TMP/s_client13.out"

PUB_OUT=$(OPENSSL_CONF=$(vg_tls12_openssl_conf) timeout -k 5 "$(vg_t 20)" mosquitto_pub -d \
    -h 127.0.0.1 -p "$VG_MQTT_PORT" --tls-version tlsv1.2 --cafile "$VG_DIR/pki/ca.pem" \
    --cert "$VG_CERTS/dev1.pem" --key "$VG_CERTS/dev1.key" -i dev1 -q 1 \
    -t vigil/v1/d/dev1/obs -m "$(reading 8867-4 74 /min)" </dev/null 2>&1)
rc=$?
if [ $rc -ne 0 ]; then ok "mosquitto_pub --tls-version tlsv1.2 (capped at 1.2): fails (exit $rc)"; else
    not_ok "mosquitto_pub --tls-version tlsv1.2 (capped at 1.2): fails" "exit 0"; fi

res=$(mqtt_py tls --port "$VG_MQTT_PORT" --ca "$VG_DIR/pki/ca.pem" \
    --cert "$VG_CERTS/dev1.pem" --key "$VG_CERTS/dev1.key" --max-version 1.2)
check_eq "python ssl capped at TLS 1.2: handshake fails" failed "$(jget "$res" 'j["handshake"]')"
res=$(mqtt_py tls --port "$VG_MQTT_PORT" --ca "$VG_DIR/pki/ca.pem" \
    --cert "$VG_CERTS/dev1.pem" --key "$VG_CERTS/dev1.key" --max-version 1.3)
check_eq "control: python ssl with TLS 1.3 negotiates TLSv1.3" TLSv1.3 "$(jget "$res" 'j.get("version")')"
check_nothing_stored "TLS 1.2 clients" "$base"

# -- client id differs from the certificate's CN
res=$(mqtt_session dev1 --id dev2 --pub "$(reading 8867-4 75 /min)")
check_eq "client id != certificate CN: CONNACK rc 2 (identifier rejected)" 2 "$(jget "$res" 'j["connack"]')"
check_eq "client id != certificate CN: nothing published" "[]" "$(jget "$res" 'j["puback"]')"
if pub -i not-dev1 dev1 "$(reading 8867-4 75 /min)"; then
    not_ok "client id != certificate CN: mosquitto_pub fails" "exit 0"
else
    ok "client id != certificate CN: mosquitto_pub fails"
fi
check_nothing_stored "client id != certificate CN" "$base"

# -- signed by vigil's own CA but never enrolled
vg_mint_client "$VG_DIR/pki/ca" ghost "$VG_CERTS/ghost"
res=$(mqtt_session ghost --pub "$(reading 8867-4 76 /min)")
check_eq "CA-signed but unenrolled device: CONNACK rc 5 (not authorized)" 5 "$(jget "$res" 'j["connack"]')"
if pub ghost "$(reading 8867-4 76 /min)"; then
    not_ok "CA-signed but unenrolled device: mosquitto_pub fails" "exit 0"
else
    ok "CA-signed but unenrolled device: mosquitto_pub fails"
fi
check_nothing_stored "CA-signed but unenrolled device" "$base"

# -- signed by vigil's CA with an enrolled device's CN, but not the
#    certificate that device was enrolled with (a cloned identity)
vg_mint_client "$VG_DIR/pki/ca" dev1 "$VG_CERTS/clone-dev1"
res=$(mqtt_session clone-dev1 --id dev1 --pub "$(reading 8867-4 77 /min)")
check_eq "second certificate for an enrolled id: CONNACK rc 5" 5 "$(jget "$res" 'j["connack"]')"
check_nothing_stored "second certificate for an enrolled id" "$base"

# -- the refusals are audited
vg_wait_for 5 audit_at_least 3 "action = 'tls.handshake' AND outcome = 'refused'"
n_tls=$(audit_count "action = 'tls.handshake' AND outcome = 'refused'")
if [ "$n_tls" -ge 3 ]; then ok "TLS refusals are audited ($n_tls tls.handshake refused rows)"; else
    not_ok "TLS refusals are audited" "only $n_tls tls.handshake refused rows"; fi
vg_wait_for 5 audit_at_least 1 "action = 'mqtt.connect' AND outcome = 'refused' AND detail LIKE '%client id%'"
check_eq "client id mismatch is audited" 1 \
    "$([ "$(audit_count "action = 'mqtt.connect' AND outcome = 'refused' AND detail LIKE '%client id%'")" -ge 1 ] && echo 1 || echo 0)"
check_eq "unenrolled device is audited (actor device:ghost)" 1 \
    "$([ "$(audit_count "action = 'mqtt.connect' AND outcome = 'refused' AND actor = 'device:ghost'")" -ge 1 ] && echo 1 || echo 0)"

# The control still works after all that.
pub dev1 "$(reading 8867-4 78 /min)"
check_eq "control: dev1 can still publish afterwards" $((base + 1)) "$(readings_count)"
api GET "/fhir/Observation?patient=p1"
printf '%s' "$API_BODY" >"$VG_TMP/bundle.json"
check "only the two control readings are visible through the API" \
    "$PY" "$IT_DIR/check_fhir.py" "$VG_TMP/bundle.json" --patient p1 --total 2 \
    --obs "8867-4,70,/min" --obs "8867-4,78,/min"

vg_stop
vg_finish
