# Sourced by scripts/fetch-backends.sh and scripts/fetch-redis.sh: find the Debian mirror that the
# system's own apt sources use (one-line and deb822 formats), without changing them.
#
#   find_mirror   prints the mirror URI (e.g. <uri>/debian); non-zero when there is none
#   private_apt   sets up a private apt configuration under $APTDIR for $MIRROR $SUITE signed by $KEYRING,
#                 downloading into $ARCHIVES, and sets APT_OPTS (the options every apt-get / apt-cache needs)

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

private_apt() {
    mkdir -p "$APTDIR/etc/sources.list.d" "$APTDIR/etc/preferences.d" "$APTDIR/lists/partial" "$ARCHIVES/partial"
    [ -f "$APTDIR/status" ] || : >"$APTDIR/status"
    printf 'deb [signed-by=%s] %s %s main\n' "$KEYRING" "$MIRROR" "$SUITE" >"$APTDIR/etc/sources.list"
    local sandbox_user
    if [ "$(id -u)" = 0 ]; then sandbox_user=root; else sandbox_user=$(id -un); fi
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
