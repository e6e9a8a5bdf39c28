#!/usr/bin/env bash
# Retention: with a rule in vigil.conf, a background purge deletes readings
# older than their code's retention (and nothing else), each deletion
# audited; a bad rule stops vigil serve at start with the line at fault.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_enroll dev1
vg_assign dev1 p1
# Heart rate 5 h and 10 min ago; temperature 5 h ago (another code).
pub dev1 "$(reading 8867-4 70 /min "$(now_rfc3339 '-5 hours')")" || bail "old hr" "$PUB_OUT"
pub dev1 "$(reading 8867-4 71 /min "$(now_rfc3339 '-10 minutes')")" || bail "new hr" "$PUB_OUT"
pub dev1 "$(reading 8310-5 37.1 Cel "$(now_rfc3339 '-5 hours')")" || bail "old temp" "$PUB_OUT"
check_eq "three readings stored" 3 "$(readings_count)"
vg_stop

# A typo in a retention rule is an error, not a silent "keep".
cp "$VG_DIR/vigil.conf" "$VG_TMP/vigil.conf.orig"
printf '\n[retention]\n8867-4 = 2x\n' >>"$VG_DIR/vigil.conf"
log="$VG_TMP/bad.log"
timeout -k 5 "$(vg_t 20)" "$VIGIL" serve "$VG_DIR" </dev/null >"$log" 2>&1
check "serve refuses a bad retention value" test $? -ne 0
check_contains "and names the section" "[retention]" "$(cat "$log")"
cp "$VG_TMP/vigil.conf.orig" "$VG_DIR/vigil.conf"
printf '\n[retention]\n9999-9 = 1d\n' >>"$VG_DIR/vigil.conf"
timeout -k 5 "$(vg_t 20)" "$VIGIL" serve "$VG_DIR" </dev/null >"$log" 2>&1
check "serve refuses a code it does not know" test $? -ne 0
check_contains "saying so" "not a code vigil accepts" "$(cat "$log")"

cp "$VG_TMP/vigil.conf.orig" "$VG_DIR/vigil.conf"
printf '\n[retention]\ndefault = keep\n8867-4 = 2h   ; heart rate\n' >>"$VG_DIR/vigil.conf"
vg_serve
vg_wait_for 15 sh -c "[ \"\$(sqlite3 '$VG_DIR/vigil.db' \"SELECT count(*) FROM readings\")\" = 2 ]"
check_eq "the 5-hour-old heart rate was purged" 0 \
    "$(db "SELECT count(*) FROM readings WHERE code = '8867-4' AND received_ms < strftime('%s','now') * 1000 - 60000 AND hour < (strftime('%s','now') / 3600) - 3;")"
check_eq "the recent heart rate is kept" 1 "$(db "SELECT count(*) FROM readings WHERE code = '8867-4';")"
check_eq "the old temperature is kept (default: keep)" 1 "$(db "SELECT count(*) FROM readings WHERE code = '8310-5';")"
check_eq "the purge is audited" 1 \
    "$(audit_count "action = 'retention.purge' AND target = 'code:8867-4' AND detail LIKE 'deleted 1 readings older than %'")"
check_contains "and logged" "retention: deleted 1 readings" "$(cat "$VG_LOG")"
check_eq "the audit chain still verifies" 0 "$(vg_cli audit verify "$VG_DIR" >/dev/null 2>&1; echo $?)"

vg_finish
