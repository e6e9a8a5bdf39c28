#!/usr/bin/env bash
# Accounts from the command line (src/cli/account.c against docs/api.md):
# an admin creates a clinician with a password and a second factor, puts
# her on a patient's care team; she logs in with password and authenticator
# code, reads observations with the saved session, logs out (the token is
# then refused), fails with a wrong code, changes her password; service
# tokens are written 0600; user list shows the second factor.
. "$(dirname "$0")/lib.sh"

# The CLI keeps its session under $XDG_CONFIG_HOME (else ~/.config): both
# point into this test's directory so no real session is ever touched.
export HOME="$VG_TMP/home" XDG_CONFIG_HOME="$VG_TMP/config"
mkdir -p "$HOME"
unset VIGIL_SERVER VIGIL_TOKEN VIGIL_CACERT
SESSION="$XDG_CONFIG_HOME/vigil/session"
ALL_OUT="$VG_TMP/all-cli-output"
: >"$ALL_OUT"

vg_start
vg_patient p1
vg_patient p2
SERVER="https://127.0.0.1:$VG_API_PORT"
CA="$VG_DIR/pki/ca.pem"

# cli INPUT ARGS...: `vigil ARGS` (no -d added) with INPUT on standard
# input; sets OUT (stdout), ERR (stderr) and RC.
cli() {
    local input=$1
    shift
    printf '%b' "$input" >"$VG_TMP/cli.stdin"
    OUT=$(timeout -k 5 "$(vg_t 30)" "$VIGIL" "$@" <"$VG_TMP/cli.stdin" 2>"$VG_TMP/cli.last.stderr")
    RC=$?
    ERR=$(cat "$VG_TMP/cli.last.stderr")
    cat "$VG_TMP/cli.last.stderr" >>"$VG_CLI_LOG"
    printf '%s\n%s\n' "$OUT" "$ERR" >>"$ALL_OUT"
    rm -f "$VG_TMP/cli.stdin"
}
# admin INPUT ARGS...: the same as the bootstrap admin (-d).
admin() {
    local input=$1
    shift
    cli "$input" "$@" -d "$VG_DIR"
}
check_rc() { check_eq "$1 (exit status)" "$2" "$RC"; }

# A code is accepted once per 30 s step (replays are refused), so every
# login uses a step after the last one used, within the server's ±1 step
# window; waits for the clock when two steps ahead would be needed.
LAST_STEP=0
next_code() { # next_code URI -> CODE
    local step=$(($(date +%s) / 30))
    [ "$step" -gt "$LAST_STEP" ] || step=$((LAST_STEP + 1))
    while [ "$step" -gt $(($(date +%s) / 30 + 1)) ]; do sleep 1; done
    LAST_STEP=$step
    CODE=$("$PY" "$IT_DIR/totp.py" "$1" --at $((step * 30)))
}

PW="alice pw $(head -c 12 /dev/urandom | base64 | tr -d '/+=')"
NEWPW="alice new $(head -c 12 /dev/urandom | base64 | tr -d '/+=')"

# -- every command documents itself
for c in login logout passwd user token careteam breakglass; do
    cli "" "$c" --help
    check_eq "vigil $c --help exits 0" 0 "$RC"
    check_contains "vigil $c --help shows its usage" "Usage: vigil $c" "$OUT"
done
cli "" user --help
check_contains "user --help documents the connection options" "--token-file FILE" "$OUT"
check_contains "the connection help states the token precedence" "session saved by" "$OUT"

# -- the admin creates a clinician
admin "$PW\n${PW}x\n" user add bob --role clinician
check_rc "user add with two different passwords fails" 1
check_contains "... and says they differ" "differ" "$ERR"

admin "$PW\n$PW\n" user add alice --role clinician
check_rc "admin: user add alice --role clinician" 0
URI=$(grep -o 'otpauth://[^ ]*' <<<"$OUT" | head -1)
check_contains "user add prints the otpauth URI" "otpauth://totp/" "$URI"
check_contains "user add tells the user to scan the QR code" "Scan this QR code" "$OUT"
if grep -q '▀\|▄\|█' <<<"$OUT"; then
    ok "user add draws the QR code"
else
    not_ok "user add draws the QR code" "no half-block characters in: $(head -c 300 <<<"$OUT")"
fi
[ -n "$URI" ] || bail "the clinician's otpauth URI" "$OUT $ERR"

admin "" careteam add alice p1
check_rc "admin: careteam add alice p1" 0
ASSIGN=$(sed -n 's/^assignment \([0-9A-Za-z._-]*\):.*/\1/p' <<<"$OUT")
check_contains "careteam add prints the assignment id" "assignment $ASSIGN: alice" "$OUT"
admin "" careteam list --user alice
check_contains "careteam list shows alice on p1" "p1" "$OUT"

# -- login saves a private session
next_code "$URI"
cli "$PW\n$CODE\n" login alice --server "$SERVER" --cacert "$CA"
check_rc "login alice with password and code" 0
check_contains "login says until when" "logged in as alice until" "$OUT"
check "the session file exists" test -f "$SESSION"
check_eq "the session file is 0600" 600 "$(stat -c %a "$SESSION" 2>&1)"
check_eq "its directory is 0700" 700 "$(stat -c %a "$XDG_CONFIG_HOME/vigil" 2>&1)"
check_eq "the session records user, server and an absolute CA path" "alice $SERVER $(realpath "$CA")" \
    "$(jget "$(cat "$SESSION")" '"%s %s %s" % (j["user"], j["server"], j["cacert"])')"
TOKEN=$(jget "$(cat "$SESSION")" 'j["token"]')
check_contains "the session holds a session token" "vgs_" "$TOKEN"
check_not_contains "the session file holds no password" "$PW" "$(cat "$SESSION")"
check_eq "no temporary files are left next to it" "session" "$(ls -A "$XDG_CONFIG_HOME/vigil")"

# -- the session is what later commands use
cli "" obs list p1
check_rc "obs list p1 with the session alone (server and CA from it)" 0
check_contains "... prints the table" "EFFECTIVE" "$OUT"
cli "" obs list p1 --server "$SERVER" --cacert "$CA"
check_rc "obs list p1 with the session and explicit --server/--cacert" 0
cli "" obs list p1 --server "https://127.0.0.1:1" --cacert "$CA"
check_rc "the session is not sent to another server" 1
check_contains "... and says why" "the session in" "$ERR"
cli "" obs list p1 -d "$VG_DIR"
check_rc "with -d the session is not used (the admin token sees no patient data)" 1
check_contains "... the server refused the admin token" "403" "$ERR"
VIGIL_TOKEN=$(cat "$VG_DIR/admin.token") cli "" obs list p1 --server "$SERVER" --cacert "$CA"
check_rc "VIGIL_TOKEN wins over the session (the admin's: refused)" 1
check_contains "... 403" "403" "$ERR"
cli "" obs list p1 --token-file "$VG_DIR/admin.token" --server "$SERVER" --cacert "$CA"
check_rc "--token-file wins over the session (the admin's: refused)" 1
check_contains "... 403" "403" "$ERR"
cli "" audit list
check_rc "alice's session does not read the audit trail" 1
check_contains "... 403" "403" "$ERR"

cp -p "$SESSION" "$VG_TMP/session.saved"
"$PY" -c '
import json, sys
j = json.load(open(sys.argv[1])); j["expires"] = "2020-01-01T00:00:00.000Z"
open(sys.argv[1], "w").write(json.dumps(j))' "$SESSION"
cli "" obs list p1
check_rc "an expired session is not used" 1
check_contains "... and says when it ended" "ended at 2020-01-01" "$ERR"
cp -p "$VG_TMP/session.saved" "$SESSION" && rm -f "$VG_TMP/session.saved"
chmod 644 "$SESSION"
cli "" obs list p1
check_rc "a session file readable by others is refused" 1
check_contains "... and says so" "other users may access it" "$ERR"
chmod 600 "$SESSION"

# -- logout: the file is gone and the token refused
cli "" logout
check_rc "logout" 0
check_contains "logout says so" "logged out" "$OUT"
check "the session file is deleted" test ! -e "$SESSION"
api GET "/fhir/Observation?patient=p1" "" "$TOKEN"
check_eq "the logged-out token is refused" 401 "$API_STATUS"
cli "" logout
check_rc "logout without a session fails" 1
check_contains "... not logged in" "not logged in" "$ERR"
cli "" obs list p1 --server "$SERVER" --cacert "$CA"
check_rc "obs list without a session or token fails" 1
check_contains "... and suggests vigil login" "vigil login" "$ERR"

# -- failed logins say nothing specific
wrong=$(printf '%06d' $(((10#$CODE + 1) % 1000000)))
cli "$PW\n$wrong\n" login alice --server "$SERVER" --cacert "$CA"
check_rc "login with a wrong code fails" 1
check_contains "... with 'login failed'" "login failed" "$ERR"
check "... and saves no session" test ! -e "$SESSION"
cli "$PW\n$CODE\n" login alice --server "$SERVER" --cacert "$CA"
check_rc "login replaying an already used code fails" 1
check_contains "... with 'login failed'" "login failed" "$ERR"
cli "$PW\n12345\n" login alice --server "$SERVER" --cacert "$CA"
check_rc "a code that is not 6 digits is refused before asking the server" 1

# -- passwd
next_code "$URI"
cli "$PW\n$CODE\n" login alice --server "$SERVER" --cacert "$CA"
check_rc "login again" 0
cli "$PW\n$NEWPW\n${NEWPW}x\n" passwd
check_rc "passwd with two different new passwords fails" 1
check_contains "... and says they differ" "differ" "$ERR"
cli "wrong-$PW\n$NEWPW\n$NEWPW\n" passwd
check_rc "passwd with a wrong current password fails" 1
check_contains "... and says the password was not changed" "password not changed" "$ERR"
cli "$PW\nshort\nshort\n" passwd
check_rc "passwd with a too short password fails" 1
check_contains "... with the server's reason" "password not changed" "$ERR"
cli "$PW\n$NEWPW\n$NEWPW\n" passwd
check_rc "passwd" 0
check_contains "passwd says so" "password changed" "$OUT"
cli "" logout
check_rc "logout after passwd" 0
next_code "$URI"
cli "$PW\n$CODE\n" login alice --server "$SERVER" --cacert "$CA"
check_rc "the old password no longer logs in" 1
cli "$NEWPW\n$CODE\n" login alice --server "$SERVER" --cacert "$CA"
check_rc "the new password logs in" 0

# -- break-glass (alice is a clinician, not on p2's care team)
cli "" breakglass p2 --reason "short"
check_rc "breakglass with a too short reason is a usage error" 2
cli "" breakglass p2 --reason "cardiac arrest in the ER, records needed"
check_rc "breakglass p2 with a reason" 0
check "breakglass prints the grant's expiry" grep -Eq 'granted until [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z \(grant [0-9]+\)' <<<"$OUT"
check_contains "breakglass warns that access is audited" "audited" "$OUT"
cli "" obs list p2
check_rc "obs list p2 under break-glass" 0

# -- user list
admin "" user list --json
check_rc "user list --json" 0
check_eq "alice has a second factor (mfa true)" "true" \
    "$(jget "$OUT" '[u for u in j["users"] if u["id"] == "alice"][0]["mfa"]')"
admin "" user list
check_contains "user list is a table" "LAST-LOGIN" "$OUT"
check "user list shows alice with MFA yes" grep -Eq '^alice +user +clinician +no +yes ' <<<"$OUT"

# -- service tokens
admin "" user add svc1 --service
check_rc "user add svc1 --service" 0
admin "" token add svc1 --scope obs.read --patients p1 --out "$VG_TMP/svc1.token"
check_rc "token add --out" 0
check_eq "the token file is 0600" 600 "$(stat -c %a "$VG_TMP/svc1.token" 2>&1)"
check_not_contains "the token is not printed" "$(cat "$VG_TMP/svc1.token")" "$OUT$ERR"
api GET "/fhir/Observation?patient=p1" "" "$(cat "$VG_TMP/svc1.token")"
check_eq "the service token reads p1" 200 "$API_STATUS"
api GET "/fhir/Observation?patient=p2" "" "$(cat "$VG_TMP/svc1.token")"
check_eq "... but not p2" 403 "$API_STATUS"
admin "" token add svc1 --scope obs.read --out "$VG_TMP/svc1.token"
check_rc "token add does not overwrite an existing file" 1
admin "" token add svc1 --scope obs.read,obs.subscribe --expires-in 3600
check_rc "token add without --out" 0
check_eq "... prints only the token on stdout" 1 "$(grep -c . <<<"$OUT")"
TID=$(sed -n 's/^token \([0-9a-f]*\) for svc1.*/\1/p' <<<"$ERR")
api GET "/fhir/Observation?patient=p2" "" "$OUT"
check_eq "... and it works" 200 "$API_STATUS"
admin "" token revoke "$TID"
check_rc "token revoke $TID" 0
api GET "/fhir/Observation?patient=p2" "" "$OUT"
check_eq "the revoked token is refused" 401 "$API_STATUS"
admin "" token add svc1 --scope obs.write
check_rc "an unknown scope is a usage error" 2

# -- certificates, roles, new second factor, disable
admin "" user cert alice --out "$VG_TMP/alice-certs"
check_rc "user cert alice --out DIR" 0
check "user cert writes alice.pem, alice.key and ca.pem" test -s "$VG_TMP/alice-certs/alice.pem" -a \
    -s "$VG_TMP/alice-certs/alice.key" -a -s "$VG_TMP/alice-certs/ca.pem"
check_eq "the key is 0600" 600 "$(stat -c %a "$VG_TMP/alice-certs/alice.key" 2>&1)"
admin "" user role alice clinician,nurse
check_rc "user role alice clinician,nurse" 0
admin "" user totp alice
check_rc "user totp alice" 0
NEWURI=$(grep -o 'otpauth://[^ ]*' <<<"$OUT" | head -1)
check_contains "user totp prints a new URI" "otpauth://" "$NEWURI"
if [ "$NEWURI" != "$URI" ]; then ok "... a different one"; else not_ok "... a different one" "same URI"; fi
admin "" careteam end "$ASSIGN"
check_rc "careteam end $ASSIGN" 0
admin "" user disable alice
check_rc "user disable alice" 0
cli "" obs list p1
check_rc "a disabled user's session is refused" 1
check_contains "... with 401" "401" "$ERR"
cli "" logout
check_rc "logout of a revoked session still removes it" 0
check "... the session file is gone" test ! -e "$SESSION"

# Nothing ever printed a password or a session token.
check_not_contains "no output holds the password" "$PW" "$(cat "$ALL_OUT")"
check_not_contains "no output holds the new password" "$NEWPW" "$(cat "$ALL_OUT")"
check_not_contains "no output holds the session token" "$TOKEN" "$(cat "$ALL_OUT")"
vg_finish
