#!/usr/bin/env bash
# The Kafka tests run against tansu, an Apache-2 Kafka-compatible broker
# (no Kafka broker is packaged in Debian), with its PostgreSQL storage so
# topics and offsets outlive a broker restart. It is a large build (8m47s
# on the 2-core dev machine), so the binary is cached outside the repo and
# this script does nothing when it is already there.
#   TANSU_ROOT  where to install (default ~/.cache/observatory/tansu)
set -euo pipefail
root="${TANSU_ROOT:-$HOME/.cache/observatory/tansu}"
if [ -x "$root/bin/tansu" ] && "$root/bin/tansu" --version 2>/dev/null | grep -q '0\.6\.0'; then
  exit 0
fi
echo "installing tansu 0.6.0 (postgres storage) into $root; this takes about 9 minutes" >&2
cargo install --locked --quiet tansu --version 0.6.0 --features postgres --root "$root"
