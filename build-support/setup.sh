#!/usr/bin/env bash
# Prepare a Debian 12 machine to build and test ovirt-node-reg (see docs/toolchain.md).
# Idempotent and non-interactive: a second run only checks and returns within a second or two.
# It never downloads a Rust toolchain (never a rustup download of a target): where the rustup musl target is
# absent it installs route B (Debian's rustc-web + std sources) from bookworm-security instead.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# shellcheck source=build-support/apt-sources.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-sources.sh"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# Root runs apt directly; anyone else goes through sudo (env keeps apt non-interactive).
SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo env DEBIAN_FRONTEND=noninteractive); fi

# tmux: tests/setup_tty.rs types into `setup` on a real terminal; time, strace: bench.sh (peak
# RSS, worker processes started); fdisk (sfdisk), mtools, grub-*: tests/install.rs reads back an installed disk;
# jq: test-all.sh reads the list of test executables cargo built; libclang-rt-14-dev: LLVM's
# libFuzzer, prebuilt, for the fuzz targets (build-support/fuzz.sh).
BASE_PKGS=(musl-tools musl-dev e2fsprogs util-linux fdisk file binutils shellcheck curl dnsmasq-base iproute2
    tmux time strace mtools grub-common grub-pc-bin grub-efi-amd64-bin xorriso jq libclang-rt-14-dev)
# Route B: compiler + std sources must come from the same rustc release, only bookworm-security
# carries the current one; libunwind-14-dev provides the LLVM libunwind.a std links on musl.
ROUTE_B_SEC_PKGS=(rustc-web cargo-web rust-web-src)
ROUTE_B_PKGS=(libunwind-14-dev)
MUSL_TARGET=x86_64-unknown-linux-musl
# QEMU boot tests (qemu-tests/src/qemu/, docs/qemu-harness.md §1): TCG qemu, the guest
# kernel (INITRD=No: no /boot/initrd.img is built), busybox for the guest's /init, socat for
# image/README.md's hand-run guestfwd (the tests use their own guest-relay), xz to unpack the kernel's vmlinux; dracut (+ network) for the dracut initramfs of the
# module (it replaces initramfs-tools, harmless on a build machine), cpio and kmod (depmod,
# modprobe --show-depends) for image/mkinitrd-min.sh, e2tools to read the guest's config disk,
# systemd for the systemd-flavoured dracut initramfs and `systemd-analyze verify` of our unit,
# pxelinux/syslinux for the PXE tree, isolinux/xorriso/grub/mtools/squashfs for the node ISO,
# dracut-live (dmsquash-live: root=live:CDLABEL=…) + dmsetup for the ISO's initramfs, zstd to
# compress the dracut initramfs (image/mkinitrd-dracut.sh), openssl for
# the ISO root's stand-in vdsm (image/mkroot-live.sh copies it with its libraries), mmdebstrap
# for the ISO's systemd root (mkroot-live.sh --root systemd; it downloads from the Debian mirror),
# grub-efi-amd64-bin for the ISO's UEFI boot and ovmf (UEFI firmware) to boot it in QEMU.
QEMU_PKGS=(dracut dracut-network qemu-system-x86 linux-image-amd64 busybox-static socat xz-utils
    cpio kmod e2tools systemd
    pxelinux syslinux-common isolinux xorriso grub-pc-bin mtools squashfs-tools
    dracut-live dmsetup zstd openssl mmdebstrap grub-efi-amd64-bin ovmf)

missing() { # print those of "$@" that dpkg does not report as installed
    local p
    for p in "$@"; do
        dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed || echo "$p"
    done
}

route_a() { rustup target list --installed 2>/dev/null | grep -qx "$MUSL_TARGET"; }

mapfile -t need_base < <(missing "${BASE_PKGS[@]}")
mapfile -t need_qemu < <(missing "${QEMU_PKGS[@]}")
need_sec=() need_b=()
if route_a; then
    log "rustup $MUSL_TARGET target is installed: route A, Debian's rustc-web is not needed"
else
    log "rustup $MUSL_TARGET target absent: route B (Debian rustc-web + rust-web-src)"
    mapfile -t need_sec < <(missing "${ROUTE_B_SEC_PKGS[@]}")
    mapfile -t need_b < <(missing "${ROUTE_B_PKGS[@]}")
fi

if [ $((${#need_base[@]} + ${#need_sec[@]} + ${#need_b[@]} + ${#need_qemu[@]})) -eq 0 ]; then
    log "apt packages: all present"
else
    # Route B's packages come from bookworm-security. Debian images normally list it (deb822
    # debian.sources), minimal or hand-made ones may not: then it is derived from the machine's
    # own bookworm source (apt-sources.sh), never from a mirror named here.
    added=""
    if [ ${#need_sec[@]} -gt 0 ] && ! apt_has_suite /etc/apt bookworm-security; then
        # shellcheck source=/dev/null
        [ "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" = bookworm ] ||
            die "bookworm-security is not configured and this is not Debian 12 (bookworm)"
        stanza=$(apt_security_stanza /etc/apt bookworm) ||
            die "bookworm-security is not in the apt sources and cannot be derived from them (no http(s) 'bookworm main' source): add bookworm-security to the apt sources, then run this again"
        added=/etc/apt/sources.list.d/ovirt-node-reg-security.sources
        log "adding bookworm-security, derived from this machine's bookworm source: $(sed -n 's/^URIs: //p' <<<"$stanza")"
        printf '%s\n' "$stanza" | "${SUDO[@]}" tee "$added" >/dev/null
    fi
    log "apt-get update"
    if ! "${SUDO[@]}" apt-get update -q; then
        [ -n "$added" ] || die "apt-get update failed"
        # Not every mirror carries the security archive beside the main one.
        "${SUDO[@]}" rm -f "$added"
        die "apt-get update failed with the derived bookworm-security source (removed again): add bookworm-security to the apt sources, then run this again"
    fi
    if [ $((${#need_base[@]} + ${#need_b[@]})) -gt 0 ]; then
        log "installing: ${need_base[*]} ${need_b[*]}"
        "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${need_base[@]}" "${need_b[@]}"
    fi
    if [ ${#need_qemu[@]} -gt 0 ]; then
        log "installing (INITRD=No): ${need_qemu[*]}"
        "${SUDO[@]}" env INITRD=No apt-get install -y -q --no-install-recommends "${need_qemu[@]}"
    fi
    if [ ${#need_sec[@]} -gt 0 ]; then
        log "installing from bookworm-security: ${need_sec[*]}"
        # pkg/suite, not `-t bookworm-security`: -t also pins every dependency to that suite and
        # then fails on a machine without libc6-dev (security's libc6-dev is older than main's).
        "${SUDO[@]}" apt-get install -y -q "${need_sec[@]/%//bookworm-security}"
    fi
fi

if ! route_a; then
    [ -d /usr/lib/rustlib/src/rust/library ] || die "rust-web-src did not install std sources"
    log "route B compiler: $(/usr/bin/rustc --version)"
fi

# Rustup's toolchain provides cargo test/clippy/fmt and builds the fuzz targets (fuzz.sh: plain
# cargo, no cargo-fuzz); this script never installs a toolchain.
command -v cargo >/dev/null || die "cargo (rustup) not in PATH; install rustup's stable toolchain"
log "done"
