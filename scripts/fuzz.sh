#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for SECONDS_PER_TARGET seconds
# (default 60) and prints executions and crashes per target. Needs a nightly
# toolchain and cargo-fuzz; where either is missing it says so and skips.
# Not part of the test suite (scripts/test.sh): crashes found here become
# plain unit tests that run on stable.
#   scripts/fuzz.sh                 # every target, 60 s each
#   SECONDS_PER_TARGET=600 scripts/fuzz.sh scan config
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${SECONDS_PER_TARGET:-60}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: SKIPPED: no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: SKIPPED: cargo-fuzz is not installed (cargo install cargo-fuzz)"
  exit 0
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
cargo +nightly fuzz build -O >/dev/null 2>&1 || { echo "fuzz: build failed"; cargo +nightly fuzz build -O; exit 1; }
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 \
    -max_len=1048576 -timeout=10 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  [ -n "$execs" ] || execs=$(grep -oE '^Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -1)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
  echo "fuzz: $t: ${secs}s, ${execs:-?} executions, exit $rc, ${crashes} crash artifacts"
  if [ $rc -ne 0 ]; then
    status=1
    grep -E 'panicked|ERROR|SUMMARY' "$log" | head -5
  fi
  rm -f "$log"
done
exit $status
