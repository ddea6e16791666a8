#!/usr/bin/env bash
# A bootable hybrid ISO of the node: isolinux (BIOS El Torito, and an MBR for USB sticks),
# GRUB for UEFI (a second El Torito entry, an EFI system partition image, also in the GPT of
# the hybrid image), the Debian kernel, the dracut initramfs with 95ovirt-node-reg and dmsquash-live, and the
# root as LiveOS/squashfs.img, mounted by root=live:CDLABEL=<label> rd.live.image as on
# Fedora/oVirt Node live ISOs.
#
#   image/mkiso.sh BIN OUT.iso [--append "ARGS"] [--token-file FILE] [--timeout DS]
#                  [--initrd FILE] [--rootfs FILE] [--kernel FILE] [--label LABEL] [--no-uefi]
#                  [--version V]
#
#   --append "ARGS"    registration settings for the boot menu's entry (management_server=,
#                      ovirt.reg.ca_pin=, ip=, …); an operator can also edit them at the
#                      boot: prompt (Tab) or in isolinux/isolinux.cfg of the image
#   --token-file FILE  an enrolment token, shipped as a second initramfs (isolinux/token.img:
#                      /etc/ovirt-node-reg/token, mode 0600) with
#                      ovirt.reg.token_file=/etc/ovirt-node-reg/token: never on the command
#                      line. Tokens are single-use: such an ISO is for one host
#   --timeout DS       boot prompt timeout in tenths of a second (default 50; 0: no prompt)
#   --initrd FILE      reuse an initramfs (default: image/mkinitrd-dracut.sh BIN --live)
#   --rootfs FILE      reuse a root squashfs (default: image/mkroot-live.sh)
#   --kernel FILE      default /boot/vmlinuz-K of the newest kernel with /lib/modules/K
#   --label LABEL      ISO volume label (default OVIRT-NODE)
#   --version V        the node version, written as the application id `ovirt-node V` (what
#                      `ovirt-node-reg install|upgrade|status` show for a boot slot); default
#                      the binary's own version
#   --no-uefi          BIOS only (otherwise GRUB from grub-efi-amd64-bin boots it on UEFI with
#                      boot/grub/grub.cfg, the same entry as isolinux/isolinux.cfg)
#
# Reproducible: every date is SOURCE_DATE_EPOCH (default: the last commit's time); the same
# inputs give the same bytes. Prints the ISO's size and the time each part took.
set -euo pipefail

die() {
    echo "mkiso: $*" >&2
    exit 1
}
usage() {
    sed -n '7,8p' "$0" | sed 's/^# \{0,3\}//' >&2
    exit 2
}

[[ $# -ge 2 ]] || usage
BIN=$1
OUT=$2
shift 2
APPEND='' TOKEN='' TIMEOUT=50 INITRD='' ROOTFS='' KERNEL='' LABEL=OVIRT-NODE UEFI=1 VERSION=''
while [[ $# -gt 0 ]]; do
    case $1 in
        --append) APPEND=${2?--append needs a value}; shift 2 ;;
        --token-file) TOKEN=${2:?--token-file needs a file}; shift 2 ;;
        --timeout) TIMEOUT=${2:?--timeout needs tenths of a second}; shift 2 ;;
        --initrd) INITRD=${2:?--initrd needs a file}; shift 2 ;;
        --rootfs) ROOTFS=${2:?--rootfs needs a file}; shift 2 ;;
        --kernel) KERNEL=${2:?--kernel needs a file}; shift 2 ;;
        --label) LABEL=${2:?--label needs a value}; shift 2 ;;
        --version) VERSION=${2:?--version needs a value}; shift 2 ;;
        --no-uefi) UEFI=0; shift ;;
        *) usage ;;
    esac
done
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

[[ -x $BIN ]] || die "$BIN: not an executable (build it: build-support/build-static.sh)"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout $TIMEOUT: tenths of a second"
[[ $LABEL =~ ^[A-Z0-9_-]{1,32}$ ]] || die "--label $LABEL: A-Z 0-9 _ - only, at most 32"
[[ -z $TOKEN || -f $TOKEN ]] || die "--token-file $TOKEN: no such file"
[[ -z $INITRD || -f $INITRD ]] || die "--initrd $INITRD: no such file"
[[ -z $ROOTFS || -f $ROOTFS ]] || die "--rootfs $ROOTFS: no such file"
case $APPEND in *$'\n'*) die "--append: one line" ;; esac
if [[ -z $VERSION ]]; then
    VERSION=$("$BIN" version 2> /dev/null | awk '{ print $2 }') || true
fi
[[ $VERSION =~ ^[A-Za-z0-9._+~-]{1,64}$ ]] || die "--version '$VERSION': letters, digits and ._+~- only"
ISOLINUX=/usr/lib/ISOLINUX/isolinux.bin
HYBRID_MBR=/usr/lib/ISOLINUX/isohdpfx.bin
LDLINUX=/usr/lib/syslinux/modules/bios/ldlinux.c32
[[ -f $ISOLINUX && -f $HYBRID_MBR ]] || die "$ISOLINUX missing: apt-get install isolinux"
[[ -f $LDLINUX ]] || die "$LDLINUX missing: apt-get install syslinux-common"
command -v xorriso > /dev/null || die "xorriso not found: apt-get install xorriso"
command -v cpio > /dev/null || die "cpio not found: apt-get install cpio"
if [[ $UEFI -eq 1 ]]; then
    [[ -d /usr/lib/grub/x86_64-efi ]] \
        || die "/usr/lib/grub/x86_64-efi missing: apt-get install grub-efi-amd64-bin (or --no-uefi)"
    command -v grub-mkimage > /dev/null \
        || die "grub-mkimage not found: apt-get install grub-common (or --no-uefi)"
    command -v mformat > /dev/null || die "mformat not found: apt-get install mtools (or --no-uefi)"
fi
# shellcheck source=image/kernel.sh
. "$here/kernel.sh"
[[ -n $KERNEL ]] || KERNEL=/boot/vmlinuz-$(guest_kver) || die "no kernel for the ISO"
[[ -f $KERNEL ]] || die "--kernel $KERNEL: no such file"
kver=${KERNEL##*/vmlinuz-}

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$top" log -1 --format=%ct 2> /dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
t0=$(now)
if [[ -z $INITRD ]]; then
    INITRD=$tmp/initrd.img
    args=()
    [[ $kver == "$KERNEL" ]] || args=(--kver "$kver")
    bash "$here/mkinitrd-dracut.sh" "$BIN" "$INITRD" --live "${args[@]}" >&2
fi
t1=$(now)
if [[ -z $ROOTFS ]]; then
    ROOTFS=$tmp/squashfs.img
    bash "$here/mkroot-live.sh" "$ROOTFS" "$BIN" >&2
fi
t2=$(now)

iso=$tmp/iso
mkdir -p "$iso/isolinux" "$iso/LiveOS"
install -m 0644 "$ISOLINUX" "$LDLINUX" "$iso/isolinux/"
install -m 0644 "$KERNEL" "$iso/isolinux/vmlinuz"
install -m 0644 "$INITRD" "$iso/isolinux/initrd.img"
install -m 0644 "$ROOTFS" "$iso/LiveOS/squashfs.img"
ARGS="root=live:CDLABEL=$LABEL rd.live.image rd.live.overlay.overlayfs=1"
ARGS="$ARGS console=tty0 console=ttyS0,115200"
INITRDS=/isolinux/initrd.img
if [[ -n $TOKEN ]]; then
    # The overlay: the kernel unpacks every initramfs given, in order, over the same root.
    stage=$tmp/token
    install -d -m 0755 "$stage/etc" "$stage/etc/ovirt-node-reg"
    install -m 0600 "$TOKEN" "$stage/etc/ovirt-node-reg/token"
    find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    (cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z \
        | cpio --null -o -H newc --owner 0:0 --quiet --reproducible) | gzip -n > "$iso/isolinux/token.img"
    chmod 0600 "$iso/isolinux/token.img"
    ARGS="$ARGS ovirt.reg.token_file=/etc/ovirt-node-reg/token"
    INITRDS="$INITRDS,/isolinux/token.img"
fi
ARGS="$ARGS${APPEND:+ $APPEND}"
prompt=1
[[ $TIMEOUT -ne 0 ]] || prompt=0
cat > "$iso/isolinux/isolinux.cfg" << EOF
# ovirt-node-reg node ISO (image/mkiso.sh). Edit APPEND for another engine, or press Tab at
# the boot: prompt and add management_server=HOST[:PORT] ovirt.reg.ca_pin=sha256:HEX.
SERIAL 0 115200
DEFAULT ovirt-node
PROMPT $prompt
TIMEOUT $TIMEOUT
LABEL ovirt-node
  KERNEL /isolinux/vmlinuz
  INITRD $INITRDS
  APPEND $ARGS
EOF

efi=()
if [[ $UEFI -eq 1 ]]; then
    # GRUB's own config on the ISO (edit it like isolinux.cfg); the EFI binary only finds the
    # ISO by its label and reads that file.
    mkdir -p "$iso/boot/grub"
    gtimeout=$(((TIMEOUT + 9) / 10))
    initrds=${INITRDS//,/ }
    cat > "$iso/boot/grub/grub.cfg" << GRUB
# ovirt-node-reg node ISO (image/mkiso.sh), UEFI. Edit the linux line for another engine, or
# press e in the menu.
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set default=0
set timeout=$gtimeout
menuentry "oVirt Node (ovirt-node-reg)" {
  linux /isolinux/vmlinuz $ARGS
  initrd $initrds
}
GRUB
    cat > "$tmp/embedded.cfg" << GRUB
search --no-floppy --set=root --label $LABEL
set prefix=(\$root)/boot/grub
configfile /boot/grub/grub.cfg
GRUB
    touch -d "@$SOURCE_DATE_EPOCH" "$tmp/embedded.cfg"
    # every module built in, the config embedded: no memdisk (grub-mkstandalone's memdisk tar
    # carries the build time, so its output differs from run to run)
    grub-mkimage -O x86_64-efi -o "$tmp/BOOTX64.EFI" -p /boot/grub -c "$tmp/embedded.cfg" \
        linux normal iso9660 search search_label configfile serial terminal echo test \
        part_gpt part_msdos fat 2> "$tmp/grub.log" || {
        cat "$tmp/grub.log" >&2
        die "grub-mkimage failed"
    }
    touch -d "@$SOURCE_DATE_EPOCH" "$tmp/BOOTX64.EFI"
    # the EFI system partition image: FAT with EFI/BOOT/BOOTX64.EFI
    kib=$(($(stat -c %s "$tmp/BOOTX64.EFI") / 1024 + 256))
    truncate -s "${kib}K" "$iso/boot/grub/efi.img"
    mformat -i "$iso/boot/grub/efi.img" -N 6f766972 -v OVIRTEFI ::
    mmd -i "$iso/boot/grub/efi.img" ::/EFI ::/EFI/BOOT
    mcopy -m -i "$iso/boot/grub/efi.img" "$tmp/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
    efi=(-eltorito-alt-boot -e boot/grub/efi.img -no-emul-boot -isohybrid-gpt-basdat)
fi

find "$iso" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S00)
xorriso -as mkisofs -quiet -o "$tmp/out.iso" -V "$LABEL" -A "ovirt-node $VERSION" -r -J -joliet-long \
    --modification-date="$date" \
    -isohybrid-mbr "$HYBRID_MBR" \
    -c isolinux/boot.cat -b isolinux/isolinux.bin \
    -no-emul-boot -boot-load-size 4 -boot-info-table \
    "${efi[@]}" \
    "$iso" 2> "$tmp/xorriso.log" || {
    cat "$tmp/xorriso.log" >&2
    die "xorriso failed"
}
mv "$tmp/out.iso" "$OUT"
t3=$(now)
size=$(stat -c %s "$OUT")
awk -v out="$OUT" -v size="$size" -v k="$(stat -c %s "$KERNEL")" -v i="$(stat -c %s "$INITRD")" \
    -v r="$(stat -c %s "$ROOTFS")" -v ti="$(secs "$t0" "$t1")" -v tr="$(secs "$t1" "$t2")" \
    -v tx="$(secs "$t2" "$t3")" 'BEGIN {
    printf "mkiso: %s: %d bytes (%.1f MiB; kernel %d, initramfs %d, root squashfs %d); built in %.1f s (initramfs %.1f, root %.1f, iso %.1f)\n",
        out, size, size / 1048576, k, i, r, ti + tr + tx, ti, tr, tx }'
