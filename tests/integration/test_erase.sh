#!/usr/bin/env bash
# Key rotation and crypto-shredding: rotate-patient starts a new data key and
# keeps old readings readable; patient erase destroys every data key of the
# patient, so their stored ciphertexts can no longer be opened (the wrapped
# keys are gone from the database file and its WAL), the API answers 410,
# the device is unassigned, other patients are untouched, and it is audited.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_patient p2
vg_enroll dev1
vg_enroll dev2
vg_assign dev1 p1
vg_assign dev2 p2
pub dev1 "$(reading 8867-4 111.25 /min "$(now_rfc3339 '-2 minutes')")" || bail "p1 reading 1" "$PUB_OUT"
pub dev2 "$(reading 8867-4 62 /min)" || bail "p2 reading" "$PUB_OUT"
out=$(vg_cli keys rotate-patient p1 --token-file "$VG_DIR/admin.token")
check_eq "keys rotate-patient p1 exits 0" 0 "$?"
pub dev1 "$(reading 8867-4 112.5 /min "$(now_rfc3339 '-1 minutes')")" || bail "p1 reading 2" "$PUB_OUT"
check_eq "p1 now has two data keys (one retired)" "2 1" \
    "$(db "SELECT count(*), sum(state = 'retired') FROM patient_keys WHERE patient_id = 'p1';" | tr '|' ' ')"
api GET "/fhir/Observation?patient=p1"
check_eq "after rotation both of p1's readings are readable" 2 "$(jget "$API_BODY" 'len(j["entry"])')"

# The wrapped keys as bytes, to look for them in the files afterwards.
db "SELECT hex(wrapped) FROM patient_keys WHERE patient_id = 'p1';" >"$VG_TMP/p1-keys.hex"
api POST /api/v1/patients/p1/erase '{"reason":"x"}'
check_eq "erase without a real reason: 400" 400 "$API_STATUS"
tok=$(vg_person nora '["clinician"]') || bail "make a clinician"
api POST /api/v1/patients/p1/erase '{"reason":"patient asked for erasure under the retention policy"}' "$tok"
check_eq "a clinician may not erase: 403" 403 "$API_STATUS"

out=$(vg_cli patient erase p1 --reason "erasure request 2026-117, approved by the privacy officer" \
    --token-file "$VG_DIR/admin.token")
check_eq "vigil patient erase p1 exits 0" 0 "$?"
check_contains "it reports the destroyed keys" "2 data keys destroyed" "$out"
check_eq "p1 has no data key left" 0 "$(db "SELECT count(*) FROM patient_keys WHERE patient_id = 'p1';")"
check_eq "p1's ciphertexts are still there (nothing else to shred)" 2 "$(db "SELECT count(*) FROM readings WHERE patient_id = 'p1';")"
api GET "/fhir/Observation?patient=p1"
check_eq "reading p1 now: 410 Gone" 410 "$API_STATUS"
check_contains "the problem says the patient was erased" "Patient erased" "$API_BODY"
api GET "/fhir/Observation?patient=p2"
check_eq "p2 is untouched" 1 "$(jget "$API_BODY" 'len(j["entry"])')"
check "the wrapped keys are gone from vigil.db and its WAL" "$PY" -c '
import sys
keys = [bytes.fromhex(l.strip()) for l in open(sys.argv[1]) if l.strip()]
for f in sys.argv[2:]:
    try:
        data = open(f, "rb").read()
    except FileNotFoundError:
        continue
    for k in keys:
        assert k not in data, "a wrapped key is still in " + f
' "$VG_TMP/p1-keys.hex" "$VG_DIR/vigil.db" "$VG_DIR/vigil.db-wal"
before=$(readings_count)
pub dev1 "$(reading 8867-4 70 /min)" || not_ok "dev1 publishes after the erasure" "$PUB_OUT"
check_eq "dev1 is no longer assigned: its reading is refused, nothing stored" "$before" "$(readings_count)"
check_eq "the erasure is audited with its reason" 1 \
    "$(audit_count "action = 'patient.erase' AND outcome = 'success' AND instr(detail, 'erasure request 2026-117') > 0")"
vg_stop
out=$("$VIGIL" audit verify "$VG_DIR" 2>&1)
check_eq "the trail verifies" 0 "$?"
vg_finish
