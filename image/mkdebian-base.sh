#!/usr/bin/env bash
# The Debian 12 minbase the ISO's systemd test root is made from (image/mkroot-live.sh --root
# systemd): mmdebstrap's tarball of systemd-sysv, udev, openssl, iproute2, kmod and e2fsprogs
# from this machine's own bookworm apt sources (main, and updates/security where configured;
# build-support/apt-sources.sh), without docs, man pages and locales.
#
#   image/mkdebian-base.sh CACHE_DIR
#
# Makes CACHE_DIR/debian-base-KEY.tar unless it is there (KEY: the hash of this script and
# the sources it reads) and prints its path as the last line of its output. Runs started at once
# build it once (a lock on the tarball's .lock file). build-support/test-all.sh starts it
# first thing, so its download and unpacking run beside the lints instead of at the lowest
# priority between QEMU boots; the QEMU harness then finds it made (qemu-tests/src/qemu/iso.rs).
# Needs root (mmdebstrap's root mode). Reproducible for the same mirror state only (package
# versions change).
set -euo pipefail

die() {
    echo "mkdebian-base: $*" >&2
    exit 1
}
[[ $# -eq 1 && $1 != -* ]] || {
    sed -n '7p' "$0" | sed 's/^# \{0,3\}//' >&2
    exit 2
}
CACHE=$1
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
command -v mmdebstrap > /dev/null || die "mmdebstrap not found: apt-get install mmdebstrap"
[[ $(id -u) -eq 0 ]] || die "mmdebstrap needs root here"

# The machine's own bookworm sources, not mmdebstrap's built-in default mirror.
# shellcheck source=build-support/apt-sources.sh
. "$top/build-support/apt-sources.sh"
mirrors=()
for suite in bookworm bookworm-updates bookworm-security; do
    if src=$(apt_suite_source /etc/apt "$suite" main); then
        mirrors+=("deb ${src%%$'\t'*} $suite main")
    fi
done
[[ ${mirrors[0]:-} == *" bookworm main" ]] \
    || die "no http(s) 'bookworm main' source in the apt sources; add one"

key=$(cat "$0" <(printf '%s\n' "${mirrors[@]}") | sha256sum | cut -c1-24)
mkdir -p "$CACHE"
out=$CACHE/debian-base-$key.tar
exec 9> "$out.lock"
flock 9
if [[ ! -s $out ]]; then
    started=$SECONDS
    log=$(mktemp)
    trap 'rm -f "$log" "$out.tmp$$"' EXIT
    mmdebstrap --quiet --variant=minbase --include=systemd-sysv,udev,openssl,iproute2,kmod,e2fsprogs \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --format=tar bookworm "$out.tmp$$" \
        "${mirrors[@]}" > "$log" 2>&1 || {
        tail -n 30 "$log" >&2
        die "mmdebstrap failed"
    }
    mv "$out.tmp$$" "$out"
    echo "mkdebian-base: $out: $(stat -c %s "$out") bytes ($((SECONDS - started)) s)"
fi
echo "$out"
