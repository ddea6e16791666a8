#!/usr/bin/env bash
# THE test command (README, .ci/run): machine setup, lints, every test tier (the default one any
# user runs, the privileged one, the QEMU boots: README "Test tiers"), the static release build
# and its gate, then a bounded fuzz run of every parser of untrusted input. Runs as root.
# Stops at the first failing stage.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS

stage() { printf '\n=== [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
on_exit() {
    local rc=$?
    # a failed run does not leave the background fuzz build behind
    [ "$rc" -eq 0 ] || [ -z "${FUZZ_BUILD:-}" ] || kill "$FUZZ_BUILD" 2>/dev/null || true
    [ "$rc" -eq 0 ] || printf '\n=== [%s] FAILED (exit %s) after %ss\n' "$(date -u +%H:%M:%S)" "$rc" "$((SECONDS - START))" >&2
}
trap on_exit EXIT

# The QEMU test files (qemu-tests/Cargo.toml: required-features = ["qemu"]), the longest first
# (measured in CI; a new file goes last), and the simulator's own test files (all the others).
QEMU_ORDER=(install iso boot dracut pid1 pxe discovery bootstrap)
qemu_tests() {
    awk '/^\[\[test\]\]/ { n = "" }
        /^name *=/ { gsub(/[" ]/, ""); sub(/^name=/, ""); n = $0 }
        /^required-features *= *\["qemu"\]/ { print n }' qemu-tests/Cargo.toml
}
ordered_qemu_tests() {
    local all t
    all=$(qemu_tests)
    for t in "${QEMU_ORDER[@]}"; do grep -qx "$t" <<<"$all" && echo "$t"; done
    grep -vxF -f <(printf '%s\n' "${QEMU_ORDER[@]}" vm_storm) <<<"$all" || true
}
sim_tests() {
    local f t
    for f in qemu-tests/tests/*.rs; do
        t=$(basename "$f" .rs)
        qemu_tests | grep -qx "$t" || echo "--test=$t"
    done
}

# The test tiers side by side: the QEMU boots use one core each (at most two at once, shared
# by every test process: qemu-tests/src/qemu/run.rs), so the boots of all QEMU test files run
# at once and share those two slots, while the tests without QEMU run in one more lane. Each
# lane writes its own log, printed whole when it ends; the stage fails if any lane failed.
# The VM storm runs last and alone: its rate-limit checks need both slots to itself.
LOGS=target/test-logs
run_lane() {
    local name=$1 t0=$SECONDS rc=0
    shift
    "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
    echo "$rc $((SECONDS - t0))" >"$LOGS/$name.rc"
}
lane_cpu() {
    local sim
    mapfile -t sim < <(sim_tests)
    cargo test --workspace --all-features --exclude qemu-tests &&
        cargo test -p qemu-tests --all-features --lib --bins "${sim[@]}" &&
        cargo test -p qemu-tests --all-features --doc
}
run_lanes() {
    local t name rc secs failed=()
    rm -rf "$LOGS"
    mkdir -p "$LOGS"
    run_lane cpu lane_cpu &
    for t in $(ordered_qemu_tests); do
        run_lane "qemu-$t" cargo test -p qemu-tests --all-features --test "$t" &
    done
    wait
    run_lane qemu-vm_storm cargo test -p qemu-tests --all-features --test vm_storm
    for f in "$LOGS"/*.rc; do
        name=$(basename "$f" .rc)
        read -r rc secs <"$f"
        printf '\n--- lane %s: exit %s after %s s\n' "$name" "$rc" "$secs"
        cat "$LOGS/$name.log"
        [ "$rc" = 0 ] || failed+=("$name")
    done
    printf '\n--- lanes:'
    for f in "$LOGS"/*.rc; do printf ' %s %ss' "$(basename "$f" .rc)" "$(cut -d' ' -f2 "$f")"; done
    echo
    [ ${#failed[@]} -eq 0 ] || { echo "FAILED lanes: ${failed[*]} (logs above, and in $LOGS/)" >&2; return 1; }
}

stage "setup"
build-support/setup.sh
stage "shellcheck (build tooling, image scripts)"
shellcheck -x build-support/*.sh image/*.sh .ci/run
stage "apt source derivation (fixtures)"
build-support/test-apt-sources.sh
stage "dracut module checks (shellcheck, systemd-analyze verify)"
dracut/check.sh
stage "cargo fmt --check"
cargo fmt --all --check
# Twice: the opt-in tiers' code is linted, and the default tier has no code left unused.
stage "cargo clippy -D warnings (default features, then all: privileged, qemu)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets --all-features -- -D warnings
# The fuzz targets build at the lowest priority while the tests run: the QEMU boots leave a
# core idle now and then, and the fuzz stage then only fuzzes.
stage "fuzz targets: build in the background (nice 19)"
mkdir -p target
nice -n 19 build-support/fuzz.sh --build-only >target/fuzz-build.log 2>&1 &
FUZZ_BUILD=$!
stage "cargo test, every tier (unit, integration, privileged, simulator, QEMU boots)"
BOOT_TIMES=target/qemu-artifacts/boot-times.tsv
rm -f "$BOOT_TIMES"
# Everything is built first (one cargo build, its errors on top), and the guest's static binary
# too, so the test processes started side by side below find them ready.
cargo test --workspace --all-features --no-run
build-support/build-static.sh
run_lanes
[ -s "$BOOT_TIMES" ] || { echo "no QEMU boot ran: the boot tests are missing" >&2; exit 1; }
awk -F'\t' '{n++; t+=$2} END {printf "QEMU boots: %d, total QEMU time %.1f s\n", n, t}' "$BOOT_TIMES"
stage "static musl build (min-z)"
build-support/build-static.sh
stage "static binary gate"
build-support/check-static.sh
stage "fuzz: 19 parsers, 10 s each, one per core at once"
wait "$FUZZ_BUILD" || { cat target/fuzz-build.log; echo "the fuzz targets did not build" >&2; exit 1; }
build-support/fuzz.sh 10

printf '\n=== [%s] ALL GREEN in %ss\n' "$(date -u +%H:%M:%S)" "$((SECONDS - START))"
