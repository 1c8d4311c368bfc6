# shellcheck shell=bash
# Sourced by scripts/fetch-backends.sh, scripts/fetch-redis.sh and scripts/fetch-chromium.sh: the
# steps they share to fetch Debian packages into a cache dir without root and without touching the
# system's apt sources or its installed packages.
#
#   find_mirror   prints the Debian mirror URI that the system's apt sources use (one-line and deb822
#                 formats), e.g. <uri>/debian; non-zero when there is none
#   private_apt   sets up a private apt configuration under $APTDIR for $MIRROR $SUITE signed by $KEYRING,
#                 downloading into $ARCHIVES, and sets APT_OPTS (the options every apt-get / apt-cache needs)
#
# and the skeleton of a fetch script, in the order it runs them:
#
#   log, die, need_tools, host_suite, open_cache, exit_if_fresh, resolve_mirror, (private_apt),
#   apt_update, candidate_version / want_candidates, exit_if_unchanged, start_new_root,
#   apt_download, install_new_root, finish
#
# The script sets LOG_TAG, CACHE_DIR, SUITE and PACKAGES before using them, and defines
# tree_complete (the unpacked tree is there and usable) and print_exports (its stdout contract:
# `export NAME=VALUE` lines only), which several of these call.

# Prints "URI SUITE" for every deb entry of the system's apt sources (one-line and deb822).
list_system_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '
            /^[[:space:]]*#/ { next }
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if (i + 1 <= NF) print $i, $(i + 1)
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk '
            function flush(   u, s, nu, ns, a, b) {
                if (types ~ /(^|[[:space:]])deb([[:space:]]|$)/ && enabled !~ /^[[:space:]]*(no|false|0)/) {
                    nu = split(uris, a, /[[:space:]]+/); ns = split(suites, b, /[[:space:]]+/)
                    for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++)
                        if (a[u] != "" && b[s] != "") print a[u], b[s]
                }
                types = uris = suites = enabled = ""; field = ""
            }
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*$/ { flush(); next }
            /^[ \t]/ {   # continuation line of a multi-line field
                if (field == "uris") uris = uris " " $0
                else if (field == "suites") suites = suites " " $0
                next
            }
            {
                key = tolower($0); sub(/:.*/, "", key)
                val = $0; sub(/^[^:]*:[[:space:]]*/, "", val)
                field = key
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = tolower(val)
            }
            END { flush() }' "$f"
    done
}

find_mirror() {
    local uri suite base
    while read -r uri suite; do
        case "$uri" in http://* | https://* | ftp://* | file:/*) ;; *) continue ;; esac
        case "$uri" in *security*) continue ;; esac
        base=${suite%%-*}
        base=${base%%/*}
        case "$base" in
            sid | unstable | testing | stable | oldstable | oldoldstable | forky | trixie | bookworm | bullseye | buster | duke) ;;
            *) continue ;;
        esac
        case "$suite" in *security* | */updates) continue ;; esac
        printf '%s\n' "${uri%/}"
        return 0
    done < <(list_system_sources)
    return 1
}

# shellcheck disable=SC2153 # SUITE is the fetch script's
private_apt() {
    mkdir -p "$APTDIR/etc/sources.list.d" "$APTDIR/etc/preferences.d" "$APTDIR/lists/partial" "$ARCHIVES/partial"
    [ -f "$APTDIR/status" ] || : >"$APTDIR/status"
    printf 'deb [signed-by=%s] %s %s main\n' "$KEYRING" "$MIRROR" "$SUITE" >"$APTDIR/etc/sources.list"
    local sandbox_user
    if [ "$(id -u)" = 0 ]; then sandbox_user=root; else sandbox_user=$(id -un); fi
    # shellcheck disable=SC2034 # used by the fetch scripts and the functions below
    APT_OPTS=(
        -o "Dir::Etc::SourceList=$APTDIR/etc/sources.list"
        -o "Dir::Etc::SourceParts=$APTDIR/etc/sources.list.d"
        -o "Dir::Etc::Preferences=$APTDIR/etc/preferences"
        -o "Dir::Etc::PreferencesParts=$APTDIR/etc/preferences.d"
        -o "Dir::State::Lists=$APTDIR/lists"
        -o "Dir::State::status=$APTDIR/status"
        -o "Dir::State::extended_states=$APTDIR/extended_states"
        -o "Dir::Cache=$APTDIR/cache"
        -o "Dir::Cache::archives=$ARCHIVES"
        -o "Dir::Cache::pkgcache=pkgcache.bin"
        -o "Dir::Cache::srcpkgcache=srcpkgcache.bin"
        -o "APT::Sandbox::User=$sandbox_user"
        -o "Acquire::Languages=none"
        -o "Acquire::GzipIndexes=true"
        -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
        -o "Acquire::http::Timeout=20"
        -o "Acquire::https::Timeout=20"
        -o "Acquire::Retries=2"
    )
}

# ---- the skeleton of a fetch script --------------------------------------------------------------

INDEX_MAX_AGE_MIN=1440  # how long a package index counts as fresh (the fast path's "24 h")

# Progress and errors, on stderr only (stdout is for the exports), tagged with $LOG_TAG.
log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "$LOG_TAG" "$*" >&2
    exit 1
}

# Dies unless every command named is on PATH.
need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found: this script needs a Debian-based system"
    done
}

# Prints the host's Debian release codename (VERSION_CODENAME in /etc/os-release), or nothing.
host_suite() {
    # shellcheck source=/dev/null
    (. /etc/os-release 2>/dev/null && printf '%s\n' "${VERSION_CODENAME:-}") || true
}

# Creates $CACHE_DIR, makes it absolute and sets the layout inside it: APTDIR (private apt config),
# ARCHIVES (downloaded .debs), ROOT (unpacked tree), MANIFEST ($ROOT/$1, the unpacked versions),
# BIN (what the exports point at) and STAMP (touched when the index was last checked). Then takes
# $CACHE_DIR/.lock for the rest of the run (one run at a time per cache dir, e.g. several pytest
# workers; 15 min at most). A cache that this user cannot write to (made by another user) can
# still be used read-only by the fast path, without the lock.
open_cache() {
    mkdir -p "$CACHE_DIR"
    CACHE_DIR=$(cd "$CACHE_DIR" && pwd)
    APTDIR=$CACHE_DIR/apt
    ARCHIVES=$APTDIR/cache/archives
    ROOT=$CACHE_DIR/root
    MANIFEST=$ROOT/$1
    # shellcheck disable=SC2034 # used by the fetch scripts
    BIN=$CACHE_DIR/bin
    STAMP=$CACHE_DIR/.index-stamp
    if { exec 9>>"$CACHE_DIR/.lock"; } 2>/dev/null; then
        flock -w 900 9 || die "timed out waiting for the lock on $CACHE_DIR/.lock"
    else
        log "warning: cannot create $CACHE_DIR/.lock; running without a lock"
    fi
}

# The index was checked less than INDEX_MAX_AGE_MIN minutes ago.
index_fresh() { [ -f "$STAMP" ] && [ -n "$(find "$STAMP" -mmin -"$INDEX_MAX_AGE_MIN" 2>/dev/null)" ]; }

# Fast path: with a complete tree and a fresh index, prints the exports and exits without running
# any apt command. OBS_FORCE=1 skips it.
exit_if_fresh() {
    if [ "${OBS_FORCE:-0}" != 1 ] && tree_complete && index_fresh; then
        log "up to date in $CACHE_DIR (index < 24 h old); no apt calls"
        print_exports
        exit 0
    fi
}

# Sets MIRROR (OBS_MIRROR, else find_mirror) and KEYRING (OBS_KEYRING, else the
# debian-archive-keyring file); dies when there is no mirror or the keyring is not readable.
resolve_mirror() {
    if [ -n "${OBS_MIRROR:-}" ]; then
        MIRROR=${OBS_MIRROR%/}
    else
        MIRROR=$(find_mirror) || die "no Debian mirror found in the system's apt sources; set OBS_MIRROR=<uri>/debian"
    fi
    KEYRING=${OBS_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
    [ -r "$KEYRING" ] || die "keyring $KEYRING not readable (install debian-archive-keyring or set OBS_KEYRING)"
}

# When the mirror fails us: with a complete tree (and no OBS_FORCE=1), warns with $1, prints the
# exports of the existing tree and exits 0; otherwise dies with $1.
use_stale_tree_or_die() {
    if [ "${OBS_FORCE:-0}" != 1 ] && tree_complete; then
        log "WARNING: $1; using the existing (possibly outdated) tree in $CACHE_DIR"
        print_exports
        exit 0
    fi
    die "$1"
}

# Refreshes the private package index (10 min at most); on failure use_stale_tree_or_die "$1".
# $2 says what is updated (default: the $SUITE index from $MIRROR).
apt_update() {
    log "updating ${2:-the $SUITE index from $MIRROR} (private apt config in $APTDIR)"
    if ! timeout 600 apt-get "${APT_OPTS[@]}" -q --error-on=any update >&2; then
        use_stale_tree_or_die "$1"
    fi
}

# Prints the candidate version of package $1 in the private index; non-zero when there is none.
candidate_version() {
    local ver
    ver=$(apt-cache "${APT_OPTS[@]}" policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }')
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || return 1
    printf '%s\n' "$ver"
}

# Sets WANT to "PACKAGE VERSION" for each of PACKAGES (its candidate); when one has none,
# use_stale_tree_or_die.
want_candidates() {
    local pkg ver
    WANT=()
    for pkg in "${PACKAGES[@]}"; do
        ver=$(candidate_version "$pkg") || use_stale_tree_or_die "package $pkg not found in $SUITE at $MIRROR"
        WANT+=("$pkg $ver")
    done
}

# When the tree is complete and its manifest is already $1 (what the index offers now), prints
# the exports and exits.
exit_if_unchanged() {
    if tree_complete && [ "$(cat "$MANIFEST")" = "$1" ]; then
        log "unpacked versions match the candidates; nothing to do"
        print_exports
        exit 0
    fi
}

# Sets NEW_ROOT to an empty directory next to ROOT to unpack into; it is removed on exit unless
# install_new_root has put it in place.
start_new_root() {
    NEW_ROOT=$CACHE_DIR/root.new.$$
    trap 'rm -rf -- "$NEW_ROOT"' EXIT
    rm -rf -- "$NEW_ROOT"
    mkdir -p "$NEW_ROOT"
}

# Downloads the packages $2... (NAME or NAME=VERSION) into ARCHIVES (15 min at most); on failure
# use_stale_tree_or_die "$1".
apt_download() {
    local failure=$1
    shift
    (cd "$ARCHIVES" && timeout 900 apt-get "${APT_OPTS[@]}" -q download "$@" >&2) ||
        use_stale_tree_or_die "$failure"
}

# Writes the manifest $1 into NEW_ROOT and puts NEW_ROOT in place of ROOT.
install_new_root() {
    printf '%s\n' "$1" >"$NEW_ROOT/${MANIFEST##*/}"
    rm -rf -- "$ROOT"
    mv -- "$NEW_ROOT" "$ROOT"
    trap - EXIT
}

# Drops apt's binary package caches (apt rebuilds them when needed; they only take disk space),
# logs $1 and prints the exports.
finish() {
    rm -f -- "$APTDIR/cache/pkgcache.bin" "$APTDIR/cache/srcpkgcache.bin"
    log "$1"
    print_exports
}
