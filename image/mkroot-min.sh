#!/usr/bin/env bash
# A tiny ext4 real root for the dracut boot tests, standing in for the node's root filesystem.
#
#   image/mkroot-min.sh OUT.img [BIN] [--size MB]
#
#   BIN        the static ovirt-node-reg (default target/static/ovirt-node-reg)
#   --size MB  filesystem size (default 32)
#
# Contents: busybox-static as /bin/busybox with its applet links, the binary as
# /usr/sbin/ovirt-node-reg, proc/sys/dev/run/config/tmp, a dummy lib64/ld-linux-x86-64.so.2
# (dracut's usable_root check wants one), etc/os-release (systemd's switch-root wants one)
# and /sbin/init, a busybox sh script that does what
# ovirt-node-reg.service does on a real node (`boot --stage system`), prints markers for the
# test on the console and powers off:
#   QH-ROOT stage=system            the real root's init started (after switch_root)
#   QH-EXIT rc=<rc>                 the exit code of boot --stage system
#   QH-STATUS-BEGIN / QH-STATUS-END around `ovirt-node-reg status --json`
#   QH-DONE                         the last line before poweroff
# Made with mke2fs -d from a staged directory: no mount, no root needed; fixed UUID, hash
# seed and mtimes (SOURCE_DATE_EPOCH, default the last commit's time).
set -euo pipefail

die() {
    echo "mkroot-min: $*" >&2
    exit 1
}
usage() {
    sed -n '4p' "$0" | sed 's/^# \{0,3\}//' >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
OUT=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
BIN=$top/target/static/ovirt-node-reg
SIZE=32
if [[ $# -gt 0 && $1 != --* ]]; then
    BIN=$1
    shift
fi
while [[ $# -gt 0 ]]; do
    case $1 in
        --size)
            [[ $# -ge 2 ]] || usage
            SIZE=$2
            shift 2
            ;;
        *) usage ;;
    esac
done

BUSYBOX=/bin/busybox
[[ -x $BIN ]] || die "$BIN: not an executable (build it: build-support/build-static.sh)"
[[ -x $BUSYBOX ]] || die "$BUSYBOX missing: apt-get install busybox-static"
file -L "$BUSYBOX" 2> /dev/null | grep -q "statically linked" \
    || die "$BUSYBOX is not static: apt-get install busybox-static"
command -v mke2fs > /dev/null || die "mke2fs not found: apt-get install e2fsprogs"

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$top" log -1 --format=%ct 2> /dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
r=$tmp/root
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,config,tmp,root,var/log,lib64}
chmod 1777 "$r/tmp"
cp "$BUSYBOX" "$r/bin/busybox"
for a in $("$BUSYBOX" --list); do
    case $a in
        busybox | init | linuxrc) continue ;;
    esac
    [[ -e $r/bin/$a ]] || ln -s busybox "$r/bin/$a"
done
install -m 0755 "$BIN" "$r/usr/sbin/ovirt-node-reg"
# dracut's usable_root() wants an ELF interpreter (or /init) in the new root
: > "$r/lib64/ld-linux-x86-64.so.2"
echo "root:x:0:0:root:/root:/bin/sh" > "$r/etc/passwd"
echo "root:x:0:" > "$r/etc/group"
echo "ovirt-node-test-root" > "$r/etc/hostname"
# systemd's switch-root refuses a root without os-release ("does not seem to be an OS tree")
printf 'NAME="ovirt-node-reg test root"\nID=ovirt-node-reg-test\n' > "$r/etc/os-release"

cat > "$r/sbin/init" <<'INIT'
#!/bin/busybox sh
# Test stand-in for the node's init. On a real node, systemd starts ovirt-node-reg.service
# (dracut/ovirt-node-reg.service), whose ExecStart= is exactly the command below; here it
# runs it directly, prints the markers the boot tests look for, and powers off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# mounted DIR: is DIR a mount point (Debian's busybox has no mountpoint applet)
mounted() { grep -qs "^[^ ]* $1 " /proc/mounts; }
mounted /proc || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mounted /run || mount -t tmpfs -o mode=0755 tmpfs /run
echo "QH-ROOT stage=system"
# the initramfs stage must leave the store unmounted for a clean switch_root
if mounted /config; then
    echo "QH-CONFIG mounted-at-root-start=yes"
else
    echo "QH-CONFIG mounted-at-root-start=no"
fi
/usr/sbin/ovirt-node-reg --kmsg boot --stage system
echo "QH-EXIT rc=$?"
echo "QH-STATUS-BEGIN"
/usr/sbin/ovirt-node-reg status --json
echo "QH-STATUS-END"
echo "QH-DONE"
mounted /config && umount /config
sync
poweroff -f
INIT
chmod 0755 "$r/sbin/init"

find "$r" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
rm -f "$OUT"
mke2fs -q -F -t ext4 -L ROOT -U 6f766972-742d-6e6f-6465-2d726f6f7400 \
    -E hash_seed=6f766972-742d-6e6f-6465-2d726f6f7400 -d "$r" "$OUT" "${SIZE}M" \
    || die "mke2fs failed"
echo "mkroot-min: $OUT: ${SIZE} MiB ext4, $(du -sk "$r" | cut -f1) KiB used"
