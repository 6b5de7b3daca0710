#!/usr/bin/env bash
# filelog bench: lines per second and collector CPU-seconds per million
# lines, reading 4 growing JSON-lines files (LLM session-log shape, ~190 B
# a line) through the example's operators into nop. Half the lines are
# there at the start; a writer appends the other half while it reads.
#
#   benches/filelog.sh              # 2,000,000 lines
#   LINES=5000000 benches/filelog.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${LINES:-2000000}
cargo build --release -q -p observatory
BIN=${OBSERVATORY_BIN:-target/release/observatory}
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT
write() { # $1 first line number, $2 count: spread over 4 files
  python3 - "$TMP" "$1" "$2" <<'PY'
import sys
d, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = [open(f"{d}/s{i}.jsonl", "a") for i in range(4)]
levels = ["info", "warn", "error", "debug"]
for k in range(first, first + n):
    files[k % 4].write('{"timestamp": "2026-11-30T10:%02d:%02d.%03dZ", "session_id": "s-%d", "source": "claude", "level": "%s", "message": "step %d of the session: tool call returned 200 OK"}\n'
                       % (k // 60000 % 60, k // 1000 % 60, k % 1000, k % 97, levels[k % 4], k))
PY
}
half=$((LINES / 2))
write 0 "$half"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $LINES lines in 4 files, $(du -sh "$TMP" | cut -f1) at the start"
BENCH_LOG_DIR=$TMP "$BIN" --config benches/configs/filelog-nop.yaml 2>"$TMP/collector.log" &
pid=$!
start=$(date +%s.%N)
t0=$(awk '{print $14 + $15}' /proc/$pid/stat)
write "$half" "$((LINES - half))" &
accepted() { curl -sf http://127.0.0.1:28888/metrics | awk '/^observatory_receiver_accepted_log_records_total/ {n += $2} END {print n + 0}'; }
until [ "$(accepted)" -ge "$LINES" ]; do
  kill -0 $pid 2>/dev/null || { cat "$TMP/collector.log"; exit 1; }
  sleep 0.2
done
end=$(date +%s.%N)
t1=$(awk '{print $14 + $15}' /proc/$pid/stat)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid 2>/dev/null || true
awk -v n="$LINES" -v s="$start" -v e="$end" -v c="$((t1 - t0))" -v h="$hwm" 'BEGIN {
  printf "filelog-nop      %9.0f lines/s  collector %.2f CPU-s/M lines  peak RSS %.1f MiB\n", n / (e - s), (c / 100) / (n / 1e6), h / 1024 }'
