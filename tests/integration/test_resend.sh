#!/usr/bin/env bash
# Retransmissions do not duplicate: a reading a device sends again (same
# device, code and effective time — what a device does after a lost PUBACK)
# is acknowledged again but stored once, and the trail says so.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_enroll dev1
vg_enroll dev2
vg_assign dev1 p1
vg_assign dev2 p1
t=$(now_rfc3339 '-1 minute')
pub dev1 "$(reading 8867-4 81 /min "$t")" || bail "first send" "$PUB_OUT"
check_contains "first send acknowledged" "received PUBACK" "$PUB_OUT"
pub dev1 "$(reading 8867-4 81 /min "$t")" || not_ok "resend" "$PUB_OUT"
check_contains "the resend is acknowledged too (the device stops resending)" "received PUBACK" "$PUB_OUT"
check_eq "stored once" 1 "$(readings_count)"
pub dev1 "[$(reading 8867-4 81 /min "$t"),$(reading 8867-4 82 /min "$(now_rfc3339 '-30 seconds')")]" || not_ok "batch with one resend" "$PUB_OUT"
check_eq "a batch holding a resend stores only the new reading" 2 "$(readings_count)"
pub dev2 "$(reading 8867-4 81 /min "$t")" || not_ok "dev2 same time" "$PUB_OUT"
check_eq "the same code and time from another device is another reading" 3 "$(readings_count)"
vg_wait_for 5 audit_at_least 1 "action = 'readings.duplicate' AND actor = 'device:dev1'"
check_eq "the resend is recorded" 1 "$(audit_count "action = 'readings.duplicate' AND actor = 'device:dev1'")"
out=$(vg_cli obs list p1 --json)
check_eq "the API returns the three distinct readings" 3 "$(jget "$out" 'len(j["entry"])')"
vg_stop
vg_finish
