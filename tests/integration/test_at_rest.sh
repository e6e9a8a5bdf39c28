#!/usr/bin/env bash
# Readings at rest: the value is sealed (never in the database files or the
# log in the clear), and a tampered ciphertext is detected, not served.
. "$(dirname "$0")/lib.sh"

VALUE=123.4567 # body weight, kg: plausible and easy to grep for

vg_start
vg_patient p1
vg_patient p2
vg_enroll dev1
vg_enroll dev2
vg_assign dev1 p1
vg_assign dev2 p2

pub dev1 "$(reading 29463-7 "$VALUE" kg)" || bail "dev1 publishes body weight $VALUE kg" "$PUB_OUT"
pub dev2 "$(reading 8867-4 61 /min)" || bail "dev2 publishes heart rate 61" "$PUB_OUT"
check_eq "both readings stored" 2 "$(readings_count)"

# Positive control: the value is really there to be found when served.
api GET "/fhir/Observation?patient=p1"
check_eq "before tampering: GET /fhir/Observation?patient=p1 is 200" 200 "$API_STATUS"
check_contains "before tampering: the API serves $VALUE" "$VALUE" "$API_BODY"
out=$(vg_cli obs list p1)
check_contains "before tampering: vigil obs list shows 123.457 kg" "123.457 kg" "$out"

# -- ciphertexts are bound to their row: moving them is detected (edited
#    while serving; each edit is undone before the next)
pub dev1 "$(reading 8867-4 59 /min)" || bail "dev1 publishes heart rate 59" "$PUB_OUT"
w_id=$(db "SELECT id FROM readings WHERE patient_id = 'p1' AND code = '29463-7';")
h_id=$(db "SELECT id FROM readings WHERE patient_id = 'p1' AND code = '8867-4';")
h_blob=$(db "SELECT hex(sealed) FROM readings WHERE id = '$h_id';")
db "UPDATE readings SET sealed = (SELECT sealed FROM readings WHERE id = '$w_id') WHERE id = '$h_id';"
api GET "/fhir/Observation?patient=p1"
check_eq "weight ciphertext copied onto another row of the patient: 500" 500 "$API_STATUS"
check_contains "... Integrity problem" "Integrity" "$(jget "$API_BODY" 'j.get("title", "")')"
check_not_contains "... and $VALUE is not served" "$VALUE" "$API_BODY"
db "UPDATE readings SET sealed = X'$h_blob' WHERE id = '$h_id';"
api GET "/fhir/Observation?patient=p1"
check_eq "copied ciphertext undone: 200 again" 200 "$API_STATUS"

db "UPDATE readings SET patient_id = 'p1' WHERE patient_id = 'p2';"
api GET "/fhir/Observation?patient=p1"
check_eq "p2's reading re-pointed at p1 in the table: 500, not served as p1's" 500 "$API_STATUS"
check_not_contains "... p2's heart rate 61 is not in the answer" '"value":61' "$API_BODY"
db "UPDATE readings SET patient_id = 'p2' WHERE device_id = 'dev2';"
api GET "/fhir/Observation?patient=p2"
check_eq "re-pointing undone: p2 is served again" 200 "$API_STATUS"

db "UPDATE readings SET code = '8867-4' WHERE id = '$w_id';"
api GET "/fhir/Observation?patient=p1"
check_eq "weight relabelled as heart rate in the clear column: 500" 500 "$API_STATUS"
db "UPDATE readings SET code = '29463-7' WHERE id = '$w_id';"
api GET "/fhir/Observation?patient=p1"
check_eq "relabelling undone: 200 again" 200 "$API_STATUS"

# While the server runs, fresh writes sit in the WAL: look there too.
for f in "$VG_DIR"/vigil.db*; do
    check_eq "while serving: $(basename "$f") does not contain $VALUE" 0 "$(grep -a -c -F "$VALUE" "$f")"
done

vg_stop

# -- nothing in the clear at rest
files=("$VG_DIR/vigil.db")
for f in "$VG_DIR/vigil.db-wal" "$VG_DIR/vigil.db-shm" "$VG_DIR/vigil.db-journal"; do
    [ -e "$f" ] && files+=("$f")
done
for f in "${files[@]}" "$VG_TMP"/server*.log "$VG_CLI_LOG"; do
    n=$(grep -a -c -F "$VALUE" "$f")
    check_eq "$(basename "$f") does not contain $VALUE" 0 "$n"
done
check_eq "the readings table has no value column in the clear" 0 \
    "$(db "SELECT count(*) FROM pragma_table_info('readings') WHERE name IN ('value', 'unit', 'time', 'effective');")"

# -- tamper: flip one byte in the middle of the sealed blob of p1's weight
id=$w_id
hex=$(db "SELECT hex(sealed) FROM readings WHERE id = '$id';")
len=$((${#hex} / 2))
if [ "$len" -lt 32 ]; then
    bail "sealed blob long enough to tamper with" "only $len bytes"
fi
mid=$((len / 2))
byte=${hex:$((mid * 2)):2}
flipped=$(printf '%02X' $((0x$byte ^ 0x01)))
newhex="${hex:0:$((mid * 2))}$flipped${hex:$((mid * 2 + 2))}"
db "UPDATE readings SET sealed = X'$newhex' WHERE id = '$id';"
check_eq "one byte of the sealed blob flipped (byte $mid of $len)" "$newhex" \
    "$(db "SELECT hex(sealed) FROM readings WHERE id = '$id';")"

vg_serve || bail "server restarts after the tampering"

api GET "/fhir/Observation?patient=p1"
check_eq "tampered reading: GET /fhir/Observation is 500" 500 "$API_STATUS"
check_eq "tampered reading: problem+json" "application/problem+json" "$API_CTYPE"
title=$(jget "$API_BODY" 'j.get("title", "")')
check_contains "tampered reading: problem title mentions Integrity" "Integrity" "$title"
check_not_contains "tampered reading: the response does not contain $VALUE" "$VALUE" "$API_BODY"
check_not_contains "tampered reading: the response has no Bundle" "Bundle" "$API_BODY"

if out=$(vg_cli obs list p1); then
    not_ok "tampered reading: vigil obs list exits non-zero" "exit 0: $out"
else
    ok "tampered reading: vigil obs list exits non-zero"
fi
check_not_contains "tampered reading: vigil obs list prints no value" "123.45" "$out$VG_CLI_ERR"

# Another patient's readings are unaffected.
api GET "/fhir/Observation?patient=p2"
check_eq "other patient: still 200" 200 "$API_STATUS"
printf '%s' "$API_BODY" >"$VG_TMP/p2.json"
check "other patient: heart rate 61 still served" \
    "$PY" "$IT_DIR/check_fhir.py" "$VG_TMP/p2.json" --patient p2 --total 1 --obs "8867-4,61,/min"

vg_wait_for 5 audit_at_least 1 "action = 'obs.read' AND outcome = 'failure' AND target = 'patient:p1'"
check_eq "the failed read is audited (obs.read failure)" 1 \
    "$(audit_count "action = 'obs.read' AND outcome = 'failure' AND target = 'patient:p1'" | awk '{print ($1 >= 1)}')"
check "the server log reports the integrity failure" grep -aqi "integrity" "$VG_LOG"

vg_stop
for f in "$VG_TMP"/server*.log; do
    check_eq "$(basename "$f") still does not contain $VALUE" 0 "$(grep -a -c -F "$VALUE" "$f")"
done
vg_finish
