#!/usr/bin/env bash
# README's first command: set the machine up, build the static binary, and run it as a node's
# boot would, against a temporary root tree with a directory config store. Shows the parsed
# kernel command line, the boot banner and status, the persisted files, and a second "boot"
# that resumes from the checkpoint. (The QEMU boot with the engine simulator arrives with
# the boot-integration work; until then the flow stops after the `configured` step.)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "setup (apt packages, toolchain route)"
build-support/setup.sh
say "static musl build"
build-support/build-static.sh
BIN=$PWD/target/static/ovirt-node-reg

ROOT=$(mktemp -d /tmp/ovirt-node-reg-demo.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/config" "$ROOT/proc" "$ROOT/sys/class/dmi/id"
echo "4C4C4544-0042-3510-8052-B4C04F4E3232" >"$ROOT/sys/class/dmi/id/product_uuid"
PIN="sha256:$(printf '%064d' 0 | tr 0 a)"
cat >"$ROOT/proc/cmdline" <<CMDLINE
BOOT_IMAGE=vmlinuz ro console=ttyS0 BOOTIF=01-52-54-00-12-34-56 ip=dhcp management_server=engine.example.com:443 ovirt.reg.ca_pin=$PIN ovirt.reg.store=/config ovirt.reg.timeout=5m
CMDLINE

say "kernel command line of the demo node"
cat "$ROOT/proc/cmdline"
say "ovirt-node-reg config show"
"$BIN" --root "$ROOT" config show
say "boot #1 (in a private mount namespace: the store bind-mounts persisted files)"
unshare --mount --propagation private "$BIN" --root "$ROOT" boot || true
say "ovirt-node-reg status"
"$BIN" --root "$ROOT" status || true
say "config store: /config/files and the persisted copies"
cat "$ROOT/config/files"
for f in etc/default/ovirt etc/vdsm-reg/vdsm-reg.conf etc/vdsm/vdsm.id ovirt-node-reg/state.json; do
    printf -- '--- /config/%s\n' "$f"
    cat "$ROOT/config/$f"
    echo
done
say "boot #2 (reboot: restores the persisted files, resumes from the checkpoint)"
rm -rf "$ROOT/run"
unshare --mount --propagation private "$BIN" --root "$ROOT" boot || true
say "binary"
ls -l "$BIN"
file "$BIN"
