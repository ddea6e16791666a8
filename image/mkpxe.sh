#!/usr/bin/env bash
# The PXE tree an operator serves as is (TFTP root, or an HTTP directory for iPXE).
#
#   image/mkpxe.sh OUT_DIR --initrd INITRD --engine HOST[:PORT] --pin sha256:HEX
#                  [--token-file FILE] [--kernel VMLINUZ] [--append "ARGS"]
#
#   --initrd FILE      the node's initramfs (image/mkinitrd-dracut.sh, or image/mkinitrd-min.sh)
#   --engine H[:P]     management_server= of every node booted from this tree
#   --pin sha256:HEX   ovirt.reg.ca_pin= (the engine CA's SHA-256, README "Engine trust")
#   --token-file FILE  an enrolment token: shipped in a second initramfs (token.img, a cpio
#                      with /etc/ovirt-node-reg/token, mode 0600), never on the command line
#   --kernel FILE      default: /boot/vmlinuz-K of the newest installed kernel
#   --append "ARGS"    more kernel arguments (e.g. root=, ip=, console=)
#
# Writes OUT_DIR/{pxelinux.0,ldlinux.c32,vmlinuz,initrd.img,[token.img],pxelinux.cfg/default,
# boot.ipxe}. pxelinux adds BOOTIF=01-<mac> for the NIC it booted from (IPAPPEND 2); the
# iPXE script adds the same from ${netX/mac} (the NIC iPXE booted from). Every node booted
# from the tree registers with the same engine and CA pin; a token is single-use, so a token
# tree is for one host. token.img is 0600: make it readable by the TFTP/HTTP server's user
# only (chown tftp), never world-readable.
set -euo pipefail

die() {
    echo "mkpxe: $*" >&2
    exit 1
}
usage() {
    sed -n '4,5p' "$0" | sed 's/^# \{0,3\}//' >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
OUT=$1
shift
INITRD='' ENGINE='' PIN='' TOKEN='' KERNEL='' APPEND=''
while [[ $# -gt 0 ]]; do
    case $1 in
    --initrd) INITRD=${2:?--initrd needs a file}; shift 2 ;;
    --engine) ENGINE=${2:?--engine needs HOST[:PORT]}; shift 2 ;;
    --pin) PIN=${2:?--pin needs sha256:HEX}; shift 2 ;;
    --token-file) TOKEN=${2:?--token-file needs a file}; shift 2 ;;
    --kernel) KERNEL=${2:?--kernel needs a file}; shift 2 ;;
    --append) APPEND=${2?--append needs a value}; shift 2 ;;
    *) usage ;;
    esac
done
[[ -n $INITRD && -n $ENGINE && -n $PIN ]] || usage
[[ -f $INITRD ]] || die "--initrd $INITRD: no such file"
[[ $PIN =~ ^sha256:[0-9a-f]{64}$ ]] || die "--pin $PIN: expected sha256: and 64 lower-case hex digits"
host_re='^[][A-Za-z0-9.:-]+$'
[[ $ENGINE =~ $host_re ]] || die "--engine $ENGINE: expected HOST[:PORT]"
[[ -z $TOKEN || -f $TOKEN ]] || die "--token-file $TOKEN: no such file"
# shellcheck source=image/kernel.sh
. "$(dirname "$0")/kernel.sh"
[[ -n $KERNEL ]] || KERNEL=/boot/vmlinuz-$(guest_kver) || die "no kernel for the PXE tree"
PXELINUX=/usr/lib/PXELINUX/pxelinux.0
LDLINUX=/usr/lib/syslinux/modules/bios/ldlinux.c32
[[ -f $PXELINUX ]] || die "$PXELINUX missing: apt-get install pxelinux"
[[ -f $LDLINUX ]] || die "$LDLINUX missing: apt-get install syslinux-common"
command -v cpio >/dev/null || die "cpio not found: apt-get install cpio"

mkdir -p "$OUT/pxelinux.cfg"
install -m 0644 "$PXELINUX" "$LDLINUX" "$OUT/"
install -m 0644 "$KERNEL" "$OUT/vmlinuz"
install -m 0644 "$INITRD" "$OUT/initrd.img"

ARGS="management_server=$ENGINE ovirt.reg.ca_pin=$PIN"
INITRDS=initrd.img
if [[ -n $TOKEN ]]; then
    # The overlay: the kernel unpacks every initramfs given, in order, over the same root.
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    install -d -m 0755 "$stage/etc" "$stage/etc/ovirt-node-reg"
    install -m 0600 "$TOKEN" "$stage/etc/ovirt-node-reg/token"
    (cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc --owner 0:0 --quiet --reproducible) | gzip -n >"$OUT/token.img"
    chmod 0600 "$OUT/token.img"
    ARGS="$ARGS ovirt.reg.token_file=/etc/ovirt-node-reg/token"
    INITRDS="initrd.img,token.img"
fi
ARGS="$ARGS${APPEND:+ $APPEND}"

cat >"$OUT/pxelinux.cfg/default" <<EOF
# ovirt-node-reg PXE boot (image/mkpxe.sh). IPAPPEND 2 adds BOOTIF=01-<mac of the boot NIC>,
# so the node builds ovirtmgmt on the NIC it booted from.
DEFAULT ovirt-node
PROMPT 0
TIMEOUT 0
LABEL ovirt-node
  KERNEL vmlinuz
  INITRD $INITRDS
  APPEND $ARGS
  IPAPPEND 2
EOF

{
    echo '#!ipxe'
    echo '# ovirt-node-reg PXE boot (image/mkpxe.sh): BOOTIF names the NIC iPXE booted from.'
    echo "kernel vmlinuz $ARGS BOOTIF=01-\${netX/mac:hexhyp}"
    echo 'initrd initrd.img'
    [[ -z $TOKEN ]] || echo 'initrd token.img'
    echo 'boot'
} >"$OUT/boot.ipxe"

echo "mkpxe: $OUT: $(du -sb "$OUT" | cut -f1) bytes (kernel $(basename "$KERNEL"), initrds $INITRDS)"
