# shellcheck shell=bash
# Variables set here (SIM_PID, PIN, QEMU_PID, …) are read by the scripts that source this.
# shellcheck disable=SC2034
# Shared by demo.sh and bench.sh (sourced): the guest kernel, the engine simulator on loopback
# and one QEMU boot (TCG, user-mode networking with restrict=on: the guest reaches only the
# simulator, forwarded from 10.0.2.100). The Rust tests have the same in qemu-tests/src/qemu/.

# shellcheck source=image/kernel.sh
. "$(dirname "${BASH_SOURCE[0]}")/../image/kernel.sh"   # guest_kver

# start_work NAME: sets WORK to a new scratch directory; on exit the QEMU and the simulator
# still running (QEMU_PID, SIM_PID) are stopped and WORK is removed.
start_work() {
    WORK=$(mktemp -d "/tmp/ovirt-node-reg-$1.XXXXXX")
    SIM_PID=
    QEMU_PID=
    trap stop_work EXIT
}

stop_work() {
    [ -z "$QEMU_PID" ] || kill "$QEMU_PID" 2>/dev/null || true
    [ -z "$SIM_PID" ] || kill "$SIM_PID" 2>/dev/null || true
    rm -rf "$WORK"
}

# start_sim DIR [engine-sim options...]: sets SIM_PID, ENGINE, PORT, PIN, CA.
start_sim() {
    local dir=$1
    shift
    mkdir -p "$dir"
    "$SIM" --listen 127.0.0.1:0 --state-dir "$dir/engine" --event-log "$dir/events.jsonl" \
        --ready-file "$dir/ready.json" "$@" >"$dir/sim.out" 2>&1 &
    SIM_PID=$!
    for _ in $(seq 50); do [ -s "$dir/ready.json" ] && break; sleep 0.1; done
    [ -s "$dir/ready.json" ] || { cat "$dir/sim.out"; echo "the simulator did not start" >&2; return 1; }
    sleep 0.2
    ENGINE=$(grep -o 'https://127.0.0.1:[0-9]*' "$dir/sim.out" | head -1)
    PORT=${ENGINE##*:}
    PIN=$(grep -o 'ovirt.reg.ca_pin=sha256:[0-9a-f]*' "$dir/sim.out")
    CA=$dir/engine/ca.pem
}

# admin ARGS...: the simulator's admin API.
admin() { curl -s --max-time 5 --cacert "$CA" "$@"; }

# new_config_disk FILE: a blank 64 MB ext4 labelled CONFIG, as a node's config disk.
new_config_disk() {
    rm -f "$1"
    truncate -s 64M "$1"
    mkfs.ext4 -q -F -L CONFIG "$1"
}

# qemu_boot LOG KERNEL INITRD CMDLINE [extra qemu args...]: one boot in the background;
# sets QEMU_PID. One NIC (MAC $MAC; the simulator on 10.0.2.100:$PORT through $RELAY, the
# qemu-tests guest-relay), the config disk $DISK, hard timeout 110 s. With
# PXE_TFTP=DIR set, KERNEL/INITRD/CMDLINE are ignored: the NIC boots pxelinux.0 from DIR over
# QEMU's own TFTP (restrict=on still applies). RDRAND seeds the guest kernel's random number
# generator at boot, as on a real server (docs/qemu-harness.md §8). tb-size=128: QEMU's
# translated-code cache at 128 MiB, as in the tests (docs/qemu-harness.md §9 item 12). q35: the
# tests' machine too (docs/qemu-harness.md §9 item 17).
qemu_boot() {
    local log=$1 boot=(-kernel "$2" -initrd "$3" -append "$4") tftp=
    shift 4
    if [ -n "${PXE_TFTP:-}" ]; then
        boot=(-boot n)
        tftp=",tftp=$PXE_TFTP,bootfile=pxelinux.0"
    fi
    timeout 110 qemu-system-x86_64 -machine q35 -accel tcg,tb-size=128 -cpu qemu64,+rdrand -m 512 -nographic -no-reboot "${boot[@]}" \
        -netdev "user,id=n0,restrict=on$tftp,guestfwd=tcp:10.0.2.100:$PORT-cmd:$RELAY 127.0.0.1:$PORT" \
        -device "virtio-net-pci,netdev=n0,mac=$MAC" \
        -drive "file=$DISK,if=virtio,format=raw" "$@" >"$log" 2>&1 &
    QEMU_PID=$!
}

# uptime_of LOG PATTERN: the console's seconds-since-boot on the first line matching PATTERN.
uptime_of() {
    grep -aE "$2" "$1" | head -1 | sed -nE 's/^.*\[ *([0-9]+\.[0-9]+)\] .*$/\1/p'
}
