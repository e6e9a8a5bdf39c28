#!/usr/bin/env bash
# Disk full, on a small filesystem of the test's own (an 8 MiB tmpfs; else a
# loop-mounted ext4 image; else the same inside a user namespace; else —
# said loudly — the LD_PRELOAD shim failing writes with ENOSPC).
#
# vigil keeps a reserve of free space for audit records
# (VG_WRITER_RESERVE_DEFAULT, src/store/writer.h). A filler file takes the
# filesystem down to just above it, then QoS 1 readings are published until
# vigil stops acknowledging them. Then, while the disk stays full:
#   - readings are not acknowledged (paho, MQTT 3.1.1: no PUBACK);
#   - the log has ONE clear "disk full" line, not one per batch;
#   - PRAGMA integrity_check is ok;
#   - reads still work: GET /fhir/Observation returns 200 with every
#     reading stored before (each read is audited in the reserve);
#   - with the last byte taken too, still nothing acknowledged, still one
#     line, and a read either succeeds whole or is refused (503) for want
#     of its audit record — never served unaudited.
# The fillers are removed and vigil resumes by itself: the device's resends
# and new readings are acknowledged and stored, one "commits succeed again"
# line is logged, every acknowledged reading is stored exactly once with
# its value, and the audit chain verifies.
#
# VG_DISKFULL_FORCE=loop|shim skips the earlier kinds of filesystem (to
# test the fallbacks).

# Without the right to mount, try again in a user and mount namespace of
# our own (before lib.sh makes its temporary directory).
if [ -z "${VG_DISKFULL_NS:-}" ] && [ -z "${VG_DISKFULL_FORCE:-}" ]; then
    probe=$(mktemp -d "${TMPDIR:-/tmp}/vigil-mount-probe.XXXXXX")
    if mount -t tmpfs -o size=1m vigil-probe "$probe" 2>/dev/null; then
        umount "$probe"
    elif command -v unshare >/dev/null 2>&1 && unshare -rm true 2>/dev/null; then
        rmdir "$probe"
        echo "# no right to mount here: running in a user and mount namespace (unshare -rm)"
        VG_DISKFULL_NS=1 exec unshare -rm bash "$0" "$@"
    fi
    rmdir "$probe" 2>/dev/null
fi

. "$(dirname "$0")/lib.sh"

RESERVE=$(sed -nE 's/^#define VG_WRITER_RESERVE_DEFAULT \(([0-9]+) \* 1024 \* 1024\).*/\1/p' \
    "$IT_DIR/../../src/store/writer.h")
[ -n "$RESERVE" ] || die "cannot read VG_WRITER_RESERVE_DEFAULT from src/store/writer.h"
RESERVE=$((RESERVE * 1024 * 1024))

# ---- the small filesystem ----------------------------------------------------------

FS=$VG_TMP/fs
FS_KIND=""
mkdir -p "$FS"
fs_cleanup() {
    vg_kill_server
    if [ -n "$FS_KIND" ] && [ "$FS_KIND" != shim ]; then
        umount "$FS" 2>/dev/null || umount -l "$FS" 2>/dev/null
    fi
    vg_cleanup
}
trap fs_cleanup EXIT

force=${VG_DISKFULL_FORCE:-}
if [ -z "$force" ] && mount -t tmpfs -o size=8m,mode=0700 vigil-disk-full "$FS" 2>/dev/null; then
    FS_KIND=tmpfs
elif [ "$force" != shim ] && command -v mkfs.ext4 >/dev/null 2>&1 &&
    truncate -s 12M "$VG_TMP/fs.img" && mkfs.ext4 -q -F -m 0 "$VG_TMP/fs.img" >/dev/null 2>&1 &&
    mount -o loop "$VG_TMP/fs.img" "$FS" 2>/dev/null; then
    FS_KIND=loop
    chmod 0700 "$FS"
else
    FS_KIND=shim
fi
case $FS_KIND in
tmpfs) echo "# a real small filesystem: an 8 MiB tmpfs at $FS" ;;
loop) echo "# a real small filesystem: a 12 MiB ext4 image, loop-mounted at $FS" ;;
shim)
    echo "# ***************************************************************************"
    if [ "$force" = shim ]; then
        echo "# NOT A REAL SMALL FILESYSTEM (VG_DISKFULL_FORCE=shim)."
    else
        echo "# NOT A REAL SMALL FILESYSTEM: no tmpfs or loop mount was possible here."
    fi
    echo "# This run fails the database's writes with ENOSPC through the LD_PRELOAD"
    echo "# shim tests/faults/vgfault.c; vigil's free-space reserve is not exercised."
    echo "# ***************************************************************************"
    ;;
esac

avail() { df -B1 --output=avail "$FS" | tail -1 | tr -d ' '; }

SHIM=$VG_TMP/vgfault.so
CTL=$VG_TMP/fault.on
FLOG=$VG_TMP/fault.log
SERVE_VIGIL=$VIGIL
if [ "$FS_KIND" = shim ]; then
    command -v cc >/dev/null 2>&1 || die "cc not found (install build-essential)"
    cc -shared -fPIC -O1 -o "$SHIM" "$IT_DIR/../faults/vgfault.c" -ldl 2>"$VG_TMP/cc.err" ||
        bail "build the fault shim" "$(head -5 "$VG_TMP/cc.err")"
    preload=$SHIM
    asan_opts=${ASAN_OPTIONS:-}
    if grep -q -a -m1 '__asan_init' "$VIGIL" 2>/dev/null; then
        asan_lib=$(ldd "$VIGIL" 2>/dev/null | awk '/libasan/ {print $3; exit}')
        if [ -n "$asan_lib" ]; then preload="$asan_lib:$SHIM"; else
            asan_opts="${asan_opts:+$asan_opts:}verify_asan_link_order=0"
        fi
    fi
    SERVE_VIGIL=$VG_TMP/vigil-faulty
    # shellcheck disable=SC2016 # the quotes are text in the here-document; it expands
    cat >"$SERVE_VIGIL" <<EOF
#!/bin/sh
export VGFAULT_PATH=/vigil.db VGFAULT_CONTROL='$CTL' VGFAULT_LOG='$FLOG'
export VGFAULT_OPS=write VGFAULT_ERRNO=ENOSPC
export LD_PRELOAD='$preload'
${asan_opts:+export ASAN_OPTIONS='$asan_opts'}
exec '$VIGIL' "\$@"
EOF
    chmod +x "$SERVE_VIGIL"
fi

# ---- readings ---------------------------------------------------------------------

base=$(($(date -u +%s) - 7200))
ACKED=$VG_TMP/acked.txt # reading numbers vigil acknowledged
SENT_ALL=$VG_TMP/sent.txt
: >"$ACKED"
: >"$SENT_ALL"
# Reading K: heart rate 40 + K mod 200 at base + K seconds.
t_of() { date -u -d "@$((base + $1))" +%Y-%m-%dT%H:%M:%SZ; }
rd() { reading 8867-4 $((40 + $1 % 200)) /min "$(t_of "$1")"; }

# publish FIRST N: one QoS 1 PUBLISH carrying readings FIRST..FIRST+N-1;
# SENT = "[true]" when acknowledged.
publish() {
    local i items=""
    for ((i = $1; i < $1 + $2; i++)); do
        items+="${items:+,}$(rd "$i")"
        echo "$i" >>"$SENT_ALL"
    done
    local res
    res=$(mqtt_session dev1 --topic vigil/v1/d/dev1/obs --qos 1 --pub "[$items]")
    SENT=$(jget "$res" 'j["puback"]')
    if [ "$SENT" = "[true]" ]; then
        for ((i = $1; i < $1 + $2; i++)); do echo "$i" >>"$ACKED"; done
    fi
}

full_lines() { grep -c 'store: disk full' "$VG_LOG"; }

# Every acknowledged reading exactly once with its value; prints "ok N"
# (N acknowledged readings) or what is wrong. Also checks nothing is stored
# that was not sent.
check_stored() {
    api GET "/fhir/Observation?patient=p1&_count=1000"
    [ "$API_STATUS" = 200 ] || { echo "GET answered $API_STATUS"; return; }
    printf '%s' "$API_BODY" >"$VG_TMP/obs.json"
    "$PY" - "$VG_TMP/obs.json" "$ACKED" "$SENT_ALL" "$base" <<'EOF'
import calendar, collections, json, sys, time
bundle = json.load(open(sys.argv[1]))
acked = {int(l) for l in open(sys.argv[2]) if l.strip()}
sent = {int(l) for l in open(sys.argv[3]) if l.strip()}
base = int(sys.argv[4])
seen = collections.Counter()
problems = []
for e in bundle.get("entry", []):
    r = e["resource"]
    t = calendar.timegm(time.strptime(r["effectiveDateTime"][:19], "%Y-%m-%dT%H:%M:%S"))
    k = t - base
    seen[k] += 1
    if k not in sent:
        problems.append("reading at %s was never sent" % r["effectiveDateTime"])
    elif float(r["valueQuantity"]["value"]) != 40 + k % 200:
        problems.append("reading %d has value %s" % (k, r["valueQuantity"]["value"]))
for k in sorted(acked):
    if seen[k] != 1:
        problems.append("acknowledged reading %d stored %d times" % (k, seen[k]))
for k, n in seen.items():
    if n > 1 and k not in acked:
        problems.append("reading %d stored %d times" % (k, n))
print("ok %d" % len(acked) if not problems else "; ".join(problems[:5]))
EOF
}

# ---- vigil on the small filesystem ---------------------------------------------------

vg_init "$FS/data"
VIGIL=$SERVE_VIGIL vg_serve || bail "server running on the small filesystem"
vg_make_principals
vg_patient p1
vg_enroll dev1
vg_assign dev1 p1

next=0
publish $next 50
next=$((next + 50))
check_eq "space left: a PUBLISH of 50 readings is acknowledged" "[true]" "$SENT"

if [ "$FS_KIND" != shim ]; then
    free0=$(avail)
    # Down to the reserve plus a little: the writer passes its reserve while
    # readings go on.
    fill=$((free0 - RESERVE - 160 * 1024))
    [ "$fill" -gt 0 ] || bail "room for a filler" "only $free0 bytes free on $FS"
    fallocate -l "$fill" "$FS/filler" 2>/dev/null ||
        dd if=/dev/zero of="$FS/filler" bs=64k count=$((fill / 65536)) status=none ||
        bail "write the filler file"
    echo "# $FS_KIND: $free0 bytes free, filler $fill, now $(avail) free (reserve $RESERVE)"
    acked_more=0
    for ((round = 0; round < 100; round++)); do
        VG_MQTT_TIMEOUT=3 publish $next 50
        next=$((next + 50))
        [ "$SENT" = "[true]" ] || break
        acked_more=$((acked_more + 1))
    done
    echo "# $acked_more more PUBLISHes acknowledged before the disk was full; $(avail) bytes free"
    check "disk full: readings went on until the reserve was reached" test "$acked_more" -gt 0
else
    echo "write ENOSPC" >"$CTL"
    VG_MQTT_TIMEOUT=3 publish $next 50
    next=$((next + 50))
fi
check_eq "disk full: the PUBLISH is not acknowledged (no PUBACK)" "[false]" "$SENT"
VG_MQTT_TIMEOUT=3 publish $next 10
stuck_first=$next
next=$((next + 10))
check_eq "disk full: the next PUBLISH is not acknowledged either" "[false]" "$SENT"
VG_MQTT_TIMEOUT=3 publish $next 10
next=$((next + 10))
check_eq "disk full: nor the one after" "[false]" "$SENT"
check_eq "disk full: ONE 'disk full' line in the log, not one per batch" 1 "$(full_lines)"
check_contains "disk full: the line says what happens and where" "readings are not acknowledged until space is freed" \
    "$(grep 'store: disk full' "$VG_LOG")"
[ "$FS_KIND" = shim ] ||
    check_contains "disk full: ... and that the reserve is what is left" "kept for the audit trail" \
        "$(grep 'store: disk full' "$VG_LOG")"
check_eq "disk full: integrity_check" ok "$(db 'PRAGMA integrity_check;')"
check "disk full: serve keeps running" kill -0 "$VG_PID"
if [ "$FS_KIND" != shim ]; then
    check_eq "disk full: reads still work, with every reading stored before" \
        "ok $(wc -l <"$ACKED")" "$(check_stored)"
fi

# ---- every last byte ----------------------------------------------------------------

if [ "$FS_KIND" != shim ]; then
    dd if=/dev/zero of="$FS/filler2" bs=4k status=none 2>/dev/null
    echo "# the rest taken: $(avail) bytes free"
    VG_MQTT_TIMEOUT=3 publish $next 10
    next=$((next + 10))
    check_eq "no byte free: the PUBLISH is not acknowledged" "[false]" "$SENT"
    check_eq "no byte free: still one 'disk full' line" 1 "$(full_lines)"
    check "no byte free: serve keeps running" kill -0 "$VG_PID"
fi
api GET "/fhir/Observation?patient=p1&_count=1000"
echo "# a read with no free space at all: $API_STATUS"
case $API_STATUS in
200) check_eq "no free space: a read served is complete" "ok $(wc -l <"$ACKED")" "$(check_stored)" ;;
503)
    check_contains "no free space: a read refused says the audit trail is unavailable" \
        "Audit trail unavailable" "$API_BODY"
    check_not_contains "no free space: the refusal carries no observation" '"Observation"' "$API_BODY"
    ;;
*) not_ok "no free space: a read is served whole or refused with 503" "status $API_STATUS" ;;
esac

# ---- space returns ----------------------------------------------------------------------

rm -f "$FS/filler" "$FS/filler2" "$CTL"
[ "$FS_KIND" = shim ] || echo "# fillers removed: $(avail) bytes free"
check_eq "space back: no recovery logged before a commit succeeds" 0 "$(grep -c 'commits succeed again' "$VG_LOG")"
# The device resends what was never acknowledged (here: the two PUBLISHes
# of 10 readings, and a new one); vigil retries within its backoff.
res=""
for ((round = 0; round < 10; round++)); do
    publish $stuck_first 20
    res=$SENT
    [ "$res" = "[true]" ] && break
    sleep 0.5
done
check_eq "space back: the resent readings are acknowledged, without a restart" "[true]" "$res"
publish $next 5
next=$((next + 5))
check_eq "space back: a new PUBLISH is acknowledged" "[true]" "$SENT"
check_eq "space back: one line says commits succeed again" 1 "$(grep -c 'commits succeed again' "$VG_LOG")"
check_eq "space back: still one 'disk full' line" 1 "$(full_lines)"
check_eq "space back: every acknowledged reading stored exactly once, with its value" \
    "ok $(wc -l <"$ACKED")" "$(check_stored)"
check_eq "space back: integrity_check" ok "$(db 'PRAGMA integrity_check;')"
vg_stop
out=$("$VIGIL" audit verify "$VG_DIR" 2>&1)
rc=$?
check_eq "vigil audit verify passes after the outage" 0 "$rc"
[ "$rc" -eq 0 ] || echo "$out" | head -5 | sed 's/^/#   /'
[ "$FS_KIND" = shim ] && echo "# (this run used the LD_PRELOAD shim, not a real small filesystem)"
vg_finish
