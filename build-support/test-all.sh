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
    # a failed run does not leave the background builds behind
    if [ "$rc" -ne 0 ]; then
        for p in "${FUZZ_BUILD:-}" "${STATIC_BUILD:-}" "${DEBIAN_BASE:-}" "${CPU_LANE:-}"; do [ -z "$p" ] || kill "$p" 2>/dev/null || true; done
    fi
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
# The lanes run the executables `cargo test --no-run` built (target/test-bins.tsv), each in
# its package's directory as cargo would: a cargo command per lane with another package
# selection could resolve other dependency features and build everything again.
LOGS=target/test-logs
BINS=target/test-bins.tsv
# Each lane's exit status, wall seconds and CPU seconds (user + system of everything it ran,
# QEMU and the image builds included): the CPU, not the order of the lanes, bounds this stage.
run_lane() {
    local name=$1 t0=$SECONDS rc=0 TIMEFORMAT='%U %S'
    shift
    { time { "$@" >"$LOGS/$name.log" 2>&1 || rc=$?; }; } 2>"$LOGS/$name.cpu"
    echo "$rc $((SECONDS - t0)) $(awk '{printf "%.0f", $1 + $2}' "$LOGS/$name.cpu")" >"$LOGS/$name.rc"
}
# run_bin DIR EXE: one test executable, as `cargo test` runs it.
run_bin() {
    printf '     Running %s\n' "${2#"$PWD"/}"
    (cd "$1" && "$2")
}
# The QEMU test executable named $1 (in qemu-tests).
qemu_bin() { awk -F'\t' -v n="$1" '$1 == "qemu-tests" && $2 == n && $3 == "test" { print $4 }' "$BINS"; }
lane_cpu() {
    local pkg name kind exe dir rc=0
    while IFS=$'\t' read -r pkg name kind exe dir; do
        if [ "$pkg" = qemu-tests ] && [ "$kind" = test ] && qemu_tests | grep -qx "$name"; then
            continue
        fi
        run_bin "$dir" "$exe" || rc=1
    done <"$BINS"
    "${LINTED[@]}" cargo test --workspace --all-features --doc || rc=1
    return "$rc"
}
# The lane without QEMU: it needs only the test build, so it starts before the static build ends.
start_cpu_lane() {
    rm -rf "$LOGS"
    mkdir -p "$LOGS"
    run_lane cpu lane_cpu &
    CPU_LANE=$!
}
run_lanes() {
    local t name rc secs cpu f summary='' failed=() pids=("$CPU_LANE")
    for t in $(ordered_qemu_tests); do
        run_lane "qemu-$t" run_bin qemu-tests "$(qemu_bin "$t")" &
        pids+=($!)
    done
    # the lanes only: the background builds are waited for where they are needed
    wait "${pids[@]}"
    # In a subshell like the others: this shell's `time` would also count a background build
    # (the fuzz targets) that ends meanwhile, as it counts every child reaped while it runs.
    (run_lane qemu-vm_storm run_bin qemu-tests "$(qemu_bin vm_storm)")
    for f in "$LOGS"/*.rc; do
        name=$(basename "$f" .rc)
        read -r rc secs cpu <"$f"
        printf '\n--- lane %s: exit %s after %s s (CPU %s s)\n' "$name" "$rc" "$secs" "$cpu"
        cat "$LOGS/$name.log"
        [ "$rc" = 0 ] || failed+=("$name")
        summary+=" $name $secs/$cpu"
    done
    printf '\n--- lanes (wall s/CPU s):%s\n' "$summary"
    [ ${#failed[@]} -eq 0 ] || { echo "FAILED lanes: ${failed[*]} (logs above, and in $LOGS/)" >&2; return 1; }
}
# Build every test executable once and list them: package, target, kind, path, package dir.
build_tests() {
    "${BESIDE[@]}" "${LINTED[@]}" cargo test --workspace --all-features --no-run --message-format=json-render-diagnostics |
        jq -r 'select(.reason == "compiler-artifact" and .profile.test and .executable != null)
            | [(if (.manifest_path | endswith("/qemu-tests/Cargo.toml")) then "qemu-tests" else "ovirt-node-reg" end),
               .target.name, (.target.kind | join(",")), .executable,
               (.manifest_path | sub("/Cargo.toml$"; ""))] | @tsv' >"$BINS"
    [ -s "$BINS" ] || { echo "cargo built no test executable" >&2; return 1; }
    qemu_bin pid1 | grep -q . || { echo "the QEMU tests were not built (feature qemu)" >&2; return 1; }
}

stage "setup"
build-support/setup.sh
# The shipped static binary (the QEMU guests boot it) first, in the background: its build is
# the run's longest chain (std from source, then fat link-time optimisation on one core: 150 s
# of 232-248 CPU-s alone on 2 cores) and the QEMU lanes start when it is done. What runs
# beside it until then (the Debian base, clippy, the test build) runs at nice 10 and fills the
# core it leaves: at the same priority they stretched it from 150-161 s alone to 293 s, at
# nice 5 to 229-240 s.
mkdir -p target/qemu-cache
build-support/build-static.sh >target/static-build.log 2>&1 &
STATIC_BUILD=$!
BESIDE=(nice -n 10)
# The ISO's systemd test root starts from a Debian base mmdebstrap downloads and unpacks
# (image/mkdebian-base.sh: about 35 s of one core on an idle machine). Made now, beside the
# lints and builds, it is ready when the ISO tests start; made by them, at nice 10 between
# busy QEMU boots, it took 8 min and was the long pole of every run. The QEMU harness waits
# for it (the script's lock) and reports its error if it failed.
"${BESIDE[@]}" image/mkdebian-base.sh target/qemu-cache >target/debian-base.log 2>&1 &
DEBIAN_BASE=$!
stage "shellcheck (build tooling, image scripts)"
shellcheck -x build-support/*.sh image/*.sh .ci/run
stage "apt source derivation (fixtures)"
build-support/test-apt-sources.sh
stage "dracut module checks (shellcheck, systemd-analyze verify)"
dracut/check.sh
stage "cargo fmt --check"
cargo fmt --all --check
# The fuzz targets build at the lowest priority from now on: they take only a core the others
# leave idle (the QEMU boots' waits, the VM storm's), and the fuzz stage then only fuzzes.
stage "fuzz targets: build in the background (nice 19)"
nice -n 19 build-support/fuzz.sh --build-only >target/fuzz-build.log 2>&1 &
FUZZ_BUILD=$!
# Twice: the default tier has no code left unused (here), and the opt-in tiers' code is
# linted too (the test build below, with every feature, runs under clippy's driver).
stage "cargo clippy -D warnings (default features; all features: in the test build)"
"${BESIDE[@]}" cargo clippy --workspace --all-targets -- -D warnings
# What `cargo clippy -- -D warnings` does to cargo (clippy's driver wraps rustc for the
# workspace's own crates, its arguments in CLIPPY_ARGS), around the cargo commands that compile
# the workspace with every feature (build_tests, lane_cpu's doc tests): the test build then
# fails on a lint as `cargo clippy --all-features` would, without a second check of every
# crate (both clippy passes and the test build: 147 s alone, 131 s this way). The doc tests
# run under it too, or cargo would build the library again for them.
CLIPPY_DRIVER=$(rustup which clippy-driver) || { echo "rustup has no clippy-driver" >&2; exit 1; }
LINTED=(env "RUSTC_WORKSPACE_WRAPPER=$CLIPPY_DRIVER" "CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__")
stage "cargo test, every tier (unit, integration, privileged, simulator, QEMU boots)"
BOOT_TIMES=target/qemu-artifacts/boot-times.tsv
BUILD_TIMES=target/qemu-artifacts/build-times.tsv
rm -f "$BOOT_TIMES" "$BUILD_TIMES"
# Everything is built first (one cargo build, its errors on top), and the guest's static binary
# too, so the test processes started side by side below find them ready.
build_tests
start_cpu_lane
wait "$STATIC_BUILD" || { cat target/static-build.log; echo "the static build failed" >&2; exit 1; }
cat target/static-build.log
run_lanes
[ -s "$BOOT_TIMES" ] || { echo "no QEMU boot ran: the boot tests are missing" >&2; exit 1; }
awk -F'\t' '{n++; t+=$2} END {printf "QEMU boots: %d, total QEMU time %.1f s\n", n, t}' "$BOOT_TIMES"
# When each image build and boot started and how long it took, from the first one on: where
# the long pole of the lanes goes.
echo "QEMU timeline (start s, took s):"
{ sed 's/^/build /' "$BUILD_TIMES" 2>/dev/null || true; sed 's/^/boot /' "$BOOT_TIMES"; } |
    sort -t$'\t' -k3,3n | awk -F'\t' 'NR == 1 {t0 = $3} {printf "  %6.1f %6.1f  %s\n", $3 - t0, $2, $1}'
stage "static musl build (min-z)"
build-support/build-static.sh
stage "static binary gate"
build-support/check-static.sh
# 2 s per target from the fixed seed: a regression guard for the parsers of untrusted input
# (a developer fuzzes longer and from random seeds: build-support/fuzz.sh). Without
# AddressSanitizer 2 s run 1.4 to 4.7 times the inputs 5 s ran with it (measured per target).
stage "fuzz: 19 parsers, 2 s each, one per core at once"
wait "$FUZZ_BUILD" || { cat target/fuzz-build.log; echo "the fuzz targets did not build" >&2; exit 1; }
build-support/fuzz.sh 2

printf '\n=== [%s] ALL GREEN in %ss\n' "$(date -u +%H:%M:%S)" "$((SECONDS - START))"
