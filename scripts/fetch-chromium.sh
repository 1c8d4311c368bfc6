#!/usr/bin/env bash
# Fetch Debian's chromium (the headless browser for the UI tests) without root and without
# touching the system's apt sources or its installed packages.
#
# Usage:  eval "$(bash scripts/fetch-chromium.sh [CACHE_DIR])"
#
# CACHE_DIR defaults to .cache/chromium under the repository root. The suite defaults to the
# host's own Debian release (VERSION_CODENAME in /etc/os-release), plus its security suite:
# on bookworm the maintained chromium is in bookworm-security (the point-release copy in
# bookworm is older). find_mirror (scripts/debian-mirror.sh) skips security entries, so the
# security mirror is read from the system's apt sources separately (deb.debian.org/debian-security
# in the deb822 file of a stock install) and added to the private sources list; the same
# debian-archive-keyring signs both suites.
#
# What is downloaded: chromium and chromium-common plus the dependencies (no Recommends) that
# the host does not already have. apt resolves them itself, in simulation, against a copy of
# the host's dpkg status (/var/lib/dpkg/status), so installed packages are reused unless a
# versioned dependency needs a newer one (libc6 is never shadowed). A few dependencies that headless chromium never loads are marked as
# installed in that copy so that their own dependency trees are not fetched either: x11-utils
# and xdg-utils (desktop helper tools), libgtk-3-0 (chromium dlopens GTK only for its desktop
# UI; it is no DT_NEEDED of the binary) and dconf-gsettings-backend. The packages are fetched
# with `apt-get download` through a private apt configuration in CACHE_DIR/apt and unpacked
# with `dpkg-deb -x` into CACHE_DIR/root; the .deb files are deleted once unpacked.
# CACHE_DIR/bin/chromium is a wrapper that runs root/usr/lib/chromium/chromium with
# LD_LIBRARY_PATH pointing at the unpacked libraries (it execs, so its PID is the browser's),
# not Debian's /usr/bin/chromium launcher (which reads /etc/chromium.d). The wrapper adds no
# flags except --disable-dev-shm-usage when /dev/shm has less than 3.8 GB free, as Debian's
# launcher does. Callers pass --headless and, when running as root or without user
# namespaces, --no-sandbox (chromium-sandbox is setuid and cannot work unpacked).
#
# After every (re)download a self-check takes a headless screenshot of a data: URL and fails
# if no PNG comes out.
#
# stdout: only `export CHROMIUM=<path>`. Progress and errors go to stderr.
#
# Environment:
#   OBS_MIRROR                Debian mirror URI (default: the one in the system's apt sources)
#   CHROMIUM_SUITE            Debian suite (default: the host's release codename, else bookworm)
#   CHROMIUM_SECURITY_MIRROR  security mirror URI (default: the one in the system's apt sources
#                             for <suite>-security, else http://security.debian.org/debian-security);
#                             "none" to use the main suite only
#   CHROMIUM_HOST_STATUS      dpkg status file describing the host (default /var/lib/dpkg/status)
#   OBS_KEYRING               keyring that signs the suites (default: the debian-archive-keyring file)
#   OBS_FORCE=1               re-check the mirror even if the index is fresh
#
# Fast path: when the unpacked tree is complete (the wrapper runs `--version`) and the package
# index is less than 24 h old, no apt command runs at all. When the index is older and the
# mirror cannot be reached, an existing complete tree is still used (with a warning).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/debian-mirror.sh
source "$REPO_ROOT/scripts/debian-mirror.sh"  # log, die and the steps below
LOG_TAG=fetch-chromium
CACHE_DIR=${1:-$REPO_ROOT/.cache/chromium}
SUITE=${CHROMIUM_SUITE:-$(host_suite)}
SUITE=${SUITE:-bookworm}
HOST_STATUS=${CHROMIUM_HOST_STATUS:-/var/lib/dpkg/status}
PACKAGES=(chromium chromium-common)
# Dependencies that headless chromium does not use; they are treated as installed (see above).
STUB_PACKAGES=(x11-utils xdg-utils libgtk-3-0 dconf-gsettings-backend)

need_tools apt-get apt-cache dpkg-deb flock timeout
open_cache .chromium-versions

print_exports() { printf 'export %s=%q\n' CHROMIUM "$BIN/chromium"; }

# The manifest's first line names the suites, so changing CHROMIUM_SUITE refetches.
manifest_head() {
    if [ "${CHROMIUM_SECURITY_MIRROR:-}" = none ]; then printf 'suite %s\n' "$SUITE"; else printf 'suite %s + security\n' "$SUITE"; fi
}

tree_complete() {
    [ -f "$MANIFEST" ] && [ "$(head -n1 "$MANIFEST")" = "$(manifest_head)" ] && [ -x "$BIN/chromium" ] &&
        timeout 30 "$BIN/chromium" --version >/dev/null 2>&1
}

exit_if_fresh
resolve_mirror
[ -r "$HOST_STATUS" ] || die "dpkg status $HOST_STATUS not readable (set CHROMIUM_HOST_STATUS)"

# Prints "URI SUITE" of the system's security source for $SUITE (bullseye and later name it
# <suite>-security, older releases <suite>/updates); non-zero when there is none.
find_security_mirror() {
    local uri suite
    while read -r uri suite; do
        case "$uri" in http://* | https://* | ftp://* | file:/*) ;; *) continue ;; esac
        case "$suite" in "$SUITE-security" | "$SUITE/updates")
            printf '%s %s\n' "${uri%/}" "$suite"
            return 0
            ;;
        esac
    done < <(list_system_sources)
    return 1
}

SECURITY_SUITE=$SUITE-security
case "${CHROMIUM_SECURITY_MIRROR:-}" in
    none) SECURITY_MIRROR= ;;
    ?*) SECURITY_MIRROR=${CHROMIUM_SECURITY_MIRROR%/} ;;
    *)
        if found=$(find_security_mirror); then
            read -r SECURITY_MIRROR SECURITY_SUITE <<<"$found"
        else
            case "$SUITE" in
                sid | unstable | experimental) SECURITY_MIRROR= ;;
                *)
                    SECURITY_MIRROR=http://security.debian.org/debian-security
                    log "no $SUITE-security entry in the system's apt sources; using $SECURITY_MIRROR"
                    ;;
            esac
        fi
        ;;
esac

private_apt  # scripts/debian-mirror.sh: APT_OPTS (main suite only)
if [ -n "$SECURITY_MIRROR" ]; then
    printf 'deb [signed-by=%s] %s %s main\n' "$KEYRING" "$SECURITY_MIRROR" "$SECURITY_SUITE" \
        >"$APTDIR/etc/sources.list.d/security.list"
else
    rm -f -- "$APTDIR/etc/sources.list.d/security.list"
fi

apt_update "apt-get update failed for $SUITE${SECURITY_MIRROR:+ / $SECURITY_SUITE} (mirror unreachable or no such suite)" \
    "the $SUITE${SECURITY_MIRROR:+ + $SECURITY_SUITE} index from $MIRROR${SECURITY_MIRROR:+ and $SECURITY_MIRROR}"

# The private status: the host's packages, plus stubs for the unused dependencies.
{
    cat -- "$HOST_STATUS"
    printf '\n'
    for pkg in "${STUB_PACKAGES[@]}"; do
        grep -qx "Package: $pkg" "$HOST_STATUS" && continue
        printf 'Package: %s\nStatus: install ok installed\nPriority: optional\nArchitecture: all\n' "$pkg"
        printf 'Version: 0~fetch-chromium-stub\nMaintainer: none\nDescription: not needed by headless chromium\n\n'
    done
} >"$APTDIR/status"

# "Inst NAME [OLD] (NEW ...)" lines of a simulated install = what the host lacks or has too old.
resolved=$(timeout 300 apt-get "${APT_OPTS[@]}" -q -s --no-install-recommends install "${PACKAGES[@]}" 2>&1) ||
    use_stale_tree_or_die "apt cannot resolve ${PACKAGES[*]} in $SUITE: $(printf '%s\n' "$resolved" | grep '^E:' | head -n3 | tr '\n' ' ')"
mapfile -t closure < <(printf '%s\n' "$resolved" | awk '$1 == "Inst" { match($0, /\([^ ]+/); print $2 "=" substr($0, RSTART + 1, RLENGTH - 1) }')
for pkg in "${PACKAGES[@]}"; do  # already installed on the host: fetch them anyway
    if ! printf '%s\n' "${closure[@]}" | grep -q "^$pkg="; then
        ver=$(candidate_version "$pkg") || use_stale_tree_or_die "package $pkg not found in $SUITE"
        closure+=("$pkg=$ver")
    fi
done
want=()
for pv in "${closure[@]}"; do
    case "${pv%%=*}" in
        libc6 | libc6:* | libc-bin | libc-bin:*)  # the host's loader must match its libc: never shadow it
            log "WARNING: the host's libc6 is older than $pv; chromium may not start (upgrade the host)"
            continue
            ;;
    esac
    want+=("$pv")
done
mapfile -t want < <(printf '%s\n' "${want[@]}" | LC_ALL=C sort)
chromium_ver=$(printf '%s\n' "${want[@]}" | sed -n 's/^chromium=//p')
log "chromium candidate $chromium_ver; ${#want[@]} packages not on the host: $(printf '%s ' "${want[@]%%=*}")"
touch "$STAMP"
manifest=$(manifest_head; printf '%s\n' "${want[@]}")
exit_if_unchanged "$manifest"

rm -f -- "$ARCHIVES"/*.deb
start_new_root
log "downloading ${#want[@]} packages"
apt_download "apt-get download from $MIRROR${SECURITY_MIRROR:+ / $SECURITY_MIRROR} failed" "${want[@]}"
mib=$(du -cm "$ARCHIVES"/*.deb | awk 'END { print $1 }')
log "unpacking $(find "$ARCHIVES" -maxdepth 1 -name '*.deb' | wc -l) packages ($mib MiB)"
# shellcheck disable=SC2016 # $0 and $1 are sh -c's arguments
find "$ARCHIVES" -maxdepth 1 -name '*.deb' -print0 | xargs -0 -r -n1 -P2 sh -c 'dpkg-deb -x "$1" "$0"' "$NEW_ROOT" ||
    die "dpkg-deb -x failed"
rm -f -- "$ARCHIVES"/*.deb
rm -rf -- "$NEW_ROOT/usr/share/doc" "$NEW_ROOT/usr/share/man" "$NEW_ROOT/usr/share/lintian" "$NEW_ROOT/usr/share/locale"
[ -x "$NEW_ROOT/usr/lib/chromium/chromium" ] || die "usr/lib/chromium/chromium not found in the unpacked packages"

# A fontconfig setup of our own, only when the host has none (fontconfig-config was fetched):
# the package's fonts.conf and conf.d symlinks point into /etc/fonts and /usr/share, which do not
# exist. Same configuration, with paths relative to the unpacked tree (fontconfig's prefix="relative").
if [ -f "$NEW_ROOT/etc/fonts/fonts.conf" ]; then
    {
        printf '%s\n' '<?xml version="1.0"?>' '<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">' \
            '<!-- Generated by scripts/fetch-chromium.sh: the unpacked fonts and Debian'"'"'s default conf.d. -->' \
            '<fontconfig>' \
            '  <dir prefix="relative">../../usr/share/fonts</dir>' \
            '  <dir>/usr/share/fonts</dir>' \
            '  <dir>/usr/local/share/fonts</dir>' '  <dir prefix="xdg">fonts</dir>' \
            '  <cachedir prefix="xdg">fontconfig</cachedir>'
        for link in "$NEW_ROOT"/etc/fonts/conf.d/*.conf; do
            [ -L "$link" ] || continue
            target=$(readlink "$link")
            printf '  <include ignore_missing="yes" prefix="relative">../../usr/share/fontconfig/conf.avail/%s</include>\n' \
                "${target##*/}"
        done
        printf '</fontconfig>\n'
    } >"$NEW_ROOT/etc/fonts/fetch-chromium.conf"
fi

# Every directory with shared libraries (e.g. usr/lib/<triplet>/pulseaudio for libpulsecommon,
# which libpulse finds through a RUNPATH into /usr), except chromium's own.
# shellcheck disable=SC2016 # $root is expanded by the wrapper at run time
ld_dirs=$(cd "$NEW_ROOT" && find . \( -type f -o -type l \) -name 'lib*.so*' -printf '%h\n' |
    grep -v '^\./usr/lib/chromium' | LC_ALL=C sort -u | sed 's|^\./|$root/|' | paste -sd: -)
install_new_root "$manifest"

rm -rf -- "$BIN"
mkdir -p "$BIN"
{
    cat <<'WRAPPER'
#!/bin/sh
# Generated by scripts/fetch-chromium.sh: Debian's chromium from the unpacked tree, with the
# libraries that came with it on the library path. Pass --headless (and --no-sandbox as root).
here=$(dirname "$(readlink -f "$0")")
root=$(readlink -f "$here/../root")
WRAPPER
    # shellcheck disable=SC2016 # expanded by the wrapper
    printf 'LD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"\n' "$ld_dirs"
    cat <<'WRAPPER'
export LD_LIBRARY_PATH
if [ -f "$root/etc/fonts/fetch-chromium.conf" ] && [ -z "${FONTCONFIG_FILE:-}" ]; then
    export FONTCONFIG_FILE="$root/etc/fonts/fetch-chromium.conf"
fi
if [ -d "$root/usr/share/X11/xkb" ] && [ ! -d /usr/share/X11/xkb ] && [ -z "${XKB_CONFIG_ROOT:-}" ]; then
    export XKB_CONFIG_ROOT="$root/usr/share/X11/xkb"
fi
# As Debian's launcher (/etc/chromium.d/dev-shm): a small /dev/shm (containers) crashes renderers.
shm_kib=$(df -Pk /dev/shm 2>/dev/null | { read -r _ && read -r _ _ _ avail _ && echo "$avail"; }) || true
case "$shm_kib" in '' | *[!0-9]*) shm_kib=0 ;; esac
if [ "$shm_kib" -lt 3984589 ]; then
    exec "$root/usr/lib/chromium/chromium" --disable-dev-shm-usage "$@"
fi
exec "$root/usr/lib/chromium/chromium" "$@"
WRAPPER
} >"$BIN/chromium"
chmod 0755 "$BIN/chromium"

rc=0
version=$(timeout 30 "$BIN/chromium" --version 2>&1) || rc=$?
if [ "$rc" != 0 ]; then
    rm -f -- "$MANIFEST"
    die "the unpacked chromium does not run on this host: \`$BIN/chromium --version\` exited with status $rc${version:+: $(printf '%s\n' "$version" | grep . | tail -n1)}"
fi
version=${version%"${version##*[![:space:]]}"}
log "self-check: $version, headless screenshot of a data: URL"
CHECK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/fetch-chromium-check.XXXXXX") || die "cannot create a temporary directory for the self-check"
trap 'rm -rf -- "$CHECK_DIR"' EXIT
png=$CHECK_DIR/check.png
if ! timeout 120 "$BIN/chromium" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$CHECK_DIR/profile" \
    --window-size=640,480 --screenshot="$png" \
    'data:text/html,<title>fetch-chromium</title><h1>fetch-chromium self-check</h1>' \
    >"$CHECK_DIR/log" 2>&1 || [ "$(head -c 4 "$png" 2>/dev/null | tail -c 3)" != PNG ]; then
    cp -f -- "$CHECK_DIR/log" "$CACHE_DIR/self-check.log" 2>/dev/null || true
    rm -f -- "$MANIFEST"  # so that the next run does not take the fast path
    die "self-check failed: chromium --headless --screenshot produced no PNG (log: $CACHE_DIR/self-check.log)"
fi
rm -f -- "$CACHE_DIR/self-check.log"
finish "ready: $BIN/chromium ($version; ${#want[@]} packages, $mib MiB downloaded)"
