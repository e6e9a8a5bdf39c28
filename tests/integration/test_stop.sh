#!/usr/bin/env bash
# Graceful stop: SIGTERM (and SIGINT) end the server with status 0, "stopped
# cleanly" in the log, vigil.start/vigil.stop in the audit trail, and what
# was acknowledged is kept.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_enroll dev1
vg_assign dev1 p1
pub dev1 "$(reading 9279-1 16 /min)" || bail "dev1 publishes respiratory rate 16" "$PUB_OUT"

# A device stays connected (idle) while the server is told to stop.
connected_before=$(grep -c "dev1 connected from" "$VG_LOG")
mqtt_session dev1 --linger "$(vg_t 30)" >"$VG_TMP/idle.json" 2>&1 &
idle=$!
vg_wait_for 10 bash -c "[ \$(grep -c 'dev1 connected from' '$VG_LOG') -gt $connected_before ]" ||
    not_ok "an idle device connects before the stop" "no second 'dev1 connected' in the log"

t0=$SECONDS
vg_stop
check "stopped within 5 s despite a connected device" test $((SECONDS - t0)) -le "$(vg_t 5)"
check "the log says 'stopped cleanly'" grep -q "stopped cleanly" "$VG_LOG"
check "the log says why it stopped (SIGTERM)" grep -q "SIGTERM" "$VG_LOG"
wait "$idle" 2>/dev/null
check_eq "the idle device was connected, then disconnected by the stop" "yes" \
    "$(jget "$(tail -n 1 "$VG_TMP/idle.json")" '"yes" if j.get("connack") == 0 and j.get("closed_by_server") else "no: %s" % j')"

check_eq "audit: one vigil.start row" 1 "$(audit_count "action = 'vigil.start' AND outcome = 'success'")"
check_eq "audit: one vigil.stop row" 1 "$(audit_count "action = 'vigil.stop' AND outcome = 'success'")"
check_eq "audit: vigil.stop is the last row" "vigil.stop" "$(db "SELECT action FROM audit ORDER BY seq DESC LIMIT 1;")"
check_eq "the acknowledged reading survived the stop" 1 "$(readings_count)"
check "no WAL left behind after a clean stop (or an empty one)" \
    bash -c "[ ! -s '$VG_DIR/vigil.db-wal' ]"

# Second run: listeners from vigil.conf only, stopped with SIGINT.
VG_CONF_ONLY=1 vg_serve || bail "server restarts with the listeners of vigil.conf"
ok "restart with the [listen] lines of vigil.conf (no --*-listen flags)"
out=$(vg_cli obs list p1)
check "after restart: the reading is still there" grep -Eq '9279-1 .* 16 /min' <<<"$out"
kill -INT "$VG_PID"
deadline=$((SECONDS + $(vg_t 15)))
while kill -0 "$VG_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
if kill -0 "$VG_PID" 2>/dev/null; then
    not_ok "SIGINT stops the server" "still running"
    vg_kill_server
else
    wait "$VG_PID"
    check_eq "SIGINT stops the server with exit 0" 0 "$?"
    VG_PID=""
fi
check "second log says 'stopped cleanly'" grep -q "stopped cleanly" "$VG_LOG"
check_eq "audit: two vigil.start and two vigil.stop rows" "2|2" \
    "$(db "SELECT (SELECT count(*) FROM audit WHERE action = 'vigil.start'), (SELECT count(*) FROM audit WHERE action = 'vigil.stop');")"

vg_finish
