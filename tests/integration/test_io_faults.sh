#!/usr/bin/env bash
# I/O errors under a live `vigil serve`: the LD_PRELOAD shim
# tests/faults/vgfault.c makes fsync, then write, of the database and its
# WAL fail for a while (EIO, then ENOSPC), switched on and off at run time
# through a control file. While it lasts: QoS 1 readings are not
# acknowledged, the failure is logged once per kind (not once per batch),
# patient data is not served without its audit record, and serve keeps
# running. When the faults clear, vigil commits again by itself and the
# device's resends are stored. After a restart without the shim:
# integrity_check ok, every acknowledged reading present exactly once with
# its value, and the audit chain verifies.
#
# Why the writer reopens its connection instead of exiting after a failed
# fsync: see src/store/writer.h ("When the disk fails").
. "$(dirname "$0")/lib.sh"

# ---- the shim -----------------------------------------------------------------

SHIM=$VG_TMP/vgfault.so
CTL=$VG_TMP/fault.on   # exists = faults on; its text: "OPS [ERRNO]"
FLOG=$VG_TMP/fault.log # one line per injected failure
command -v cc >/dev/null 2>&1 || die "cc not found (install build-essential)"
cc -shared -fPIC -O1 -o "$SHIM" "$IT_DIR/../faults/vgfault.c" -ldl 2>"$VG_TMP/cc.err" ||
    bail "build the fault shim" "$(head -5 "$VG_TMP/cc.err")"

# A wrapper that runs vigil with the shim preloaded (only the server: the
# CLI, curl and the MQTT clients run without it). An ASan build wants its
# runtime first in the library list.
preload=$SHIM
asan_opts=${ASAN_OPTIONS:-}
if grep -q -a -m1 '__asan_init' "$VIGIL" 2>/dev/null; then
    asan_lib=$(ldd "$VIGIL" 2>/dev/null | awk '/libasan/ {print $3; exit}')
    if [ -n "$asan_lib" ]; then
        preload="$asan_lib:$SHIM"
    else
        asan_opts="${asan_opts:+$asan_opts:}verify_asan_link_order=0"
    fi
fi
FAULTY=$VG_TMP/vigil-faulty
# shellcheck disable=SC2016 # the quotes are text in the here-document; it expands
cat >"$FAULTY" <<EOF
#!/bin/sh
export VGFAULT_PATH=/vigil.db VGFAULT_CONTROL='$CTL' VGFAULT_LOG='$FLOG'
export VGFAULT_OPS=sync VGFAULT_ERRNO=EIO
export LD_PRELOAD='$preload'
${asan_opts:+export ASAN_OPTIONS='$asan_opts'}
exec '$VIGIL' "\$@"
EOF
chmod +x "$FAULTY"

# The shim itself, on the sqlite3 shell: it fails the Nth matching call
# (mode a), only on files whose path matches, and passes everything
# through otherwise.
shim_sqlite() { # shim_sqlite DB PATH_SUBSTRING NTH: an insert under the shim
    env VGFAULT_PATH="$2" VGFAULT_NTH="$3" VGFAULT_OPS=sync VGFAULT_LOG="$VG_TMP/selftest.log" \
        LD_PRELOAD="$SHIM" sqlite3 -batch "$1" \
        "PRAGMA synchronous=FULL; INSERT INTO t VALUES (1);" </dev/null 2>&1
}
sqlite3 -batch "$VG_TMP/selftest.db" "PRAGMA journal_mode=WAL; CREATE TABLE t(x);" >/dev/null </dev/null
out=$(shim_sqlite "$VG_TMP/selftest.db" /selftest.db 1)
check_contains "shim: the 1st fsync of a matching file fails (EIO)" "disk I/O error" "$out"
check "shim: ... and says so in its log" grep -q 'fdatasync .*/selftest.db-wal EIO' "$VG_TMP/selftest.log"
out=$(shim_sqlite "$VG_TMP/selftest.db" /other.db 1)
check_eq "shim: a file whose path does not match is not touched" "" "$out"
out=$(shim_sqlite "$VG_TMP/selftest.db" /selftest.db 1000)
check_eq "shim: before the Nth call nothing fails" "" "$out"
check_eq "shim: two inserts stored, the failed one not" 2 \
    "$(sqlite3 -batch "$VG_TMP/selftest.db" 'SELECT count(*) FROM t;' </dev/null)"

faults() { printf '%s\n' "$*" >"$CTL"; } # faults "sync EIO" | faults off
faults_off() { rm -f "$CTL"; }
injected() { [ -f "$FLOG" ] && grep -c "${1:-}" "$FLOG" || echo 0; }

# ---- readings -------------------------------------------------------------------

base=$(date -u -d '-10 minutes' +%s)
ACKED=() # times of the readings vigil acknowledged
t_of() { date -u -d "@$((base + $1))" +%Y-%m-%dT%H:%M:%SZ; }
rd() { reading 8867-4 $((60 + $1)) /min "$(t_of "$1")"; } # reading K: time base+K s, value 60+K

# send K...: one paho session publishing readings K... at QoS 1; sets SENT
# to the puback list ("[true, false]") and records what was acknowledged.
send() {
    local args=() k res i=0
    for k in "$@"; do args+=(--pub "$(rd "$k")"); done
    res=$(mqtt_session dev1 --topic vigil/v1/d/dev1/obs --qos 1 "${args[@]}")
    SENT=$(jget "$res" 'j["puback"]')
    for k in "$@"; do
        [ "$(jget "$res" "len(j['puback']) > $i and j['puback'][$i]")" = true ] &&
            ACKED+=("$(t_of "$k")")
        i=$((i + 1))
    done
}

log_lines() { grep -c -- "$1" "$VG_LOG"; }

# ---- a server with the shim -----------------------------------------------------

vg_init
VIGIL=$FAULTY vg_serve || bail "server running (with the fault shim)"
grep -q vgfault.so "/proc/$VG_PID/maps" 2>/dev/null ||
    bail "the shim is loaded in vigil serve" "vgfault.so is not in /proc/$VG_PID/maps"
ok "vigil serve runs with the fault shim preloaded (faults off)"
vg_make_principals
vg_patient p1
vg_enroll dev1
vg_assign dev1 p1

send 1 2 3
check_eq "faults off: three readings acknowledged" "[true, true, true]" "$SENT"
check_eq "faults off: nothing injected yet" 0 "$(injected)"

# ---- fsync fails ----------------------------------------------------------------------

faults "sync EIO"
VG_MQTT_TIMEOUT=3 send 4
check_eq "fsync fails: the reading is not acknowledged" "[false]" "$SENT"
check "fsync fails: the shim did fail an fdatasync of the WAL" grep -q 'fdatasync .*/vigil.db-wal EIO' "$FLOG"
check_eq "fsync fails: the log reports the I/O error once" 1 "$(log_lines 'store: I/O error')"
check_contains "fsync fails: the log line names the database" "$VG_DIR/vigil.db" "$(grep 'store: I/O error' "$VG_LOG")"
VG_MQTT_TIMEOUT=3 send 5 6
check_eq "fsync fails: two more readings not acknowledged either" "[false, false]" "$SENT"
check_eq "fsync fails: still one error line, not one per batch" 1 "$(log_lines 'store: I/O error')"
check "fsync fails: serve keeps running" kill -0 "$VG_PID"
api GET "/fhir/Observation?patient=p1"
check_eq "fsync fails: patient data is not served without its audit record (503)" 503 "$API_STATUS"
check_not_contains "fsync fails: no observation in the answer" '"Observation"' "$API_BODY"
api GET /healthz "" -
check_eq "fsync fails: /healthz still answers" 200 "$API_STATUS"

# ---- write fails -----------------------------------------------------------------------

faults "write EIO"
n0=$(injected 'EIO')
VG_MQTT_TIMEOUT=3 send 7
check_eq "write fails (EIO): the reading is not acknowledged" "[false]" "$SENT"
check "write fails (EIO): the shim failed writes of the database files" \
    test "$(grep -c -E '(pwrite64|write) .*/vigil.db' "$FLOG")" -gt 0
check "write fails (EIO): more faults were injected" test "$(injected 'EIO')" -gt "$n0"
check_eq "write fails (EIO): same kind, still one error line" 1 "$(log_lines 'store: I/O error')"

faults "write ENOSPC"
VG_MQTT_TIMEOUT=3 send 8
check_eq "write fails (ENOSPC): the reading is not acknowledged" "[false]" "$SENT"
check "write fails (ENOSPC): the shim failed a write with ENOSPC" grep -q 'ENOSPC' "$FLOG"
check_eq "write fails (ENOSPC): one 'disk full' line for the new kind" 1 "$(log_lines 'store: disk full')"
check_eq "write fails (ENOSPC): no recovery logged while failing" 0 "$(log_lines 'commits succeed again')"
check "write fails: serve keeps running" kill -0 "$VG_PID"

# ---- the faults clear -------------------------------------------------------------------

faults_off
before_clear=$(injected)
# The device resends what was not acknowledged (4..8), with a new one (9);
# the writer retries within its backoff (<= 1 s), so a few rounds suffice.
res=""
for ((round = 0; round < 8; round++)); do
    VG_MQTT_TIMEOUT=3 send 4 5 6 7 8 9
    res=$SENT
    [ "$res" = "[true, true, true, true, true, true]" ] && break
    sleep 0.5
done
check_eq "faults cleared: the resent and the new readings are acknowledged" \
    "[true, true, true, true, true, true]" "$res"
check_eq "faults cleared: nothing injected since" "$before_clear" "$(injected)"
check_eq "faults cleared: one line says commits succeed again" 1 "$(log_lines 'commits succeed again')"
check_contains "faults cleared: it counts what was not acknowledged" "were not acknowledged meanwhile" \
    "$(grep 'commits succeed again' "$VG_LOG")"
check_eq "over the whole outage: one I/O error line and one disk-full line" "1 1" \
    "$(log_lines 'store: I/O error') $(log_lines 'store: disk full')"
api GET "/fhir/Observation?patient=p1&_count=100"
check_eq "faults cleared: patient data served again" 200 "$API_STATUS"
check_eq "faults cleared: the nine readings, each once" 9 "$(jget "$API_BODY" 'len(j.get("entry", []))')"
vg_stop

# ---- restart without the shim: what is on disk -------------------------------------------

check_eq "after restart: integrity_check" ok "$(db 'PRAGMA integrity_check;')"
vg_serve || bail "server restarts without the shim"
check "after restart: the shim is not loaded" bash -c "! grep -q vgfault.so /proc/$VG_PID/maps"
api GET "/fhir/Observation?patient=p1&_count=100"
check_eq "after restart: FHIR read answers" 200 "$API_STATUS"
printf '%s' "$API_BODY" >"$VG_TMP/obs.json"
# Every acknowledged reading exactly once, with the value sent (some were
# acknowledged twice: a resend of a stored reading is acknowledged again).
acked_file=$VG_TMP/acked.txt
: >"$acked_file"
for t in "${ACKED[@]}"; do printf '%s %s\n' "$t" "$((60 + $(date -u -d "$t" +%s) - base))" >>"$acked_file"; done
verdict=$("$PY" - "$VG_TMP/obs.json" "$acked_file" <<'EOF'
import collections, json, sys
bundle = json.load(open(sys.argv[1]))
seen = collections.Counter()
value = {}
for e in bundle.get("entry", []):
    r = e["resource"]
    t = r["effectiveDateTime"].replace(".000Z", "Z")
    seen[t] += 1
    value[t] = r["valueQuantity"]["value"]
problems = []
acked = [l.split() for l in open(sys.argv[2]) if l.strip()]
for t, v in acked:
    if seen[t] != 1:
        problems.append("%s stored %d times" % (t, seen[t]))
    elif float(value[t]) != float(v):
        problems.append("%s has value %s, sent %s" % (t, value[t], v))
for t, n in seen.items():
    if n > 1:
        problems.append("%s stored %d times" % (t, n))
print("ok %d" % len(set(t for t, _ in acked)) if not problems else "; ".join(problems[:5]))
EOF
)
check_eq "after restart: every acknowledged reading is stored exactly once with its value" "ok 9" "$verdict"
check_eq "after restart: nine rows in readings" 9 "$(readings_count)"
check_eq "after restart: each readings.store record counts what was stored" 9 \
    "$(db "SELECT coalesce(sum(CAST(substr(detail, 8, instr(substr(detail, 8), ' ') - 1) AS INTEGER)), 0) FROM audit WHERE action = 'readings.store';")"
vg_stop
out=$("$VIGIL" audit verify "$VG_DIR" 2>&1)
rc=$?
check_eq "after restart: vigil audit verify exits 0" 0 "$rc"
[ "$rc" -eq 0 ] || echo "# $out" | head -5
vg_finish
