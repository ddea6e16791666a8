#!/usr/bin/env bash
# The boot loader of an installed node (docs/install-upgrade.md): what `ovirt-node-reg
# install` writes to the disk, made here once with the image and shipped in its root.
#
#   image/mkboot.sh OUTDIR [--append "ARGS"] [--timeout S]
#
#   --append "ARGS"  kernel arguments every boot entry gets, before the registration
#                    arguments of grubenv (default none)
#   --timeout S      seconds the menu waits (default 1; 0: no menu). The QEMU tests use
#                    `--append init_on_alloc=0 --timeout 0` (docs/qemu-harness.md §9)
#
#   OUTDIR/esp.img   the whole FAT file system of the EFI system partition (8 MiB):
#                    EFI/BOOT/BOOTX64.EFI (GRUB, x86_64-efi, prefix /grub), grub/grub.cfg,
#                    grub/grubenv (GRUB's 1024-byte environment block, in one 2 KiB cluster:
#                    the binary rewrites it in place)
#   OUTDIR/core.img  GRUB's i386-pc core (prefix (,gpt2)/grub: the ESP of the disk it booted
#                    from), for the BIOS boot partition
#   OUTDIR/boot.img  GRUB's MBR code (grub-pc-bin)
#
# grub.cfg is the same for BIOS and UEFI and never changes: which slot boots, and the kernel
# arguments, are variables in grubenv. Needs grub-pc-bin, grub-efi-amd64-bin, grub-common
# (grub-mkimage, grub-editenv) and mtools. Reproducible: SOURCE_DATE_EPOCH (default: the last
# commit's time) for every date, a fixed FAT serial.
set -euo pipefail

die() {
    echo "mkboot: $*" >&2
    exit 1
}
usage() {
    sed -n '5p' "$0" | sed 's/^# \{0,3\}//' >&2
    exit 2
}
[[ $# -ge 1 && $1 != --* ]] || usage
OUT=$1
shift
APPEND='' TIMEOUT=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --append) APPEND=${2?--append needs a value}; shift 2 ;;
        --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift 2 ;;
        *) usage ;;
    esac
done
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout $TIMEOUT: whole seconds"
[[ $APPEND =~ ^[A-Za-z0-9._=,:/+-]*( [A-Za-z0-9._=,:/+-]+)*$ ]] \
    || die "--append '$APPEND': plain words only (letters, digits, ._=,:/+-)"
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
for t in grub-mkimage grub-editenv mformat mcopy mmd; do
    command -v "$t" > /dev/null || die "$t not found: apt-get install grub-common mtools"
done
[[ -d /usr/lib/grub/i386-pc ]] || die "/usr/lib/grub/i386-pc missing: apt-get install grub-pc-bin"
[[ -d /usr/lib/grub/x86_64-efi ]] || die "/usr/lib/grub/x86_64-efi missing: apt-get install grub-efi-amd64-bin"
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$top" log -1 --format=%ct 2> /dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$OUT"

# The variables (written by ovirt-node-reg, src/slots/mod.rs):
#   slot_default  A or B: the slot that boots
#   slot_trial    A or B: a new image to boot once; trial_left 1 before that boot, 0 after
#   ovirt_args    the registration arguments (management_server=, ovirt.reg.*, ip=, console=)
# The trial is spent (trial_left=0 saved) before it boots, and it boots only if that save
# reached the disk: a trial that never reaches `done` is not booted twice, the next boot
# takes slot_default again.
cat > "$tmp/grub.cfg.in" << 'CFG'
# ovirt-node-reg installed node (image/mkboot.sh): the same file for BIOS and UEFI. Which slot
# boots and the kernel arguments are in grubenv (docs/install-upgrade.md): edit them with
# `grub-editenv`, or press e in the menu.
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set default=0
set timeout=@TIMEOUT@
load_env
set slot=A
if [ "$slot_default" = B ]; then set slot=B; fi
if [ -n "$slot_trial" -a "$trial_left" = 1 ]; then
  set trial_left=0
  save_env trial_left
  set trial_left=
  load_env trial_left
  if [ "$trial_left" = 0 ]; then
    set slot=$slot_trial
    echo "ovirt-node: trial boot of slot $slot"
  fi
fi
regexp --set=1:disk '^([^,]+),' "$root"
export disk slot ovirt_args
menuentry "oVirt Node (slot $slot)" {
  if [ "$slot" = B ]; then set part=gpt4; set label=ovirt-node-b; else set part=gpt3; set label=ovirt-node-a; fi
  linux ($disk,$part)/isolinux/vmlinuz root=live:PARTLABEL=$label rd.live.image rd.live.overlay.overlayfs=1@APPEND@ ovirt.slot=$slot $ovirt_args
  initrd ($disk,$part)/isolinux/initrd.img
}
menuentry "oVirt Node, slot A" {
  linux ($disk,gpt3)/isolinux/vmlinuz root=live:PARTLABEL=ovirt-node-a rd.live.image rd.live.overlay.overlayfs=1@APPEND@ ovirt.slot=A $ovirt_args
  initrd ($disk,gpt3)/isolinux/initrd.img
}
menuentry "oVirt Node, slot B" {
  linux ($disk,gpt4)/isolinux/vmlinuz root=live:PARTLABEL=ovirt-node-b rd.live.image rd.live.overlay.overlayfs=1@APPEND@ ovirt.slot=B $ovirt_args
  initrd ($disk,gpt4)/isolinux/initrd.img
}
CFG
sed -e "s/@TIMEOUT@/$TIMEOUT/" -e "s|@APPEND@|${APPEND:+ $APPEND}|" "$tmp/grub.cfg.in" > "$tmp/grub.cfg"
rm "$tmp/grub.cfg.in"

modules=(normal linux part_gpt fat iso9660 loadenv test echo regexp serial terminal configfile)
grub-mkimage -O x86_64-efi -o "$tmp/BOOTX64.EFI" -p /grub "${modules[@]}" 2> "$tmp/log" || {
    cat "$tmp/log" >&2
    die "grub-mkimage (x86_64-efi) failed"
}
grub-mkimage -O i386-pc -o "$tmp/core.img" -p '(,gpt2)/grub' biosdisk "${modules[@]}" 2> "$tmp/log" || {
    cat "$tmp/log" >&2
    die "grub-mkimage (i386-pc) failed"
}
[[ $(stat -c %s "$tmp/core.img") -le 1048576 ]] || die "core.img does not fit the 1 MiB BIOS boot partition"
grub-editenv "$tmp/grubenv" create
touch -d "@$SOURCE_DATE_EPOCH" "$tmp"/*

truncate -s 8M "$tmp/esp.img"
mformat -i "$tmp/esp.img" -N 6f766973 -v OVIRTESP -c 4 ::
mmd -i "$tmp/esp.img" ::/EFI ::/EFI/BOOT ::/grub
mcopy -m -i "$tmp/esp.img" "$tmp/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -m -i "$tmp/esp.img" "$tmp/grub.cfg" ::/grub/grub.cfg
mcopy -m -i "$tmp/esp.img" "$tmp/grubenv" ::/grub/grubenv
install -m 0644 "$tmp/esp.img" "$tmp/core.img" "$OUT/"
install -m 0644 /usr/lib/grub/i386-pc/boot.img "$OUT/boot.img"
echo "mkboot: $OUT: esp.img $(stat -c %s "$OUT/esp.img"), core.img $(stat -c %s "$OUT/core.img"), boot.img 512 bytes"
