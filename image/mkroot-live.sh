#!/usr/bin/env bash
# The node's root filesystem for the ISO: a squashfs (LiveOS/squashfs.img) with a busybox
# init that does what the real node's systemd does with our two units, in the same order.
#
#   image/mkroot-live.sh OUT.squashfs [BIN] [--root busybox|systemd] [--base TAR]
#                        [--boot-args ARGS] [--boot-timeout S]
#
#   BIN              the static ovirt-node-reg (default target/static/ovirt-node-reg)
#   --root busybox   (default) the busybox root below: 5 MB, no downloads
#   --root systemd   a Debian 12 minbase root (image/mkdebian-base.sh: systemd-sysv, udev,
#                    openssl, iproute2; ~58 MB squashfs, downloads ~40 MB of packages from the
#                    machine's own bookworm apt sources) that runs the real units:
#                    dracut/ovirt-node-reg.service, image/live/vdsmd.service and, only with
#                    ovirt.reg.poweroff (tests), image/live/qh-report.service, which prints the
#                    same markers and powers off.
#   --base TAR       the systemd root's Debian base made beforehand by image/mkdebian-base.sh
#                    (default: made here, into a temporary directory)
#   --boot-args ARGS, --boot-timeout S
#                    the installed boot's fixed kernel arguments and GRUB menu timeout
#                    (image/mkboot.sh --append, --timeout; default none and 1 s)
#
# The busybox root: busybox-static with its applets, the binary as /usr/sbin/ovirt-node-reg, openssl
# with its shared libraries and the ELF interpreter (copied like dracut's inst_binary: ldd),
# /usr/libexec/vdsmd-standin, /etc/os-release, the units image/live/*.service for reference
# (the busybox init does not read them) and /sbin/init:
#   1. ovirt-node-reg.service: `ovirt-node-reg --kmsg boot --stage system` (ExecStart= of
#      dracut/ovirt-node-reg.service)
#   2. vdsmd.service (After=/Requires= ovirt-node-reg.service): only when step 1 exited 0 and
#      the vdsm certificates are installed: the stand-in vdsm serves the vdsm port 54321 with
#      TLS, presenting /etc/pki/vdsm/certs/vdsmcert.pem and requiring a client certificate
#      issued by the engine CA (/etc/pki/vdsm/certs/cacert.pem), as vdsm does
#   3. with `ovirt.reg.poweroff` on the command line (test only): the stand-in serves one
#      connection, or gives up after `qh.vdsm_wait=SECONDS` (default 0), then the machine
#      powers off; without it the node keeps serving, as a node does
# Console markers: QH-ROOT stage=system, QH-EXIT rc=N, QH-STATUS-BEGIN … QH-STATUS-END
# (`status --json`), QH-VDSM listening port=54321 | QH-VDSM not-started reason=…,
# QH-VDSM served rc=N, QH-DONE.
# Reproducible: fixed mtimes (SOURCE_DATE_EPOCH, default the last commit's time), root owner,
# sorted, no xattrs (mksquashfs -all-root -no-xattrs; it reads SOURCE_DATE_EPOCH itself).
set -euo pipefail

die() {
    echo "mkroot-live: $*" >&2
    exit 1
}
usage() {
    sed -n '5,6p' "$0" | sed 's/^# \{0,3\}//' >&2
    exit 2
}

[[ $# -ge 1 && $1 != --* ]] || usage
OUT=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
BIN=$top/target/static/ovirt-node-reg
if [[ $# -gt 0 && $1 != --* ]]; then
    BIN=$1
    shift
fi
ROOT=busybox
BASE=
BOOT_ARGS=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --root)
            [[ $# -ge 2 ]] || usage
            ROOT=$2
            shift 2
            ;;
        --boot-args)
            [[ $# -ge 2 ]] || usage
            BOOT_ARGS+=(--append "$2")
            shift 2
            ;;
        --base)
            [[ $# -ge 2 ]] || usage
            BASE=$2
            shift 2
            ;;
        --boot-timeout)
            [[ $# -ge 2 ]] || usage
            BOOT_ARGS+=(--timeout "$2")
            shift 2
            ;;
        *) usage ;;
    esac
done
[[ $ROOT == busybox || $ROOT == systemd ]] || die "--root: busybox or systemd, not $ROOT"

BUSYBOX=/bin/busybox
[[ -x $BIN ]] || die "$BIN: not an executable (build it: build-support/build-static.sh)"
[[ -x $BUSYBOX ]] || die "$BUSYBOX missing: apt-get install busybox-static"
file -L "$BUSYBOX" 2> /dev/null | grep -q "statically linked" \
    || die "$BUSYBOX is not static: apt-get install busybox-static"
command -v mksquashfs > /dev/null || die "mksquashfs not found: apt-get install squashfs-tools"
OPENSSL=$(command -v openssl) || die "openssl not found: apt-get install openssl"
command -v ldd > /dev/null || die "ldd not found: apt-get install libc-bin"

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$top" log -1 --format=%ct 2> /dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
r=$tmp/root

# stand_in_vdsm DIR: the stand-in vdsm, the same in both roots
stand_in_vdsm() {
    mkdir -p "$1/usr/libexec"
    cat > "$1/usr/libexec/vdsmd-standin" <<'VDSM'
#!/bin/sh
# Stand-in vdsm: TLS on the vdsm port with the certificates ovirt-node-reg installed,
# a client certificate issued by the engine CA required (vdsm's ssl = true).
# With ovirt.reg.poweroff on the kernel command line (tests) it serves one connection and
# exits 0; otherwise it serves until stopped.
# stdin is a FIFO opened read-write, so it never reaches EOF (s_server ends its session at
# EOF on stdin) and nothing is ever read from it.
pki=/etc/pki/vdsm
n=
case " $(cat /proc/cmdline) " in *" ovirt.reg.poweroff "*) n="-naccept 1" ;; esac
fifo=/run/vdsmd-standin.stdin
rm -f $fifo
mkfifo -m 0600 $fifo
# shellcheck disable=SC2086
exec /usr/bin/openssl s_server -accept 54321 \
    -cert $pki/certs/vdsmcert.pem -key $pki/keys/vdsmkey.pem \
    -CAfile $pki/certs/cacert.pem -Verify 1 -verify_return_error $n 0<> $fifo
VDSM
    chmod 0755 "$1/usr/libexec/vdsmd-standin"
}

# install_boot_files DIR: GRUB's files for `ovirt-node-reg install` (image/mkboot.sh)
install_boot_files() {
    bash "$here/mkboot.sh" "$1/usr/lib/ovirt-node-reg/boot" "${BOOT_ARGS[@]}" > /dev/null
}

if [[ $ROOT == systemd ]]; then
    [[ $(id -u) -eq 0 ]] || die "--root systemd: unpacking the Debian base needs root here"
    [[ -n $BASE ]] || BASE=$(bash "$here/mkdebian-base.sh" "$tmp/base" | tail -n 1)
    [[ -s $BASE ]] || die "--base $BASE: not a tarball (image/mkdebian-base.sh makes it)"
    mkdir -p "$r"
    tar -C "$r" --numeric-owner -xpf "$BASE" || die "--base $BASE: cannot unpack it"
    install -m 0755 "$BIN" "$r/usr/sbin/ovirt-node-reg"
    install_boot_files "$r"
    stand_in_vdsm "$r"
    u=$r/usr/lib/systemd/system
    install -m 0644 "$top/dracut/ovirt-node-reg.service" "$here/live/vdsmd.service" \
        "$here/live/qh-report.service" "$u/"
    install -m 0755 "$here/live/qh-report" "$r/usr/libexec/qh-report"
    mkdir -p "$r/etc/systemd/system/multi-user.target.wants" "$r/config"
    for unit in ovirt-node-reg.service vdsmd.service qh-report.service; do
        ln -sf "/usr/lib/systemd/system/$unit" "$r/etc/systemd/system/multi-user.target.wants/$unit"
    done
    # no prompts on the console of a first boot
    ln -sf /dev/null "$r/etc/systemd/system/systemd-firstboot.service"
    : > "$r/etc/machine-id"
    # /etc and /var are as new as /usr (all mtimes are SOURCE_DATE_EPOCH), as on an image made
    # by a distribution's builder: without the stamps every boot of the live root counts as the
    # first after an update of /usr and rebuilds the hardware database, the linker cache and the
    # journal catalogue first (one ISO boot under TCG: 95 s before, 88 s after).
    : > "$r/etc/.updated"
    : > "$r/var/.updated"
    echo "ovirt-node" > "$r/etc/hostname"
    rm -rf "$r/var/cache/apt"/* "$r/var/lib/apt/lists"/* "$r/var/log"/*
else
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,usr/libexec,etc,proc,sys,dev,run,config,tmp,root} \
    "$r"/{var/log,lib64,usr/lib/systemd/system}
chmod 1777 "$r/tmp"
cp "$BUSYBOX" "$r/bin/busybox"
for a in $("$BUSYBOX" --list); do
    case $a in
        busybox | init | linuxrc) continue ;;
    esac
    [[ -e $r/bin/$a ]] || ln -s busybox "$r/bin/$a"
done
install -m 0755 "$BIN" "$r/usr/sbin/ovirt-node-reg"

# `ovirt-node-reg install`: the boot loader's files and mkfs.ext4 (e2fsprogs) with its libraries
install_boot_files "$r"
MKE2FS=$(command -v mke2fs) || die "mke2fs not found: apt-get install e2fsprogs"
install -D -m 0755 "$MKE2FS" "$r/sbin/mke2fs"
ln -s mke2fs "$r/sbin/mkfs.ext4"
[[ -f /etc/mke2fs.conf ]] && install -m 0644 /etc/mke2fs.conf "$r/etc/mke2fs.conf"
ldd "$MKE2FS" | awk '/=> \// { print $3 }' | while read -r lib; do
    [[ -f $lib ]] || die "mke2fs needs $lib, which is missing"
    install -D -m 0755 "$(realpath "$lib")" "$r$lib"
done

# openssl and what it links, at the same paths (dracut's inst_binary does the same with ldd)
install -D -m 0755 "$OPENSSL" "$r/usr/bin/openssl"
ldd "$OPENSSL" | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' | while read -r lib; do
    [[ -f $lib ]] || die "openssl needs $lib, which is missing"
    install -D -m 0755 "$(realpath "$lib")" "$r$lib"
done
[[ -e $r/lib64/ld-linux-x86-64.so.2 ]] || die "no ELF interpreter found for openssl"
# no openssl.cnf: the defaults are what the stand-in needs
mkdir -p "$r/usr/lib/ssl"
: > "$r/usr/lib/ssl/openssl.cnf"

echo "root:x:0:0:root:/root:/bin/sh" > "$r/etc/passwd"
echo "root:x:0:" > "$r/etc/group"
echo "ovirt-node" > "$r/etc/hostname"
printf 'NAME="oVirt Node (ovirt-node-reg live test root)"\nID=ovirt-node-reg-live\n' \
    > "$r/etc/os-release"
# the units a systemd root would run, for reference and `systemd-analyze verify`
install -m 0644 "$top/dracut/ovirt-node-reg.service" "$here/live/vdsmd.service" \
    "$r/usr/lib/systemd/system/"

stand_in_vdsm "$r"

cat > "$r/sbin/init" <<'INIT'
#!/bin/busybox sh
# The node's init in the ISO's busybox root: the order of the real node's systemd units
# ovirt-node-reg.service (Before=vdsmd.service) and vdsmd.service (After=/Requires=
# ovirt-node-reg.service). See image/mkroot-live.sh.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mounted() { grep -qs "^[^ ]* $1 " /proc/mounts; }
mounted /proc || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mounted /run || mount -t tmpfs -o mode=0755 tmpfs /run
up() { cut -d' ' -f1 /proc/uptime; }
cmdline=$(cat /proc/cmdline)
karg() { # the value of the last NAME= on the command line
    for w in $cmdline; do case $w in "$1"=*) v=${w#*=} ;; esac; done
    echo "${v:-}"
}
echo "QH-ROOT stage=system uptime=$(up)"
ip link set lo up
# ovirt-node-reg.service
/usr/sbin/ovirt-node-reg --kmsg boot --stage system
rc=$?
echo "QH-EXIT rc=$rc uptime=$(up)"
echo "QH-STATUS-BEGIN"
/usr/sbin/ovirt-node-reg status --json
echo "QH-STATUS-END"
# test only (qemu-tests/tests/install.rs): qh.install=SERIAL installs this live system to the
# virtio disk with that serial; a virtio disk with the serial qh-command holds one line
# `upgrade ARGS…`, run with `--image` the disk with the serial qh-image (the scenario stands in
# for the engine's command, docs/protocol-v2.md)
by_serial() {
    for s in /sys/block/vd*; do
        [ "$(cat "$s/serial" 2> /dev/null)" = "$1" ] && echo "/dev/${s##*/}"
    done
}
target=$(karg qh.install)
if [ -n "$target" ]; then
    size=$(karg qh.slot_size)
    /usr/sbin/ovirt-node-reg install --disk "$(by_serial "$target")" --slot-size "${size:-1024}"
    echo "QH-INSTALL rc=$?"
fi
command=$(by_serial qh-command)
if [ -n "$command" ]; then
    cmd=$(head -c 512 "$command" | tr -d '\000' | head -n 1)
    case $cmd in
        "upgrade "*)
            # shellcheck disable=SC2086
            /usr/sbin/ovirt-node-reg $cmd --image "$(by_serial qh-image)"
            echo "QH-UPGRADE rc=$?"
            ;;
    esac
fi
echo "QH-SLOTS-BEGIN"
/usr/sbin/ovirt-node-reg status | grep '^slot '
echo "QH-SLOTS-END"
poweroff_at_end=0
case " $cmdline " in *" ovirt.reg.poweroff "*) poweroff_at_end=1 ;; esac
# vdsmd.service: Requires= ovirt-node-reg.service, so only after it succeeded
pki=/etc/pki/vdsm
vdsm=
if [ "$rc" -ne 0 ]; then
    echo "QH-VDSM not-started reason=ovirt-node-reg-rc-$rc"
elif [ ! -s $pki/certs/vdsmcert.pem ] || [ ! -s $pki/keys/vdsmkey.pem ] || [ ! -s $pki/certs/cacert.pem ]; then
    echo "QH-VDSM not-started reason=no-certificates"
else
    /usr/libexec/vdsmd-standin > /run/vdsmd.log 2>&1 &
    vdsm=$!
    i=0
    while [ $i -lt 100 ] && ! netstat -ltn 2> /dev/null | grep -q ':54321 '; do
        sleep 0.1
        i=$((i + 1))
    done
    if netstat -ltn 2> /dev/null | grep -q ':54321 '; then
        echo "QH-VDSM listening port=54321 uptime=$(up)"
    else
        echo "QH-VDSM not-started reason=not-listening"
        sed 's/^/QH-VDSM-LOG /' /run/vdsmd.log
    fi
fi
if [ $poweroff_at_end -eq 0 ]; then
    # a node: keeps running (vdsm in the background), a shell on the console
    [ -n "$vdsm" ] && wait "$vdsm"
    exec sh
fi
# test only: one connection, or qh.vdsm_wait seconds
if [ -n "$vdsm" ]; then
    w=$(karg qh.vdsm_wait)
    i=0
    while [ $i -lt "${w:-0}" ] && kill -0 "$vdsm" 2> /dev/null; do
        sleep 1
        i=$((i + 1))
    done
    if kill -0 "$vdsm" 2> /dev/null; then
        kill "$vdsm"
        echo "QH-VDSM served rc=none"
    else
        wait "$vdsm"
        echo "QH-VDSM served rc=$?"
    fi
    grep -E '^(ACCEPT|DONE|ERROR|verify|depth|Shared|CIPHER|Protocol)' /run/vdsmd.log | head -n 20 \
        | sed 's/^/QH-VDSM-LOG /'
fi
echo "QH-DONE uptime=$(up)"
mounted /config && umount /config
sync
poweroff -f
INIT
chmod 0755 "$r/sbin/init"
fi

find "$r" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
rm -f "$OUT"
# zstd at level 3, not xz: the systemd root's 187 MB compress in 1 s instead of 45 s of CPU
# (58 MB instead of 46 MB), and its boots measured no slower (docs/qemu-harness.md §9 item
# 14). Debian's kernel reads both (CONFIG_SQUASHFS_ZSTD).
mksquashfs "$r" "$OUT.tmp$$" -quiet -noappend -comp zstd -Xcompression-level 3 -all-root \
    -no-xattrs -processors 1 > /dev/null \
    || die "mksquashfs failed"
mv "$OUT.tmp$$" "$OUT"
echo "mkroot-live: $OUT: $(stat -c %s "$OUT") bytes squashfs ($ROOT root, $(du -sk "$r" | cut -f1) KiB of files)"
