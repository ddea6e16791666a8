#!/usr/bin/env bash
# Fixture tests of build-support/apt-sources.sh: how setup.sh finds bookworm-security, and
# derives it from the machine's own bookworm source when it is missing. Runs on sample apt
# directories in a temporary directory; never reads or changes /etc/apt.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=build-support/apt-sources.sh
. build-support/apt-sources.sh

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failed=0
pass() { printf '[test-apt-sources] ok: %s\n' "$1"; }
fail() { printf '[test-apt-sources] FAIL: %s\n' "$1" >&2; failed=1; }

# fixture NAME FILE CONTENT: write FILE (relative to the apt dir) of fixture NAME.
fixture() {
    mkdir -p "$(dirname "$T/$1/$2")"
    printf '%s\n' "$3" > "$T/$1/$2"
}

# expect_stanza NAME EXPECTED: apt_security_stanza prints exactly EXPECTED.
expect_stanza() {
    local got
    if ! got=$(apt_security_stanza "$T/$1" bookworm); then
        fail "$1: no stanza derived"
    elif [ "$got" != "$2" ]; then
        fail "$1: got:"$'\n'"$got"$'\n'"expected:"$'\n'"$2"
    else
        pass "$1"
    fi
}

# expect_none NAME: nothing can be derived (setup.sh then stops with its message).
expect_none() {
    local got
    if got=$(apt_security_stanza "$T/$1" bookworm); then
        fail "$1: derived a stanza from nothing usable:"$'\n'"$got"
    else
        pass "$1: nothing derived"
    fi
}

# --- Debian 12's stock deb822 file: security is there, nothing to add.
fixture stock sources.list.d/debian.sources 'Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
if apt_has_suite "$T/stock" bookworm-security; then pass "stock: has bookworm-security"; else fail "stock: bookworm-security not found"; fi
if apt_has_suite "$T/stock" bookworm-updates; then pass "stock: has bookworm-updates"; else fail "stock: bookworm-updates not found"; fi

# --- deb822 without the security stanza: derived from the main URI (trailing slash dropped),
# the keyring kept; field names in any case, comments and an unrelated file ignored.
fixture deb822 sources.list.d/debian.sources '# our mirror
types: deb deb-src
uris: https://mirror.example/pub/debian/
suites: bookworm bookworm-updates
components: main contrib
signed-by: /usr/share/keyrings/debian-archive-keyring.gpg'
fixture deb822 sources.list.d/other.sources.disabled 'Types: deb
URIs: http://other.example/debian
Suites: bookworm
Components: main'
if apt_has_suite "$T/deb822" bookworm-security; then fail "deb822: claims bookworm-security"; else pass "deb822: no bookworm-security"; fi
expect_stanza deb822 'Types: deb
URIs: https://mirror.example/pub/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'

# --- A one-line sources.list with options; a commented line and a deb-src line come first.
fixture oneline sources.list '# deb http://old.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [ arch=amd64 signed-by=/etc/apt/keyrings/debian.gpg ] http://mirror.example/debian bookworm main non-free-firmware # local
deb http://mirror.example/debian bookworm-updates main'
expect_stanza oneline 'Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /etc/apt/keyrings/debian.gpg'
if apt_has_suite "$T/oneline" bookworm-security; then fail "oneline: claims bookworm-security"; else pass "oneline: no bookworm-security"; fi

# --- A one-line *.list in sources.list.d, no keyring option: no Signed-By line.
fixture listd sources.list.d/mirror.list 'deb http://proxy.example:3142/debian bookworm main'
expect_stanza listd 'Types: deb
URIs: http://proxy.example:3142/debian-security
Suites: bookworm-security
Components: main'

# --- A security suite only commented out still counts as missing.
fixture commented sources.list '# deb http://mirror.example/debian-security bookworm-security main
deb http://mirror.example/debian bookworm main'
if apt_has_suite "$T/commented" bookworm-security; then fail "commented: a comment counted"; else pass "commented: comment ignored"; fi

# --- The embedded-key form of Signed-By cannot be copied to one line: left out.
fixture embedded sources.list.d/debian.sources 'Types: deb
URIs: http://mirror.example/debian
Suites: bookworm
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEADmW5NdOOHwPIJlgPu6JDcKw/NZJPR8lsD3K87ZM18gzyQZJD+w
 -----END PGP PUBLIC KEY BLOCK-----'
expect_stanza embedded 'Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main'

# --- Nothing usable: no files; a disabled stanza; a file: mirror; no main component;
# another release; deb-src only.
mkdir -p "$T/empty"
expect_none empty
fixture disabled sources.list.d/debian.sources 'Types: deb
URIs: http://mirror.example/debian
Suites: bookworm
Components: main
Enabled: no'
expect_none disabled
fixture local sources.list 'deb file:/srv/debian bookworm main'
expect_none local
fixture contrib sources.list 'deb http://mirror.example/debian bookworm contrib'
expect_none contrib
fixture trixie sources.list.d/debian.sources 'Types: deb
URIs: http://mirror.example/debian
Suites: trixie
Components: main'
expect_none trixie
fixture srconly sources.list 'deb-src http://mirror.example/debian bookworm main'
expect_none srconly

# --- The first usable source wins: sources.list before sources.list.d, http(s) before file:.
fixture order sources.list 'deb file:/srv/debian bookworm main
deb http://first.example/debian bookworm main'
fixture order sources.list.d/z.sources 'Types: deb
URIs: http://second.example/debian
Suites: bookworm
Components: main'
expect_stanza order 'Types: deb
URIs: http://first.example/debian-security
Suites: bookworm-security
Components: main'

[ "$failed" -eq 0 ] || { echo "[test-apt-sources] FAILED" >&2; exit 1; }
echo "[test-apt-sources] all passed"
