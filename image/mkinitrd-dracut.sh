#!/usr/bin/env bash
# A dracut initramfs with the 95ovirt-node-reg module, for the Debian kernel installed from apt.
#
#   image/mkinitrd-dracut.sh BIN OUT [--flavour shell|systemd] [--live] [--without-module] [--kver K]
#                            [--net-drivers "MODULES"]
#
#   BIN               the static ovirt-node-reg (build-support/build-static.sh)
#   --flavour shell   (default) shell init, no systemd, network-legacy (dhclient)
#   --flavour systemd systemd init, systemd-networkd
#   --live            add dmsquash-live (Debian package dracut-live) and the CD-ROM, iso9660,
#                     squashfs, loop and overlay drivers: root=live:CDLABEL=L rd.live.image
#                     mounts LiveOS/squashfs.img of the ISO as the root (image/mkiso.sh)
#   --without-module  the same image without 95ovirt-node-reg (to measure what it adds)
#   --kver K          kernel version (default: the newest /lib/modules/K with /boot/vmlinuz-K)
#   --net-drivers "MODULES"
#                     only these NIC drivers (e.g. virtio_net, for virtual machines) instead
#                     of every wired NIC driver of the kernel (dracut's kernel-network-modules,
#                     the default, which a node on real hardware needs); the bridge, bond and
#                     VLAN modules stay. 90 MB of files become 50 MB (docs/qemu-harness.md §9)
#
# Compressed with zstd: it decompresses about four times faster than gzip (the kernel's
# unpacking under TCG took 4 s of every boot with gzip) and is 15 % smaller for the boot loader
# to read (docs/qemu-harness.md §9).
#
# Never touches the machine's /boot, /etc/dracut.conf* or /usr/lib/dracut: dracut runs from
# a temporary copy of /usr/lib/dracut with dracut/95ovirt-node-reg added, with an empty
# --conf and --confdir, --no-hostonly and an explicit module list (the network handler
# named, so the build host's packages do not choose it). Reproducible: --reproducible, every file newer
# than SOURCE_DATE_EPOCH (default: the last commit's time) gets that time.
# The virtio disk/NIC drivers are added explicitly and the qemu/qemu-net modules omitted,
# so the image does not depend on whether the build host is itself a QEMU guest.
set -euo pipefail

die() {
    echo "mkinitrd-dracut: $*" >&2
    exit 1
}
usage() {
    sed -n '4p' "$0" | sed 's/^# \{0,3\}//' >&2
    exit 2
}

[[ $# -ge 2 ]] || usage
BIN=$1
OUT=$2
shift 2
FLAVOUR=shell
WITH_MODULE=1
LIVE=0
KVER=
NET_DRIVERS=
while [[ $# -gt 0 ]]; do
    case $1 in
        --flavour)
            [[ $# -ge 2 ]] || usage
            FLAVOUR=$2
            shift 2
            ;;
        --flavour=*)
            FLAVOUR=${1#--flavour=}
            shift
            ;;
        --without-module)
            WITH_MODULE=0
            shift
            ;;
        --live)
            LIVE=1
            shift
            ;;
        --kver)
            [[ $# -ge 2 ]] || usage
            KVER=$2
            shift 2
            ;;
        --net-drivers)
            [[ $# -ge 2 && -n $2 ]] || usage
            NET_DRIVERS=$2
            shift 2
            ;;
        *) usage ;;
    esac
done

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
moddir=$top/dracut/95ovirt-node-reg
sysbase=/usr/lib/dracut

if ! command -v dracut > /dev/null || [[ ! -d $sysbase/modules.d/40network ]]; then
    die "dracut not found: apt-get install dracut dracut-network (or run build-support/setup.sh)"
fi
[[ -d $sysbase/modules.d/35network-legacy ]] \
    || die "dracut's network-legacy module is missing: apt-get install dracut-network"
command -v cpio > /dev/null || die "cpio not found: apt-get install cpio"
command -v zstd > /dev/null || die "zstd not found: apt-get install zstd"
[[ -x $BIN ]] || die "$BIN: not an executable (build it: build-support/build-static.sh)"
[[ -f $moddir/module-setup.sh ]] || die "$moddir: the dracut module is missing"

# shellcheck source=image/kernel.sh
. "$here/kernel.sh"
[[ -n $KVER ]] || KVER=$(guest_kver) || die "no kernel to build for"
[[ -d /lib/modules/$KVER ]] || die "/lib/modules/$KVER missing"

case $FLAVOUR in
    shell)
        modules="bash base udev-rules rootfs-block network-legacy network"
        omit="systemd qemu qemu-net"
        ;;
    systemd)
        modules="systemd systemd-initrd dracut-systemd systemd-networkd network udev-rules rootfs-block base"
        omit="qemu qemu-net"
        ;;
    *) die "--flavour: shell or systemd, not $FLAVOUR" ;;
esac
drivers="virtio_pci virtio_blk virtio_net"
if [[ $LIVE -eq 1 ]]; then
    [[ -d $sysbase/modules.d/90dmsquash-live ]] \
        || die "dracut's dmsquash-live module is missing: apt-get install dracut-live"
    command -v dmsetup > /dev/null || die "dmsetup not found: apt-get install dmsetup"
    modules="$modules dmsquash-live"
    # the ISO on QEMU's (and most machines') IDE/SATA CD-ROM; the live root is an overlay of
    # the squashfs (rd.live.overlay.overlayfs=1) on a tmpfs
    drivers="$drivers ata_piix ahci sr_mod cdrom isofs squashfs loop overlay"
fi
[[ $WITH_MODULE -eq 1 ]] && modules="$modules ovirt-node-reg"

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$top" log -1 --format=%ct 2> /dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
base=$tmp/dracutbase
cp -a "$sysbase" "$base"
cp -r "$moddir" "$base/modules.d/95ovirt-node-reg"
chmod 755 "$base"/modules.d/95ovirt-node-reg/*.sh
if [[ -n $NET_DRIVERS ]]; then
    # kernel-network-modules (which the network module needs) with only these NIC drivers;
    # the rest of its own list (bridge, bonds, VLANs) as it is
    cat > "$base/modules.d/90kernel-network-modules/module-setup.sh" << EOF
#!/bin/bash
# image/mkinitrd-dracut.sh --net-drivers: only the named NIC drivers
check() { return 255; }
depends() { return 0; }
installkernel() {
    instmods $NET_DRIVERS ecb arc4 bridge stp llc ipv6 bonding 8021q ipvlan macvlan af_packet
}
install() { return 0; }
EOF
fi
# dracut --reproducible gives every file newer than dracut-functions.sh that file's mtime
touch -h -d "@$SOURCE_DATE_EPOCH" "$base/dracut-functions.sh"
# an empty configuration instead of /etc/dracut.conf and /etc/dracut.conf.d; relative paths
# (dracut runs in $tmp) because dracut records its arguments in the image
: > "$tmp/dracut.conf"
mkdir "$tmp/dracut.conf.d"
bin=$(realpath "$BIN")

start=$(date +%s.%N)
(
    cd "$tmp"
    dracutbasedir=$base OVIRT_NODE_REG_BIN=$bin \
        dracut --quiet --force --conf dracut.conf --confdir dracut.conf.d \
        --no-hostonly --no-hostonly-cmdline --no-early-microcode --reproducible --zstd \
        -m "$modules" --omit "$omit" \
        --add-drivers "$drivers" \
        --kver "$KVER" out.img
)
end=$(date +%s.%N)
mv "$tmp/out.img" "$OUT"

size=$(stat -c %s "$OUT")
what="with ovirt-node-reg"
[[ $WITH_MODULE -eq 1 ]] || what="without ovirt-node-reg"
[[ $LIVE -eq 0 ]] || what="$what, live"
awk -v out="$OUT" -v fl="$FLAVOUR" -v what="$what" -v k="$KVER" -v size="$size" \
    -v s="$start" -v e="$end" 'BEGIN {
        printf "mkinitrd-dracut: %s (%s, %s, kver %s): %d bytes (%.1f MiB), built in %.1f s\n",
            out, fl, what, k, size, size / 1048576, e - s }'
