#!/usr/bin/env bash
# Tampering with the audit trail in the database file is caught by
# `vigil audit verify`, which names the first bad record: an edited, deleted,
# swapped or inserted record, a truncated tail, a rewritten (rehashed) chain,
# a forged or replaced checkpoint. Each case starts from a copy of the same
# pristine data directory.
. "$(dirname "$0")/lib.sh"

vg_init
# Checkpoints often, so the trail has several.
sed -i 's/^#checkpoint_records = .*/checkpoint_records = 4/' "$VG_DIR/vigil.conf"
vg_serve || bail "server running"
vg_make_principals
vg_patient p1
vg_enroll dev1
vg_assign dev1 p1
for v in 61 62 63 64 65; do
    pub dev1 "$(reading 8867-4 "$v" /min)" || bail "publish $v" "$PUB_OUT"
done
vg_cli obs list p1 >/dev/null || not_ok "obs list" "$VG_CLI_ERR"
vg_stop
PRISTINE="$VG_TMP/pristine"
cp -a "$VG_DIR" "$PRISTINE"
N=$(db "SELECT max(seq) FROM audit;")
CPS=$(db "SELECT count(*) FROM audit_checkpoints;")
check "the trail has at least 12 records (has $N)" test "$N" -ge 12
check "the trail has at least 2 signed checkpoints (has $CPS)" test "$CPS" -ge 2
check_eq "the last checkpoint covers the last record (written at stop)" "$N" \
    "$(db "SELECT max(seq) FROM audit_checkpoints;")"

verify_out=""
verify() { # verify DIR [args]: sets verify_out, returns the exit status
    verify_out=$(timeout -k 5 "$(vg_t 30)" "$VIGIL" audit verify "$@" 2>&1)
}

verify "$VG_DIR"
rc=$?
check_eq "pristine trail: verify exits 0" 0 "$rc"
check_contains "pristine trail: OK with the record count" "OK: $N records" "$verify_out"

# fresh NAME: a scenario's copy of the pristine data dir; sets D.
fresh() {
    D="$VG_TMP/case-$1"
    rm -rf "$D"
    cp -a "$PRISTINE" "$D"
}
sq() { sqlite3 -batch "$D/vigil.db" "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete; DROP TRIGGER IF EXISTS audit_checkpoints_no_update; DROP TRIGGER IF EXISTS audit_checkpoints_no_delete; $1" </dev/null; }

# expect_fail "what" SEQ WORD [verify args]: verify must exit 1 and name SEQ.
expect_fail() {
    local what=$1 seq=$2 word=$3
    shift 3
    verify "$D" "$@"
    local rc=$?
    check_eq "$what: verify exits 1" 1 "$rc"
    check_contains "$what: names record $seq" "FAILED at record $seq:" "$verify_out"
    check_contains "$what: says why ('$word')" "$word" "$verify_out"
}

fresh edit
sq "UPDATE audit SET detail = 'nothing happened' WHERE seq = 5;"
expect_fail "edited record 5" 5 "altered"

fresh delete
sq "DELETE FROM audit WHERE seq = 6;"
expect_fail "deleted record 6" 6 "missing"

fresh swap
sq "UPDATE audit SET seq = -1 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = 7; UPDATE audit SET seq = 7 WHERE seq = -1;"
expect_fail "swapped records 4 and 7" 4 "does not link"

fresh insert
sq "INSERT INTO audit SELECT $((N + 1)), ts_ms, actor, action, target, outcome, 'forged', source, hash, x'$(printf '%064d' 0)' FROM audit WHERE seq = $N;"
expect_fail "inserted a forged record after the last" $((N + 1)) "altered"

fresh truncate
sq "DELETE FROM audit WHERE seq > $((N - 3));"
expect_fail "deleted the last 3 records" $((N - 2)) "truncated"

# The attacker also deletes the checkpoints that cover the removed tail,
# but the copy outside the database (audit/checkpoints.log) still has them.
fresh truncate-and-checkpoints
last_kept=$(db "SELECT max(seq) FROM audit_checkpoints WHERE seq <= $((N - 3));")
sq "DELETE FROM audit WHERE seq > $((N - 3)); DELETE FROM audit_checkpoints WHERE seq > $((N - 3));"
expect_fail "truncated tail and its checkpoints: caught by checkpoints.log" $((N - 2)) "truncated"
# ... and when checkpoints.log is gone too, a copy kept elsewhere catches it.
cp "$D/audit/checkpoints.log" "$VG_TMP/offsite-checkpoints.log"
rm "$D/audit/checkpoints.log"
expect_fail "truncated tail, no local log: caught by --from-checkpoint" $((N - 2)) "truncated" \
    --from-checkpoint "$VG_TMP/offsite-checkpoints.log"

# A rewrite that recomputes every later hash links perfectly; only the
# signed checkpoints disagree.
fresh rehash
"$PY" "$IT_DIR/audit_forge.py" "$D/vigil.db" rehash-tail 5 || not_ok "forge: rehash" "python failed"
expect_fail "edited record 5 and rehashed the rest" 1 "rewritten"
fresh insert-rehash
"$PY" "$IT_DIR/audit_forge.py" "$D/vigil.db" insert-after 6 || not_ok "forge: insert" "python failed"
first_cp=$(db "SELECT min(seq) FROM audit_checkpoints;")
verify "$D"
check_eq "inserted a record mid-trail and rehashed: verify exits 1" 1 "$?"
check_contains "inserted and rehashed: caught by a checkpoint" "rewritten" "$verify_out"

fresh forged-checkpoint
sq "UPDATE audit_checkpoints SET sig = randomblob(64) WHERE id = (SELECT max(id) FROM audit_checkpoints);"
expect_fail "forged checkpoint signature" "$N" "invalid signature"

fresh replaced-checkpoint
# Replace a checkpoint's head with the hash of another record: the
# signature no longer matches what it vouches for.
sq "UPDATE audit_checkpoints SET head = (SELECT hash FROM audit WHERE seq = 2) WHERE id = 1;"
cp1=$(sqlite3 "$D/vigil.db" "SELECT seq FROM audit_checkpoints WHERE id = 1;")
expect_fail "replaced checkpoint head" "$cp1" "invalid signature"

fresh other-key
# The newest line of checkpoints.log claims another signing key.
sed -i '$s/key=[0-9a-f]\{64\}/key=0000000000000000000000000000000000000000000000000000000000000000/' "$D/audit/checkpoints.log"
expect_fail "checkpoint file line claiming another key" "$N" "invalid signature"

fresh altered-file
sed -i '1s/ sig=/ sig=zz/' "$D/audit/checkpoints.log"
verify "$D"
check_eq "a garbled checkpoints.log line: verify exits 1" 1 "$?"
check_contains "a garbled checkpoints.log line is reported" "not a checkpoint" "$verify_out"

# The pristine copy still verifies: the cases above changed only copies.
verify "$PRISTINE"
check_eq "pristine copy still verifies after all cases" 0 "$?"

# Server-side verification through the API says the same.
vg_serve || bail "restart"
api GET /api/v1/audit/verify
check_eq "GET /api/v1/audit/verify: 200" 200 "$API_STATUS"
check_eq "GET /api/v1/audit/verify: ok" "True" "$(jget "$API_BODY" 'str(j["ok"])')"
vg_stop
vg_finish
