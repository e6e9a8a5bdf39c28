#!/usr/bin/env bash
# Builds every libFuzzer harness fuzz/fuzz_<name>.c (with the project
# sources listed in fuzz/<name>.sources, one per line) using clang with
# ASan+UBSan, then runs each on a copy of its seed corpus fuzz/corpus/<name>/
# for FUZZ_SECONDS (default 20). Exits non-zero on the first crash.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-20}
OUT=build-fuzz
mkdir -p "$OUT"
CFLAGS=(-std=c17 -D_GNU_SOURCE -g -O1 -Isrc -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=undefined -Wall -Wextra -Werror)
status=0
for h in fuzz/fuzz_*.c; do
  name=$(basename "$h" .c); name=${name#fuzz_}
  srcs=()
  if [ -f "fuzz/$name.sources" ]; then
    while read -r s; do [ -n "$s" ] && srcs+=("$s"); done < "fuzz/$name.sources"
  fi
  libs=()
  [ -f "fuzz/$name.libs" ] && read -r -a libs < "fuzz/$name.libs"
  if ! clang "${CFLAGS[@]}" "$h" "${srcs[@]}" "${libs[@]}" -o "$OUT/fuzz_$name"; then
    echo "fuzz: $name FAILED to build"
    status=1
    continue
  fi
  work="$OUT/corpus-$name"
  rm -rf "$work"; mkdir -p "$work"
  cp fuzz/corpus/"$name"/* "$work"/ 2>/dev/null || true
  echo "fuzz: $name for ${SECONDS_EACH}s ($(ls "$work" | wc -l) seeds)"
  if ! "$OUT/fuzz_$name" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
        -artifact_prefix="$OUT/crash-$name-" "$work" > "$OUT/fuzz_$name.log" 2>&1; then
    echo "fuzz: $name FAILED; see $OUT/fuzz_$name.log"; tail -40 "$OUT/fuzz_$name.log"
    status=1
  else
    grep -E 'stat::number_of_executed_units' "$OUT/fuzz_$name.log" | sed "s/^/fuzz: $name /"
  fi
done
exit $status
