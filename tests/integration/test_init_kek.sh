#!/usr/bin/env bash
# `vigil init` refuses a non-empty directory; `vigil serve` refuses to start
# without the key-encryption key the database was made with, and never
# replaces it.
. "$(dirname "$0")/lib.sh"

# -- init
mkdir -p "$VG_TMP/occupied"
echo "precious" >"$VG_TMP/occupied/notes.txt"
if "$VIGIL" init "$VG_TMP/occupied" </dev/null >"$VG_TMP/init.out" 2>"$VG_TMP/init.err"; then
    not_ok "init refuses a non-empty directory" "exit 0"
else
    ok "init refuses a non-empty directory (exit $?)"
fi
cat "$VG_TMP/init.err" >>"$VG_CLI_LOG"
check "init explains that the directory is not empty" grep -qi "not empty" "$VG_TMP/init.err"
check_eq "init left the directory as it was" "notes.txt" "$(ls -A "$VG_TMP/occupied" | tr '\n' ' ' | sed 's/ $//')"
check_eq "init left the file alone" "precious" "$(cat "$VG_TMP/occupied/notes.txt")"

vg_start
check_eq "init makes the data directory 0700" 700 "$(stat -c %a "$VG_DIR")"
check_eq "keys/kek is 32 bytes, 0600" "32 600" "$(stat -c '%s %a' "$VG_DIR/keys/kek")"
check_eq "admin.token and pki/ca.key are 0600" "600 600" \
    "$(stat -c %a "$VG_DIR/admin.token" "$VG_DIR/pki/ca.key" | tr '\n' ' ' | sed 's/ $//')"
if "$VIGIL" init "$VG_DIR" </dev/null >/dev/null 2>>"$VG_CLI_LOG"; then
    not_ok "init refuses an existing data directory" "exit 0"
else
    ok "init refuses an existing data directory"
fi

vg_patient p1
vg_enroll dev1
vg_assign dev1 p1
pub dev1 "$(reading 8867-4 88 /min)" || bail "dev1 publishes heart rate 88" "$PUB_OUT"
vg_stop

cp -p "$VG_DIR/keys/kek" "$VG_TMP/kek.orig"
db_sum=$(sha256sum <"$VG_DIR/vigil.db")

# serve_refused "what" NEEDLE: serve must exit non-zero (quickly, without
# listening) with NEEDLE in its message.
serve_refused() {
    local what=$1 needle=$2 rc
    VG_SERVE_COUNT=$((VG_SERVE_COUNT + 1))
    local log="$VG_TMP/server$VG_SERVE_COUNT.log"
    timeout -k 5 "$(vg_t 20)" "$VIGIL" serve "$VG_DIR" </dev/null >"$log" 2>&1
    rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        not_ok "$what: serve refuses to start" "it was still running after $(vg_t 20) s"
    elif [ $rc -eq 0 ]; then
        not_ok "$what: serve refuses to start" "exit 0"
    else
        ok "$what: serve refuses to start (exit $rc)"
    fi
    if grep -qi -- "$needle" "$log"; then
        ok "$what: the message says '$needle'"
    else
        not_ok "$what: the message says '$needle'" "got: $(tr '\n' ' ' <"$log")"
    fi
    if vg_healthz; then not_ok "$what: nothing listens on the API port" "/healthz answered"; else
        ok "$what: nothing listens on the API port"; fi
}

# -- missing KEK
mv "$VG_DIR/keys/kek" "$VG_TMP/kek.moved"
serve_refused "missing keys/kek" kek
check "missing keys/kek: serve did not create a new key" test ! -e "$VG_DIR/keys/kek"

# -- a different KEK
head -c 32 /dev/urandom >"$VG_DIR/keys/kek"
chmod 600 "$VG_DIR/keys/kek"
serve_refused "a different keys/kek" "does not open"
check "a different keys/kek: serve left the key file alone" \
    bash -c "[ \"\$(stat -c %s '$VG_DIR/keys/kek')\" = 32 ] && ! cmp -s '$VG_DIR/keys/kek' '$VG_TMP/kek.orig'"

# -- the right KEK, but readable by others
cp -p "$VG_TMP/kek.orig" "$VG_DIR/keys/kek"
chmod 644 "$VG_DIR/keys/kek"
serve_refused "keys/kek readable by others (0644)" "chmod 600"

# -- the right KEK, truncated
head -c 16 "$VG_TMP/kek.orig" >"$VG_DIR/keys/kek"
chmod 600 "$VG_DIR/keys/kek"
serve_refused "truncated keys/kek (16 bytes)" "32 bytes"

check_eq "the refused starts left vigil.db untouched" "$db_sum" "$(sha256sum <"$VG_DIR/vigil.db")"

# -- restored: starts, and the old reading opens
cp -p "$VG_TMP/kek.orig" "$VG_DIR/keys/kek"
chmod 600 "$VG_DIR/keys/kek"
if vg_serve; then
    ok "restored keys/kek: serve starts"
    if out=$(vg_cli obs list p1); then
        check "restored keys/kek: the earlier reading (88 /min) opens" grep -Eq '8867-4 .* 88 /min' <<<"$out"
    else
        not_ok "restored keys/kek: vigil obs list exits 0" "$VG_CLI_ERR"
    fi
    vg_stop
fi
vg_finish
