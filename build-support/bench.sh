#!/usr/bin/env bash
# Boot benchmark (issue 7): binary size, initramfs sizes (the minimal PID-1 image; dracut with
# and without the 95ovirt-node-reg module), time from the kernel's start to `registered` and
# to `done` in the minimal initramfs (a first boot with an enrolment token: approved at once),
# the same boot without the registration (busybox /init: modules, then power off) for the
# overhead ratio, the binary's peak RSS as process 1 reports it, and one PXE boot (pxelinux from
# image/mkpxe.sh's tree) to `registered`, and the node ISO's size. The storm figures:
# bench-storm.sh. Numbers, not assertions:
# the report goes to stdout and target/bench/boot.txt. BENCH_RUNS (default 3) boots of each
# kind, medians reported. Assumes build-support/setup.sh has run (test-all.sh and demo.sh do).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${BENCH_RUNS:-3}

build-support/build-static.sh >/dev/null
BIN=$PWD/target/static/ovirt-node-reg
cargo build -q -p qemu-tests --bin engine-sim
SIM=$PWD/target/debug/engine-sim
# shellcheck source=build-support/qemu-lib.sh
. build-support/qemu-lib.sh

OUTDIR=$PWD/target/bench
mkdir -p "$OUTDIR"
start_work bench
REPORT=$WORK/report.txt
out() { printf '%s\n' "$*" | tee -a "$REPORT"; }
size_of() { stat -c %s "$1"; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "?"}'; }

KVER=$(guest_kver)
KERNEL=/boot/vmlinuz-$KVER
MAC=52:54:00:12:34:56
out "# ovirt-node-reg boot benchmark, $(date -u +%Y-%m-%dT%H:%MZ), kernel $KVER, $(nproc) cores, QEMU TCG"
out "binary: $(size_of "$BIN") bytes (budget 3145728)"

# --- images ---------------------------------------------------------------------------
image/mkinitrd-min.sh "$BIN" "$WORK/min.img" >/dev/null
cat >"$WORK/baseline-init" <<'EOF'
#!/bin/busybox sh
# The same boot without the registration: API filesystems, the image's modules, power off.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/etc/ovirt-node-reg/pre-init
echo "BASELINE-DONE $(/bin/busybox cut -d' ' -f1 /proc/uptime)"
/bin/busybox poweroff -f
EOF
image/mkinitrd-min.sh "$BIN" "$WORK/baseline.img" --init "$WORK/baseline-init" >/dev/null
out "minimal PID-1 initramfs: $(size_of "$WORK/min.img") bytes (binary, busybox, kernel modules)"
for flavour in shell systemd; do
    image/mkinitrd-dracut.sh "$BIN" "$WORK/dracut-$flavour.img" --flavour "$flavour" >/dev/null 2>&1
    image/mkinitrd-dracut.sh "$BIN" "$WORK/dracut-$flavour-without.img" --flavour "$flavour" \
        --without-module >/dev/null 2>&1
    with=$(size_of "$WORK/dracut-$flavour.img")
    without=$(size_of "$WORK/dracut-$flavour-without.img")
    out "dracut ($flavour init): $with bytes with the module, $without without: +$((with - without)) bytes"
done

# --- boots ------------------------------------------------------------------------------
start_sim "$WORK/sim" --retry-after 1
DISK=$WORK/config.img
registered=() done_=() total=() rss=() workers=() base=()
for i in $(seq "$RUNS"); do
    token=$(admin -X POST -d '{"ttl_secs":600}' "$ENGINE/admin/tokens" | sed -nE 's/.*"token": *"([^"]+)".*/\1/p')
    [ -n "$token" ] || { echo "bench: the simulator made no token" >&2; exit 1; }
    (umask 077 && printf '%s\n' "$token" >"$WORK/token")
    image/mkinitrd-min.sh "$BIN" "$WORK/run.img" --extra "$WORK/token:/etc/ovirt-node-reg/token:0600" >/dev/null
    new_config_disk "$DISK"
    t0=$(date +%s%N)
    qemu_boot "$WORK/boot-$i.log" "$KERNEL" "$WORK/run.img" \
        "console=ttyS0 panic=-1 no_timer_check quiet BOOTIF=01-${MAC//:/-} ip=dhcp management_server=10.0.2.100:$PORT $PIN ovirt.reg.token_file=/etc/ovirt-node-reg/token ovirt.reg.poweroff" \
        -uuid "$(cat /proc/sys/kernel/random/uuid)"
    wait "$QEMU_PID" || true
    QEMU_PID=
    total+=($((($(date +%s%N) - t0) / 1000000)))
    r=$(uptime_of "$WORK/boot-$i.log" 'step registered: done')
    d=$(uptime_of "$WORK/boot-$i.log" 'step done: done')
    if [ -z "$r" ] || [ -z "$d" ]; then
        tail -30 "$WORK/boot-$i.log"
        echo "bench: boot $i did not finish" >&2
        exit 1
    fi
    registered+=("$r") done_+=("$d")
    rss+=("$(grep -ao 'peak RSS [0-9]* kB' "$WORK/boot-$i.log" | head -1 | grep -o '[0-9]*')")
    workers+=("$(grep -ao 'workers [0-9]* kB' "$WORK/boot-$i.log" | head -1 | grep -o '[0-9]*')")

    t0=$(date +%s%N)
    qemu_boot "$WORK/base-$i.log" "$KERNEL" "$WORK/baseline.img" "console=ttyS0 panic=-1 no_timer_check quiet"
    wait "$QEMU_PID" || true
    QEMU_PID=
    base+=($((($(date +%s%N) - t0) / 1000000)))
done

m() { printf '%s\n' "$@" | median; }
reg=$(m "${registered[@]}") dn=$(m "${done_[@]}") tot=$(m "${total[@]}") bas=$(m "${base[@]}")
out "minimal initramfs, first boot with a token, median of $RUNS (seconds since the kernel started):"
out "  registered at ${reg} s, done (approved, certificates installed, persisted) at ${dn} s"
out "  runs: registered ${registered[*]}; done ${done_[*]}"
out "whole QEMU boot to power-off, median: ${tot} ms with registration, ${bas} ms without (busybox /init: modules, power off)"
out "  overhead ratio: $(awk -v a="$tot" -v b="$bas" 'BEGIN {printf "%.2f", a / b}') (runs with: ${total[*]} ms; without: ${base[*]} ms)"
out "peak RSS: process 1 $(m "${rss[@]}") kB, largest worker $(m "${workers[@]}") kB"
# --- PXE (issue 8): pxelinux from QEMU's TFTP, the token in the overlay ----------------------
token=$(admin -X POST -d '{"ttl_secs":600}' "$ENGINE/admin/tokens" | sed -nE 's/.*"token": *"([^"]+)".*/\1/p')
(umask 077 && printf '%s\n' "$token" >"$WORK/token")
image/mkpxe.sh "$WORK/pxe" --initrd "$WORK/min.img" --engine "10.0.2.100:$PORT" --pin "${PIN#ovirt.reg.ca_pin=}" \
    --token-file "$WORK/token" --append "console=ttyS0 panic=-1 no_timer_check quiet ovirt.reg.poweroff" >/dev/null
new_config_disk "$DISK"
t0=$(date +%s%N)
PXE_TFTP="$WORK/pxe" qemu_boot "$WORK/pxe.log" "" "" "" -uuid "$(cat /proc/sys/kernel/random/uuid)"
wait "$QEMU_PID" || true
QEMU_PID=
pxe_total=$((($(date +%s%N) - t0) / 1000000))
pxe_reg=$(uptime_of "$WORK/pxe.log" 'step registered: done')
[ -n "$pxe_reg" ] || { tail -30 "$WORK/pxe.log"; echo "bench: the PXE boot did not register" >&2; exit 1; }
out "PXE (pxelinux via QEMU's TFTP, token overlay): registered at ${pxe_reg} s after the kernel started; ${pxe_total} ms from QEMU's start to power-off (firmware DHCP/TFTP included)"
# --- the node ISO (issue 8): busybox live root, BIOS + UEFI ------------------------------------
t0=$(date +%s)
image/mkiso.sh "$BIN" "$WORK/node.iso" --append "management_server=engine.example.com ovirt.reg.ca_pin=${PIN#ovirt.reg.ca_pin=}" >/dev/null 2>&1
out "node ISO (isolinux + GRUB/UEFI, dracut initramfs with the module, busybox live root): $(size_of "$WORK/node.iso") bytes, built in $(($(date +%s) - t0)) s"
cp "$REPORT" "$OUTDIR/boot.txt"
echo "report: $OUTDIR/boot.txt"
