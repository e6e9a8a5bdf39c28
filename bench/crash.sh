#!/usr/bin/env bash
# bench/crash.sh [CYCLES] — crash-consistency harness (default 50 cycles).
#
# Under load from bench/crash_load.py (QoS 1 readings from several devices,
# many in flight), `kill -9` the running `vigil serve` at a random moment,
# restart it on the same data directory, and check after every restart:
#
#   1. every reading vigil acknowledged (PUBACK) in this or any earlier
#      cycle is stored exactly once, with the value and time that were sent;
#      no reading is stored twice, acknowledged or not (a reading published
#      but never acknowledged may or may not be stored: both are allowed);
#      every stored reading is one its device sent, for the patient the
#      device was assigned to; the readings.store audit records of each
#      patient add up to the rows stored for it (readings and their audit
#      record commit together);
#   2. `PRAGMA integrity_check` on vigil.db prints "ok";
#   3. `vigil audit verify DIR` exits 0 (records after the last signed
#      checkpoint are fine).
#
# How (1) sees every reading: each reading is opened through the FHIR
# search (GET /fhir/Observation?patient=P&_count=1000, following 'next'
# links), and a patient's readings must number exactly its rows in the
# database. A server without paging shows only a patient's newest 1000, so
# in every cycle each device is assigned to a patient of its own
# (c<CYCLE>-<DEVICE>) and sends at most CRASH_BUDGET (< 1000) readings: one
# page holds a patient's whole history whether or not the server pages.
# Reading K of a device has the time T0 + K ms and the value
# 40 + (K mod 250000)/1000; cycle C uses
# K in [C*1000, C*1000 + CRASH_BUDGET). Patients already verified are not
# fetched again while their rows (ids, sealed blobs, wrapped keys) are
# byte-identical; every CRASH_FULL_EVERY cycles, and after the last one, all
# patients of all cycles are fetched and checked again through the API.
# After the last cycle the server is stopped with SIGTERM (it must exit 0)
# and (2) and (3) run once more on the stopped data directory.
#
# Prints one line per cycle and finally
#   crash: N cycles, M acknowledged readings checked, L lost, D duplicated
# Exits 0 when every check passed, 1 when one failed (the run stops at the
# first failing cycle unless CRASH_CONTINUE=1 and keeps its directory), 2
# on a harness error.
#
# Environment:
#   VIGIL             the binary (default: build/vigil of this checkout)
#   CRASH_DEVICES     devices publishing (default 12)
#   CRASH_RATE        readings/s per device (default 450: CRASH_BUDGET lasts
#                     about as long as the longest kill delay)
#   CRASH_WINDOW      QoS 1 PUBLISHes in flight per device (default 20)
#   CRASH_BUDGET      most readings per device per cycle (default 900, < 1000)
#   CRASH_KILL_MS     "MIN MAX" kill delay after the devices connected, ms
#                     (default "300 2000")
#   CRASH_SEED        seed of the kill delays (default: random; printed)
#   CRASH_FULL_EVERY  re-fetch every patient every N cycles (default 10)
#   CRASH_WORKDIR     where to keep the run (default: a new /tmp/vigil-crash.*)
#   CRASH_KEEP=1      keep the work directory after a successful run
#   CRASH_CONTINUE=1  go on after a failing cycle
#   VG_TIMEOUT_SCALE  multiplies timeouts (default 1; 3 for an ASan binary)
set -u
set -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
PY=/usr/bin/python3 # Debian's python3 with python3-paho-mqtt
LOAD="$here/crash_load.py"
VIGIL=${VIGIL:-$repo/build/vigil}
case "$VIGIL" in /*) ;; *) VIGIL="$PWD/$VIGIL" ;; esac

CYCLES=${1:-50}
DEVICES=${CRASH_DEVICES:-12}
RATE=${CRASH_RATE:-450}
WINDOW=${CRASH_WINDOW:-20}
BUDGET=${CRASH_BUDGET:-900}
STRIDE=1000
read -r KILL_MIN KILL_MAX <<<"${CRASH_KILL_MS:-300 2000}"
FULL_EVERY=${CRASH_FULL_EVERY:-10}

die() {
    echo "crash: $*" >&2
    exit 2
}

case "$CYCLES" in '' | *[!0-9]*) die "usage: bench/crash.sh [CYCLES]" ;; esac
[ "$CYCLES" -ge 1 ] || die "CYCLES must be at least 1"
[ "$BUDGET" -ge 1 ] && [ "$BUDGET" -lt 1000 ] || die "CRASH_BUDGET must be 1..999 (one FHIR search shows 1000)"
[ "$KILL_MIN" -le "$KILL_MAX" ] || die "CRASH_KILL_MS: MIN > MAX"
[ -x "$VIGIL" ] || die "vigil binary not found or not executable: $VIGIL (build it, or set VIGIL)"
for t in sqlite3 curl; do command -v "$t" >/dev/null 2>&1 || die "missing tool: $t (run scripts/install-deps)"; done
"$PY" -c 'import paho.mqtt.client' 2>/dev/null || die "$PY cannot import paho.mqtt (install python3-paho-mqtt)"

if [ -z "${VG_TIMEOUT_SCALE:-}" ]; then
    VG_TIMEOUT_SCALE=1
    grep -q -a -m1 '__asan_init' "$VIGIL" 2>/dev/null && VG_TIMEOUT_SCALE=3
fi
t_() { echo $(($1 * VG_TIMEOUT_SCALE)); }

if [ -n "${CRASH_SEED:-}" ]; then SEED=$CRASH_SEED; else SEED=$(( $(od -An -N2 -tu2 /dev/urandom) )); fi
RANDOM=$SEED

if [ -n "${CRASH_WORKDIR:-}" ]; then
    WORK=$CRASH_WORKDIR
    mkdir -p "$WORK" || die "cannot create $WORK"
    [ -z "$(ls -A "$WORK")" ] || die "CRASH_WORKDIR $WORK is not empty"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/vigil-crash.XXXXXX") || die "mktemp failed"
fi
DIR=$WORK/data
CERTS=$WORK/certs
ACKS=$WORK/acks.tsv     # every PUBACK of every cycle: device, time, value, seq
MAP=$WORK/patients.map  # cycle device patient first-seq
STATE=$WORK/verified.json
: >"$ACKS"
: >"$MAP"

SRV_PID=""
LOAD_PID=""
FAILED=0
SERVE_N=0
CYCLE_LOG=$WORK/setup.log

log() { echo "$*" >>"$CYCLE_LOG"; }

cleanup() {
    [ -n "$LOAD_PID" ] && kill -TERM "$LOAD_PID" 2>/dev/null
    if [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null; then
        kill -TERM "$SRV_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SRV_PID" 2>/dev/null
    fi
    wait 2>/dev/null
    if [ "$FAILED" -ne 0 ] || [ "${CRASH_KEEP:-0}" = 1 ]; then
        echo "crash: run kept in $WORK (per-cycle logs in $WORK/cycle-*/, server logs $WORK/server-*.log)" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'echo "crash: interrupted" >&2; FAILED=1; exit 130' INT TERM HUP

fail() { # fail "what" — records a failed check of the current cycle
    FAILED=1
    CYCLE_FAILED=1
    echo "crash: FAIL $*"
    log "FAIL $*"
}

# ---- ports and the server ---------------------------------------------------

free_ports() {
    "$PY" - <<'EOF'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

set_ports() {
    read -r MQTT_PORT API_PORT < <(free_ports)
    [ -n "${API_PORT:-}" ] || die "cannot pick free ports"
    sed -i -e "s/^mqtt = .*/mqtt = 127.0.0.1:$MQTT_PORT/" -e "s/^api = .*/api = 127.0.0.1:$API_PORT/" "$DIR/vigil.conf"
    grep -q "^api = 127.0.0.1:$API_PORT\$" "$DIR/vigil.conf" || die "cannot set the ports in $DIR/vigil.conf"
}

healthz() {
    curl -sS -f --max-time "$(t_ 3)" --cacert "$DIR/pki/ca.pem" "https://127.0.0.1:$API_PORT/healthz" >/dev/null 2>&1
}

# serve: starts `vigil serve DIR` (log $WORK/server-N.log) and waits for
# /healthz; returns 1 with the reason in SERVE_ERR if it does not come up.
serve() {
    local tries=0
    while :; do
        SERVE_N=$((SERVE_N + 1))
        SRV_LOG=$WORK/server-$(printf %03d "$SERVE_N").log
        "$VIGIL" serve "$DIR" </dev/null >>"$SRV_LOG" 2>&1 &
        SRV_PID=$!
        local deadline=$((SECONDS + $(t_ 15)))
        while ((SECONDS < deadline)); do
            if ! kill -0 "$SRV_PID" 2>/dev/null; then
                wait "$SRV_PID"
                local rc=$?
                SRV_PID=""
                if grep -q "cannot listen" "$SRV_LOG" && [ $tries -lt 3 ]; then
                    # Someone took a port meanwhile: two others.
                    tries=$((tries + 1))
                    set_ports
                    continue 2
                fi
                SERVE_ERR="vigil serve exited with status $rc: $(tail -3 "$SRV_LOG" | tr '\n' ' ')"
                return 1
            fi
            healthz && return 0
            sleep 0.05
        done
        SERVE_ERR="/healthz did not answer within $(t_ 15) s ($SRV_LOG)"
        kill -KILL "$SRV_PID" 2>/dev/null
        wait "$SRV_PID" 2>/dev/null
        SRV_PID=""
        return 1
    done
}

# api METHOD PATH [BODY] — with the admin token; sets API_STATUS and API_BODY.
api() {
    local args=(-sS --max-time "$(t_ 15)" --cacert "$DIR/pki/ca.pem" -X "$1" -o "$WORK/api.body"
        -w '%{http_code}' -H "Authorization: Bearer $(cat "$DIR/admin.token")")
    [ -z "${3:-}" ] || args+=(-H "Content-Type: application/json" --data-binary "$3")
    rm -f "$WORK/api.body"
    API_STATUS=$(curl "${args[@]}" "https://127.0.0.1:$API_PORT$2" 2>>"$CYCLE_LOG")
    API_BODY=$(cat "$WORK/api.body" 2>/dev/null)
    echo "$1 $2 -> $API_STATUS" >>"$CYCLE_LOG"
}

sanitizer_reports() { # prints the server logs with a sanitizer report
    grep -l -a -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer' \
        "$WORK"/server-*.log 2>/dev/null
}

# ---- setup --------------------------------------------------------------------

echo "crash: $CYCLES cycles, $DEVICES devices x <= $BUDGET readings at $RATE/s, window $WINDOW," \
    "kill after ${KILL_MIN}-${KILL_MAX} ms, seed $SEED; $VIGIL"
"$VIGIL" init "$DIR" >>"$CYCLE_LOG" 2>&1 || die "vigil init failed: $(tail -3 "$CYCLE_LOG")"
set_ports
if ! serve; then
    FAILED=1
    die "the server does not start: $SERVE_ERR"
fi

# A reader: the bootstrap admin token sees no patient data.
api POST /api/v1/users '{"id":"crash-reader","kind":"service","roles":["integration"]}'
[ "$API_STATUS" = 201 ] || die "create the service principal crash-reader: $API_STATUS $API_BODY"
api POST /api/v1/tokens '{"principal":"crash-reader","scopes":["obs.read"]}'
[ "$API_STATUS" = 201 ] || die "create a token for crash-reader: $API_STATUS $API_BODY"
"$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["token"])' "$API_BODY" >"$WORK/reader.token" ||
    die "no token in: $API_BODY"

DEVS=()
for ((i = 1; i <= DEVICES; i++)); do
    dev=$(printf 'crash-d%02d' "$i")
    "$VIGIL" device enroll "$dev" --out "$CERTS" -d "$DIR" </dev/null >>"$CYCLE_LOG" 2>&1 ||
        die "vigil device enroll $dev failed: $(tail -3 "$CYCLE_LOG")"
    [ -s "$CERTS/$dev.pem" ] && [ -s "$CERTS/$dev.key" ] || die "enroll $dev wrote no certificate"
    DEVS+=("$dev")
done
DEVLIST=$(IFS=,; echo "${DEVS[*]}")
# Reading K of a device has the time T0 + K ms: a day ago, whole seconds.
T0=$((($(date +%s) - 86400) * 1000))

# jfield FILE EXPR — a field of the JSON object on FILE's last line
jfield() {
    "$PY" -c '
import json, sys
try:
    j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
    print(eval(sys.argv[2]))
except Exception:
    print("?")
' "$1" "$2"
}

# post_restart_checks LABEL: integrity_check and audit verify on DIR.
db_and_audit_checks() {
    local out
    out=$(sqlite3 -readonly -cmd ".timeout 10000" "$DIR/vigil.db" 'PRAGMA integrity_check' 2>&1 </dev/null)
    echo "integrity_check ($1): $out" >>"$CYCLE_LOG"
    [ "$out" = ok ] || fail "$1: PRAGMA integrity_check: $(echo "$out" | head -5 | tr '\n' ' ')"
    if out=$("$VIGIL" audit verify "$DIR" 2>&1 </dev/null); then
        echo "audit verify ($1): $out" >>"$CYCLE_LOG"
    else
        echo "audit verify ($1) FAILED: $out" >>"$CYCLE_LOG"
        fail "$1: vigil audit verify: $(echo "$out" | head -3 | tr '\n' ' ')"
    fi
}

# ---- the cycles ----------------------------------------------------------------

CYCLES_RUN=0
PUBLISHED_ALL=0
ACKED_ALL=0
KILLS_UNDER_LOAD=0
t_start=$SECONDS
for ((c = 1; c <= CYCLES; c++)); do
    CD=$WORK/cycle-$(printf %03d "$c")
    mkdir -p "$CD"
    CYCLE_LOG=$CD/cycle.log
    CYCLE_FAILED=0
    first=$((c * STRIDE))

    # A patient of its own for each device in this cycle.
    for dev in "${DEVS[@]}"; do
        p="c$c-$dev"
        api POST /api/v1/patients "{\"id\":\"$p\"}"
        [ "$API_STATUS" = 201 ] || { fail "cycle $c: create patient $p: $API_STATUS $API_BODY"; break; }
        api PUT "/api/v1/devices/$dev/patient" "{\"patient\":\"$p\"}"
        [ "$API_STATUS" = 200 ] || { fail "cycle $c: assign $dev to $p: $API_STATUS $API_BODY"; break; }
        echo "$c $dev $p $first" >>"$MAP"
    done
    [ $CYCLE_FAILED -eq 0 ] || break

    # Load, then kill -9 at a random moment.
    "$PY" "$LOAD" load --port "$MQTT_PORT" --ca "$DIR/pki/ca.pem" --certs "$CERTS" --devices "$DEVLIST" \
        --acks "$ACKS" --ready "$CD/ready" --stats "$CD/load.json" --t0-ms "$T0" --first-seq "$first" \
        --max-per-device "$BUDGET" --window "$WINDOW" --rate "$RATE" --max-seconds "$(t_ 60)" \
        </dev/null >"$CD/load.out" 2>"$CD/load.err" &
    LOAD_PID=$!
    deadline=$((SECONDS + $(t_ 15)))
    while [ ! -e "$CD/ready" ] && kill -0 "$LOAD_PID" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.02
    done
    [ -e "$CD/ready" ] || fail "cycle $c: the load generator's devices did not connect within $(t_ 15) s ($CD/load.err)"
    delay=$((KILL_MIN + RANDOM % (KILL_MAX - KILL_MIN + 1)))
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    if kill -0 "$LOAD_PID" 2>/dev/null; then under_load=1; else under_load=0; fi
    acked_before_kill=$(wc -l <"$ACKS")
    kill -KILL "$SRV_PID" 2>/dev/null
    wait "$SRV_PID" 2>/dev/null # (no "Killed" notice from bash)
    rc=$?
    SRV_PID=""
    [ $rc -eq 137 ] || fail "cycle $c: the server had exited (status $rc) before it was killed ($SRV_LOG)"
    deadline=$((SECONDS + $(t_ 30)))
    while kill -0 "$LOAD_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.02; done
    if kill -0 "$LOAD_PID" 2>/dev/null; then
        fail "cycle $c: the load generator still runs $(t_ 30) s after the kill"
        kill -TERM "$LOAD_PID" 2>/dev/null
    fi
    wait "$LOAD_PID"
    lrc=$?
    LOAD_PID=""
    [ $lrc -eq 0 ] || fail "cycle $c: the load generator exited with status $lrc: $(tail -3 "$CD/load.err" | tr '\n' ' ')"
    published=$(jfield "$CD/load.json" 'j["published"]')
    acked=$(jfield "$CD/load.json" 'j["acked"]')
    connected=$(jfield "$CD/load.json" 'j["connected"]')
    inflight=$(jfield "$CD/load.json" 'sum(d["unacked"] for d in j["devices"].values())')
    [ "$connected" = "$DEVICES" ] || fail "cycle $c: $connected of $DEVICES devices connected ($CD/load.out)"
    case "$acked" in '' | *[!0-9]*) fail "cycle $c: no load statistics ($CD/load.err)"; acked=0; published=0 ;; esac
    [ "$acked" -gt 0 ] || fail "cycle $c: no reading was acknowledged before the kill"
    [ $under_load -eq 1 ] && [ "${inflight:-0}" != 0 ] && KILLS_UNDER_LOAD=$((KILLS_UNDER_LOAD + 1))
    PUBLISHED_ALL=$((PUBLISHED_ALL + published))
    ACKED_ALL=$((ACKED_ALL + acked))
    echo "killed $delay ms after connect; acked before kill: $acked_before_kill lines; load: $(cat "$CD/load.json" 2>/dev/null)" >>"$CYCLE_LOG"

    # Restart and check.
    t_restart=$(date +%s%N)
    if ! serve; then
        fail "cycle $c: restart after kill -9: $SERVE_ERR"
        CYCLES_RUN=$c
        break
    fi
    restart_ms=$((($(date +%s%N) - t_restart) / 1000000))
    full=()
    if [ $((c % FULL_EVERY)) -eq 0 ] || [ $c -eq "$CYCLES" ]; then full=(--full); fi
    "$PY" "$LOAD" check --api-port "$API_PORT" --ca "$DIR/pki/ca.pem" --token-file "$WORK/reader.token" \
        --db "$DIR/vigil.db" --acks "$ACKS" --map "$MAP" --state "$STATE" --t0-ms "$T0" --stride "$STRIDE" \
        "${full[@]}" </dev/null >"$CD/check.out" 2>&1
    crc=$?
    stored_unacked=$(jfield "$CD/check.out" 'j["stored_unacked"]')
    case $crc in
    0) ;;
    1) fail "cycle $c: readings: $(grep '^FAIL' "$CD/check.out" | head -5 | sed 's/^FAIL //' | awk 'NR > 1 { printf "; " } { printf "%s", $0 }')" ;;
    *) fail "cycle $c: the checker failed (status $crc): $(tail -3 "$CD/check.out" | tr '\n' ' ')" ;;
    esac
    db_and_audit_checks "cycle $c"
    if bad=$(sanitizer_reports); then fail "cycle $c: sanitizer report in $bad"; fi
    CYCLES_RUN=$c
    printf 'cycle %d/%d: kill -9 after %d ms%s; this cycle %s published, %s acked, %s in flight at the kill; restart %d ms; all cycles: %s acked, %s stored without PUBACK; %s%s\n' \
        "$c" "$CYCLES" "$delay" "$([ $under_load -eq 1 ] || echo ' (load had ended)')" "$published" "$acked" \
        "$inflight" "$restart_ms" "$ACKED_ALL" "$stored_unacked" "$([ $CYCLE_FAILED -eq 0 ] && echo ok || echo FAILED)" \
        "${full[0]:+ (all patients re-read)}"
    if [ $CYCLE_FAILED -ne 0 ] && [ "${CRASH_CONTINUE:-0}" != 1 ]; then
        echo "crash: stopping at the first failing cycle; its log: $CYCLE_LOG"
        break
    fi
done

# ---- a clean stop, and the checks once more on the stopped directory -----------

CYCLE_LOG=$WORK/final.log
if [ -n "$SRV_PID" ]; then
    kill -TERM "$SRV_PID"
    deadline=$((SECONDS + $(t_ 20)))
    while kill -0 "$SRV_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    if kill -0 "$SRV_PID" 2>/dev/null; then
        fail "final: the server still runs $(t_ 20) s after SIGTERM"
        kill -KILL "$SRV_PID" 2>/dev/null
    fi
    wait "$SRV_PID"
    rc=$?
    SRV_PID=""
    [ $rc -eq 0 ] || fail "final: the server exited with status $rc on SIGTERM ($SRV_LOG)"
    db_and_audit_checks "after the final SIGTERM"
    if bad=$(sanitizer_reports); then fail "final: sanitizer report in $bad"; fi
fi

last_check=$(ls "$WORK"/cycle-*/check.out 2>/dev/null | tail -1)
checked=0 lost=0 dup=0
if [ -n "$last_check" ]; then
    checked=$(jfield "$last_check" 'j["checked"]')
    lost=$(jfield "$last_check" 'j["lost"]')
    dup=$(jfield "$last_check" 'j["duplicated"]')
fi
echo "crash: $PUBLISHED_ALL readings published, $ACKED_ALL acknowledged; $KILLS_UNDER_LOAD of $CYCLES_RUN kills with PUBLISHes in flight; $((SECONDS - t_start)) s; seed $SEED"
echo "crash: $CYCLES_RUN cycles, $checked acknowledged readings checked, $lost lost, $dup duplicated"
if [ "$FAILED" -ne 0 ] || [ "$CYCLES_RUN" -ne "$CYCLES" ] || [ "$checked" != "$ACKED_ALL" ]; then
    [ "$checked" = "$ACKED_ALL" ] || echo "crash: FAIL the last check covered $checked acknowledged readings, the load generator counted $ACKED_ALL"
    FAILED=1
    exit 1
fi
exit 0
