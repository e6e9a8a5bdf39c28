#!/usr/bin/env bash
# The key-encryption key in a PKCS#11 token (SoftHSM2): `vigil init
# --kek-pkcs11-*` keeps only keys/kek.p11 (the KEK encrypted by a token key
# that never leaves the token), `vigil serve` decrypts it in the token at
# start, readings survive a restart, and a wrong PIN, a PIN file others can
# read, a missing or altered kek.p11 or a deleted token stop the start with
# a clear message — never a fresh key over the old data. Backup and restore
# with --kek-p11 give a working copy, again without a clear KEK.
#
# SoftHSM2 is required (scripts/install-deps installs it); its tokens live
# in this test's temporary directory. PINs are random and never printed.
. "$(dirname "$0")/lib.sh"

MODULE=/usr/lib/softhsm/libsofthsm2.so
TOKEN=vigil-it
if ! command -v softhsm2-util >/dev/null 2>&1 || [ ! -r "$MODULE" ]; then
    bail "SoftHSM2 is installed" "no softhsm2-util or $MODULE (apt-get install softhsm2)"
fi

umask 077
export SOFTHSM2_CONF="$VG_TMP/softhsm2.conf"
mkdir -p "$VG_TMP/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$VG_TMP/tokens" >"$SOFTHSM2_CONF"
rand_pin() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
rand_pin >"$VG_TMP/so.pin"
rand_pin >"$VG_TMP/user.pin"
chmod 600 "$VG_TMP/so.pin" "$VG_TMP/user.pin"
softhsm2-util --init-token --free --label "$TOKEN" --so-pin "$(cat "$VG_TMP/so.pin")" \
    --pin "$(cat "$VG_TMP/user.pin")" >/dev/null 2>"$VG_TMP/softhsm.err" ||
    bail "softhsm2-util creates token $TOKEN" "$(tr '\n' ' ' <"$VG_TMP/softhsm.err")"

# -- init in token mode
VG_DIR=$VG_TMP/data
out=$("$VIGIL" init "$VG_DIR" --kek-pkcs11-module "$MODULE" --kek-pkcs11-token "$TOKEN" \
    --kek-pkcs11-pin-file "$VG_TMP/user.pin" </dev/null 2>&1)
rc=$?
echo "$out" >>"$VG_CLI_LOG"
[ $rc -eq 0 ] || bail "vigil init --kek-pkcs11-* exits 0" "$out"
ok "vigil init --kek-pkcs11-* exits 0"
check_contains "init names the token that keeps the KEK" "PKCS#11 token '$TOKEN'" "$out"
check "init made no clear keys/kek" test ! -e "$VG_DIR/keys/kek"
# magic 8 + version 1 + length 1 + "vigil-kek-wrap" 14 + IV 12 + ciphertext and tag 48
check_eq "keys/kek.p11 is 84 bytes, 0600" "84 600" "$(stat -c '%s %a' "$VG_DIR/keys/kek.p11")"
check_eq "keys/kek.p11 starts with its magic" "VGKEKP11" "$(head -c 8 "$VG_DIR/keys/kek.p11")"
check "vigil.conf records kek = pkcs11" grep -q '^kek = pkcs11$' "$VG_DIR/vigil.conf"
check "vigil.conf records the token label" grep -q "^pkcs11_token = $TOKEN\$" "$VG_DIR/vigil.conf"
check "vigil.conf records where the PIN file is" \
    grep -qF "pkcs11_pin_file = $VG_TMP/user.pin" "$VG_DIR/vigil.conf"
if grep -rqF "$(cat "$VG_TMP/user.pin")" "$VG_DIR" || grep -qF "$(cat "$VG_TMP/user.pin")" <<<"$out"; then
    not_ok "the PIN is in no file of the data directory and not in init's output"
else
    ok "the PIN is in no file of the data directory and not in init's output"
fi

# -- init refusals: nothing is created when the token cannot be used
printf 'not-the-pin' >"$VG_TMP/wrong.pin"
chmod 600 "$VG_TMP/wrong.pin"
out=$("$VIGIL" init "$VG_TMP/data-wrongpin" --kek-pkcs11-module "$MODULE" \
    --kek-pkcs11-token "$TOKEN" --kek-pkcs11-pin-file "$VG_TMP/wrong.pin" </dev/null 2>&1)
rc=$?
echo "$out" >>"$VG_CLI_LOG"
check "init with a wrong PIN fails" test $rc -ne 0
check_contains "init with a wrong PIN says CKR_PIN_INCORRECT" "CKR_PIN_INCORRECT" "$out"
check "init with a wrong PIN created nothing" test ! -e "$VG_TMP/data-wrongpin"
out=$("$VIGIL" init "$VG_TMP/data-notoken" --kek-pkcs11-module "$MODULE" \
    --kek-pkcs11-token no-such-token --kek-pkcs11-pin-file "$VG_TMP/user.pin" </dev/null 2>&1)
rc=$?
echo "$out" >>"$VG_CLI_LOG"
check "init with an unknown token fails" test $rc -ne 0
check_contains "init with an unknown token says CKR_TOKEN_NOT_PRESENT" "CKR_TOKEN_NOT_PRESENT" "$out"
out=$("$VIGIL" init "$VG_TMP/data-nopin" --kek-pkcs11-module "$MODULE" \
    --kek-pkcs11-token "$TOKEN" </dev/null 2>&1)
check_eq "init with a module and token but no PIN source is a usage error" 2 "$?"

# -- serve, store a reading, read it back, restart, read it again
vg_set_ports
vg_serve || bail "serve starts with the KEK from the token"
ok "serve starts with the KEK from the token"
vg_make_principals
vg_patient p1
vg_enroll dev1
vg_assign dev1 p1
t1=$(now_rfc3339 "-1 minutes")
pub dev1 "$(reading 8867-4 77 /min "$t1")" || bail "dev1 publishes heart rate 77" "$PUB_OUT"
check_contains "the publish is acknowledged" "received PUBACK" "$PUB_OUT"
if out=$(vg_cli obs list p1); then
    check "the reading (77 /min) reads back through the API" grep -Eq '8867-4 .* 77 /min' <<<"$out"
else
    not_ok "vigil obs list p1 exits 0" "$VG_CLI_ERR"
fi
vg_stop
vg_serve || bail "serve starts again after a stop"
ok "serve starts again after a stop"
api GET "/fhir/Observation?patient=p1"
check_eq "after the restart GET /fhir/Observation is 200" 200 "$API_STATUS"
check_contains "after the restart the reading is still there" '"value":77' "$(tr -d ' \n' <<<"$API_BODY")"
vg_stop
check "after serving there is still no clear keys/kek" test ! -e "$VG_DIR/keys/kek"

# -- backup, and restore with --kek-p11
out=$("$VIGIL" backup "$VG_DIR" "$VG_TMP/backup" </dev/null 2>&1)
check_eq "vigil backup exits 0" 0 "$?"
echo "$out" >>"$VG_CLI_LOG"
check "the backup holds neither keys/kek nor keys/kek.p11" \
    test ! -e "$VG_TMP/backup/keys/kek" -a ! -e "$VG_TMP/backup/keys/kek.p11"
cp -p "$VG_DIR/keys/kek.p11" "$VG_TMP/kek.p11.saved"
# An altered kek.p11 is refused by restore, which then creates nothing.
cp -p "$VG_TMP/kek.p11.saved" "$VG_TMP/kek.p11.bad"
printf '\x00' | dd of="$VG_TMP/kek.p11.bad" bs=1 seek=83 conv=notrunc status=none
cmp -s "$VG_TMP/kek.p11.saved" "$VG_TMP/kek.p11.bad" && printf '\x01' |
    dd of="$VG_TMP/kek.p11.bad" bs=1 seek=83 conv=notrunc status=none
out=$("$VIGIL" restore "$VG_TMP/backup" "$VG_TMP/restored-bad" --kek-p11 "$VG_TMP/kek.p11.bad" </dev/null 2>&1)
rc=$?
echo "$out" >>"$VG_CLI_LOG"
check "restore with an altered kek.p11 fails" test $rc -ne 0
check_contains "restore with an altered kek.p11 says it does not decrypt" "does not decrypt" "$out"
check "restore with an altered kek.p11 created nothing" test ! -e "$VG_TMP/restored-bad"
out=$("$VIGIL" restore "$VG_TMP/backup" "$VG_TMP/restored" --kek-p11 "$VG_TMP/kek.p11.saved" </dev/null 2>&1)
rc=$?
echo "$out" >>"$VG_CLI_LOG"
check_eq "restore --kek-p11 exits 0" 0 "$rc"
check_contains "restore verifies the audit chain" "chain verified" "$out"
check "the restored directory has no clear keys/kek" test ! -e "$VG_TMP/restored/keys/kek"
check_eq "the restored keys/kek.p11 is 84 bytes, 0600" "84 600" \
    "$(stat -c '%s %a' "$VG_TMP/restored/keys/kek.p11" 2>&1)"
VG_DIR=$VG_TMP/restored
vg_set_ports
if vg_serve; then
    ok "the restored directory serves"
    api GET "/fhir/Observation?patient=p1"
    check_contains "the restored gateway serves the reading" '"value":77' "$(tr -d ' \n' <<<"$API_BODY")"
    vg_stop
fi
VG_DIR=$VG_TMP/data
vg_set_ports

# -- refusals at start
cp -p "$VG_DIR/keys/kek.p11" "$VG_TMP/kek.p11.orig"
db_sum=$(sha256sum <"$VG_DIR/vigil.db")

# serve_refused "what" NEEDLE: serve must exit non-zero (quickly, without
# listening) with NEEDLE in its message, and must make no key.
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
    if grep -qF -- "$needle" "$log"; then
        ok "$what: the message says '$needle'"
    else
        not_ok "$what: the message says '$needle'" "got: $(tr '\n' ' ' <"$log")"
    fi
    if grep -qF -- "$(cat "$VG_TMP/user.pin")" "$log"; then
        not_ok "$what: the PIN is not in the message"
    fi
    if vg_healthz; then not_ok "$what: nothing listens on the API port" "/healthz answered"; else
        ok "$what: nothing listens on the API port"; fi
    check "$what: no clear keys/kek was made" test ! -e "$VG_DIR/keys/kek"
}

# A wrong PIN in the PIN file.
cp -p "$VG_TMP/user.pin" "$VG_TMP/user.pin.orig"
printf 'not-the-pin' >"$VG_TMP/user.pin"
serve_refused "wrong PIN" "CKR_PIN_INCORRECT"
check "wrong PIN: kek.p11 is unchanged" cmp -s "$VG_DIR/keys/kek.p11" "$VG_TMP/kek.p11.orig"
cp -p "$VG_TMP/user.pin.orig" "$VG_TMP/user.pin"

# The right PIN, in a file others can read.
chmod 644 "$VG_TMP/user.pin"
serve_refused "PIN file readable by others (0644)" "group or others"
chmod 600 "$VG_TMP/user.pin"

# kek.p11 missing.
mv "$VG_DIR/keys/kek.p11" "$VG_TMP/kek.p11.moved"
serve_refused "missing keys/kek.p11" "is missing"
check "missing keys/kek.p11: serve did not make a new one" test ! -e "$VG_DIR/keys/kek.p11"

# kek.p11 altered (one bit of the GCM tag).
cp -p "$VG_TMP/kek.p11.bad" "$VG_DIR/keys/kek.p11"
serve_refused "altered keys/kek.p11" "does not decrypt"

# kek.p11 truncated.
head -c 40 "$VG_TMP/kek.p11.orig" >"$VG_DIR/keys/kek.p11"
serve_refused "truncated keys/kek.p11" "kek.p11"

check_eq "the refused starts left vigil.db untouched" "$db_sum" "$(sha256sum <"$VG_DIR/vigil.db")"

# Restored, it starts again (the refusals above were about the key only).
cp -p "$VG_TMP/kek.p11.orig" "$VG_DIR/keys/kek.p11"
if vg_serve; then
    ok "restored kek.p11: serve starts"
    vg_stop
fi

# The token deleted: the KEK is gone with it, and vigil says so.
db_sum=$(sha256sum <"$VG_DIR/vigil.db")
softhsm2-util --delete-token --token "$TOKEN" >/dev/null 2>"$VG_TMP/softhsm.err" ||
    bail "softhsm2-util deletes token $TOKEN" "$(tr '\n' ' ' <"$VG_TMP/softhsm.err")"
serve_refused "token deleted" "CKR_TOKEN_NOT_PRESENT"
check "token deleted: kek.p11 is unchanged" cmp -s "$VG_DIR/keys/kek.p11" "$VG_TMP/kek.p11.orig"
check_eq "token deleted: vigil.db untouched" "$db_sum" "$(sha256sum <"$VG_DIR/vigil.db")"
vg_finish
