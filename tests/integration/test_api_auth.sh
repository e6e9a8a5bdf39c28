#!/usr/bin/env bash
# The HTTPS API: /healthz is open, everything else needs the bearer token;
# refusals are 401 application/problem+json; TLS 1.3 only.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1

# check_401 "what": the last api call was refused as unauthenticated
check_401() {
    check_eq "$1: 401" 401 "$API_STATUS"
    check_eq "$1: application/problem+json" "application/problem+json" "$API_CTYPE"
    check_eq "$1: problem status 401 with a title" "401 yes" \
        "$(jget "$API_BODY" '"%s %s" % (j.get("status"), "yes" if j.get("title") else "no")')"
}

api GET /healthz "" -
check_eq "GET /healthz without a token: 200" 200 "$API_STATUS"

api GET "/fhir/Observation?patient=p1" "" -
check_401 "GET /fhir/Observation without a token"
hdrs=$(curl -sS -D - -o /dev/null --cacert "$VG_DIR/pki/ca.pem" \
    "https://127.0.0.1:$VG_API_PORT/fhir/Observation?patient=p1" 2>&1)
check "401 carries WWW-Authenticate: Bearer" grep -qi '^WWW-Authenticate: Bearer' <<<"$hdrs"

api GET "/fhir/Observation?patient=p1" "" "not-the-token-$RANDOM"
check_401 "GET /fhir/Observation with a wrong token"
good=$(cat "$VG_DIR/admin.token")
api GET "/fhir/Observation?patient=p1" "" "${good%?}x"
check_401 "GET /fhir/Observation with the admin token's last character changed"
API_STATUS=$(curl -sS -o "$VG_TMP/b" -w '%{http_code}' --cacert "$VG_DIR/pki/ca.pem" \
    -H "Authorization: Basic $(printf 'admin:%s' "$good" | base64 -w0)" \
    "https://127.0.0.1:$VG_API_PORT/fhir/Observation?patient=p1")
check_eq "Basic authentication with the token as password: 401" 401 "$API_STATUS"

api POST /api/v1/patients '{"id":"intruder"}' -
check_401 "POST /api/v1/patients without a token"
api POST /api/v1/devices '{"id":"rogue"}' "wrong-token"
check_401 "POST /api/v1/devices with a wrong token"
check_not_contains "refused enrollment returns no private key" "PRIVATE KEY" "$API_BODY"
api PUT /api/v1/devices/rogue/patient '{"patient":"p1"}' -
check_401 "PUT /api/v1/devices/rogue/patient without a token"
check_eq "the refused calls created nothing" "0|0" \
    "$(db "SELECT (SELECT count(*) FROM patients WHERE id = 'intruder'), (SELECT count(*) FROM devices WHERE id = 'rogue');")"

# The CLI with a wrong token fails and says why.
echo "wrong-token" >"$VG_TMP/wrong.token"
if timeout -k 5 "$(vg_t 30)" "$VIGIL" obs list p1 --server "https://127.0.0.1:$VG_API_PORT" \
    --cacert "$VG_DIR/pki/ca.pem" --token-file "$VG_TMP/wrong.token" \
    </dev/null >"$VG_TMP/cli.out" 2>"$VG_TMP/cli.err"; then
    not_ok "vigil obs list with a wrong token exits non-zero" "exit 0"
else
    ok "vigil obs list with a wrong token exits non-zero"
fi
cat "$VG_TMP/cli.err" >>"$VG_CLI_LOG"
check "... and reports the 401" grep -q 401 "$VG_TMP/cli.err"

# With the token, the same calls work.
api POST /api/v1/devices '{"id":"dev9"}'
check_eq "POST /api/v1/devices with the token: 201" 201 "$API_STATUS"
check_eq "enrollment answer has certificate, private_key, ca" "yes" \
    "$(jget "$API_BODY" '"yes" if all("-----BEGIN" in (j.get(k) or "") for k in ("certificate", "private_key", "ca")) else "no"')"
keyline=$(jget "$API_BODY" '[l for l in j["private_key"].splitlines() if not l.startswith("-----")][0]')
db "PRAGMA wal_checkpoint(PASSIVE);" >/dev/null
if [ ${#keyline} -ge 40 ] && ! grep -aqF "$keyline" "$VG_DIR"/vigil.db*; then
    ok "the device's private key is not kept in the database files"
else
    not_ok "the device's private key is not kept in the database files" "found (or no key line: '$keyline')"
fi
api GET "/fhir/Observation?patient=nobody"
check_eq "unknown patient: 404" 404 "$API_STATUS"
check_eq "unknown patient: problem+json" "application/problem+json" "$API_CTYPE"

# TLS 1.3 only, HTTPS only
if curl -sS -o /dev/null --max-time "$(vg_t 10)" --tlsv1.2 --tls-max 1.2 \
    --cacert "$VG_DIR/pki/ca.pem" "https://127.0.0.1:$VG_API_PORT/healthz" 2>/dev/null; then
    not_ok "API refuses a TLS 1.2-only client" "curl --tls-max 1.2 succeeded"
else
    ok "API refuses a TLS 1.2-only client"
fi
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time "$(vg_t 10)" \
    "http://127.0.0.1:$VG_API_PORT/healthz" 2>/dev/null)
check_eq "API does not answer plain HTTP" "000" "${code:-000}"

check "control: the API still answers a TLS 1.3 client" vg_healthz

vg_wait_for 5 audit_at_least 6 "action = 'api.auth' AND outcome = 'refused'"
n=$(audit_count "action = 'api.auth' AND outcome = 'refused'")
if [ "$n" -ge 6 ]; then ok "refused API calls are audited ($n api.auth refused rows)"; else
    not_ok "refused API calls are audited" "$n api.auth refused rows, expected >= 6"; fi
check "the token never appears in the server log" bash -c "! grep -aqF '$good' '$VG_LOG'"
check "the token never appears in the audit table" \
    bash -c "[ \"\$(sqlite3 '$VG_DIR/vigil.db' \"SELECT count(*) FROM audit WHERE instr(detail, '$good') > 0 OR instr(actor, '$good') > 0\")\" = 0 ]"

# Last, as it takes the sanitized server down (see the report): a search
# for a patient who has no readings yet is an empty searchset, not a crash.
api GET "/fhir/Observation?patient=p1"
check_eq "GET /fhir/Observation for a patient with no readings: 200" 200 "$API_STATUS"
printf '%s' "$API_BODY" >"$VG_TMP/empty.json"
check "... an empty searchset Bundle (total 0)" \
    "$PY" "$IT_DIR/check_fhir.py" "$VG_TMP/empty.json" --patient p1 --total 0
check "... and the server is still running" kill -0 "$VG_PID"

vg_stop
vg_finish
