#!/usr/bin/env bash
# The refusals of accounts and sessions: an expired session, an idle-timed-out
# session, a revoked token, a replayed authenticator code, a locked account
# (and the alert), a common password, unknown members and oversized bodies,
# login errors that do not say whether an account exists, and SQL
# metacharacters stored and returned verbatim.
. "$(dirname "$0")/lib.sh"

vg_init
# Short session clocks and a low lockout threshold, so the test need not wait.
cat >>"$VG_DIR/vigil.conf" <<'CONF'
[session]
idle_timeout_s = 2
lifetime_s = 5
[login]
max_failures = 3
lockout_s = 30
CONF
vg_serve || bail "server running"
vg_make_principals
vg_patient p1
tok=$(vg_person alice '["clinician"]') || bail "make alice" "$API_STATUS $API_BODY"
api POST /api/v1/careteam '{"user":"alice","patient":"p1"}'
check_eq "alice joins p1's care team" 201 "$API_STATUS"

# ---- idle timeout (automatic logoff)
api GET "/fhir/Observation?patient=p1" "" "$tok"
check_eq "a fresh session reads p1" 200 "$API_STATUS"
sleep 3
api GET "/fhir/Observation?patient=p1" "" "$tok"
check_eq "after 3 s idle (idle_timeout_s = 2) the session is refused" 401 "$API_STATUS"
check_contains "401 is problem+json" "application/problem+json" "$API_CTYPE"

# ---- absolute lifetime: used every second, still ends after lifetime_s
# (codes are single-use and must move forward: vg_person used the previous
# step, this login the current one, the next the step after.)
tok=$(vg_login alice 0) || bail "alice logs in again (current step)"
alive=0
for _ in 1 2 3 4 5 6 7; do
    api GET "/fhir/Observation?patient=p1" "" "$tok"
    [ "$API_STATUS" = 200 ] && alive=$((alive + 1))
    sleep 1
done
api GET "/fhir/Observation?patient=p1" "" "$tok"
check_eq "a session in constant use still ends after lifetime_s" 401 "$API_STATUS"
check "it worked before that ($alive uses)" test "$alive" -ge 2

# ---- a replayed authenticator code
code=$("$PY" "$IT_DIR/totp.py" "$(cat "$VG_TMP/alice.totp")" --step-offset 1)
pw=$(cat "$VG_TMP/alice.password")
api POST /api/v1/login "{\"user\":\"alice\",\"password\":\"$pw\",\"totp\":\"$code\"}" -
check_eq "the next step's code is accepted once (clock skew window)" 200 "$API_STATUS"
tok=$(jget "$API_BODY" 'j["token"]')
api POST /api/v1/login "{\"user\":\"alice\",\"password\":\"$pw\",\"totp\":\"$code\"}" -
check_eq "the same code again is refused (replay)" 401 "$API_STATUS"
check "the replay is recorded with its reason" test "$(audit_count "action = 'user.login' AND outcome = 'failure' AND instr(detail, 'replayed') > 0")" -ge 1

# ---- logout revokes
api POST /api/v1/logout "" "$tok"
check_eq "logout: 204" 204 "$API_STATUS"
api GET "/fhir/Observation?patient=p1" "" "$tok"
check_eq "the logged-out session is refused" 401 "$API_STATUS"

# ---- a revoked service token
vg_service_token svc '["obs.read"]' '["p1"]' >"$VG_TMP/svc.token" || bail "svc token"
api POST /api/v1/tokens '{"principal":"svc","scopes":["obs.read"],"patients":["p1"]}'
svc2=$(jget "$API_BODY" 'j["token"]')
svc2_id=$(jget "$API_BODY" 'j["id"]')
api GET "/fhir/Observation?patient=p1" "" "$svc2"
check_eq "a service token reads its patient" 200 "$API_STATUS"
api DELETE "/api/v1/tokens/$svc2_id"
check_eq "revoking it: 204" 204 "$API_STATUS"
api GET "/fhir/Observation?patient=p1" "" "$svc2"
check_eq "the revoked token is refused" 401 "$API_STATUS"
api GET "/fhir/Observation?patient=p1" "" "$(cat "$VG_TMP/svc.token")"
check_eq "the principal's other token still works" 200 "$API_STATUS"

# ---- login failures say nothing more than 'Login failed'
api POST /api/v1/login '{"user":"nobody-here","password":"whatever-long-enough","totp":"123456"}' -
nobody="$API_STATUS $API_BODY"
api POST /api/v1/login "{\"user\":\"alice\",\"password\":\"wrong-password-xyz\",\"totp\":\"123456\"}" -
wrongpw="$API_STATUS $API_BODY"
check_eq "unknown account and wrong password get the same answer" "$nobody" "$wrongpw"
check_contains "that answer is 401 Login failed" '401 {"type":"about:blank","title":"Login failed"' "$nobody"

# ---- lockout after max_failures, with an alert, also for a valid password
api POST /api/v1/users '{"id":"bob","roles":["nurse"],"password":"correct-horse-battery-9"}'
check_eq "bob created" 201 "$API_STATUS"
for _ in 1 2 3; do
    api POST /api/v1/login '{"user":"bob","password":"not-bobs-password","totp":"000000"}' -
done
check_eq "the third failure is still 401" 401 "$API_STATUS"
api POST /api/v1/login '{"user":"bob","password":"correct-horse-battery-9","totp":"000000"}' -
check_eq "then bob's name is locked: 429" 429 "$API_STATUS"
check_contains "429 is problem+json" "application/problem+json" "$API_CTYPE"
check "the lockout raised an alert record" test "$(audit_count "action = 'alert.raised' AND instr(detail, 'lockout') > 0")" -ge 1
check "the lockout is in the log" grep -q "alert: login lockout" "$VG_LOG"
api POST /api/v1/login '{"user":"no-such-user-b","password":"x-long-password","totp":"000000"}' -
for _ in 1 2 3; do api POST /api/v1/login '{"user":"no-such-user-b","password":"x-long-password","totp":"000000"}' -; done
check_eq "an unknown name locks out the same way (existence is not revealed)" 429 "$API_STATUS"

# ---- password policy (NIST SP 800-63B)
api POST /api/v1/users '{"id":"carol","roles":["nurse"],"password":"unbelievable"}'
check_eq "a common password is refused" 400 "$API_STATUS"
check_contains "and the reason says so" "common" "$API_BODY"
api POST /api/v1/users '{"id":"carol","roles":["nurse"],"password":"short-pw"}'
check_eq "an 8-character password is refused" 400 "$API_STATUS"
api POST /api/v1/users '{"id":"carol","roles":["nurse"],"password":"carol"}'
check_eq "the user's own id is refused" 400 "$API_STATUS"
api POST /api/v1/users '{"id":"carol","roles":["nurse"],"password":"a long passphrase with spaces and no digits"}'
check_eq "a long passphrase without composition rules is accepted" 201 "$API_STATUS"
api POST /api/v1/users '{"id":"dave","roles":["surgeon"],"password":"another long passphrase"}'
check_eq "an unknown role is refused" 400 "$API_STATUS"

# ---- request bodies
api POST /api/v1/patients '{"id":"p2","nickname":"x"}'
check_eq "an unknown member is refused: 400" 400 "$API_STATUS"
check_contains "with a problem+json body" "application/problem+json" "$API_CTYPE"
big=$("$PY" -c 'print("{\"id\":\"p3\",\"pad\":\"" + "x" * 1100000 + "\"}")')
printf '%s' "$big" >"$VG_TMP/big.json"
meta=$(curl -sS --max-time 30 --cacert "$VG_DIR/pki/ca.pem" -H "Authorization: Bearer $(cat "$VG_DIR/admin.token")" \
    -H "Content-Type: application/json" --data-binary "@$VG_TMP/big.json" -o "$VG_TMP/big.out" \
    -w '%{http_code} %{content_type}' "https://127.0.0.1:$VG_API_PORT/api/v1/patients")
check_eq "a body over max_http_body_bytes is refused: 400 problem+json" "400 application/problem+json" "$meta"
api POST /api/v1/patients 'not json'
check_eq "a body that is not JSON: 400" 400 "$API_STATUS"
api POST /api/v1/patients "{\"id\":\"x'; DROP TABLE patients; --\"}"
check_eq "SQL metacharacters in an id are refused as an invalid id" 400 "$API_STATUS"
check_eq "the patients table is intact" 1 "$(db "SELECT count(*) FROM patients WHERE id = 'p1';")"

# ---- free text (a break-glass reason) is stored and returned verbatim
tok=$(vg_person eve '["clinician"]') || bail "make eve"
reason="Robert'); DROP TABLE audit;-- \"quoted\" \\\\ 100% _x_"
body=$("$PY" -c 'import json,sys; print(json.dumps({"patient":"p1","reason":sys.argv[1]}))' "$reason")
api POST /api/v1/breakglass "$body" "$tok"
check_eq "eve opens break-glass on p1 with a reason full of SQL metacharacters" 201 "$API_STATUS"
stored=$(db "SELECT reason FROM breakglass WHERE user_id = 'eve';")
check_eq "the reason is stored verbatim" "$reason" "$stored"
atok=$(vg_login it-auditor 0) || bail "the auditor logs in again (sessions here last 5 s)"
api GET "/api/v1/audit?action=breakglass.open&limit=5" "" "$atok"
got=$(jget "$API_BODY" 'j["records"][0]["detail"]')
check_contains "and returned verbatim by the audit API" "$reason" "$got"
check_eq "the audit table is intact" "1" "$(db "SELECT count(*) > 10 FROM audit;")"
vg_stop
vg_finish
