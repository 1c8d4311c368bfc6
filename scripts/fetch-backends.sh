#!/usr/bin/env bash
# Fetch real observability backends for the end-to-end tests from Debian trixie,
# without Docker and without touching the system's apt sources:
#
#   prometheus, promtool                 (package prometheus, promtool)
#   alertmanager, amtool                 (package prometheus-alertmanager)
#   vmagent                              (package victoria-metrics; receives OTLP/HTTP metrics)
#
# Usage:  eval "$(bash scripts/fetch-backends.sh [CACHE_DIR])"
#
# CACHE_DIR defaults to .cache/obs under the repository root. The packages are
# downloaded with `apt-get download` through a private apt configuration that lives in
# CACHE_DIR/apt and unpacked with `dpkg -x` into CACHE_DIR/root. CACHE_DIR/bin gets
# prometheus, promtool, amtool, vmagent (symlinks) and alertmanager (a wrapper script,
# see below).
#
# stdout: only `export NAME=VALUE` lines for PROMETHEUS PROMTOOL AMTOOL ALERTMANAGER
#         VMAGENT OBS_BIN. Progress and errors go to stderr.
#
# Environment:
#   OBS_MIRROR   Debian mirror URI (default: the Debian mirror found in the system's apt
#                sources, /etc/apt/sources.list and /etc/apt/sources.list.d/*)
#   OBS_SUITE    Debian suite to fetch from (default: trixie)
#   OBS_KEYRING  keyring that signs the suite (default: the debian-archive-keyring file)
#   OBS_FORCE=1  re-check the mirror even if the index is fresh
#   OBS_PRUNE=0  keep docs, man pages and unused VictoriaMetrics tools
#
# Fast path: when the unpacked tree is complete and the package index is less than 24 h
# old, no apt command runs at all. When the index is older and the mirror cannot be
# reached, an existing complete tree is still used (with a warning); without a tree the
# script exits non-zero.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/debian-mirror.sh
source "$REPO_ROOT/scripts/debian-mirror.sh"  # log, die and the steps below
LOG_TAG=fetch-backends
CACHE_DIR=${1:-$REPO_ROOT/.cache/obs}
SUITE=${OBS_SUITE:-trixie}
PACKAGES=(prometheus promtool prometheus-alertmanager victoria-metrics)
# name in bin/  ->  binary name inside the unpacked packages
BIN_NAMES=(prometheus promtool amtool alertmanager vmagent)

need_tools apt-get apt-cache dpkg-deb flock
open_cache .obs-versions

print_exports() {
    printf 'export %s=%q\n' \
        PROMETHEUS "$BIN/prometheus" \
        PROMTOOL "$BIN/promtool" \
        AMTOOL "$BIN/amtool" \
        ALERTMANAGER "$BIN/alertmanager" \
        VMAGENT "$BIN/vmagent" \
        OBS_BIN "$BIN"
}

tree_complete() {
    [ -f "$MANIFEST" ] || return 1
    local name
    for name in "${BIN_NAMES[@]}"; do
        [ -x "$BIN/$name" ] || return 1
    done
    [ -x "$ROOT/usr/bin/prometheus-alertmanager" ] || return 1
}

exit_if_fresh
resolve_mirror
private_apt
apt_update "cannot reach the Debian mirror $MIRROR (apt-get update for $SUITE failed; set OBS_MIRROR to another mirror?)"
want_candidates  # WANT: "PACKAGE VERSION" lines, which are also the manifest
touch "$STAMP"
exit_if_unchanged "$(printf '%s\n' "${WANT[@]}")"

# ---- download --------------------------------------------------------------------------
# Prints the cached .deb of PKG at VERSION, if any.
cached_deb() {
    local f
    for f in "$ARCHIVES/$1"_*.deb; do
        [ -f "$f" ] || continue
        if [ "$(dpkg-deb -f "$f" Package Version 2>/dev/null | tr '\n' ' ')" = "Package: $1 Version: $2 " ]; then
            printf '%s\n' "$f"
            return 0
        fi
    done
    return 1
}

DEBS=()
for pv in "${WANT[@]}"; do
    pkg=${pv%% *}
    ver=${pv#* }
    if ! deb=$(cached_deb "$pkg" "$ver"); then
        # Drop other versions of this package, then download the candidate.
        for f in "$ARCHIVES/$pkg"_*.deb; do
            if [ -f "$f" ]; then rm -f -- "$f"; fi
        done
        log "downloading $pkg $ver"
        apt_download "apt-get download $pkg=$ver from $MIRROR failed" "$pkg=$ver"
        deb=$(cached_deb "$pkg" "$ver") || die "downloaded $pkg $ver but found no matching .deb in $ARCHIVES"
    else
        log "using cached $(basename "$deb")"
    fi
    DEBS+=("$deb")
done

# ---- unpack ----------------------------------------------------------------------------
start_new_root
for deb in "${DEBS[@]}"; do
    log "unpacking $(basename "$deb")"
    dpkg-deb -x "$deb" "$NEW_ROOT"
done
if [ "${OBS_PRUNE:-1}" != 0 ]; then
    rm -rf -- "$NEW_ROOT/usr/share/doc" "$NEW_ROOT/usr/share/man" "$NEW_ROOT/usr/share/lintian"
    for unused in vmbackup vmrestore vmctl vmauth; do rm -f -- "$NEW_ROOT/usr/bin/$unused"; done
fi
install_new_root "$(printf '%s\n' "${WANT[@]}")"

# ---- bin/ ------------------------------------------------------------------------------
find_binary() {
    local d
    for d in usr/bin usr/sbin bin sbin; do
        if [ -x "$ROOT/$d/$1" ]; then
            printf '%s\n' "$d/$1"
            return 0
        fi
    done
    die "binary $1 not found in the unpacked packages under $ROOT"
}

rm -rf -- "$BIN"
mkdir -p "$BIN"
for pair in prometheus:prometheus promtool:promtool amtool:amtool vmagent:vmagent; do
    name=${pair%%:*}
    rel=$(find_binary "${pair#*:}")
    ln -s "../root/$rel" "$BIN/$name"
done
find_binary prometheus-alertmanager >/dev/null

# Debian's Alertmanager (patch 02-Do_not_embed_blobs) loads its default template from the
# hard-coded path /usr/share/prometheus/alertmanager/default.tmpl and exits without it.
# The wrapper overlays the unpacked usr/share on top of /usr/share inside a private mount
# namespace of its own (a user namespace too when not root), so nothing changes on the
# host. Both sh and unshare exec, so the wrapper's PID ends up being Alertmanager's.
cat >"$BIN/alertmanager" <<'WRAPPER'
#!/bin/sh
# Generated by scripts/fetch-backends.sh: runs Debian's prometheus-alertmanager from the
# unpacked tree with its hard-coded template directory made visible.
set -e
here=$(dirname "$(readlink -f "$0")")
root=$(readlink -f "$here/../root")
am=$root/usr/bin/prometheus-alertmanager
if [ -r /usr/share/prometheus/alertmanager/default.tmpl ]; then
    exec "$am" "$@"
fi
command -v unshare >/dev/null 2>&1 || {
    echo "alertmanager wrapper: 'unshare' (util-linux) is needed to overlay the templates" >&2
    exit 1
}
case "$root" in *:* | *,*)
    echo "alertmanager wrapper: the cache path must not contain ':' or ',': $root" >&2
    exit 1
    ;;
esac
if [ "$(id -u)" = 0 ]; then ns=-m; else ns=-Urm; fi
exec unshare "$ns" --propagation private sh -c '
    root=$1; shift
    if ! mount -t overlay obs-am -o "lowerdir=$root/usr/share:/usr/share" /usr/share; then
        echo "alertmanager wrapper: cannot overlay $root/usr/share on /usr/share (mount namespaces or overlayfs not permitted?)" >&2
        exit 1
    fi
    exec "$@"
' alertmanager-wrapper "$root" "$am" "$@"
WRAPPER
chmod 0755 "$BIN/alertmanager"

for name in "${BIN_NAMES[@]}"; do
    [ -x "$BIN/$name" ] || die "$BIN/$name is missing or not executable"
done
finish "ready in $BIN: $(printf '%s ' "${WANT[@]}")"
