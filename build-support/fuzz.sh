#!/usr/bin/env bash
# Fuzz the kernel command line parser for a bounded time: fuzz.sh [SECONDS] (default 60).
# Fails (non-zero) if libFuzzer finds a crash, panic, timeout or OOM; the reproducer is left
# in fuzz/artifacts/cmdline/. The corpus (fuzz/corpus/, not in git) grows across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
TARGET=cmdline
# A fixed seed makes the run repeatable: CI explores the same inputs a developer already ran
# for longer (FUZZ_SEED=random explores new ground; do that before committing parser changes).
SEED=${FUZZ_SEED:-20261125}
[ "$SEED" = random ] && SEED=$((RANDOM * 32768 + RANDOM))

# cargo-fuzz needs -Zsanitizer: use a nightly when rustup has one, else stable with
# RUSTC_BOOTSTRAP=1 (stable ships the asan runtime too). Never download a toolchain.
NIGHTLY=$(rustup toolchain list 2>/dev/null | awk '/^nightly/ { print $1; exit }')
if [ -n "$NIGHTLY" ]; then
    TC=(cargo "+$NIGHTLY")
    echo "[fuzz] toolchain $NIGHTLY"
else
    TC=(env RUSTC_BOOTSTRAP=1 cargo +stable)
    echo "[fuzz] no nightly: stable with RUSTC_BOOTSTRAP=1"
fi

# Seed an empty corpus with realistic lines so the fuzzer starts from the interesting shapes.
CORPUS=fuzz/corpus/$TARGET
if [ ! -d "$CORPUS" ] || [ -z "$(ls -A "$CORPUS")" ]; then
    mkdir -p "$CORPUS"
    printf '%s' 'BOOT_IMAGE=/vmlinuz root=live:LABEL=ovirt ro quiet management_server=engine.example.com:443' >"$CORPUS/seed-legacy"
    printf '%s' 'management_server=[2001:db8::1]:8443 management_server_fingerprint=AB:CD BOOTIF=01-52-54-00-12-34-56 ip=dhcp' >"$CORPUS/seed-ipv6"
    printf '%s' 'ovirt.reg.ca_pin=sha256:AAAA ovirt.reg.ca_pin=sha256:BBBB ovirt.reg.timeout=30 ovirt.reg.key=rsa ovirt.reg.debug "a b=c d" -- init=/bin/sh' >"$CORPUS/seed-new"
    printf '%s' 'managment_server="engine.example.com" managementserver=x ovirt_vdsm_disable hostname= vlan=eth0.10:eth0 bond=bond0:eth0,eth1' >"$CORPUS/seed-odd"
    printf '%s' 'bond_setup=bond0:eth0,eth1:mode=802.3ad,miimon=100,updelay=200,lacp_rate=fast ovirt.reg.token=t0k vdsm_reg.ticket=x ovirt.reg.insecure_token_on_cmdline' >"$CORPUS/seed-bond-token"
fi

# Start from the root lockfile so the fuzzed code uses the same dependency versions as the
# shipped binary; cargo only adds libfuzzer-sys & co. (fuzz/Cargo.lock is therefore not in git.)
cp Cargo.lock fuzz/Cargo.lock
# Build separately so a compile error is not reported as a fuzzer finding.
"${TC[@]}" fuzz build --fuzz-dir fuzz "$TARGET"
echo "[fuzz] running $TARGET for ${SECS}s, seed $SEED"
# -timeout: one input taking > 10 s is a hang; -rss_limit_mb: the parser must stay small.
if ! "${TC[@]}" fuzz run --fuzz-dir fuzz "$TARGET" "$CORPUS" -- \
    -seed="$SEED" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=1024 -print_final_stats=1; then
    echo "[fuzz] FAIL: the fuzzer found a problem; reproducer(s) in fuzz/artifacts/$TARGET/:" >&2
    ls -l "fuzz/artifacts/$TARGET/" >&2 || true
    exit 1
fi
echo "[fuzz] PASS: no crash in ${SECS}s"
