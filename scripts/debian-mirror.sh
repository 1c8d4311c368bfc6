# Sourced by scripts/fetch-backends.sh and scripts/fetch-redis.sh: find the Debian mirror that the
# system's own apt sources use (one-line and deb822 formats), without changing them.
#
#   find_mirror   prints the mirror URI (e.g. <uri>/debian); non-zero when there is none

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
