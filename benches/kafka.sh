#!/usr/bin/env bash
# Kafka bench: spans per second and CPU-seconds per million spans through
# gateway (OTLP in -> batch -> kafka exporter) -> tansu broker on a
# PostgreSQL in a temp dir -> processor (kafka receiver -> batch -> nop).
# loadgen sends SPANS LLM spans (512 a request, fresh trace ids) at RATE
# spans/s (0: as fast as the gateway takes them, retrying refusals); the
# clock stops when the processor has them all. On 2 cores the broker
# (tansu and its PostgreSQL) is the limit: unpaced, the gateway's queue
# fills and refusals cost it CPU, so the tiers' own cost is read paced
# below the broker's rate.
#
#   benches/kafka.sh                  # 500,000 spans, unpaced
#   RATE=30000 benches/kafka.sh       # paced
#   SPANS=1000000 KAFKA_COMPRESSION=zstd benches/kafka.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SPANS=${SPANS:-500000}
RATE=${RATE:-0}
scripts/install-tansu.sh
cargo build --release -q -p observatory -p benches
BIN=${OBSERVATORY_BIN:-target/release/observatory}
TANSU=${TANSU_BIN:-${TANSU_ROOT:-$HOME/.cache/observatory/tansu}/bin/tansu}
PG=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
TMP=$(mktemp -d)
chmod 755 "$TMP"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  as_pg "$PG/pg_ctl" -D "$TMP/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
mkdir "$TMP/pg"
[ "$(id -u)" = 0 ] && chown postgres "$TMP/pg"
as_pg "$PG/initdb" -D "$TMP/pg" -U postgres -A trust -E UTF8 --no-sync >/dev/null
as_pg "$PG/pg_ctl" -D "$TMP/pg" -l "$TMP/pg/log" -w start \
  -o "-p 25433 -k $TMP/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" >/dev/null
psql -q -h 127.0.0.1 -p 25433 -U postgres -v ON_ERROR_STOP=1 -f scripts/tansu/schema.sql
export KAFKA_BROKERS=127.0.0.1:29192
"$TANSU" broker --listener-url tcp://$KAFKA_BROKERS --advertised-listener-url tcp://$KAFKA_BROKERS \
  --storage-engine postgres://postgres@127.0.0.1:25433/postgres >"$TMP/tansu.log" 2>&1 &
tansu=$!
until (exec 3<>/dev/tcp/127.0.0.1/29192) 2>/dev/null; do sleep 0.1; done
"$TANSU" topic create otlp_spans --partitions 4 --broker tcp://$KAFKA_BROKERS >/dev/null
"$BIN" --config benches/configs/kafka-gateway.yaml 2>"$TMP/gateway.log" &
gw=$!
"$BIN" --config benches/configs/kafka-processor.yaml 2>"$TMP/processor.log" &
pr=$!
until curl -sf http://127.0.0.1:28888/metrics >/dev/null && curl -sf http://127.0.0.1:28889/metrics >/dev/null; do sleep 0.1; done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pgcpu() { # the postmaster and its children (backends end and take their CPU along: sampled at the end)
  local m s=0; m=$(head -1 "$TMP/pg/postmaster.pid")
  for p in $m $(pgrep -P "$m" || true); do s=$((s + $(cpu "$p" 2>/dev/null || echo 0))); done; echo $s; }
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $SPANS spans at rate $RATE (0: unpaced), compression ${KAFKA_COMPRESSION:-none}"
g0=$(cpu $gw); p0=$(cpu $pr); k0=$(cpu $tansu); d0=$(pgcpu)
start=$(date +%s.%N)
target/release/loadgen --endpoint 127.0.0.1:24317 --total "$SPANS" --rate "$RATE" --unique-traces --retry >"$TMP/loadgen.log"
accepted() { curl -sf http://127.0.0.1:28889/metrics | awk '/^observatory_receiver_accepted_spans_total/ {n += $2} END {print n + 0}'; }
until [ "$(accepted)" -ge "$SPANS" ]; do
  for p in $gw $pr $tansu; do kill -0 $p 2>/dev/null || { tail -20 "$TMP"/*.log; exit 1; }; done
  sleep 0.2
done
end=$(date +%s.%N)
g1=$(cpu $gw); p1=$(cpu $pr); k1=$(cpu $tansu); d1=$(pgcpu)
rss() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
awk -v n="$SPANS" -v s="$start" -v e="$end" -v g=$((g1 - g0)) -v p=$((p1 - p0)) -v k=$((k1 - k0)) -v d=$((d1 - d0)) \
  -v gr="$(rss $gw)" -v pr="$(rss $pr)" -v refused="$(grep -o 'refused=[0-9]*' "$TMP/loadgen.log" | tail -1) spans refused, resent by loadgen" 'BEGIN {
  m = n / 1e6
  printf "gateway->kafka->processor->nop  %8.0f spans/s end to end (%s)\n", n / (e - s), refused
  printf "  gateway   %.2f CPU-s/M spans  peak RSS %d MiB\n", g / 100 / m, gr
  printf "  processor %.2f CPU-s/M spans  peak RSS %d MiB\n", p / 100 / m, pr
  printf "  (broker: tansu %.2f, its PostgreSQL %.2f CPU-s/M spans)\n", k / 100 / m, d / 100 / m }'
