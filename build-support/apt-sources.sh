# shellcheck shell=bash
# Sourced by build-support/setup.sh and image/mkroot-live.sh: what this machine's apt sources
# say, read from the sources themselves. The repository names no mirror: a source we need is
# derived from the ones the operator already configured, or the script stops and says which
# suite to add. Every function takes the apt directory (normally /etc/apt) as its first
# argument, so build-support/test-apt-sources.sh runs them on fixtures.

# apt_entries APT_DIR: one line per enabled binary (`deb`) source and suite, tab-separated:
# URI, suite, components (space-separated), Signed-By (a keyring path; empty if none or if the
# key is embedded in the stanza). Reads sources.list, then sources.list.d/*.list and *.sources
# in name order, as apt does; other file names (e.g. *.disabled) are ignored, as apt does.
apt_entries() {
    local dir=$1 f
    local files=()
    [ -f "$dir/sources.list" ] && files+=("$dir/sources.list")
    for f in "$dir"/sources.list.d/*; do
        case $f in *.list | *.sources) [ -f "$f" ] && files+=("$f") ;; esac
    done
    [ ${#files[@]} -gt 0 ] || return 0
    awk '
        function flush(   i, j, nu, ns, u, s, t, ok) {
            if (nfields && tolower(field["enabled"]) != "no") {
                ok = 0
                nt = split(field["types"], t, /[ \t]+/)
                for (i = 1; i <= nt; i++) if (t[i] == "deb") ok = 1
                if (ok) {
                    nu = split(field["uris"], u, /[ \t]+/)
                    ns = split(field["suites"], s, /[ \t]+/)
                    key = (field["signed-by"] ~ /\n/) ? "" : field["signed-by"]
                    for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++)
                        if (u[i] != "" && s[j] != "")
                            print u[i] "\t" s[j] "\t" field["components"] "\t" key
                }
            }
            split("", field)
            nfields = 0
            last = ""
        }
        function trim(x) { gsub(/^[ \t]+|[ \t]+$/, "", x); return x }
        FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
        deb822 {
            if ($0 ~ /^#/) next
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 ~ /^[ \t]/) { if (last != "") field[last] = field[last] "\n" trim($0); next }
            colon = index($0, ":")
            if (colon == 0) next
            last = tolower(trim(substr($0, 1, colon - 1)))
            field[last] = trim(substr($0, colon + 1))
            nfields++
            next
        }
        {
            sub(/#.*/, "")
            if ($1 != "deb") next
            i = 2; key = ""
            if ($2 ~ /^\[/) {
                for (; i <= NF; i++) {
                    opt = $i; gsub(/[\[\]]/, "", opt)
                    if (opt ~ /^signed-by=/) key = substr(opt, 11)
                    if ($i ~ /\]$/) { i++; break }
                }
            }
            if (i + 1 > NF) next
            comps = ""
            for (j = i + 2; j <= NF; j++) comps = comps (comps == "" ? "" : " ") $j
            print $i "\t" $(i + 1) "\t" comps "\t" key
        }
        END { flush() }
    ' "${files[@]}"
}

# apt_has_suite APT_DIR SUITE: is SUITE in any enabled binary source?
apt_has_suite() {
    apt_entries "$1" | awk -F'\t' -v s="$2" '$2 == s { found = 1 } END { exit !found }'
}

# apt_suite_source APT_DIR SUITE [COMPONENT]: the first http(s) source carrying SUITE with
# COMPONENT (default main), as "URI<TAB>Signed-By"; fails if there is none. Only http(s): a
# file:, cdrom: or mirror-list source has no sibling archive to derive another suite from.
apt_suite_source() {
    # Reads to the end: an early exit would kill the writer with SIGPIPE (pipefail).
    apt_entries "$1" | awk -F'\t' -v s="$2" -v c="${3:-main}" '
        !found && $2 == s && $1 ~ /^https?:\/\// && (" " $3 " ") ~ (" " c " ") {
            print $1 "\t" $4; found = 1
        }
        END { exit !found }'
}

# apt_security_stanza APT_DIR CODENAME: a deb822 stanza for CODENAME-security on the archive
# that serves this machine's CODENAME main, by Debian's naming convention: the security
# archive sits beside the main one with "-security" appended (…/debian → …/debian-security).
# The main source's keyring is kept (one archive keyring signs both). Fails if no http(s)
# CODENAME main source exists to derive it from.
apt_security_stanza() {
    local source uri key
    source=$(apt_suite_source "$1" "$2" main) || return 1
    uri=${source%%$'\t'*}
    key=${source#*$'\t'}
    uri=${uri%/}
    printf '%s\n' 'Types: deb' "URIs: $uri-security" "Suites: $2-security" 'Components: main'
    if [ -n "$key" ]; then printf 'Signed-By: %s\n' "$key"; fi
}
