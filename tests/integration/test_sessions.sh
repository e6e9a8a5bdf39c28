#!/usr/bin/env bash
# MQTT session limits: takeover by a newer connection with the same id,
# keepalive enforcement, the handshake/CONNECT deadline (slow loris), QoS 2
# and oversized packets. Limits are lowered in vigil.conf to keep it quick.
. "$(dirname "$0")/lib.sh"

vg_init
sed -i -e 's/^#connect_timeout_s = .*/connect_timeout_s = 2/' \
    -e 's/^#max_packet_bytes = .*/max_packet_bytes = 2048/' \
    -e 's/^#max_keepalive_s = .*/max_keepalive_s = 3/' "$VG_DIR/vigil.conf"
grep -q '^connect_timeout_s = 2$' "$VG_DIR/vigil.conf" &&
    grep -q '^max_packet_bytes = 2048$' "$VG_DIR/vigil.conf" &&
    grep -q '^max_keepalive_s = 3$' "$VG_DIR/vigil.conf" ||
    bail "lower connect_timeout_s, max_packet_bytes and max_keepalive_s in vigil.conf"
vg_serve || bail "server running"
vg_patient p1
vg_enroll dev1
vg_enroll dev2 # for the timed probes, clear of dev1's takeovers
vg_enroll dev3
vg_assign dev1 p1

probe() { mqtt_py probe --port "$VG_MQTT_PORT" --ca "$VG_DIR/pki/ca.pem" "$@"; }
dev1_probe() { probe --cert "$VG_CERTS/dev1.pem" --key "$VG_CERTS/dev1.key" --id dev1 "$@"; }
dev2_probe() { probe --cert "$VG_CERTS/dev2.pem" --key "$VG_CERTS/dev2.key" --id dev2 "$@"; }
dev3_probe() { probe --cert "$VG_CERTS/dev3.pem" --key "$VG_CERTS/dev3.key" --id dev3 "$@"; }
# within LO HI VALUE: LO <= VALUE <= HI*scale (VALUE may be null)
within() {
    "$PY" -c 'import sys; v=sys.argv[3]; sys.exit(0 if v not in ("", "null") and float(sys.argv[1]) <= float(v) <= float(sys.argv[2]) * float(sys.argv[4]) else 1)' \
        "$1" "$2" "$3" "$VG_TIMEOUT_SCALE"
}

# -- the timed probes run side by side
probe --no-tls --wait "$(vg_t 8)" >"$VG_TMP/loris.json" &
p1=$!
dev2_probe --wait "$(vg_t 8)" >"$VG_TMP/noconnect.json" &
p2=$!
dev2_probe --keepalive 1 --wait "$(vg_t 8)" >"$VG_TMP/keepalive.json" &
p3=$!
dev3_probe --keepalive 60 --wait 8 >"$VG_TMP/longkeepalive.json" &
p4=$!

# -- takeover, meanwhile
connected_before=$(grep -c "dev1 connected from" "$VG_LOG")
mqtt_session dev1 --linger "$(vg_t 20)" >"$VG_TMP/older.json" 2>&1 &
older=$!
vg_wait_for 10 bash -c "[ \$(grep -c 'dev1 connected from' '$VG_LOG') -gt $connected_before ]" ||
    not_ok "the older session connects" "not in the log"
res=$(mqtt_session dev1 --pub "$(reading 8867-4 81 /min)")
check_eq "a newer connection with the same id is accepted and publishes" "0 [true]" \
    "$(jget "$res" '"%s %s" % (j["connack"], json.dumps(j["puback"]))')"
wait "$older"
check_eq "the older connection is closed by the server (takeover)" "True" \
    "$(jget "$(tail -n 1 "$VG_TMP/older.json")" 'str(j.get("closed_by_server"))')"
vg_wait_for 5 audit_at_least 1 "action = 'mqtt.takeover' AND actor = 'device:dev1'"
check_eq "the takeover is audited" 1 "$(audit_count "action = 'mqtt.takeover' AND actor = 'device:dev1'" | awk '{print ($1 >= 1)}')"

# -- QoS 2 is not supported: the connection is closed, nothing stored
before=$(readings_count)
res=$(dev1_probe --keepalive 30 --publish-qos 2 --publish-size 0 --send-hex "" --wait "$(vg_t 5)")
check_eq "QoS 2 PUBLISH: CONNACK 0 first" 0 "$(jget "$res" 'j["connack"]')"
check "QoS 2 PUBLISH: the server closes the connection" within 0 3 "$(jget "$res" 'j["closed_after"]')"
check_nothing_stored "QoS 2 PUBLISH" "$before"

# -- a packet over max_packet_bytes (2048): closed, nothing stored
res=$(dev1_probe --keepalive 30 --publish-qos 1 --publish-size 4000 --wait "$(vg_t 5)")
check_eq "4000-byte PUBLISH over max_packet_bytes: CONNACK 0 first" 0 "$(jget "$res" 'j["connack"]')"
check "4000-byte PUBLISH over max_packet_bytes: closed" within 0 3 "$(jget "$res" 'j["closed_after"]')"
check_eq "4000-byte PUBLISH: no PUBACK" "" "$(jget "$res" 'j["received"][8:]')"
check_nothing_stored "4000-byte PUBLISH" "$before"

# -- the first packet must be CONNECT
res=$(dev1_probe --send-hex c000 --wait "$(vg_t 5)")
check "PINGREQ before CONNECT: closed at once" within 0 1.5 "$(jget "$res" 'j["closed_after"]')"

# -- the timed probes
wait $p1 $p2 $p3 $p4
res=$(cat "$VG_TMP/loris.json")
check "TCP connection that never starts TLS: closed after connect_timeout_s (2 s)" \
    within 1.5 4 "$(jget "$res" 'j["closed_after"]')"
res=$(cat "$VG_TMP/noconnect.json")
check "TLS done but no CONNECT: closed after connect_timeout_s (2 s)" \
    within 1.5 4 "$(jget "$res" 'j["closed_after"]')"
res=$(cat "$VG_TMP/keepalive.json")
check_eq "keepalive 1 s: CONNACK 0" 0 "$(jget "$res" 'j["connack"]')"
ka=$(jget "$res" 'j["closed_after"]')
check "keepalive 1 s, then silence: closed (within 3 s)" within 0 3 "$ka"
# MQTT 3.1.1 §3.1.2.10: the server may disconnect after 1.5 x keepalive of
# silence, not before (a client pinging at its keepalive must survive jitter).
check "keepalive 1 s, then silence: not closed before 1.5 s (measured ${ka} s)" within 1.3 3 "$ka"

# max_keepalive_s ("the longest keepalive a client may ask for") = 3: a
# client asking for 60 s is refused or held to 3 s, so its silence ends the
# connection after 4.5 s, not 90 s.
res=$(cat "$VG_TMP/longkeepalive.json")
check "keepalive 60 s with max_keepalive_s = 3: refused, or closed after <= 4.5 s of silence (closed_after: $(jget "$res" 'j["closed_after"]'))" \
    within 0 5.5 "$(jget "$res" 'j["closed_after"]')"

vg_wait_for 5 audit_at_least 1 "action = 'tls.handshake' AND outcome = 'refused' AND detail LIKE '%in time%'"
check_eq "the unfinished handshake is audited" 1 \
    "$(audit_count "action = 'tls.handshake' AND outcome = 'refused' AND detail LIKE '%in time%'" | awk '{print ($1 >= 1)}')"

pub dev1 "$(reading 8867-4 82 /min)"
check_eq "control: dev1 still publishes normally" $((before + 1)) "$(readings_count)"

vg_stop
vg_finish
