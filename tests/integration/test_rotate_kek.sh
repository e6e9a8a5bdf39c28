#!/usr/bin/env bash
# Online KEK rotation: `vigil keys rotate-kek` while a device streams. Every
# data key and TOTP seed is rewrapped, readings are not rewritten, ingestion
# goes on (a patient whose first data key is made after the rotation is
# readable after a restart), the old KEK opens nothing any more, it is
# audited, only an admin may do it; and a rotation interrupted after its
# commit (or before it) is finished (or undone) at the next start.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_patient p2
vg_enroll dev1
vg_enroll dev2
vg_assign dev1 p1
vg_assign dev2 p2
pub dev1 "$(reading 8867-4 70 /min "$(now_rfc3339 '-10 minutes')")" || bail "p1 reading" "$PUB_OUT"
tok=$(vg_person nora '["clinician"]') || bail "make a clinician"
cp -p "$VG_DIR/keys/kek" "$VG_TMP/kek.old"
sealed_before=$(db "SELECT hex(sealed) FROM readings WHERE rowid = 1;")
wrapped_before=$(db "SELECT hex(wrapped) FROM patient_keys;")

api POST /api/v1/keys/rotate-kek '{}' "$tok"
check_eq "a clinician may not rotate the KEK: 403" 403 "$API_STATUS"

# A device streams while the KEK turns over.
(for i in $(seq 1 20); do
    pub dev1 "$(reading 8867-4 $((60 + i)) /min "$(now_rfc3339 "-$((200 - i)) seconds")")" || exit 1
done) &
streamer=$!
out=$(vg_cli keys rotate-kek --reason "annual key rotation, change 2026-311" --token-file "$VG_DIR/admin.token")
check_eq "vigil keys rotate-kek exits 0" 0 "$?"
check_contains "it reports rewrapped keys" "data keys" "$out"
wait "$streamer"
check_eq "every publish during the rotation was acknowledged" 0 "$?"
pub dev2 "$(reading 8867-4 80 /min)" || bail "p2 reading after rotation" "$PUB_OUT"

check "keys/kek changed" bash -c "! cmp -s '$VG_DIR/keys/kek' '$VG_TMP/kek.old'"
check_eq "keys/kek is still 32 bytes, 0600" "32 600" "$(stat -c '%s %a' "$VG_DIR/keys/kek")"
check "no staged KEK is left behind" test ! -e "$VG_DIR/keys/kek.next"
check_eq "readings were not rewritten" "$sealed_before" "$(db "SELECT hex(sealed) FROM readings WHERE rowid = 1;")"
check "the wrapped data keys were" bash -c "[ '$(db "SELECT hex(wrapped) FROM patient_keys WHERE key_id = 1;")' != '$(echo "$wrapped_before" | head -1)' ]"
check_eq "the rotation is audited with its reason" 1 \
    "$(audit_count "action = 'keys.rotate-kek' AND outcome = 'success' AND instr(detail, 'change 2026-311') > 0")"
api GET "/fhir/Observation?patient=p1&_count=100"
check_eq "p1's 21 readings are readable" 21 "$(jget "$API_BODY" 'len(j["entry"])')"

# Restart on the new KEK: everything opens, including p2 (whose first data
# key the writer made after the rotation) and the clinician's TOTP seed.
vg_stop
vg_serve
api GET "/fhir/Observation?patient=p2"
check_eq "after a restart p2's post-rotation reading opens" 1 "$(jget "$API_BODY" 'len(j["entry"])')"
api GET "/fhir/Observation?patient=p1&_count=100"
check_eq "and p1's 21" 21 "$(jget "$API_BODY" 'len(j["entry"])')"
check "the clinician still logs in (TOTP seed rewrapped)" vg_login nora 1
vg_stop

# The old KEK opens nothing.
cp -p "$VG_DIR/keys/kek" "$VG_TMP/kek.new"
cp -p "$VG_TMP/kek.old" "$VG_DIR/keys/kek"
log="$VG_TMP/old-kek.log"
timeout -k 5 "$(vg_t 20)" "$VIGIL" serve "$VG_DIR" </dev/null >"$log" 2>&1
check "serve refuses the old KEK" test $? -ne 0
check_contains "saying the KEK does not open the database" "does not open" "$(cat "$log")"

# A crash after the commit but before the new KEK replaced the old file:
# the old file is in place and the new one is staged.
cp -p "$VG_TMP/kek.new" "$VG_DIR/keys/kek.next"
vg_serve
check "serve finished the interrupted rotation" grep -q "finished an interrupted KEK rotation" "$VG_LOG"
check "the staged KEK is now keys/kek" cmp -s "$VG_DIR/keys/kek" "$VG_TMP/kek.new"
api GET "/fhir/Observation?patient=p2"
check_eq "and readings open" 1 "$(jget "$API_BODY" 'len(j["entry"])')"
vg_stop

# A crash before the commit: a staged key that opens nothing is removed.
head -c 32 /dev/urandom >"$VG_DIR/keys/kek.next"
chmod 600 "$VG_DIR/keys/kek.next"
vg_serve
check "serve removed the uncommitted staged KEK" test ! -e "$VG_DIR/keys/kek.next"
check "and says so" grep -q "had not committed" "$VG_LOG"
check "keys/kek is unchanged" cmp -s "$VG_DIR/keys/kek" "$VG_TMP/kek.new"

vg_finish
