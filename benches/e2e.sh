#!/usr/bin/env bash
# End-to-end throughput bench. Builds release, starts Observatory on each
# scenario's config from benches/configs/, drives it with loadgen and prints
# one line per scenario: accepted spans/s, collector CPU-seconds per million
# spans, peak RSS, and RSS early vs late in the run (flat = no growth).
#
#   benches/e2e.sh                      # every scenario, 30 s each
#   DURATION=300s benches/e2e.sh grpc-batch-nop   # one scenario, 5 minutes
#   CONCURRENCY=4 BATCH=512 RATE=0 benches/e2e.sh  # loadgen knobs
#   OBSERVATORY_BIN=/tmp/other benches/e2e.sh      # another build (A/B runs)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-30s}
CONCURRENCY=${CONCURRENCY:-4}
BATCH=${BATCH:-512}
RATE=${RATE:-0}
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(grpc-batch-nop grpc-tls-batch-nop grpc-mtls-batch-nop lb-self-network lb-self-local full-chain-ui-open full-chain-held-none fleet-full-chain fleet-no-affinity full-chain-spread llm-gateway-example unreachable-otlp http-batch-nop grpc-batch-otlp grpc-batch-otlp-zstd grpc-batch-otlp-none grpc-batch-otlp-wal grpc-batch-otlp-wal-fsync full-chain grpc-batch-loki grpc-batch-timescaledb grpc-batch-timescaledb-llm grpc-batch-parquet)

cargo build --release -q -p observatory -p benches
BIN=${OBSERVATORY_BIN:-target/release/observatory}
LOADGEN=target/release/loadgen
LOKISINK=target/release/lokisink
PQROWS=target/release/pqrows
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -d "$TMP/pg/data" ] && pg_stop; rm -rf "$TMP"; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
# A throwaway PostgreSQL for the timescaledb scenario (as the postgres user
# when run as root: the server refuses root).
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_start() {
  mkdir -p "$TMP/pg"; [ "$(id -u)" = 0 ] && chown -R postgres "$TMP"
  as_pg "$PGBIN/initdb" -D "$TMP/pg/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$TMP/pg/data" -l "$TMP/pg/log" -w \
    -o "-p 25432 -k $TMP/pg -c listen_addresses=127.0.0.1" start >/dev/null
}
pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$TMP/pg/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$TMP/pg"; }
pg_rows() {
  as_pg psql -h 127.0.0.1 -p 25432 -U postgres -tAc \
    "SELECT (SELECT count(*) FROM observatory.metric_gauge) + (SELECT count(*) FROM observatory.metric_sum) + (SELECT count(*) FROM observatory.metric_histogram)"
}
pg_calls() { as_pg psql -h 127.0.0.1 -p 25432 -U postgres -tAc "SELECT count(*) FROM observatory.llm_calls"; }
# A CA, a server certificate for 127.0.0.1 and a client certificate, for
# the TLS scenarios (ECDSA P-256, as most deployments now issue).
make_certs() {
  local d=$1; mkdir -p "$d"
  local key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  openssl req -x509 $key -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 -subj /CN=bench-ca 2>/dev/null
  for who in server client; do
    openssl req $key -keyout "$d/$who.key" -out "$d/$who.csr" -subj "/CN=$who" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\n' >"$d/$who.ext"
    openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
      -days 2 -extfile "$d/$who.ext" -out "$d/$who.pem" 2>/dev/null
  done
}
wait_healthy() {
  for _ in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$1/" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "collector on health port $1 did not become healthy" >&2; return 1
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); loadgen on the same machine"
echo "loadgen: concurrency=$CONCURRENCY batch=$BATCH rate=$RATE duration=$DURATION"
# Three one-tier instances behind HAProxy (deploy/fleet/haproxy.cfg as is),
# the full chain on the traces each owns; loadgen spreads every trace's
# spans over three requests a second apart. Prints the fleet's CPU per
# million spans (all three instances; HAProxy's apart).
fleet() {
  local s=$1 pids=() ticks0=0 ticks1=0 hwm=0
  HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
  [ -x "$HAPROXY" ] || { echo "$s needs haproxy (apt-get install haproxy)" >&2; return 1; }
  for i in 1 2 3; do
    BENCH_GRPC_PORT=2441$i BENCH_PEER_PORT=2440$i BENCH_HEALTH_PORT=2314$i BENCH_METRICS_PORT=2889$i \
      "$BIN" --config benches/configs/$s.yaml 2>"$TMP/$s-$i.log" &
    pids+=($!); PIDS+=($!)
  done
  for i in 1 2 3; do wait_healthy 2314$i; done
  LB_GRPC=127.0.0.1:24317 LB_HTTP=127.0.0.1:24318 OBS_1=127.0.0.1:24411 OBS_2=127.0.0.1:24412 OBS_3=127.0.0.1:24413 \
    OBS_HTTP_1=127.0.0.1:24421 OBS_HTTP_2=127.0.0.1:24422 OBS_HTTP_3=127.0.0.1:24423 \
    "$HAPROXY" -db -f deploy/fleet/haproxy.cfg >"$TMP/haproxy.log" 2>&1 &
  local lb=$!; PIDS+=($lb)
  sleep 0.5
  local rate=$RATE; [ "$rate" = 0 ] && rate=150000
  for p in "${pids[@]}"; do ticks0=$((ticks0 + $(cpu_ticks "$p"))); done
  local h0; h0=$(cpu_ticks "$lb")
  "$LOADGEN" --protocol grpc --endpoint 127.0.0.1:24317 --duration "$DURATION" --concurrency "$CONCURRENCY" \
    --batch-size "$BATCH" --rate "$rate" --spread 3 --spread-delay 1s --retry >"$TMP/sum" 2>"$TMP/loadgen.log"
  for p in "${pids[@]}"; do
    ticks1=$((ticks1 + $(cpu_ticks "$p")))
    local h; h=$(hwm_kib "$p"); [ "$h" -gt "$hwm" ] && hwm=$h
  done
  local h1; h1=$(cpu_ticks "$lb")
  local accepted secs refused p99
  accepted=$(sed -n 's/.* accepted=\([0-9]*\) .*/\1/p' "$TMP/sum")
  secs=$(sed -n 's/.* seconds=\([0-9.]*\) .*/\1/p' "$TMP/sum")
  refused=$(sed -n 's/.* refused=\([0-9]*\) .*/\1/p' "$TMP/sum")
  p99=$(sed -n 's/.* p99_ms=\([0-9.]*\).*/\1/p' "$TMP/sum")
  awk -v s="$s" -v a="$accepted" -v t="$secs" -v c="$((ticks1 - ticks0))" -v hc="$((h1 - h0))" -v h="$hwm" -v r="$refused" -v p="$p99" 'BEGIN {
    printf "%-16s accepted %9.0f spans/s  fleet of 3: %.2f CPU-s/M spans  haproxy %.2f CPU-s/M  peak RSS per instance %.1f MiB  refused %d  p99 %.1f ms\n",
           s, a / t, (c / 100) / (a / 1e6), (hc / 100) / (a / 1e6), h / 1024, r, p }'
  for p in "${pids[@]}" "$lb"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}" "$lb"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

for s in "${SCENARIOS[@]}"; do
  if [[ "$s" == fleet-* ]]; then fleet "$s"; continue; fi
  cfg=benches/configs/$s.yaml
  # The fleet's load shape on one instance: the baseline of fleet-*.
  [ "$s" = full-chain-spread ] && cfg=benches/configs/full-chain.yaml
  [ -f "$cfg" ] || { echo "no such scenario: $s" >&2; exit 2; }
  cfgs=(--config "$cfg")
  # The example as shipped, with the bench's ports and nop exporters merged over it.
  [ "$s" = llm-gateway-example ] && cfgs=(--config examples/llm-gateway.yaml --config "$cfg")
  # The full chain with the live page on and open in a browser.
  [ "$s" = full-chain-ui-open ] && cfgs=(--config benches/configs/full-chain.yaml --config "$cfg")
  # The full chain with held requests kept as received.
  [ "$s" = full-chain-held-none ] && cfgs=(--config benches/configs/full-chain.yaml --config "$cfg")
  down=""
  if [[ "$s" == grpc-batch-otlp* ]]; then
    "$BIN" --config benches/configs/downstream-nop.yaml 2>"$TMP/down.log" &
    down=$!; PIDS+=("$down")
    wait_healthy 23134
  fi
  if [[ "$s" == *-timescaledb* ]]; then pg_start; fi
  if [ "$s" = grpc-batch-loki ]; then
    "$LOKISINK" --listen 127.0.0.1:25100 >"$TMP/sink.out" 2>"$TMP/sink.log" &
    down=$!; PIDS+=("$down")
    wait_healthy 25100
  fi
  if [[ "$s" == *tls* ]]; then make_certs "$TMP/tls"; fi
  # Persistent-queue scenarios start from an empty queue each run.
  rm -rf "$TMP/queue" "$TMP/archive"
  BENCH_TLS_DIR="$TMP/tls" BENCH_QUEUE_DIR="$TMP/queue" BENCH_ARCHIVE_DIR="$TMP/archive" "$BIN" "${cfgs[@]}" 2>"$TMP/$s.log" &
  pid=$!; PIDS+=("$pid")
  wait_healthy 23133
  proto=grpc; endpoint=127.0.0.1:24317; extra=(); unit=spans
  if [[ "$s" == *-loki ]]; then extra=(--signal logs); unit=records; fi
  if [[ "$s" == *-timescaledb ]]; then extra=(--signal metrics --retry); unit=points; fi
  # Traces: only the model calls among them become llm_calls rows.
  if [[ "$s" == *-timescaledb-llm ]]; then extra=(--retry); fi
  if [[ "$s" == *-parquet ]]; then extra=(--retry); fi
  if [[ "$s" == http-* ]]; then proto=http; endpoint=http://127.0.0.1:24318; fi
  if [[ "$s" == *tls* ]]; then extra+=(--ca-file "$TMP/tls/ca.pem"); fi
  if [[ "$s" == *mtls* ]]; then extra+=(--cert-file "$TMP/tls/client.pem" --key-file "$TMP/tls/client.key"); fi
  # The exporter path is slower than intake; clients that back off on
  # "retry later" (as SDKs do) measure what it sustains, not refusals.
  if [[ "$s" == grpc-batch-otlp* ]] || [ "$s" = grpc-batch-loki ] || [ "$s" = unreachable-otlp ]; then extra+=(--retry); fi
  # The full chain holds 10 s of traffic; it is measured at the issue's
  # target rate unless RATE says otherwise.
  rate=$RATE
  if [[ "$s" == full-chain* || "$s" == llm-gateway-example ]] && [ "$RATE" = 0 ]; then rate=150000; fi
  # The tail sampler must see new traces, as in real traffic, not the
  # loadgen pool's few thousand over and over.
  if [ "$s" = full-chain ] || [ "$s" = full-chain-ui-open ] || [ "$s" = full-chain-held-none ] || [ "$s" = llm-gateway-example ]; then extra+=(--unique-traces); fi
  browser=""
  if [ "$s" = full-chain-ui-open ]; then
    # Debian's chromium, headless, with the page open (its event stream
    # makes the collector build the view every second) for the whole run.
    # Its own process group, so the renderers it starts go with it.
    setsid chromium --headless --no-sandbox --disable-gpu --no-zygote --disable-dev-shm-usage \
      --remote-debugging-port=0 --user-data-dir="$TMP/chromium" http://127.0.0.1:25679/ 2>"$TMP/chromium.log" &
    browser=$!
    for _ in $(seq 1 100); do
      ss -Htn state established '( sport = :25679 )' | grep -q . && break
      sleep 0.1
    done
  fi
  # Each trace's spans in three requests a second apart, fresh trace ids.
  if [ "$s" = full-chain-spread ]; then extra+=(--spread 3 --spread-delay 1s --retry); fi
  c0=$(cpu_ticks "$pid"); d0=0; [ -n "$down" ] && d0=$(cpu_ticks "$down")
  # Sample RSS while loadgen runs to show whether it grows with volume.
  ( while kill -0 "$pid" 2>/dev/null; do rss_kib "$pid"; sleep 1; done ) >"$TMP/rss" 2>/dev/null &
  sampler=$!
  "$LOADGEN" --protocol "$proto" --endpoint "$endpoint" --duration "$DURATION" \
    --concurrency "$CONCURRENCY" --batch-size "$BATCH" --rate "$rate" "${extra[@]}" >"$TMP/sum" 2>"$TMP/loadgen.log"
  c1=$(cpu_ticks "$pid"); d1=0; [ -n "$down" ] && d1=$(cpu_ticks "$down")
  hwm=$(hwm_kib "$pid")
  if [ -n "$browser" ]; then
    open=$(ss -Htn state established '( sport = :25679 )' | wc -l)
    kill -TERM -- "-$browser" 2>/dev/null || true; wait "$browser" 2>/dev/null || true
    echo "                 live page: $open connection(s) open to it at the end of the run"
  fi
  kill "$sampler" 2>/dev/null || true
  accepted=$(sed -n 's/.* accepted=\([0-9]*\) .*/\1/p' "$TMP/sum")
  secs=$(sed -n 's/.* seconds=\([0-9.]*\) .*/\1/p' "$TMP/sum")
  refused=$(sed -n 's/.* refused=\([0-9]*\) .*/\1/p' "$TMP/sum")
  p99=$(sed -n 's/.* p99_ms=\([0-9.]*\).*/\1/p' "$TMP/sum")
  n=$(wc -l <"$TMP/rss")
  early=$(head -n $(( n/3 > 0 ? n/3 : 1 )) "$TMP/rss" | sort -n | tail -1)
  late=$(tail -n $(( n/3 > 0 ? n/3 : 1 )) "$TMP/rss" | sort -n | tail -1)
  awk -v s="$s" -v u="$unit" -v a="$accepted" -v t="$secs" -v c="$((c1 - c0))" -v d="$((d1 - d0))" -v h="$hwm" \
      -v r="$refused" -v p="$p99" -v e="$early" -v l="$late" 'BEGIN {
    cpu = c / 100; per_m = (a > 0) ? cpu / (a / 1e6) : 0
    line = sprintf("%-16s accepted %9.0f %s/s  collector %.2f CPU-s/M %s  peak RSS %.1f MiB  RSS early/late %.1f/%.1f MiB  refused %d  p99 %.1f ms",
                   s, a / t, u, per_m, u, h / 1024, e / 1024, l / 1024, r, p)
    if (d > 0) line = line sprintf("  downstream %.2f CPU-s/M", (d / 100) / (a / 1e6))
    print line }'
  # Traces the sampler decided before decision_wait (num_traces full, or
  # a trace over maximum_trace_size_bytes): a sizing check for the config.
  if [[ "$s" == full-chain* || "$s" == llm-gateway-example ]]; then
    decided_early=$(curl -sf http://127.0.0.1:28888/metrics | awk '/^observatory_processor_tail_sampling_early_decisions_total/ {n += $2} END {print n + 0}')
    echo "                 tail_sampling: $decided_early traces decided early"
  fi
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  [ -n "$down" ] && { kill -TERM "$down"; wait "$down" 2>/dev/null || true; }
  # The sink's count: what reached Loki's wire format, against what was accepted.
  if [ "$s" = grpc-batch-loki ]; then echo "                 $(cat "$TMP/sink.out") (accepted $accepted)"; fi
  # The rows in PostgreSQL after the collector drained, against what was accepted.
  if [[ "$s" == *-parquet ]]; then echo "                 parquet: $("$PQROWS" "$TMP/archive") (accepted $accepted)"; fi
  if [[ "$s" == *-timescaledb ]]; then echo "                 postgres: rows=$(pg_rows) (accepted $accepted)"; pg_stop; fi
  if [[ "$s" == *-timescaledb-llm ]]; then echo "                 postgres: llm_calls rows=$(pg_calls) (accepted spans $accepted)"; pg_stop; fi
  PIDS=()
done
