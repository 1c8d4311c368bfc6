#!/usr/bin/env bash
# Fetch a real redis-server for the Redis budget-store tests from Debian, without root and
# without touching the system's apt sources or its installed packages:
#
#   redis-server   (packages redis-server and redis-tools, plus the libjemalloc2 and liblzf1
#                   libraries it links, which a minimal system does not have)
#
# Usage:  eval "$(bash scripts/fetch-redis.sh [CACHE_DIR])"
#
# The suite defaults to the host's own Debian release (VERSION_CODENAME in /etc/os-release):
# a newer suite's redis needs a newer glibc than the host has (trixie's needs glibc 2.38,
# bookworm has 2.36). The packages are downloaded with `apt-get download` through a private
# apt configuration in CACHE_DIR/apt and unpacked with `dpkg -x` into CACHE_DIR/root.
# CACHE_DIR/bin/redis-server is a wrapper that runs the unpacked binary with LD_LIBRARY_PATH
# pointing at the unpacked libraries (it execs, so its PID is redis-server's).
#
# stdout: only `export NAME=VALUE` lines for REDIS_SERVER. Progress and errors go to stderr.
#
# Environment:
#   OBS_MIRROR    Debian mirror URI (default: the one in the system's apt sources)
#   REDIS_SUITE   Debian suite (default: the host's release codename, else trixie)
#   OBS_KEYRING   keyring that signs the suite (default: the debian-archive-keyring file)
#   OBS_FORCE=1   re-check the mirror even if the index is fresh
set -euo pipefail

log() { printf '[fetch-redis] %s\n' "$*" >&2; }
die() {
    printf '[fetch-redis] ERROR: %s\n' "$*" >&2
    exit 1
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${1:-$REPO_ROOT/.cache/redis}
host_suite() { (. /etc/os-release 2>/dev/null && printf '%s\n' "${VERSION_CODENAME:-}") || true; }
SUITE=${REDIS_SUITE:-$(host_suite)}
SUITE=${SUITE:-trixie}
KEYRING=${OBS_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
PACKAGES=(redis-server redis-tools libjemalloc2 liblzf1)
INDEX_MAX_AGE_MIN=1440

for tool in apt-get apt-cache dpkg-deb flock; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found: this script needs a Debian-based system"
done

mkdir -p "$CACHE_DIR"
CACHE_DIR=$(cd "$CACHE_DIR" && pwd)
APTDIR=$CACHE_DIR/apt
ROOT=$CACHE_DIR/root
BIN=$CACHE_DIR/bin
ARCHIVES=$APTDIR/cache/archives
STAMP=$CACHE_DIR/.index-stamp
MANIFEST=$ROOT/.redis-versions

if { exec 9>>"$CACHE_DIR/.lock"; } 2>/dev/null; then
    flock -w 900 9 || die "timed out waiting for the lock on $CACHE_DIR/.lock"
fi

print_exports() { printf 'export %s=%q\n' REDIS_SERVER "$BIN/redis-server"; }

tree_complete() {
    [ -f "$MANIFEST" ] && [ "$(head -n1 "$MANIFEST")" = "suite $SUITE" ] && [ -x "$BIN/redis-server" ] &&
        "$BIN/redis-server" --version >/dev/null 2>&1
}

index_fresh() { [ -f "$STAMP" ] && [ -n "$(find "$STAMP" -mmin -"$INDEX_MAX_AGE_MIN" 2>/dev/null)" ]; }

if [ "${OBS_FORCE:-0}" != 1 ] && tree_complete && index_fresh; then
    log "up to date in $CACHE_DIR (index < 24 h old); no apt calls"
    print_exports
    exit 0
fi

# shellcheck source=scripts/debian-mirror.sh
source "$REPO_ROOT/scripts/debian-mirror.sh"
if [ -n "${OBS_MIRROR:-}" ]; then
    MIRROR=${OBS_MIRROR%/}
else
    MIRROR=$(find_mirror) || die "no Debian mirror found in the system's apt sources; set OBS_MIRROR=<uri>/debian"
fi
[ -r "$KEYRING" ] || die "keyring $KEYRING not readable (install debian-archive-keyring or set OBS_KEYRING)"

private_apt  # scripts/debian-mirror.sh: APT_OPTS

use_stale_tree_or_die() {
    if [ "${OBS_FORCE:-0}" != 1 ] && tree_complete; then
        log "WARNING: $1; using the existing tree in $CACHE_DIR"
        print_exports
        exit 0
    fi
    die "$1"
}

log "updating the $SUITE index from $MIRROR (private apt config in $APTDIR)"
if ! timeout 600 apt-get "${APT_OPTS[@]}" -q --error-on=any update >&2; then
    use_stale_tree_or_die "cannot reach the Debian mirror $MIRROR (apt-get update for $SUITE failed)"
fi
want=("suite $SUITE")
for pkg in "${PACKAGES[@]}"; do
    ver=$(apt-cache "${APT_OPTS[@]}" policy "$pkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }')
    if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
        use_stale_tree_or_die "package $pkg not found in $SUITE at $MIRROR"
    fi
    want+=("$pkg $ver")
done
touch "$STAMP"
if tree_complete && [ "$(cat "$MANIFEST")" = "$(printf '%s\n' "${want[@]}")" ]; then
    log "unpacked versions match the $SUITE candidates; nothing to do"
    print_exports
    exit 0
fi

NEW_ROOT=$CACHE_DIR/root.new.$$
trap 'rm -rf -- "$NEW_ROOT"' EXIT
rm -rf -- "$NEW_ROOT" "$ARCHIVES"/*.deb
mkdir -p "$NEW_ROOT"
log "downloading ${PACKAGES[*]} ($SUITE)"
(cd "$ARCHIVES" && timeout 900 apt-get "${APT_OPTS[@]}" -q download "${PACKAGES[@]}" >&2) ||
    use_stale_tree_or_die "apt-get download ${PACKAGES[*]} from $MIRROR failed"
for deb in "$ARCHIVES"/*.deb; do
    dpkg-deb -x "$deb" "$NEW_ROOT"
done
rm -rf -- "$NEW_ROOT/usr/share/doc" "$NEW_ROOT/usr/share/man" "$NEW_ROOT/usr/share/lintian"
printf '%s\n' "${want[@]}" >"$NEW_ROOT/.redis-versions"
rm -rf -- "$ROOT"
mv -- "$NEW_ROOT" "$ROOT"
trap - EXIT

# redis-server is a symlink to redis-check-rdb (one binary; it picks its role from argv[0]).
[ -e "$ROOT/usr/bin/redis-server" ] || die "redis-server not found in the unpacked packages under $ROOT"
rm -rf -- "$BIN"
mkdir -p "$BIN"
cat >"$BIN/redis-server" <<'WRAPPER'
#!/bin/sh
# Generated by scripts/fetch-redis.sh: Debian's redis-server from the unpacked tree, with the
# libraries that came with it (libjemalloc2, liblzf1) on the library path.
here=$(dirname "$(readlink -f "$0")")
root=$(readlink -f "$here/../root")
LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/usr/lib/$(uname -m)-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec "$root/usr/bin/redis-server" "$@"
WRAPPER
chmod 0755 "$BIN/redis-server"
"$BIN/redis-server" --version >&2 || die "the unpacked redis-server does not run on this host (suite $SUITE; set REDIS_SUITE?)"
rm -f -- "$APTDIR/cache/pkgcache.bin" "$APTDIR/cache/srcpkgcache.bin"
log "ready: $BIN/redis-server ($(printf '%s; ' "${want[@]}"))"
print_exports
