#!/usr/bin/env bash
# The benchmark (issues 7, 13): numbers, not assertions, side by side in one run. The report
# goes to stdout and target/bench/bench.txt.
#  1. sizes: the shipped static binary, the static build with each Cargo feature of the binary,
#     and the host (glibc) min-z build per feature;
#  2. `register --engine` against the engine simulator in v1 mode (a stock engine): the median
#     wall time of the static binary and of curl sending the same requests in one invocation
#     (curl reuses one connection when the server keeps it open), their ratio, the connections
#     each opened and the peak RSS;
#  3. a first `boot` under `--root` with an enrolment token, to `done` (v2, approved by the
#     token): median wall time, and the worker processes it started (strace);
#  4. with --cargo-test: the wall time of the default test tier (`cargo test`; slow when cold);
#  5. unless --no-qemu: the QEMU boots (the minimal initramfs to `registered` and `done` after
#     the kernel started, the overhead against the same boot without the registration, peak
#     RSS as process 1 reports it, a PXE boot, the initramfs and ISO sizes); with --vs BIN the
#     same boots of BIN interleaved with them (build an older commit's with
#     `git worktree add ../before REV && ../before/build-support/build-static.sh`).
# BENCH_RUNS (default 3) QEMU boots of each kind and BENCH_QUICK_RUNS (default 10) runs of 2 and
# 3, medians reported. Runs as root (private mount namespaces; QEMU's setup) after
# build-support/setup.sh (test-all.sh and demo.sh run it). The storm figures: bench-storm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: build-support/bench.sh [--no-qemu] [--cargo-test] [--vs BIN]"
    echo "  --no-qemu     leave out the QEMU boots (the quick numbers: about a minute once built)"
    echo "  --cargo-test  also time the default test tier, \`cargo test\`"
    echo "  --vs BIN      also boot BIN, another static build (an older commit's), in the same"
    echo "                QEMU loop: a before and after on one machine at one hour"
}
QEMU=1 CARGO_TEST=0 VS=
while [ $# -gt 0 ]; do
    case $1 in
    --no-qemu) QEMU=0 ;;
    --cargo-test) CARGO_TEST=1 ;;
    --vs)
        VS=$(realpath -e "${2:?--vs needs a static binary}") || exit 2
        shift
        ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
    shift
done
RUNS=${BENCH_RUNS:-3}
QUICK=${BENCH_QUICK_RUNS:-10}
case "$RUNS$QUICK" in
*[!0-9]* | 0* ) echo "bench: BENCH_RUNS and BENCH_QUICK_RUNS must be positive numbers" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (the node runs use private mount namespaces)" >&2; exit 1; }
for tool in unshare curl; do
    command -v "$tool" >/dev/null || { echo "bench: $tool missing: run build-support/setup.sh" >&2; exit 1; }
done

# shellcheck source=build-support/qemu-lib.sh
. build-support/qemu-lib.sh
OUTDIR=$PWD/target/bench
mkdir -p "$OUTDIR"
start_work bench

# quiet CMD...: builds say nothing unless they fail.
quiet() { "$@" >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; return 1; }; }
quiet build-support/build-static.sh
BIN=$PWD/target/static/ovirt-node-reg
quiet cargo build -p qemu-tests --bin engine-sim --bin guest-relay
SIM=$PWD/target/debug/engine-sim
RELAY=$PWD/target/debug/guest-relay
REPORT=$WORK/report.txt
out() { printf '%s\n' "$*" | tee -a "$REPORT"; }
size_of() { stat -c %s "$1"; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "?"}'; }
m() { printf '%s\n' "$@" | median; }
delta() { awk -v a="$1" -v b="$2" 'BEGIN {d = a - b; printf "%s%d bytes", (d >= 0 ? "+" : ""), d}'; }

# measure CMD...: runs CMD (stdout and stderr to $WORK/out, $WORK/err); sets WALL_MS and RSS_KB,
# the peak RSS of the largest process of the tree (GNU time's %M; without it, /proc polling of
# the first process only, marked ~). Returns CMD's status.
measure() {
    local t0 rc=0
    t0=$(date +%s%N)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f %M -o "$WORK/rss" "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
        RSS_KB=$(tail -1 "$WORK/rss")
    else
        "$@" >"$WORK/out" 2>"$WORK/err" &
        local pid=$! hwm=0 v
        while kill -0 "$pid" 2>/dev/null; do
            v=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
            [ -z "$v" ] || [ "$v" -le "$hwm" ] || hwm=$v
            sleep 0.005
        done
        wait "$pid" || rc=$?
        RSS_KB="~$hwm"
    fi
    WALL_MS=$((($(date +%s%N) - t0) / 1000000))
    return "$rc"
}

# Both sides of a comparison run the same way: in a private mount namespace (the node's store
# bind-mounts what it persists), under GNU time.
NS=(unshare --mount --propagation private)

stop_sim() {
    [ -z "$SIM_PID" ] || { kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; }
    SIM_PID=
}

# new_root DIR ARGS: a node's root tree: a directory store at /config, a DMI UUID of its own, and
# a kernel command line for the simulator started last, with ARGS.
new_root() {
    mkdir -p "$1/config" "$1/sys/class/dmi/id" "$1/proc"
    cat /proc/sys/kernel/random/uuid >"$1/sys/class/dmi/id/product_uuid"
    printf 'ro management_server=127.0.0.1:%s ovirt.reg.store=/config hostname=node1.example.com %s %s\n' \
        "$PORT" "$PIN" "$2" >"$1/proc/cmdline"
}

events_now() { wc -l <"$WORK/$1/events.jsonl"; }

# requests_since SIM N: "METHOD PATH[?QUERY] REMOTE" of each engine request the simulator
# logged after line N of its event log (the admin API left out).
requests_since() {
    local line path query
    tail -n +"$(($2 + 1))" "$WORK/$1/events.jsonl" | grep '"kind":"request"' | grep -v '"path":"/admin' |
        while IFS= read -r line; do
            path=$(sed -nE 's/.*"path":"([^"]*)".*/\1/p' <<<"$line")
            query=$(sed -nE 's/.*"raw_query":"([^"]*)".*/\1/p' <<<"$line")
            printf '%s %s%s %s\n' "$(sed -nE 's/.*"method":"([^"]*)".*/\1/p' <<<"$line")" \
                "$path" "${query:+?$query}" "$(sed -nE 's/.*"remote":"([^"]*)".*/\1/p' <<<"$line")"
        done
}

new_token() {
    admin -X POST -d '{"ttl_secs":600}' "$ENGINE/admin/tokens" | sed -nE 's/.*"token": *"([^"]+)".*/\1/p'
}

fail_run() {
    cat "$WORK/err" >&2
    echo "bench: $*" >&2
    exit 1
}

out "# ovirt-node-reg benchmark, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)," \
    "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# --- 1. sizes ---------------------------------------------------------------------------------
# The binary's features, from Cargo.toml's [features] table (default is a set, not a feature).
mapfile -t FEATURES < <(sed -n '/^\[features\]/,/^\[/p' Cargo.toml | sed -nE 's/^([a-z0-9_-]+) *=.*/\1/p' | grep -vx default)
shipped=$(size_of "$BIN")
out ""
out "## sizes"
out "static (musl, min-z, no features: the shipped binary): $shipped bytes (budget 3145728)"
for f in "${FEATURES[@]}"; do
    quiet build-support/build-static.sh --features "$f"
    s=$(size_of "target/static/ovirt-node-reg+$f")
    out "static with $f: $s bytes ($(delta "$s" "$shipped"))"
done
host_build() {
    quiet cargo build --locked -p ovirt-node-reg --profile min-z --no-default-features "$@"
    cp target/min-z/ovirt-node-reg "$WORK/host-bin"
    size_of "$WORK/host-bin"
}
base=$(host_build)
out "host (glibc, dynamic, min-z), no features: $base bytes"
for f in "${FEATURES[@]}"; do
    s=$(host_build --features "$f")
    out "host with $f: $s bytes ($(delta "$s" "$base"))"
done

# Sections 2 and 3 run twice: with the node roots on a tmpfs, as on a node (its live root is
# in memory, only the store is on a disk), and on the disk, where every file the run persists is
# fsync'd (the store's durability: about 60 fsyncs in a register run).
# quick_numbers WHERE DIR: sections 2 and 3 with the node roots in DIR.
quick_numbers() {
    local WHERE=$1 NODES=$2
    # --- 2. register --engine against a v1 engine, and curl ---------------------------------------
    start_sim "$WORK/v1" --v1-only
    ours=() ours_rss=() curl_ms=() curl_rss=()
    URLS=() conns_ours='' conns_curl='' nreq=0 requests=''
    for i in $(seq 0 "$QUICK"); do
        root=$NODES/reg-$i
        new_root "$root" ""
        mark=$(events_now v1)
        measure "${NS[@]}" "$BIN" --root "$root" register --engine "127.0.0.1:$PORT" ||
            fail_run "register --engine failed"
        grep -q '^ovirt-node-reg: ok, step registered' "$WORK/err" || fail_run "register did not end ok"
        sent=$(requests_since v1 "$mark")
        if [ "$i" -eq 0 ]; then
            # The warm-up run says which requests `register` sends: curl sends the same.
            while read -r method url _; do
                [ "$method" = GET ] || { echo "bench: register sent $method $url; the curl side knows GET only" >&2; exit 1; }
                URLS+=(-o /dev/null "$ENGINE$url")
                nreq=$((nreq + 1))
            done <<<"$sent"
            conns_ours=$(awk '{print $3}' <<<"$sent" | sort -u | wc -l)
            requests=$(awk '{print $2}' <<<"$sent" | sed -E 's/.*command=([a-z-]+).*/\1/' | paste -sd' ')
            continue
        fi
        ours+=("$WALL_MS") ours_rss+=("$RSS_KB")
        measure "${NS[@]}" curl -sS --cacert "$CA" -w '%{http_code} %{num_connects}\n' "${URLS[@]}" ||
            fail_run "curl failed"
        [ "$(grep -c '^200 ' "$WORK/out")" -eq "$nreq" ] || fail_run "curl: not every answer was 200: $(cat "$WORK/out")"
        conns_curl=$(awk '{n += $2} END {print n}' "$WORK/out")
        curl_ms+=("$WALL_MS") curl_rss+=("$RSS_KB")
    done
    stop_sim
    ours_m=$(m "${ours[@]}") curl_m=$(m "${curl_ms[@]}")
    out ""
    out "## register --engine, engine-sim --v1-only on loopback, node roots $WHERE, median of $QUICK runs (a fresh root each; both sides under unshare --mount and GNU time)"
    out "ovirt-node-reg (static): $ours_m ms, peak RSS $(m "${ours_rss[@]}") kB (the largest of the parent and its workers), $nreq requests ($requests) over $conns_ours connections"
    out "curl, the same requests in one invocation: $curl_m ms, peak RSS $(m "${curl_rss[@]}") kB, $conns_curl connections"
    out "ratio ovirt-node-reg / curl: $(awk -v a="$ours_m" -v b="$curl_m" 'BEGIN {printf "%.2f", a / b}')"
    out "  runs (ms): ovirt-node-reg ${ours[*]}; curl ${curl_ms[*]}"

    # --- 3. first boot under --root with a token, to done ----------------------------------------
    start_sim "$WORK/v2" --retry-after 1
    TOKEN_FILE=/etc/ovirt-node-reg/token
    boot_root() {
        local root=$1 token
        token=$(new_token)
        [ -n "$token" ] || { echo "bench: the simulator made no token" >&2; exit 1; }
        new_root "$root" "ovirt.reg.token_file=$TOKEN_FILE ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2"
        mkdir -p "$root${TOKEN_FILE%/*}"
        (umask 077 && printf '%s\n' "$token" >"$root$TOKEN_FILE")
    }
    boots=() boots_rss=()
    for i in $(seq "$QUICK"); do
        boot_root "$NODES/boot-$i"
        measure "${NS[@]}" "$BIN" --root "$NODES/boot-$i" boot || fail_run "boot failed"
        grep -q '^ovirt-node-reg: ok, step done' "$WORK/err" || fail_run "boot did not end done"
        boots+=("$WALL_MS") boots_rss+=("$RSS_KB")
    done
    workers="? (strace missing: apt-get install strace)"
    if command -v strace >/dev/null; then
        # One more boot, traced (not timed): every exec of the binary as `worker`.
        boot_root "$NODES/boot-traced"
        strace -f -qq -e trace=execve -e signal=none -o "$WORK/strace.txt" \
            "${NS[@]}" "$BIN" --root "$NODES/boot-traced" boot 2>"$WORK/err" ||
            fail_run "the traced boot failed"
        workers=$(grep -v resumed "$WORK/strace.txt" | grep -cE 'execve\([^,]*, \[[^]]*"worker"') || true
    fi
    stop_sim
    out ""
    out "## first boot under --root with an enrolment token, to done (engine-sim, v2, approved by the token), node roots $WHERE, median of $QUICK runs"
    out "wall $(m "${boots[@]}") ms, peak RSS $(m "${boots_rss[@]}") kB, worker processes started: $workers"
    out "  runs (ms): ${boots[*]}"
}
SHM=$(mktemp -d /dev/shm/ovirt-node-reg-bench.XXXXXX)
trap 'rm -rf "$SHM"; stop_work' EXIT
quick_numbers "on a tmpfs (as on a node)" "$SHM"
rm -rf "$SHM"
quick_numbers "on the disk (every persisted file fsync'd)" "$WORK"

# --- 4. the default test tier ----------------------------------------------------------------
if [ "$CARGO_TEST" = 1 ]; then
    t0=$(date +%s)
    result=passed
    cargo test -q >"$WORK/cargo-test.log" 2>&1 || result="FAILED (run cargo test to see why)"
    out ""
    out "## cargo test (the default tier, as $(id -un), the tree as it is: builds what changed): $(($(date +%s) - t0)) s, $result"
fi

[ "$QEMU" = 1 ] || {
    cp "$REPORT" "$OUTDIR/bench.txt"
    echo "report: $OUTDIR/bench.txt"
    exit 0
}

# --- 5. QEMU ----------------------------------------------------------------------------------
KVER=$(guest_kver)
KERNEL=/boot/vmlinuz-$KVER
MAC=52:54:00:12:34:56
out ""
out "## QEMU (TCG), kernel $KVER"

# --- images (QEMU part) -------------------------------------------------------------------------
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

# node_boot BIN LOG: a first boot of the minimal initramfs with BIN as process 1, a new token
# and a blank store; sets REG and DONE (seconds since the kernel started), TOTAL (ms from QEMU's
# start to power-off), FLOW (seconds from the image's modules loaded to `done`: the binary's own
# part of the boot on the guest's clock), RSS and WRSS (kB, as process 1 reports them).
node_boot() {
    local bin=$1 log=$2 token t0
    token=$(new_token)
    [ -n "$token" ] || { echo "bench: the simulator made no token" >&2; exit 1; }
    (umask 077 && printf '%s\n' "$token" >"$WORK/token")
    image/mkinitrd-min.sh "$bin" "$WORK/run.img" --extra "$WORK/token:/etc/ovirt-node-reg/token:0600" >/dev/null
    new_config_disk "$DISK"
    t0=$(date +%s%N)
    qemu_boot "$log" "$KERNEL" "$WORK/run.img" \
        "console=ttyS0 panic=-1 no_timer_check quiet BOOTIF=01-${MAC//:/-} ip=dhcp management_server=10.0.2.100:$PORT $PIN ovirt.reg.token_file=/etc/ovirt-node-reg/token ovirt.reg.poweroff" \
        -uuid "$(cat /proc/sys/kernel/random/uuid)"
    wait "$QEMU_PID" || true
    QEMU_PID=
    TOTAL=$((($(date +%s%N) - t0) / 1000000))
    REG=$(uptime_of "$log" 'step registered: done')
    DONE=$(uptime_of "$log" 'step done: done')
    local modules
    modules=$(uptime_of "$log" 'pre-init done')
    if [ -z "$REG" ] || [ -z "$DONE" ] || [ -z "$modules" ]; then
        tail -30 "$log"
        echo "bench: the boot of $bin ($log) did not finish" >&2
        exit 1
    fi
    FLOW=$(awk -v a="$DONE" -v b="$modules" 'BEGIN {printf "%.3f", a - b}')
    RSS=$(grep -ao 'peak RSS [0-9]* kB' "$log" | head -1 | grep -o '[0-9]*' || true)
    WRSS=$(grep -ao 'workers [0-9]* kB' "$log" | head -1 | grep -o '[0-9]*' || true)
}

# The three kinds of boot interleaved, so that a change in the machine's speed during the run
# falls on each alike.
registered=() done_=() total=() flow=() rss=() workers=() base=() vs_done=() vs_total=() vs_flow=()
for i in $(seq "$RUNS"); do
    node_boot "$BIN" "$WORK/boot-$i.log"
    registered+=("$REG") done_+=("$DONE") total+=("$TOTAL") flow+=("$FLOW") rss+=("$RSS") workers+=("$WRSS")

    t0=$(date +%s%N)
    qemu_boot "$WORK/base-$i.log" "$KERNEL" "$WORK/baseline.img" "console=ttyS0 panic=-1 no_timer_check quiet"
    wait "$QEMU_PID" || true
    QEMU_PID=
    base+=($((($(date +%s%N) - t0) / 1000000)))

    if [ -n "$VS" ]; then
        node_boot "$VS" "$WORK/vs-$i.log"
        vs_done+=("$DONE") vs_total+=("$TOTAL") vs_flow+=("$FLOW")
    fi
done

reg=$(m "${registered[@]}") dn=$(m "${done_[@]}") tot=$(m "${total[@]}") bas=$(m "${base[@]}")
out "minimal initramfs, first boot with a token, median of $RUNS (seconds since the kernel started):"
out "  registered at ${reg} s, done (approved, certificates installed, persisted) at ${dn} s"
out "  runs: registered ${registered[*]}; done ${done_[*]}"
out "whole QEMU boot to power-off, median: ${tot} ms with registration, ${bas} ms without (busybox /init: modules, power off)"
out "  overhead: +$((tot - bas)) ms, ratio $(awk -v a="$tot" -v b="$bas" 'BEGIN {printf "%.2f", a / b}') (runs with: ${total[*]} ms; without: ${base[*]} ms)"
# The host's wall time of two boots differs by the host's load too; the guest's clock within
# one boot does not.
out "the binary's part on the guest's clock (the image's modules loaded to done), median: $(m "${flow[@]}") s (runs: ${flow[*]} s)"
out "peak RSS: process 1 $(m "${rss[@]}") kB, largest worker $(m "${workers[@]}") kB"
if [ -n "$VS" ]; then
    vtot=$(m "${vs_total[@]}")
    out "the same boots with --vs $VS, median of $RUNS: done at $(m "${vs_done[@]}") s; ${vtot} ms to power-off, overhead +$((vtot - bas)) ms"
    out "  runs: done ${vs_done[*]}; to power-off ${vs_total[*]} ms; the binary's part $(m "${vs_flow[@]}") s (runs: ${vs_flow[*]} s)"
fi
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
cp "$REPORT" "$OUTDIR/bench.txt"
echo "report: $OUTDIR/bench.txt"
