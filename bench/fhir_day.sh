#!/usr/bin/env bash
# One patient's day of 1 Hz data for one code (86,400 readings) read back,
# decrypted, as one FHIR searchset Bundle over HTTPS — the store issue's
# target is under 250 ms on this machine. Prints the median of 5 requests
# (curl's time_total) and the Bundle's size.
#   bench/fhir_day.sh [READINGS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-86400}
V=$PWD/build/vigil
T=$(mktemp -d /tmp/vigil-fhirday.XXXXXX)
trap 'kill $PID 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
read -r MQ API < <(/usr/bin/python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
"$V" init "$T/d" >/dev/null
sed -i "s/^mqtt = .*/mqtt = 127.0.0.1:$MQ/; s/^api = .*/api = 127.0.0.1:$API/" "$T/d/vigil.conf"
"$V" serve "$T/d" 2>"$T/serve.log" & PID=$!
for _ in $(seq 100); do curl -sf --cacert "$T/d/pki/ca.pem" "https://127.0.0.1:$API/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
"$V" patient add p1 -d "$T/d" >/dev/null
"$V" device enroll dev1 --out "$T/c" -d "$T/d" >/dev/null
"$V" device assign dev1 p1 -d "$T/d" >/dev/null
"$V" user add reader --service -d "$T/d" >/dev/null
"$V" token add reader --scope obs.read --out "$T/reader.token" -d "$T/d" >/dev/null 2>&1
DAY=2026-11-28
START=$(( $(date -u -d "$DAY" +%s) * 1000 ))
t0=$(date +%s.%N)
./build/bench_fill "$T/d" p1 dev1 "$START" "$N"
echo "fill: $N sealed readings in $(echo "$(date +%s.%N) - $t0" | bc) s"
URL="https://127.0.0.1:$API/fhir/Observation?patient=p1&code=http://loinc.org%7C8867-4&date=ge$DAY&date=lt2026-11-29&_count=100000"
times=()
for i in 1 2 3 4 5 6; do
  out=$(curl -s --cacert "$T/d/pki/ca.pem" -H "Authorization: Bearer $(cat "$T/reader.token")" \
        -o "$T/bundle.json" -w '%{http_code} %{time_total} %{size_download}' "$URL")
  set -- $out
  [ "$1" = 200 ] || { echo "fhir_day: HTTP $1"; exit 1; }
  [ "$i" -gt 1 ] && times+=("$2")   # the first request warms the page cache
  size=$3
done
entries=$(/usr/bin/python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["entry"]))' "$T/bundle.json")
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
echo "fhir_day: $entries Observations, $((size / 1048576)) MiB Bundle, median of 5: ${median}s (target < 0.250 s)"
