#!/usr/bin/env bash
# Installs TimescaleDB for the newest PostgreSQL under /usr/lib/postgresql,
# for the timescaledb exporter's tests. Bookworm has no TimescaleDB package,
# so this builds the source Debian ships for trixie (the Apache-2 edition:
# hypertables, no compression, policies or continuous aggregates) with
# cmake against the installed server. Does nothing when already installed.
set -euo pipefail
VERSION=2.19.3
TARBALL=timescaledb_${VERSION}+dfsg.orig.tar.xz
SHA256=09fd11191768c220b071f61a108df9bd1df5522fbe4e7c2229f30f69b195454a

PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
MAJOR=$(basename "$(dirname "$PGBIN")")
[ -f "/usr/lib/postgresql/$MAJOR/lib/timescaledb-$VERSION.so" ] && exit 0

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
[ -f "/usr/include/postgresql/$MAJOR/server/postgres.h" ] || need+=("postgresql-server-dev-$MAJOR")
if [ ${#need[@]} -gt 0 ]; then
  as_root apt-get update -q && as_root apt-get install -y -q "${need[@]}"
fi

# The Debian archive this machine's apt already uses (its pool holds every
# suite's sources), so no mirror is written into the repo.
debian_mirror() {
  {
    grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | sed 's/^URIs://' | tr ' ' '\n' || true
    { grep -hsE '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list || true; } |
      sed -E 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1}'
  } | { grep -E '^https?://' || true; } | { grep -v -- '-security' || true; } |
    { grep -E '/debian/?$' || true; } | head -n 1 | sed 's:/*$::'
}
MIRROR=$(debian_mirror)
if [ -z "$MIRROR" ]; then
  echo "install-timescaledb: no Debian archive found in the apt sources (/etc/apt/sources.list*)" >&2
  exit 1
fi
URL=$MIRROR/pool/main/t/timescaledb/$TARBALL

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsS --retry 3 -o "$work/$TARBALL" "$URL"
echo "$SHA256  $work/$TARBALL" | sha256sum -c --quiet
tar -xf "$work/$TARBALL" -C "$work"
cd "$work/timescaledb-$VERSION"
# Quiet unless a step fails; then its log is shown.
step() { local log=$work/$1.log; shift; "$@" >"$log" 2>&1 || { tail -n 40 "$log"; exit 1; }; }
step bootstrap ./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
  -DWARNINGS_AS_ERRORS=OFF -DSEND_TELEMETRY_DEFAULT=OFF \
  -DPG_CONFIG="/usr/lib/postgresql/$MAJOR/bin/pg_config"
step make make -C build -j"$(nproc)"
step install as_root make -C build install
echo "TimescaleDB $VERSION (Apache-2 edition) installed for PostgreSQL $MAJOR"
