# shellcheck shell=bash
# tests/integration/lib.sh — helpers for vigil's integration tests.
#
# Source it from a test script:
#     . "$(dirname "$0")/lib.sh"
#     vg_start                 # init + serve on free ports, waits for /healthz
#     ...checks...
#     vg_finish                # stops what is still running, prints, exits
#
# Environment:
#   VIGIL              the binary under test (default: build/vigil of this checkout)
#   VG_TIMEOUT_SCALE   multiplies every timeout (default 1; 3 for ASan builds)
#   VG_KEEP=1          keep the per-test temporary directory for inspection
#   VG_KEEP_ON_FAIL=1  keep it only when a check failed
#
# Output: one line per check, "ok - what" or "not ok - what: why".
# A test exits 0 when every check passed, 1 otherwise.

set -u
set -o pipefail

PY=/usr/bin/python3 # Debian's python3 with python3-paho-mqtt, not the first on PATH
IT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Default: build/vigil of this checkout (/work/main/build/vigil).
VIGIL=${VIGIL:-$(cd "$IT_DIR/../.." && pwd)/build/vigil}
VG_TEST_NAME=$(basename "${0%.sh}")

VG_CHECKS_OK=0
VG_CHECKS_FAILED=0
VG_PID=""            # the server this test started, if running
VG_DIR=""            # its data directory
VG_LOG=""            # its stderr
VG_MQTT_PORT=""
VG_API_PORT=""
VG_SERVE_COUNT=0

# ---- timeouts ---------------------------------------------------------------

if [ -z "${VG_TIMEOUT_SCALE:-}" ]; then
    VG_TIMEOUT_SCALE=1
    # An ASan/UBSan binary is several times slower; give it room.
    if [ -f "$VIGIL" ] && grep -q -a -m1 '__asan_init' "$VIGIL" 2>/dev/null; then
        VG_TIMEOUT_SCALE=3
    fi
fi
vg_t() { echo $(($1 * VG_TIMEOUT_SCALE)); } # vg_t SECONDS -> scaled seconds

# ---- checks -----------------------------------------------------------------

ok() {
    VG_CHECKS_OK=$((VG_CHECKS_OK + 1))
    echo "ok - $1"
}

not_ok() {
    VG_CHECKS_FAILED=$((VG_CHECKS_FAILED + 1))
    echo "not ok - $1${2:+: $2}"
}

# check "what" COMMAND...   — ok when COMMAND exits 0
check() {
    local what=$1
    shift
    local out
    if out=$("$@" 2>&1); then
        ok "$what"
    else
        not_ok "$what" "command failed: $* ${out:+-> $(echo "$out" | tail -3 | tr '\n' ' ')}"
    fi
}

# check_eq "what" EXPECTED ACTUAL
check_eq() {
    if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected '$2', got '$3'"; fi
}

# check_contains "what" NEEDLE HAYSTACK
check_contains() {
    case "$3" in
    *"$2"*) ok "$1" ;;
    *) not_ok "$1" "'$2' not found in: $(printf '%s' "$3" | head -c 400 | tr '\n' ' ')" ;;
    esac
}

check_not_contains() {
    case "$3" in
    *"$2"*) not_ok "$1" "'$2' unexpectedly found in: $(printf '%s' "$3" | head -c 400 | tr '\n' ' ')" ;;
    *) ok "$1" ;;
    esac
}

# Stops the test right away (setup that later checks depend on failed).
bail() {
    not_ok "$1" "${2:-}"
    echo "# bailing out: the remaining checks of $VG_TEST_NAME depend on this"
    vg_finish
}

die() {
    echo "$VG_TEST_NAME: $*" >&2
    exit 2
}

# ---- environment ------------------------------------------------------------

vg_require_tools() {
    local missing=() t
    for t in mosquitto_pub sqlite3 openssl curl timeout; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    [ -x "$PY" ] || missing+=("$PY")
    if [ ${#missing[@]} -ne 0 ]; then
        die "missing tools: ${missing[*]} (run scripts/install-deps)"
    fi
    "$PY" -c 'import paho.mqtt.client' 2>/dev/null ||
        die "$PY cannot import paho.mqtt (install python3-paho-mqtt)"
    [ -x "$VIGIL" ] || die "vigil binary not found or not executable: $VIGIL (set VIGIL=...)"
}

vg_require_tools

VG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/vigil-it-$VG_TEST_NAME.XXXXXX") || die "mktemp failed"
VG_CERTS="$VG_TMP/certs"
VG_CLI_LOG="$VG_TMP/cli.stderr"
: >"$VG_CLI_LOG"

# ---- cleanup: never leave a server behind ----------------------------------

vg_kill_server() {
    if [ -n "$VG_PID" ] && kill -0 "$VG_PID" 2>/dev/null; then
        kill -TERM "$VG_PID" 2>/dev/null
        local i
        for ((i = 0; i < 50; i++)); do
            kill -0 "$VG_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$VG_PID" 2>/dev/null
        wait "$VG_PID" 2>/dev/null
    fi
    VG_PID=""
}

vg_cleanup() {
    vg_kill_server
    if [ "${VG_KEEP:-0}" = 1 ] || { [ "$VG_CHECKS_FAILED" -ne 0 ] && [ "${VG_KEEP_ON_FAIL:-0}" = 1 ]; }; then
        echo "# kept $VG_TMP" >&2
    else
        rm -rf "$VG_TMP"
    fi
}
trap vg_cleanup EXIT
trap 'echo "# $VG_TEST_NAME: interrupted" >&2; exit 130' INT TERM HUP

# Sanitizer reports anywhere in what vigil wrote fail the test.
vg_check_sanitizers() {
    local f found=""
    for f in "$VG_TMP"/server*.log "$VG_CLI_LOG"; do
        [ -f "$f" ] || continue
        if grep -a -q -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer' "$f"; then
            found="$found $(basename "$f")"
        fi
    done
    if [ -n "$found" ]; then
        not_ok "no sanitizer reports" "found in:$found"
        for f in $found; do
            grep -a -E -A12 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$VG_TMP/$f" | head -40 | sed 's/^/#   /'
        done
    fi
}

# Prints the summary and exits with the test's status.
vg_finish() {
    vg_kill_server
    vg_check_sanitizers
    if [ "$VG_CHECKS_FAILED" -ne 0 ]; then
        local f
        for f in "$VG_TMP"/server*.log; do
            [ -f "$f" ] || continue
            echo "# --- last lines of $(basename "$f") ---"
            tail -15 "$f" | sed 's/^/#   /'
        done
    fi
    echo "# $VG_TEST_NAME: $VG_CHECKS_OK ok, $VG_CHECKS_FAILED failed"
    [ "$VG_CHECKS_FAILED" -eq 0 ] && exit 0
    exit 1
}

# ---- ports ------------------------------------------------------------------

# Prints N free TCP ports on 127.0.0.1 (bound to port 0, then released).
vg_free_ports() {
    "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

# ---- the server -------------------------------------------------------------

# vg_init [DIR]: `vigil init` a data directory and point its listeners at two
# free ports (so `serve DIR` and `-d DIR` agree).
vg_init() {
    VG_DIR=${1:-$VG_TMP/data}
    local out
    if ! out=$("$VIGIL" init "$VG_DIR" 2>&1); then
        echo "$out" >>"$VG_CLI_LOG"
        bail "vigil init $VG_DIR" "$out"
    fi
    vg_set_ports
}

# vg_set_ports: two fresh free ports, written to the [listen] lines.
vg_set_ports() {
    read -r VG_MQTT_PORT VG_API_PORT < <(vg_free_ports 2)
    [ -n "$VG_API_PORT" ] || bail "pick free ports" "python3 port picker failed"
    sed -i -e "s/^mqtt = .*/mqtt = 127.0.0.1:$VG_MQTT_PORT/" \
        -e "s/^api = .*/api = 127.0.0.1:$VG_API_PORT/" "$VG_DIR/vigil.conf"
    grep -q "^mqtt = 127.0.0.1:$VG_MQTT_PORT\$" "$VG_DIR/vigil.conf" &&
        grep -q "^api = 127.0.0.1:$VG_API_PORT\$" "$VG_DIR/vigil.conf" ||
        bail "set test ports in vigil.conf" "the [listen] lines were not found"
}

vg_healthz() {
    curl -sS -f --max-time "$(vg_t 3)" --cacert "$VG_DIR/pki/ca.pem" \
        "https://127.0.0.1:$VG_API_PORT/healthz" >/dev/null 2>&1
}

# vg_serve [extra serve args]: starts `vigil serve` on VG_DIR in the
# background (stderr to $VG_TMP/serverN.log) and waits for /healthz.
# Returns non-zero (after reporting) when the server does not come up.
vg_serve() {
    [ -z "$VG_PID" ] || die "vg_serve: a server is already running (pid $VG_PID)"
    VG_SERVE_COUNT=$((VG_SERVE_COUNT + 1))
    VG_LOG="$VG_TMP/server$VG_SERVE_COUNT.log"
    local listen=(--mqtt-listen "127.0.0.1:$VG_MQTT_PORT" --api-listen "127.0.0.1:$VG_API_PORT")
    [ "${VG_CONF_ONLY:-0}" = 1 ] && listen=()
    "$VIGIL" serve "$VG_DIR" "${listen[@]}" "$@" </dev/null >>"$VG_LOG" 2>&1 &
    VG_PID=$!
    local deadline=$((SECONDS + $(vg_t 10)))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$VG_PID" 2>/dev/null; then
            wait "$VG_PID"
            local rc=$?
            VG_PID=""
            # Someone took a port between picking and binding it: new ports.
            if grep -q "cannot listen" "$VG_LOG" && [ "${VG_PORT_RETRY:-0}" -lt 3 ]; then
                echo "# ports $VG_MQTT_PORT/$VG_API_PORT taken; retrying with others"
                vg_set_ports
                VG_PORT_RETRY=$((${VG_PORT_RETRY:-0} + 1)) vg_serve "$@"
                return $?
            fi
            not_ok "server starts (serve #$VG_SERVE_COUNT)" "exited with status $rc: $(tail -3 "$VG_LOG" | tr '\n' ' ')"
            return 1
        fi
        if vg_healthz; then
            return 0
        fi
        sleep 0.1
    done
    not_ok "server starts (serve #$VG_SERVE_COUNT)" "/healthz did not answer within $(vg_t 10) s"
    vg_kill_server
    return 1
}

# vg_start: init + serve; bails out when the server cannot start. Then
# makes the two principals most tests read with (separation of duties
# keeps the bootstrap admin away from patient data and the audit trail):
#   it-reader   a service principal whose token ($VG_TMP/reader.token) has
#               obs.read and obs.subscribe for every patient;
#   it-auditor  a person with the auditor role, logged in with password and
#               authenticator code ($VG_TMP/auditor.token is its session).
vg_start() {
    vg_init "$@"
    vg_serve || bail "server running" "cannot continue without a server"
    [ "${VG_NO_PRINCIPALS:-0}" = 1 ] && return 0
    vg_make_principals
}

vg_make_principals() {
    vg_service_token it-reader '["obs.read","obs.subscribe"]' >"$VG_TMP/reader.token" ||
        bail "make the it-reader service token" "$API_STATUS $API_BODY"
    vg_person it-auditor '["auditor"]' >"$VG_TMP/auditor.token" ||
        bail "make and log in the it-auditor person" "$API_STATUS $API_BODY"
}

# vg_service_token ID SCOPES_JSON [PATIENTS_JSON]: a service principal ID
# (role integration) and a token for it, printed.
vg_service_token() {
    local pat=""
    [ -n "${3:-}" ] && pat=",\"patients\":$3"
    api POST /api/v1/users "{\"id\":\"$1\",\"kind\":\"service\",\"roles\":[\"integration\"]}"
    [ "$API_STATUS" = 201 ] || [ "$API_STATUS" = 409 ] || return 1
    api POST /api/v1/tokens "{\"principal\":\"$1\",\"scopes\":$2$pat}"
    [ "$API_STATUS" = 201 ] || return 1
    jget "$API_BODY" 'j["token"]'
}

# vg_person ID ROLES_JSON: a person with a random password; logs in and
# prints the session token. Keeps $VG_TMP/ID.password and $VG_TMP/ID.totp
# (the otpauth URI) for later logins (vg_login ID).
vg_person() {
    local pw
    pw="it-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    printf '%s' "$pw" >"$VG_TMP/$1.password"
    api POST /api/v1/users "{\"id\":\"$1\",\"roles\":$2,\"password\":\"$pw\"}"
    [ "$API_STATUS" = 201 ] || return 1
    jget "$API_BODY" 'j["totp_uri"]' >"$VG_TMP/$1.totp"
    # The code of the previous step (inside the ±1 window): later logins of
    # the same person can use the current and the next step, since a code
    # is accepted only for a step later than the last one used.
    vg_login "$1" -1
}

# vg_login ID [STEP_OFFSET]: logs ID in (password + current code); prints
# the session token, or fails with API_STATUS/API_BODY set.
vg_login() {
    local code
    code=$("$PY" "$IT_DIR/totp.py" "$(cat "$VG_TMP/$1.totp")" --step-offset "${2:-0}")
    api POST /api/v1/login "{\"user\":\"$1\",\"password\":\"$(cat "$VG_TMP/$1.password")\",\"totp\":\"$code\"}" -
    [ "$API_STATUS" = 200 ] || return 1
    jget "$API_BODY" 'j["token"]'
}

# vg_stop: SIGTERM, wait, and assert a clean exit (status 0) as a check.
# Sets VG_STOP_STATUS.
vg_stop() {
    VG_STOP_STATUS=""
    if [ -z "$VG_PID" ]; then
        not_ok "server stops cleanly on SIGTERM" "no server running"
        return 1
    fi
    if ! kill -0 "$VG_PID" 2>/dev/null; then
        wait "$VG_PID"
        VG_STOP_STATUS=$?
        VG_PID=""
        not_ok "server stops cleanly on SIGTERM" "it had already exited with status $VG_STOP_STATUS"
        return 1
    fi
    kill -TERM "$VG_PID"
    local deadline=$((SECONDS + $(vg_t 15)))
    while kill -0 "$VG_PID" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.05
    done
    if kill -0 "$VG_PID" 2>/dev/null; then
        not_ok "server stops cleanly on SIGTERM" "still running $(vg_t 15) s after SIGTERM"
        vg_kill_server
        return 1
    fi
    wait "$VG_PID"
    VG_STOP_STATUS=$?
    VG_PID=""
    if [ "$VG_STOP_STATUS" -eq 0 ]; then
        ok "server stops cleanly on SIGTERM (exit 0)"
    else
        not_ok "server stops cleanly on SIGTERM" "exit status $VG_STOP_STATUS"
        return 1
    fi
}

# ---- CLI clients ------------------------------------------------------------

# vg_cli ARGS...: `vigil ARGS... -d VG_DIR`; stdout to stdout, stderr kept in
# VG_CLI_ERR (and the CLI log, for sanitizer scanning). Separation of
# duties: the bootstrap admin token (-d) sees no patient data and no audit
# trail, so `obs` runs with the test's reader token and `audit` with its
# auditor's session (see vg_start), unless VG_CLI_TOKEN_FILE says otherwise.
vg_cli() {
    local errf="$VG_TMP/cli.last.stderr" rc tokf=${VG_CLI_TOKEN_FILE:-}
    if [ -z "$tokf" ]; then
        case "$1" in
        obs) tokf=$VG_TMP/reader.token ;;
        audit) [ "${2:-}" = verify ] && [ -d "${3:-}" ] || tokf=$VG_TMP/auditor.token ;;
        esac
    fi
    local extra=()
    [ -n "$tokf" ] && [ -f "$tokf" ] && extra=(--token-file "$tokf")
    timeout -k 5 "$(vg_t 30)" "$VIGIL" "$@" -d "$VG_DIR" "${extra[@]}" </dev/null 2>"$errf"
    rc=$?
    VG_CLI_ERR=$(cat "$errf")
    cat "$errf" >>"$VG_CLI_LOG"
    return $rc
}

# vg_patient ID / vg_enroll DEVICE / vg_assign DEVICE PATIENT: setup steps
# that bail out when they fail.
vg_patient() {
    vg_cli patient add "$1" >/dev/null || bail "vigil patient add $1" "$VG_CLI_ERR"
}

vg_enroll() {
    vg_cli device enroll "$1" --out "$VG_CERTS" >/dev/null || bail "vigil device enroll $1" "$VG_CLI_ERR"
    [ -s "$VG_CERTS/$1.pem" ] && [ -s "$VG_CERTS/$1.key" ] && [ -s "$VG_CERTS/ca.pem" ] ||
        bail "vigil device enroll $1 writes $1.pem, $1.key, ca.pem" "$(ls -l "$VG_CERTS" 2>&1)"
}

vg_assign() {
    vg_cli device assign "$1" "$2" >/dev/null || bail "vigil device assign $1 $2" "$VG_CLI_ERR"
}

# ---- MQTT -------------------------------------------------------------------

# pub [-t TOPIC] [-q QOS] [-i CLIENTID] DEVICE PAYLOAD [extra mosquitto_pub args]
# Publishes with DEVICE's certificate; returns mosquitto_pub's status.
# Its output (with -d debug lines) is in PUB_OUT.
pub() {
    local topic="" qos=1 cid=""
    while [ $# -gt 0 ]; do
        case "$1" in
        -t) topic=$2; shift 2 ;;
        -q) qos=$2; shift 2 ;;
        -i) cid=$2; shift 2 ;;
        *) break ;;
        esac
    done
    local dev=$1 payload=$2
    shift 2
    PUB_OUT=$(timeout -k 5 "$(vg_t 20)" mosquitto_pub -d -h 127.0.0.1 -p "$VG_MQTT_PORT" \
        --cafile "$VG_DIR/pki/ca.pem" --cert "$VG_CERTS/$dev.pem" --key "$VG_CERTS/$dev.key" \
        -i "${cid:-$dev}" -q "$qos" -t "${topic:-vigil/v1/d/$dev/obs}" -m "$payload" "$@" \
        </dev/null 2>&1)
}

# mqtt_py ARGS...: the paho helper (tests/integration/mqtt_client.py); prints
# its JSON result.
mqtt_py() {
    timeout -k 5 "$(vg_t 60)" "$PY" "$IT_DIR/mqtt_client.py" --timeout "${VG_MQTT_TIMEOUT:-$(vg_t 10)}" "$@" </dev/null
}

# mqtt_session DEVICE [--id CLIENTID] [session args...]: a paho session with
# DEVICE's certificate (client id = DEVICE unless --id is given).
mqtt_session() {
    local dev=$1
    shift
    mqtt_py session --port "$VG_MQTT_PORT" --ca "$VG_DIR/pki/ca.pem" \
        --cert "$VG_CERTS/$dev.pem" --key "$VG_CERTS/$dev.key" --id "$dev" "$@"
}

# jget JSON EXPR: evaluates a Python expression over the parsed JSON `j`.
jget() {
    "$PY" -c '
import json, sys
try:
    j = json.loads(sys.argv[1])
    r = eval(sys.argv[2])
    print(r if isinstance(r, str) else json.dumps(r))
except Exception as e:
    print("jget-error: %s: %s in %r" % (type(e).__name__, e, sys.argv[1][:300]))
' "$1" "$2"
}

# reading JSON for code/value/unit with an optional time
reading() {
    if [ $# -ge 4 ]; then
        printf '{"code":"%s","value":%s,"unit":"%s","time":"%s"}' "$1" "$2" "$3" "$4"
    else
        printf '{"code":"%s","value":%s,"unit":"%s"}' "$1" "$2" "$3"
    fi
}

now_rfc3339() { date -u -d "${1:-now}" +%Y-%m-%dT%H:%M:%SZ; }

# ---- database ---------------------------------------------------------------

# db SQL: runs SQL on VG_DIR/vigil.db (waits on a busy database).
db() {
    sqlite3 -batch -cmd ".timeout 10000" "$VG_DIR/vigil.db" "$1" </dev/null
}

readings_count() { db "SELECT count(*) FROM readings;"; }

audit_count() { # audit_count "WHERE-clause"
    db "SELECT count(*) FROM audit WHERE $1;"
}

# check_nothing_stored "what" BEFORE: readings count unchanged
check_nothing_stored() {
    local now
    now=$(readings_count)
    check_eq "$1: nothing stored" "$2" "$now"
}

# ---- HTTPS API --------------------------------------------------------------

# api METHOD PATH [BODY] [TOKEN|-]: sets API_STATUS, API_CTYPE, API_BODY.
# TOKEN defaults to the admin token; "-" sends no Authorization header.
api() {
    local method=$1 path=$2 body=${3:-} token=${4:-}
    if [ -z "$token" ]; then
        # The same separation of duties as vg_cli: patient data with the
        # reader's token, the audit trail with the auditor's session.
        case "$path" in
        /fhir/*) [ -f "$VG_TMP/reader.token" ] && token=$(cat "$VG_TMP/reader.token") ;;
        /api/v1/audit*) [ -f "$VG_TMP/auditor.token" ] && token=$(cat "$VG_TMP/auditor.token") ;;
        esac
    fi
    [ -n "$token" ] || token=$(cat "$VG_DIR/admin.token")
    local args=(-sS --max-time "$(vg_t 15)" --cacert "$VG_DIR/pki/ca.pem" -X "$method"
        -o "$VG_TMP/api.body" -w '%{http_code} %{content_type}')
    [ "$token" = "-" ] || args+=(-H "Authorization: Bearer $token")
    [ -z "$body" ] || args+=(-H "Content-Type: application/json" --data-binary "$body")
    local meta
    rm -f "$VG_TMP/api.body"
    meta=$(curl "${args[@]}" "https://127.0.0.1:$VG_API_PORT$path" 2>"$VG_TMP/api.err")
    API_STATUS=${meta%% *}
    API_CTYPE=${meta#* }
    API_BODY=$(cat "$VG_TMP/api.body" 2>/dev/null)
}

# ---- polling ----------------------------------------------------------------

# vg_wait_for SECONDS COMMAND...: retries COMMAND until it succeeds or the
# (scaled) time is up; returns its last status.
vg_wait_for() {
    local deadline=$((SECONDS + $(vg_t "$1")))
    shift
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# audit_at_least N "WHERE-clause": for vg_wait_for (the writer commits
# audit records asynchronously).
audit_at_least() { [ "$(audit_count "$2")" -ge "$1" ]; }

# ---- throwaway PKI (openssl, at test time) -----------------------------------

# vg_mint_ca PREFIX "CN": a self-signed EC P-256 CA in PREFIX.pem/PREFIX.key
vg_mint_ca() {
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1.key" -out "$1.pem" -subj "/CN=$2" -days 2 \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1 ||
        bail "openssl: make a throwaway CA $2"
}

# vg_mint_client CA_PREFIX CN OUT_PREFIX: a device-style client certificate
# (EC P-256, clientAuth) for CN signed by the CA in CA_PREFIX.pem/.key.
vg_mint_client() {
    local ext="$VG_TMP/client.ext"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=clientAuth" "subjectKeyIdentifier=hash" \
        "authorityKeyIdentifier=keyid:always" >"$ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$3.key" -out "$3.csr" -subj "/CN=$2" >/dev/null 2>&1 &&
        openssl x509 -req -in "$3.csr" -CA "$1.pem" -CAkey "$1.key" -CAcreateserial \
            -CAserial "$VG_TMP/serial.srl" -days 2 -extfile "$ext" -out "$3.pem" >/dev/null 2>&1 &&
        chmod 600 "$3.key" ||
        bail "openssl: make a client certificate for $2"
}

# An OpenSSL configuration that caps every client linked with OpenSSL at
# TLS 1.2. (libmosquitto's --tls-version tlsv1.2 is a floor, not a cap: by
# itself it still negotiates TLS 1.3.)
vg_tls12_openssl_conf() {
    local f="$VG_TMP/tls12-only.cnf"
    printf '%s\n' "openssl_conf = openssl_init" "[openssl_init]" "ssl_conf = ssl_sect" \
        "[ssl_sect]" "system_default = system_default_sect" "[system_default_sect]" \
        "MaxProtocol = TLSv1.2" >"$f"
    echo "$f"
}
