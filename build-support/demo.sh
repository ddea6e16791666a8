#!/usr/bin/env bash
# README's first command: set the machine up, build the static binary and the engine
# simulator, then boot a node tree (a temporary root with a directory config store) against
# the simulator on loopback: clock → trust → register → submit CSRs → wait for approval;
# an administrator approves; the second boot installs the certificates and vdsm settings;
# a third boot sends nothing but the clock check. (The QEMU boot comes with a later issue.)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "setup (apt packages, toolchain route)"
build-support/setup.sh
say "static musl build"
build-support/build-static.sh
BIN=$PWD/target/static/ovirt-node-reg
say "engine simulator build"
cargo build -q -p qemu-tests --bin engine-sim
SIM=$PWD/target/debug/engine-sim

WORK=$(mktemp -d /tmp/ovirt-node-reg-demo.XXXXXX)
ROOT=$WORK/node
SIM_PID=
cleanup() {
    [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

say "engine simulator on loopback"
"$SIM" --listen 127.0.0.1:0 --state-dir "$WORK/engine" --event-log "$WORK/events.jsonl" \
    --ready-file "$WORK/ready.json" >"$WORK/sim.out" 2>&1 &
SIM_PID=$!
for _ in $(seq 50); do [ -s "$WORK/ready.json" ] && break; sleep 0.1; done
[ -s "$WORK/ready.json" ] || { cat "$WORK/sim.out"; echo "the simulator did not start" >&2; exit 1; }
sleep 0.2
cat "$WORK/sim.out"
ENGINE=$(grep -o 'https://127.0.0.1:[0-9]*' "$WORK/sim.out" | head -1)
PIN=$(grep -o 'ovirt.reg.ca_pin=sha256:[0-9a-f]*' "$WORK/sim.out")
CA=$WORK/engine/ca.pem

mkdir -p "$ROOT/config" "$ROOT/proc" "$ROOT/sys/class/dmi/id"
echo "4C4C4544-0042-3510-8052-B4C04F4E3232" >"$ROOT/sys/class/dmi/id/product_uuid"
echo "BOOT_IMAGE=vmlinuz ro console=ttyS0 BOOTIF=01-52-54-00-12-34-56 ip=dhcp hostname=node1.example.com management_server=${ENGINE#https://} $PIN ovirt.reg.store=/config ovirt.reg.timeout=60 ovirt.reg.approval_timeout=5" >"$ROOT/proc/cmdline"

say "kernel command line of the demo node"
cat "$ROOT/proc/cmdline"
say "ovirt-node-reg config show (the settings given)"
"$BIN" --root "$ROOT" config show | grep -v ' (default)$'
say "boot #1 (private mount namespace: the store bind-mounts persisted files)"
unshare --mount --propagation private "$BIN" --root "$ROOT" boot || true
say "ovirt-node-reg status"
"$BIN" --root "$ROOT" status || true
say "the engine's view: the register request it got, and the pending enrolment"
grep '"command","register"' "$WORK/events.jsonl" | head -1
curl -s --cacert "$CA" "$ENGINE/admin/enrollments"
echo
say "an administrator compares the fingerprint and approves the host"
curl -s --cacert "$CA" -X POST "$ENGINE/admin/hosts/4c4c4544-0042-3510-8052-b4c04f4e3232/approve"
echo
say "boot #2 (reboot: restores the store, resumes at the approval, installs the certificates)"
rm -rf "$ROOT/run"
unshare --mount --propagation private "$BIN" --root "$ROOT" boot || true
"$BIN" --root "$ROOT" status || true
say "config store: /config/files and some persisted copies"
cat "$ROOT/config/files"
for f in etc/default/ovirt etc/vdsm-reg/vdsm-reg.conf etc/vdsm/vdsm.id etc/vdsm/vdsm.conf root/.ssh/authorized_keys; do
    printf -- '--- /config/%s\n' "$f"
    cat "$ROOT/config/$f"
    echo
done
ls -lR "$ROOT/config/etc/pki/vdsm"
say "boot #3 (nothing to do: only the clock check reaches the engine)"
rm -rf "$ROOT/run"
before=$(wc -l <"$WORK/events.jsonl")
unshare --mount --propagation private "$BIN" --root "$ROOT" boot || true
printf 'engine requests during boot #3: %s\n' "$(tail -n +"$((before + 1))" "$WORK/events.jsonl" | grep -c '"kind":"request"')"
printf 'register requests the engine received in all: %s\n' "$(grep -c '"command","register"' "$WORK/events.jsonl")"
say "binary"
ls -l "$BIN"
file "$BIN"
