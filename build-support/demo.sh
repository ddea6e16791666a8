#!/usr/bin/env bash
# README's first command: set the machine up, build the static binary, the minimal PID-1
# initramfs and the engine simulator, then boot a node in QEMU (TCG, user-mode networking with
# restrict=on: the guest reaches only the simulator, forwarded from 10.0.2.100) with a blank
# config disk (ext4 labelled CONFIG). The node trusts the pinned engine CA, registers, submits
# its certificate requests and waits; an administrator approves it; the node installs its
# certificates and powers off. A second boot of the same disk registers nothing again.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
START=$(date +%s)

say "setup (apt packages, toolchain route)"
build-support/setup.sh
say "static musl build"
build-support/build-static.sh
BIN=$PWD/target/static/ovirt-node-reg
say "engine simulator build"
cargo build -q -p qemu-tests --bin engine-sim --bin guest-relay
SIM=$PWD/target/debug/engine-sim
RELAY=$PWD/target/debug/guest-relay
# shellcheck source=build-support/qemu-lib.sh
. build-support/qemu-lib.sh

start_work demo

say "minimal initramfs: the binary is /init (image/mkinitrd-min.sh)"
image/mkinitrd-min.sh "$BIN" "$WORK/initrd.img"
KVER=$(guest_kver)

say "engine simulator on loopback"
start_sim "$WORK" --retry-after 2
cat "$WORK/sim.out"

UUID=4c4c4544-0042-3510-8052-b4c04f4e3232
MAC=52:54:00:12:34:56
CMDLINE="console=ttyS0 panic=-1 no_timer_check quiet BOOTIF=01-${MAC//:/-} ip=dhcp hostname=node1.demo \
management_server=10.0.2.100:$PORT $PIN ovirt.reg.approval_timeout=60 ovirt.reg.poweroff"
DISK=$WORK/config.img
new_config_disk "$DISK"

boot() { # serial-log: one boot of the node, console lines of ovirt-node-reg shown live
    qemu_boot "$1" "/boot/vmlinuz-$KVER" "$WORK/initrd.img" "$CMDLINE" -uuid "$UUID"
    timeout 115 tail -n +1 -f --pid="$QEMU_PID" "$1" | grep --line-buffered -aE '\] \[(INFO|WARN|ERROR)\]|^ovirt-node-reg: ' |
        sed -u -E 's/^.*(\[ *[0-9]+\.[0-9]+\] \[)/\1/' || true
    wait "$QEMU_PID" || true
    QEMU_PID=
}

approve_when_asked() { # the administrator: waits for the certificate requests, approves
    for _ in $(seq 120); do
        if admin "$ENGINE/admin/enrollments" | grep -q "$UUID"; then
            printf '\n\033[1m>> administrator: the engine shows the enrolment; approving host %s\033[0m\n' "$UUID"
            admin -X POST "$ENGINE/admin/hosts/$UUID/approve" >/dev/null
            return
        fi
        sleep 0.5
    done
}

say "kernel command line of the node"
echo "$CMDLINE"
say "boot #1: blank config disk (TCG, restrict=on; the guest reaches only 10.0.2.100:$PORT)"
B1=$(date +%s%N)
approve_when_asked &
boot "$WORK/boot1.log"
B1=$((($(date +%s%N) - B1) / 1000000))

say "timeline of boot #1 (seconds since the kernel started)"
grep -aE 'init: process 1|network up: bridge|clock (kept|stepped)|step [a-z_]+: done|init: finished' "$WORK/boot1.log" |
    sed -E 's/^.*(\[ *[0-9]+\.[0-9]+\] )\[INFO\] /  \1/'
printf '  boot #1 took %d.%03d s in QEMU (TCG), approval included\n' $((B1 / 1000)) $((B1 % 1000))

say "the config disk after boot #1 (e2ls / debugfs; e2fsck -fn)"
e2fsck -fn "$DISK" | tail -1
debugfs -R 'cat /files' "$DISK" 2>/dev/null
e2ls -l "$DISK:/etc/pki/vdsm/certs"
e2ls -l "$DISK:/etc/pki/vdsm/keys"
debugfs -R 'cat /etc/vdsm/vdsm.conf' "$DISK" 2>/dev/null

say "the engine's view of the host"
admin "$ENGINE/admin/hosts/$UUID"
echo

say "boot #2: the same disk (nothing to do: no second registration)"
boot "$WORK/boot2.log"
printf 'register requests the engine received in all: %s\n' \
    "$(grep -c '"command","register"' "$WORK/events.jsonl")"
printf 'demo finished in %s s (setup and builds included)\n' "$(($(date +%s) - START))"
