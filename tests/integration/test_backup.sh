#!/usr/bin/env bash
# vigil backup while readings stream in, then vigil restore into a new data
# directory with the KEK (which the backup does not contain): the restored
# gateway serves the same readings, its audit trail verifies, and a restore
# with a wrong KEK is refused.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_enroll dev1
vg_assign dev1 p1
pub dev1 "$(reading 8867-4 64 /min)" || bail "first reading" "$PUB_OUT"
# Stream readings from a simulator while the backup runs.
timeout -k 5 "$(vg_t 30)" "$VIGIL" sim -d "$VG_DIR" --devices 3 --rate 20 --for 4 --prefix bk \
    </dev/null >"$VG_TMP/sim.out" 2>&1 &
sim=$!
sleep 2
out=$("$VIGIL" backup "$VG_DIR" "$VG_TMP/backup" 2>&1)
check_eq "vigil backup during ingestion exits 0" 0 "$?"
check_contains "it reports what it copied" "readings" "$out"
wait "$sim"
check "the simulator kept streaming during the backup" grep -q "acknowledged" "$VG_TMP/sim.out"
check "the backup has no keys/kek" test ! -e "$VG_TMP/backup/keys/kek"
check_eq "the backup database is intact" "ok" "$(sqlite3 "$VG_TMP/backup/vigil.db" 'PRAGMA integrity_check;')"
backed=$(sqlite3 "$VG_TMP/backup/vigil.db" 'SELECT count(*) FROM readings;')
check "the backup holds readings ($backed)" test "$backed" -ge 1
vg_stop

# A KEK that is not this database's is refused.
head -c 32 /dev/urandom >"$VG_TMP/other.kek"
chmod 600 "$VG_TMP/other.kek"
out=$("$VIGIL" restore "$VG_TMP/backup" "$VG_TMP/wrong" --kek "$VG_TMP/other.kek" 2>&1)
check_eq "restore with another KEK fails" 1 "$?"
check_contains "and says the key does not open the database" "key-encryption key does not open" "$out"

out=$("$VIGIL" restore "$VG_TMP/backup" "$VG_TMP/restored" --kek "$VG_DIR/keys/kek" 2>&1)
check_eq "restore with the KEK exits 0" 0 "$?"
check_contains "restore verifies the audit chain" "chain verified" "$out"
check_eq "restored keys/kek is 0600" 600 "$(stat -c %a "$VG_TMP/restored/keys/kek")"
# Serve the restored copy and compare what the API returns with the backup.
VG_DIR=$VG_TMP/restored
vg_set_ports
vg_serve || bail "serve the restored directory"
api GET "/fhir/Observation?patient=p1&_count=1000"
check_eq "the restored gateway serves p1's readings" 200 "$API_STATUS"
check_eq "the first reading is there" "True" "$(jget "$API_BODY" 'str(any(e["resource"]["valueQuantity"]["value"] == 64 for e in j["entry"]))')"
total=0
for p in p1 bk-pat-001 bk-pat-002 bk-pat-003; do
    api GET "/fhir/Observation?patient=$p&_count=100000"
    [ "$API_STATUS" = 200 ] && total=$((total + $(jget "$API_BODY" 'len(j.get("entry", []))')))
done
check_eq "every reading in the backup opens and is served" "$backed" "$total"
vg_stop
out=$("$VIGIL" audit verify "$VG_TMP/restored" 2>&1)
check_eq "the restored trail verifies after serving" 0 "$?"
vg_finish
