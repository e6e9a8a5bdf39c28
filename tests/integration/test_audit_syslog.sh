#!/usr/bin/env bash
# Live audit shipping: vigil sends every audit record, in order, as an RFC
# 5424 message over TLS (RFC 5425 octet counting) to the receiver named by
# [audit] syslog / syslog_ca, verifying the receiver's certificate against
# that CA alone. A receiver with a certificate from another CA gets nothing
# and vigil logs the failure; once the right receiver is back, vigil catches
# up — every record exactly once, in seq order, and no reading value in any
# message.
. "$(dirname "$0")/lib.sh"

RX_PID=""
trap 'rx_stop; vg_cleanup' EXIT

# ---- a throwaway receiver PKI, minted with openssl at test time -------------

# mint_server CA_PREFIX OUT_PREFIX: a serverAuth certificate for 127.0.0.1
# (SAN IP:127.0.0.1) signed by the CA in CA_PREFIX.pem/.key.
mint_server() {
    local ext="$VG_TMP/server.ext"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1" >"$ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$2.key" -out "$2.csr" -subj "/CN=127.0.0.1" >/dev/null 2>&1 &&
        openssl x509 -req -in "$2.csr" -CA "$1.pem" -CAkey "$1.key" -CAcreateserial \
            -CAserial "$VG_TMP/serial.srl" -days 2 -extfile "$ext" -out "$2.pem" >/dev/null 2>&1 ||
        bail "openssl: make a receiver certificate $2"
}

mkdir -p "$VG_TMP/siem" "$VG_TMP/evil"
vg_mint_ca "$VG_TMP/siem/ca" "SIEM test CA"
mint_server "$VG_TMP/siem/ca" "$VG_TMP/siem/server"
vg_mint_ca "$VG_TMP/evil/ca" "another CA"
mint_server "$VG_TMP/evil/ca" "$VG_TMP/evil/server" # same SAN, wrong issuer

# ---- the receiver -------------------------------------------------------------

GOOD_OUT="$VG_TMP/siem/received.log" # every message the right receiver got, one per line
BAD_OUT="$VG_TMP/evil/received.log"
: >"$GOOD_OUT"
: >"$BAD_OUT"

# rx_start NAME CERT_PREFIX OUT: starts syslog_receiver.py on SYSLOG_PORT.
rx_start() {
    rm -f "$VG_TMP/$1.ready"
    "$PY" "$IT_DIR/syslog_receiver.py" --port "$SYSLOG_PORT" --cert "$2.pem" --key "$2.key" \
        --out "$3" --ready "$VG_TMP/$1.ready" </dev/null 2>>"$VG_TMP/$1.rx.log" &
    RX_PID=$!
    vg_wait_for 5 test -e "$VG_TMP/$1.ready" ||
        bail "syslog receiver $1 listens on 127.0.0.1:$SYSLOG_PORT" "$(tail -3 "$VG_TMP/$1.rx.log")"
}

rx_stop() {
    if [ -n "$RX_PID" ]; then
        kill -TERM "$RX_PID" 2>/dev/null
        wait "$RX_PID" 2>/dev/null
    fi
    RX_PID=""
}

# ---- reading what arrived -------------------------------------------------------

# syslog_report FILE...: checks the received lines against RFC 5424 and the
# database; prints key=value lines (see below).
syslog_report() {
    db "SELECT seq || '|' || action FROM audit ORDER BY seq;" >"$VG_TMP/db.dump"
    "$PY" - "$VG_TMP/db.dump" "$@" <<'EOF'
import re, sys
# RFC 5424 §6 (HEADER SP STRUCTURED-DATA [SP MSG]), specialised where vigil
# is fixed: VERSION 1, APP-NAME vigil, PROCID "-", SD-ID vigil@32473.
PARAM = r'[^= \]"]{1,32}="(?:[^"\\\]]|\\["\\\]])*"'
RE = re.compile(
    r'^<(?P<pri>\d{1,3})>1 '
    r'(?P<ts>-|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) '
    r'(?P<host>[!-~]{1,255}) vigil - (?P<msgid>[!-~]{1,32}) '
    r'\[vigil@32473 seq="(?P<seq>\d+)"(?P<params>(?: ' + PARAM + r')*)\]'
    r'(?: (?P<msg>.*))?$')
db = {}
for line in open(sys.argv[1]):
    seq, _, action = line.rstrip("\n").partition("|")
    db[int(seq)] = action
seqs, msgids, invalid, mismatch, leak = [], {}, [], [], 0
for path in sys.argv[2:]:
    for raw in open(path, "rb"):
        line = raw.rstrip(b"\n").decode("utf-8", "replace")
        if b"37.2345" in raw:
            leak += 1
        m = RE.match(line)
        if not m or m["pri"] not in ("108", "109") or \
           sorted(re.findall(r' (\w+)="', m["params"])) != ["actor", "outcome", "source", "target"]:
            invalid.append(line[:160])
            continue
        seq = int(m["seq"])
        seqs.append(seq)
        msgids.setdefault(m["msgid"], seq)
        if db.get(seq, "")[:32].replace(" ", "_") != m["msgid"]:
            mismatch.append("%d: got %s, database has %s" % (seq, m["msgid"], db.get(seq)))
want = ["vigil.start", "patient.create", "device.enroll", "mqtt.connect", "readings.store"]
firsts = [msgids.get(w) for w in want]
print("lines=%d" % (len(seqs) + len(invalid)))
print("invalid=%d %s" % (len(invalid), invalid[:1]))
print("mismatch=%d %s" % (len(mismatch), mismatch[:2]))
print("leak=%d" % leak)
print("ascending=%s" % ("yes" if all(a < b for a, b in zip(seqs, seqs[1:])) else "no: %s" % seqs[:40]))
print("dups=%d" % (len(seqs) - len(set(seqs))))
print("first=%s" % (seqs[0] if seqs else "none"))
print("last=%s" % (seqs[-1] if seqs else 0))
print("missing=%s" % sorted(set(range(1, max(seqs or [0]) + 1)) - set(seqs))[:20])
print("order=%s" % ("yes" if None not in firsts and firsts == sorted(firsts)
                    else "no: " + ", ".join("%s@%s" % p for p in zip(want, firsts))))
print("dbmax=%d" % max(db or [0]))
EOF
}

# rget REPORT KEY: the value of KEY=... in a syslog_report.
rget() { printf '%s\n' "$1" | sed -n "s/^$2=//p" | head -1; }

received_max() { rget "$(syslog_report "$GOOD_OUT")" last; }
db_max() { db "SELECT coalesce(max(seq), 0) FROM audit;"; }
caught_up() { [ "$(received_max)" = "$(db_max)" ]; }

# ---- configure, start ----------------------------------------------------------

vg_init
read -r SYSLOG_PORT < <(vg_free_ports 1)
[ -n "$SYSLOG_PORT" ] || bail "pick a free port for the receiver"
sed -i -e "s|^#syslog =.*|syslog = 127.0.0.1:$SYSLOG_PORT|" \
    -e "s|^#syslog_ca =.*|syslog_ca = $VG_TMP/siem/ca.pem|" "$VG_DIR/vigil.conf"
grep -q "^syslog = 127.0.0.1:$SYSLOG_PORT\$" "$VG_DIR/vigil.conf" &&
    grep -q "^syslog_ca = $VG_TMP/siem/ca.pem\$" "$VG_DIR/vigil.conf" ||
    bail "set [audit] syslog and syslog_ca in vigil.conf" "the commented defaults were not found"

rx_start good "$VG_TMP/siem/server" "$GOOD_OUT"
vg_serve || bail "server running with audit shipping" "cannot continue without a server"

# ---- 1. a round trip arrives, in order, as RFC 5424 ----------------------------

vg_patient p1
vg_enroll dev1
vg_assign dev1 p1
# (4 decimals: cannot be the seconds.millis of a timestamp)
pub dev1 "$(reading 8310-5 37.2345 Cel)" || bail "dev1 publishes body temperature 37.2345" "$PUB_OUT"
vg_wait_for 10 grep -q ' readings.store \[vigil@32473 ' "$GOOD_OUT" ||
    not_ok "the receiver gets readings.store" "received: $(cut -c1-100 "$GOOD_OUT" | tail -5 | tr '\n' '|')"
vg_wait_for 5 caught_up || not_ok "the receiver catches up with the trail" \
    "received up to $(received_max), database at $(db_max)"

r=$(syslog_report "$GOOD_OUT")
check_eq "every received line is a valid RFC 5424 message from vigil" "invalid=0 []" "invalid=$(rget "$r" invalid)"
check_eq "MSGIDs vigil.start, patient.create, device.enroll, mqtt.connect, readings.store in seq order" \
    yes "$(rget "$r" order)"
check_eq "each message's MSGID is its record's action" "0 []" "$(rget "$r" mismatch)"
check_eq "messages arrive in ascending seq order" yes "$(rget "$r" ascending)"
check_eq "shipping starts at the first record" 1 "$(rget "$r" first)"
check_eq "no seq is missing" "[]" "$(rget "$r" missing)"
check_eq "no seq arrives twice" 0 "$(rget "$r" dups)"
check_eq "no message carries the reading's value" 0 "$(rget "$r" leak)"
check_contains "the receiver saw TLS 1.2 or later" "connection: TLSv1." "$(cat "$VG_TMP/good.rx.log")"

# ---- 2. a receiver with a certificate from another CA gets nothing ---------------

vg_wait_for 5 caught_up
before=$(received_max)
# The state file follows once the receiver's TCP has acknowledged the batch.
state_is() { [ "$(cat "$VG_DIR/audit/ship.state" 2>/dev/null)" = "$1" ]; }
vg_wait_for 5 state_is "$before"
rx_stop
rx_start evil "$VG_TMP/evil/server" "$BAD_OUT"
vg_patient p2 # new records to ship
vg_wait_for 5 grep -q "audit shipping to 127.0.0.1:$SYSLOG_PORT failing" "$VG_LOG" &&
    ok "vigil logs that shipping fails" ||
    not_ok "vigil logs that shipping fails" "log: $(tail -5 "$VG_LOG" | tr '\n' '|')"
check_contains "the log says why: the certificate" "certificate verify failed" "$(cat "$VG_LOG")"
vg_wait_for 3 grep -q "handshake failed" "$VG_TMP/evil.rx.log" &&
    ok "vigil refused the other CA's receiver in the handshake" ||
    not_ok "vigil refused the other CA's receiver in the handshake" "$(tail -3 "$VG_TMP/evil.rx.log")"
check_eq "the receiver with the wrong certificate received nothing" 0 "$(wc -c <"$BAD_OUT")"
check_eq "the state file stays at the last delivered record" "$before" \
    "$(cat "$VG_DIR/audit/ship.state" 2>/dev/null)"
check_not_contains "the log carries no reading value" "37.2345" "$(cat "$VG_LOG")"

# ---- 3. the right receiver is back: vigil catches up, each record once -----------

rx_stop
rx_start good2 "$VG_TMP/siem/server" "$GOOD_OUT"
if vg_wait_for 10 caught_up; then
    ok "vigil catches up once the right receiver is back"
else
    not_ok "vigil catches up once the right receiver is back" \
        "received up to $(received_max), database at $(db_max)"
fi
vg_wait_for 3 grep -q "audit shipping to 127.0.0.1:$SYSLOG_PORT recovered" "$VG_LOG" &&
    ok "vigil logs the recovery" || not_ok "vigil logs the recovery" "$(tail -5 "$VG_LOG" | tr '\n' '|')"

# A clean stop ships vigil.stop before exiting (the writer commits it, then
# the shipper drains).
vg_stop
r=$(syslog_report "$GOOD_OUT")
check_eq "after the stop, the receiver has every record: up to the last seq" "$(db_max)" "$(rget "$r" last)"
check_eq "the last message is vigil.stop" "vigil.stop" \
    "$(db "SELECT action FROM audit WHERE seq = $(rget "$r" last);")"
check_eq "after recovery: no seq is missing" "[]" "$(rget "$r" missing)"
check_eq "after recovery: no seq arrives twice" 0 "$(rget "$r" dups)"
check_eq "after recovery: ascending seq order across both connections" yes "$(rget "$r" ascending)"
check_eq "after recovery: every line valid, MSGID = action" "invalid=0 [] 0 []" \
    "invalid=$(rget "$r" invalid) $(rget "$r" mismatch)"
check_eq "after recovery: no reading value" 0 "$(rget "$r" leak)"
check_eq "the state file holds the last shipped seq" "$(db_max)" \
    "$(cat "$VG_DIR/audit/ship.state" 2>/dev/null)"
vg_finish
