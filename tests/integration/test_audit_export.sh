#!/usr/bin/env bash
# Reading and exporting the trail: filters and paging, the per-patient
# accounting of disclosures (table, CSV, JSON), FHIR R4 AuditEvent Bundles
# that validate against the official schema, JSON lines; and a principal
# without the auditor or admin role is refused (and that refusal audited).
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_patient p2
vg_enroll dev1
vg_assign dev1 p1
pub dev1 "$(reading 8867-4 72 /min)" || bail "publish" "$PUB_OUT"
for _ in 1 2 3; do vg_cli obs list p1 >/dev/null || not_ok "obs list p1" "$VG_CLI_ERR"; done
vg_cli obs list p2 >/dev/null || not_ok "obs list p2" "$VG_CLI_ERR"

# ---- list, filters, paging
out=$(vg_cli audit list --json --limit 1000) || not_ok "audit list --json" "$VG_CLI_ERR"
n_all=$(jget "$out" 'len(j)')
check "audit list returns the trail ($n_all records)" test "$n_all" -ge 12
check_eq "audit list is in sequence order" "True" "$(jget "$out" 'str([r["seq"] for r in j] == sorted(r["seq"] for r in j))')"
out=$(vg_cli audit list --json --action obs. --limit 1000)
check_eq "--action obs. (a family) gives the 4 reads" 4 "$(jget "$out" 'len(j)')"
out=$(vg_cli audit list --json --patient p1 --action obs.read --limit 1000)
check_eq "--patient p1 --action obs.read gives 3" 3 "$(jget "$out" 'len(j)')"
out=$(vg_cli audit list --json --outcome refused --limit 1000)
check_eq "--outcome refused: none yet" 0 "$(jget "$out" 'len(j)')"
api GET "/api/v1/audit?limit=2"
check_eq "paging: first page has 2" 2 "$(jget "$API_BODY" 'len(j["records"])')"
next=$(jget "$API_BODY" 'j["next"]')
check_contains "paging: next link carries after=" "after=" "$next"
api GET "$next"
check_eq "paging: second page starts after the first" 3 "$(jget "$API_BODY" 'j["records"][0]["seq"]')"
out=$(vg_cli audit list --json --limit 7)
check_eq "--limit 7 stops at 7 across pages" 7 "$(jget "$out" 'len(j)')"
api GET "/api/v1/audit?limit=0"
check_eq "limit=0 refused: 400" 400 "$API_STATUS"
api GET "/api/v1/audit?bogus=1"
check_eq "unknown parameter refused: 400" 400 "$API_STATUS"
check_contains "unknown parameter: problem+json" "application/problem+json" "$API_CTYPE"
api GET "/api/v1/audit?patient=x%27%20OR%201=1--"
check_eq "SQL metacharacters in a filter: refused as an invalid id" 400 "$API_STATUS"

# ---- accounting of disclosures for one patient
csv=$(vg_cli audit report patient p1 --format csv) || not_ok "report csv" "$VG_CLI_ERR"
check_eq "report csv: header + 3 disclosures of p1" 4 "$(echo "$csv" | wc -l)"
check_eq "report csv: every row is an obs.read of p1" 3 "$(echo "$csv" | grep -c '"obs.read","patient:p1"')"
json=$(vg_cli audit report patient p1 --format json) || not_ok "report json" "$VG_CLI_ERR"
check_eq "report json: 3 disclosures" 3 "$(jget "$json" 'len(j["disclosures"])')"
table=$(vg_cli audit report patient p2) || not_ok "report table" "$VG_CLI_ERR"
check_contains "report table for p2 counts 1 disclosure" "(1 disclosures of patient p2" "$table"

# ---- FHIR AuditEvent export, validated against the FHIR R4 schema subset
vg_cli audit export --format fhir --out "$VG_TMP/audit-bundle.json" || not_ok "export fhir" "$VG_CLI_ERR"
v=$("$PY" "$IT_DIR/validate_fhir.py" "$VG_TMP/audit-bundle.json" 2>&1)
check_eq "the exported Bundle validates against the FHIR R4 schema" 0 "$?"
b=$(cat "$VG_TMP/audit-bundle.json")
check_eq "the Bundle holds every record at export time" "True" "$(jget "$b" 'str(len(j["entry"]) >= '"$n_all"')')"
check_eq "entries are AuditEvents" "AuditEvent" "$(jget "$b" 'j["entry"][0]["resource"]["resourceType"]')"
check_eq "an obs.read maps to DICOM 110110 Patient Record, action R" "110110 R" \
    "$(jget "$b" '[e["resource"]["type"]["code"] + " " + e["resource"]["action"] for e in j["entry"] if any(c.get("code") == "obs.read" for c in e["resource"].get("subtype", []))][0]')"
"$PY" -c '
import json, sys
b = json.load(open(sys.argv[1]))
e = b["entry"][0]["resource"]
e["outcome"] = "3"
json.dump(e, open(sys.argv[2], "w"))
' "$VG_TMP/audit-bundle.json" "$VG_TMP/bad.json"
"$PY" "$IT_DIR/validate_fhir.py" "$VG_TMP/bad.json" >/dev/null 2>&1
check_eq "the validator refuses an AuditEvent with outcome 3 (negative control)" 1 "$?"

# ---- JSON lines
vg_cli audit export --format jsonl --out "$VG_TMP/audit.jsonl" || not_ok "export jsonl" "$VG_CLI_ERR"
check "every jsonl line is a JSON record with a seq" "$PY" -c '
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines and all("seq" in json.loads(l) for l in lines), "bad line"
' "$VG_TMP/audit.jsonl"
check_not_contains "exports carry no reading value" '"72' "$(cat "$VG_TMP/audit.jsonl")"

# ---- a principal without the auditor or admin role
tok="vgt_clinician-token-for-the-test-only-0000000000"
hash=$("$PY" -c 'import hashlib, sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())' "$tok")
db "INSERT INTO principals(id, role, created_ms) VALUES ('carol', 'clinician', 0);
    INSERT INTO tokens(hash, principal_id, created_ms) VALUES (x'$hash', 'carol', 0);" || bail "add a clinician"
api GET "/api/v1/audit" "" "$tok"
check_eq "a clinician may not read the trail: 403" 403 "$API_STATUS"
check_contains "403 is problem+json" "application/problem+json" "$API_CTYPE"
api GET "/api/v1/audit/export?format=jsonl" "" "$tok"
check_eq "a clinician may not export the trail: 403" 403 "$API_STATUS"
check_eq "the refusals are audited" 2 "$(audit_count "actor = 'user:carol' AND action = 'audit.read' AND outcome = 'denied'")"
vg_stop
vg_finish
