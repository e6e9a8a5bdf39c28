#!/usr/bin/env bash
# FHIR Observation search: date with eq/ge/gt/le/lt (repeatable), code as
# system|code, _sort, _count with paging through next links (no reading lost
# or repeated), the Bundle valid against the FHIR R4 schema, and bad
# parameters refused with 400 problem+json.
. "$(dirname "$0")/lib.sh"

vg_start
vg_patient p1
vg_enroll dev1
vg_assign dev1 p1
# 12 readings over three days (2 h apart at the start of each day), and one
# SpO2. Times are in the past (a reading may not be > 5 min in the future).
d1=$(date -u -d '3 days ago' +%F); d2=$(date -u -d '2 days ago' +%F); d3=$(date -u -d 'yesterday' +%F)
batch=""
for d in "$d1" "$d2" "$d3"; do
    for h in 01 03 05 07; do
        batch="$batch${batch:+,}$(reading 8867-4 "6${h#0}" /min "${d}T$h:00:00Z")"
    done
done
batch="$batch,$(reading 59408-5 97 % "${d2}T04:00:00Z")"
pub dev1 "[$batch]" || bail "publish 13 readings" "$PUB_OUT"
check_eq "13 readings stored" 13 "$(readings_count)"

search() { # search QUERY -> sets API_STATUS/API_BODY; N = number of entries
    api GET "/fhir/Observation?patient=p1&$1"
    N=$(jget "$API_BODY" 'len(j.get("entry", []))')
}
search "_count=100"
check_eq "no filter: all 13" 13 "$N"
printf '%s' "$API_BODY" >"$VG_TMP/all.json"
check "the Bundle validates against the FHIR R4 schema" "$PY" "$IT_DIR/validate_fhir.py" --quiet "$VG_TMP/all.json"
check_eq "newest first by default" "True" "$(jget "$API_BODY" 'str([e["resource"]["effectiveDateTime"] for e in j["entry"]] == sorted([e["resource"]["effectiveDateTime"] for e in j["entry"]], reverse=True))')"
search "_sort=date"
check_eq "_sort=date: oldest first" "${d1}T01:00:00.000Z" "$(jget "$API_BODY" 'j["entry"][0]["resource"]["effectiveDateTime"]')"
search "code=http://loinc.org|8867-4"
check_eq "code=system|code: the 12 heart rates" 12 "$N"
search "code=59408-5"
check_eq "code alone: the SpO2" 1 "$N"
search "date=$d2"
check_eq "date=DAY (eq): that day's 5" 5 "$N"
search "date=ge$d2&date=lt$d3"
check_eq "ge day2 & lt day3: 5" 5 "$N"
search "date=gt$d2"
check_eq "gt day2 (after the whole day): day 3's 4" 4 "$N"
search "date=le$d2"
check_eq "le day2 (through the whole day): 9" 9 "$N"
search "date=ge${d2}T03:00:00Z&date=le${d2}T05:00:00Z"
check_eq "a time window within a day: 03:00, 04:00 (SpO2), 05:00" 3 "$N"
search "date=ge${d3}T08:00:00Z"
check_eq "after the last reading: none" 0 "$N"
check_eq "an empty result is still a searchset with total 0" "0" "$(jget "$API_BODY" 'j["total"]')"

# Paging: 5 per page through the 13, following next links.
search "_count=5&_sort=-date"
ids=$(jget "$API_BODY" '" ".join(e["resource"]["id"] for e in j["entry"])')
pages=1
next=$(jget "$API_BODY" '[l["url"] for l in j["link"] if l["relation"] == "next"][0] if any(l["relation"] == "next" for l in j["link"]) else ""')
check_eq "a full first page has no total" "None" "$(jget "$API_BODY" 'str(j.get("total"))')"
while [ -n "$next" ] && [ "$pages" -lt 10 ]; do
    api GET "${next#https://127.0.0.1:$VG_API_PORT}"
    ids="$ids $(jget "$API_BODY" '" ".join(e["resource"]["id"] for e in j["entry"])')"
    pages=$((pages + 1))
    next=$(jget "$API_BODY" '[l["url"] for l in j["link"] if l["relation"] == "next"][0] if any(l["relation"] == "next" for l in j["link"]) else ""')
done
check_eq "paging 5 at a time takes 3 pages" 3 "$pages"
check_eq "paging returns all 13 readings" 13 "$(echo $ids | wc -w)"
check_eq "paging repeats none" 13 "$(echo $ids | tr ' ' '\n' | sort -u | wc -l)"

for bad in "date=ap$d2" "date=2026-13-01" "date=yesterday" "_count=0" "_count=100001" "_sort=value" \
    "_cursor=1.xyz" "code=http://snomed.info/sct|123" "status=final"; do
    search "$bad"
    check_eq "refused: $bad (400)" 400 "$API_STATUS"
done
check_contains "refusals are problem+json" "application/problem+json" "$API_CTYPE"
vg_stop
vg_finish
