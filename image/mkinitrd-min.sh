#!/usr/bin/env bash
# The minimal PID-1 initramfs: the static ovirt-node-reg binary as /init, busybox-static (the
# pre-init hook's shell and the emergency shell) and the Debian kernel's modules with their
# dependencies, loaded in order by /etc/ovirt-node-reg/pre-init.
#
#   image/mkinitrd-min.sh BIN OUT [--kver K] [--modules "m1 m2 ..."] [--busybox]
#                         [--init SCRIPT] [--extra SRC:DST[:MODE] ...]
#
#   --kver K       kernel version (default: the newest /lib/modules/K that has a readable
#                  /boot/vmlinuz-K)
#   --modules "…"  modules to load, dependencies are added (default: the QEMU harness's list);
#                  "" loads none
#   --busybox      ship busybox even without modules (it is always shipped with modules)
#   --init SCRIPT  test variant: SCRIPT is /init and the binary only /usr/sbin/ovirt-node-reg
#   --extra S:D[:M] add file S as D (mode M in octal, default S's mode); repeatable
#
# The archive is cpio newc, gzip -n, reproducible: sorted names, every mtime
# SOURCE_DATE_EPOCH (default 0), owner root:root. Reads /lib/modules/K and /boot; writes
# only OUT (and a temporary directory).
set -euo pipefail

# bonding first: loading it makes bond0, a link event the kernel handles at once; a NIC probed
# within the next second then keeps its link up, where it would otherwise report it down and
# wait up to a second for the kernel's next round of link events (docs/qemu-harness.md §9).
MODULES_DEFAULT="bonding virtio_pci virtio_net virtio_blk bridge 8021q crc32c_generic ext4"
BUSYBOX=/bin/busybox

die() {
    echo "mkinitrd-min: $*" >&2
    exit 1
}
usage() {
    sed -n '5,8p' "$0" | sed 's/^# \{0,3\}//' >&2
    exit 2
}
need() { # command package
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: apt-get install $2"
}

[ $# -ge 2 ] || usage
BIN=$1
OUT=$2
shift 2
KVER=
MODULES=$MODULES_DEFAULT
WANT_BUSYBOX=0
INIT_SCRIPT=
EXTRAS=()
while [ $# -gt 0 ]; do
    case $1 in
    --kver) KVER=${2:?--kver needs a value}; shift 2 ;;
    --modules) MODULES=${2?--modules needs a value}; shift 2 ;;
    --busybox) WANT_BUSYBOX=1; shift ;;
    --init) INIT_SCRIPT=${2:?--init needs a file}; shift 2 ;;
    --extra) EXTRAS+=("${2:?--extra needs SRC:DST}"); shift 2 ;;
    *) usage ;;
    esac
done

need cpio cpio
need gzip gzip
[ -f "$BIN" ] || die "$BIN: no such binary"
[ -z "$INIT_SCRIPT" ] || [ -f "$INIT_SCRIPT" ] || die "$INIT_SCRIPT: no such file"

# shellcheck source=image/kernel.sh
. "$(dirname "$0")/kernel.sh"
[ -n "$KVER" ] || KVER=$(guest_kver) || die "no kernel to build for"
MODDIR=/lib/modules/$KVER
[ -z "$MODULES" ] || [ -f "$MODDIR/modules.dep" ] || die "$MODDIR/modules.dep missing: apt-get install linux-image-amd64"

R=$(mktemp -d)
trap 'rm -rf "$R"' EXIT
umask 022
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc/ovirt-node-reg,proc,sys,dev,run,tmp,config,root,mnt}
chmod 0700 "$R/root"
chmod 1777 "$R/tmp"

if [ -n "$INIT_SCRIPT" ]; then
    install -m 0755 "$INIT_SCRIPT" "$R/init"
    install -m 0755 "$BIN" "$R/usr/sbin/ovirt-node-reg"
else
    install -m 0755 "$BIN" "$R/init"
    ln -s ../../init "$R/usr/sbin/ovirt-node-reg"
fi

# Modules in load order: each module's dependencies first, every file once.
LOAD=()
if [ -n "$MODULES" ]; then
    # modules.dep lists each module's whole dependency closure, last-needed first: load it
    # reversed, then the module (what modprobe does). Soft dependencies are not followed
    # (crc32c-intel would fail on a CPU without SSE4.2); name crc32c_generic in the list.
    mapfile -t LOAD < <(awk -v want="$MODULES" -v base="$MODDIR/" '
        function name(p) { sub(/.*\//, "", p); sub(/\.ko.*$/, "", p); gsub(/-/, "_", p); return p }
        {
            m = $1; sub(/:$/, "", m); n = name(m); path[n] = m; deps[n] = ""
            for (i = NF; i >= 2; i--) deps[n] = deps[n] " " $i
        }
        END {
            k = split(want, w, " ")
            for (j = 1; j <= k; j++) {
                x = w[j]; gsub(/-/, "_", x)
                if (!(x in path)) { print "MISSING " x; continue }
                c = split(deps[x], d, " ")
                for (i = 1; i <= c; i++) if (!seen[d[i]]++) print base d[i]
                if (!seen[path[x]]++) print base path[x]
            }
        }' "$MODDIR/modules.dep")
    for f in "${LOAD[@]}"; do
        case $f in MISSING*) die "module ${f#MISSING } is not in $MODDIR/modules.dep (built in?)" ;; esac
    done
    for f in "${LOAD[@]}"; do
        case $f in
        *.ko) ;;
        *) die "$f: compressed modules are not supported (busybox insmod needs plain .ko)" ;;
        esac
        install -D -m 0644 "$f" "$R$f"
    done
    for f in modules.order modules.builtin; do
        [ ! -f "$MODDIR/$f" ] || install -m 0644 "$MODDIR/$f" "$R$MODDIR/$f"
    done
    : >"$R$MODDIR/modules.builtin.modinfo" # depmod wants it; the aliases of built-ins are not needed
    need depmod kmod
    depmod -b "$R" "$KVER" # modules.dep for busybox modprobe (the kernel's request_module)
    {
        echo '#!/bin/sh'
        echo '# Loads the kernel modules of this image, dependencies first (mkinitrd-min.sh).'
        echo 'rc=0'
        for f in "${LOAD[@]}"; do
            echo "insmod $f || { echo \"pre-init: insmod ${f##*/} failed\" >&2; rc=1; }"
        done
        # shellcheck disable=SC2016 # written for the guest's shell
        echo 'exit "$rc"'
    } >"$R/etc/ovirt-node-reg/pre-init"
    chmod 0755 "$R/etc/ovirt-node-reg/pre-init"
    WANT_BUSYBOX=1
fi

if [ "$WANT_BUSYBOX" = 1 ]; then
    [ -x "$BUSYBOX" ] || die "$BUSYBOX missing: apt-get install busybox-static"
    file_out=$(LC_ALL=C od -An -c -N 4 "$BUSYBOX" | tr -d ' ')
    [ "$file_out" = '177ELF' ] || die "$BUSYBOX is not an ELF binary"
    install -m 0755 "$BUSYBOX" "$R/bin/busybox"
    # Every applet as a relative symlink, except init and linuxrc: /init is ours.
    while read -r a; do
        case ${a##*/} in init | linuxrc | "") continue ;; esac
        [ -e "$R/$a" ] || [ -L "$R/$a" ] && continue
        ln -s /bin/busybox "$R/$a"
    done < <("$BUSYBOX" --list-full)
fi

for e in "${EXTRAS[@]}"; do
    IFS=: read -r src dst mode <<<"$e"
    if [ -z "$src" ] || [ -z "$dst" ]; then die "--extra $e: expected SRC:DST[:MODE]"; fi
    [ -f "$src" ] || die "--extra $e: $src is not a file"
    dst=/${dst#/}
    mode=${mode:-$(stat -c %a "$src")}
    install -D -m "$mode" "$src" "$R$dst"
done

EPOCH=${SOURCE_DATE_EPOCH:-0}
find "$R" -exec touch -h -d "@$EPOCH" {} +
mkdir -p "$(dirname "$OUT")"
TMP_OUT=$OUT.tmp$$
(cd "$R" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
    cpio -o -H newc --reproducible --owner=0:0 --quiet) | gzip -n -6 >"$TMP_OUT"
mv -f "$TMP_OUT" "$OUT"
echo "mkinitrd-min: $OUT: $(stat -c %s "$OUT") bytes (kernel $KVER, ${#LOAD[@]} modules)"
