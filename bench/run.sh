#!/usr/bin/env bash
# Runs vigil's benchmarks and prints their figures. Not part of make check:
# timings are reported, never asserted.
#   bench/run.sh [AUDIT_RECORDS]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== audit trail: append, verify, cost on ingestion ($(nproc) cores, $(date -u +%FT%TZ))"
./build/bench_audit "${1:-1000000}"
echo "== FHIR: one patient's day of 1 Hz data as one Bundle"
./bench/fhir_day.sh
