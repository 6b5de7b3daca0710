#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every unit,
# component and end-to-end test (the latter start the real binary on real
# sockets). Run from anywhere: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the suite needs beyond the Rust toolchain; installed when missing.
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v kill >/dev/null 2>&1 || need+=(procps)
# The fleet test puts Debian's HAProxy in front of three instances.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
# The live page's test opens it in Debian's headless Chromium; the
# `observatory top` tests run it in a tmux pane and read the screen.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
# The timescaledb tests start a real PostgreSQL server in a temp dir.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
# The Kafka client builds librdkafka from source and links OpenSSL.
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q && apt-get install -y -q "${need[@]}"
  else
    sudo apt-get update -q && sudo apt-get install -y -q "${need[@]}"
  fi
fi

# One timescaledb test loads the TimescaleDB extension (built from Debian's
# source: bookworm has no package for it).
scripts/install-timescaledb.sh

# The parquet exporter's S3 test runs against moto's S3 server (PyPI).
python3 -c "import moto.server" 2>/dev/null || python3 -m pip install -q 'moto[server]'

# The Kafka tests run a real Kafka-protocol broker (tansu, cached outside the
# repo) and read messages back with kafka-python, which shares no code with
# our client.
scripts/install-tansu.sh
python3 -c "import kafka" 2>/dev/null || python3 -m pip install -q kafka-python

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
# The fleet and live-page tests drive the collector with the real loadgen binary.
cargo build -q -p benches --bin loadgen
cargo test --workspace
