#!/usr/bin/env bash
# GET /metrics: Prometheus text with the broker's and the store writer's
# counters — queue depth and its limit, commits by outcome, the commit
# latency histogram — for an admin, the security team, or a scraper token
# with the stats.read scope; refused to everyone else, and carrying no
# device or patient identifiers.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_enroll dev1
vg_assign dev1 p1
pub dev1 "$(reading 8867-4 72 /min)" || bail "publish" "$PUB_OUT"
pub dev1 "$(reading 8867-4 73 /min "$(now_rfc3339 '-1 minutes')")" || bail "publish" "$PUB_OUT"

api GET /metrics
check_eq "GET /metrics as admin: 200" 200 "$API_STATUS"
check_contains "Prometheus text format" "text/plain; version=0.0.4" "$API_CTYPE"
value() { printf '%s\n' "$API_BODY" | awk -v m="$1" '$1 == m {print $2}'; }
check_eq "readings stored" 2 "$(value vigil_readings_stored_total)"
check_eq "the writer committed them" 2 "$(value vigil_writer_readings_committed_total)"
check "the queue depth is a number" test -n "$(value vigil_writer_queue_depth)"
check_eq "the back-pressure limit is exposed (the default)" 100000 "$(value vigil_writer_queue_limit)"
check_eq "no failed batches" 0 "$(value 'vigil_writer_batches_total{outcome="disk_full"}')"
check_eq "not failing" 0 "$(value vigil_writer_failing)"
commits=$(value vigil_writer_commit_seconds_count)
check "the commit histogram counted the commits" test "${commits:-0}" -ge 2
check_eq "its +Inf bucket equals its count" "$commits" "$(value 'vigil_writer_commit_seconds_bucket{le="+Inf"}')"
check_not_contains "no device id in the metrics" "dev1" "$API_BODY"
check_not_contains "no patient id in the metrics" "p1" "$API_BODY"

api GET /metrics "" -
check_eq "without a token: 401" 401 "$API_STATUS"
tok=$(vg_person nora '["clinician"]') || bail "make a clinician"
api GET /metrics "" "$tok"
check_eq "a clinician: 403" 403 "$API_STATUS"
sec=$(vg_person sam '["security"]') || bail "make a security officer"
api GET /metrics "" "$sec"
check_eq "the security team: 200" 200 "$API_STATUS"
obs=$(vg_service_token feed '["obs.read"]') || bail "make an obs.read token"
api GET /metrics "" "$obs"
check_eq "a token without stats.read: 403" 403 "$API_STATUS"
scr=$(vg_service_token prometheus '["stats.read"]') || bail "make a stats.read token" "$API_BODY"
api GET /metrics "" "$scr"
check_eq "a scraper token with stats.read: 200" 200 "$API_STATUS"
api GET "/fhir/Observation?patient=p1" "" "$scr"
check_eq "which reads no patient data: 403" 403 "$API_STATUS"
api POST /api/v1/tokens '{"principal":"prometheus","scopes":["stats.write"]}'
check_eq "an unknown scope is refused: 400" 400 "$API_STATUS"
api POST /metrics '{}'
check_eq "POST /metrics: 405" 405 "$API_STATUS"

vg_finish
