#!/usr/bin/env bash
# Fuzz the parsers of untrusted input, each for a bounded time:
#   fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 10 s for every target)
#   fuzz.sh --build-only                         (build every target, fuzz nothing)
# Builds every target once, then runs them, FUZZ_JOBS at once (default: one per core: each
# libFuzzer process is single-threaded); fails (non-zero) if libFuzzer finds a
# crash, panic, timeout or OOM in any, naming the target and its reproducer(s) in
# fuzz/artifacts/TARGET/. Each target starts from its checked-in seeds (fuzz/seeds/TARGET/);
# the corpus it grows (fuzz/corpus/TARGET/, not in git) is kept across runs.
# Replay one reproducer: fuzz.sh --replay TARGET FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
ALL=(cmdline dhcp dns sntp http_date retry_after pem der ssh_key v2_answer netlink
    default_ovirt vdsm_reg_conf files_list login_files worker_frames state_json grubenv iso_pvd)
# A fixed seed makes the run repeatable: CI explores the same inputs a developer already ran
# for longer (FUZZ_SEED=random explores new ground; do that before committing parser changes).
SEED=${FUZZ_SEED:-20261125}
[ "$SEED" = random ] && SEED=$((RANDOM * 32768 + RANDOM))

# The fuzz targets are libFuzzer binaries (libfuzzer-sys) built by plain cargo with the
# instrumentation cargo-fuzz 0.13 would pass (its defaults: release with line tables, one
# codegen unit, debug assertions, SanitizerCoverage with inline 8-bit counters, PC table,
# compare tracing and stack depth, `--cfg fuzzing`, no branch folding), so no cargo-fuzz has
# to be compiled first on a new machine. A nightly is used when rustup has one, else rustup's
# stable with RUSTC_BOOTSTRAP=1 (-Zsanitizer needs it; stable ships the ASan runtime too).
# Never download a toolchain.
# AddressSanitizer (cargo-fuzz's default, its `-s none` here) only when FUZZ_ASAN=1: it finds
# memory errors in unsafe code, and the fuzzed parsers are safe Rust (the crate's unsafe
# blocks are syscall wrappers no target reaches), so what the targets can find is a panic,
# an overflow (debug assertions), a hang or an OOM, with or without it. Without it the targets
# build with about 30 % less CPU (330 → 233 CPU-s on 2 cores) and run 3.5 to 12 times as many
# inputs a second.
ASAN=()
[ "${FUZZ_ASAN:-0}" != 1 ] || ASAN=(-Zsanitizer=address)
NIGHTLY=$(rustup toolchain list 2>/dev/null | awk '/^nightly/ { print $1; exit }')
if [ -n "$NIGHTLY" ]; then
    TC=(cargo "+$NIGHTLY")
    echo "[fuzz] toolchain $NIGHTLY"
else
    TC=(env RUSTC_BOOTSTRAP=1 cargo +stable)
    echo "[fuzz] no nightly: stable with RUSTC_BOOTSTRAP=1"
fi
HOST=$(rustc -vV | sed -n 's/^host: //p')
FUZZ_RUSTFLAGS=(-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cllvm-args=-simplifycfg-branch-fold-threshold=0 --cfg fuzzing "${ASAN[@]}"
    -Cdebug-assertions -Ccodegen-units=1)
# Optimised: the crate whose parsers are fuzzed, serde_json (the JSON targets parse through it)
# and the targets themselves. The other dependencies (TLS, X.509, crypto: linked, never
# fuzzed) unoptimised: the whole build took 141-149 instead of 185-215 CPU-s on 2 cores, and
# 2 s per target ran 44-116 % (median 78 %) of the inputs they ran with everything optimised.
OPT=(--config 'profile.release.package."*".opt-level=0'
    --config 'profile.release.package.ovirt-node-reg.opt-level=3'
    --config 'profile.release.package.serde_json.opt-level=3')
# build [TARGET...]: the named targets, or all of them. --target keeps the flags away from
# build scripts and proc macros.
build() {
    local bins=(--bins)
    [ $# -eq 0 ] || bins=("${@/#/--bin=}")
    RUSTFLAGS="${FUZZ_RUSTFLAGS[*]} ${RUSTFLAGS:-}" "${TC[@]}" build --manifest-path fuzz/Cargo.toml \
        --target "$HOST" --release --config 'profile.release.debug="line-tables-only"' "${OPT[@]}" \
        "${bins[@]}"
}
# The libFuzzer engine: Debian's prebuilt one (libclang-rt-14-dev, setup.sh) when it is there.
# Otherwise libfuzzer-sys compiles its bundled copy (about 40 C++ files; its build script took
# 41 s of a 140 s build alone on 2 cores), every time on a new machine. One set by the caller
# wins. libFuzzer 14 reads the instrumentation the flags above ask for.
if [ -z "${CUSTOM_LIBFUZZER_PATH:-}" ]; then
    for f in /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a; do
        if [ -f "$f" ]; then export CUSTOM_LIBFUZZER_PATH=$f; fi
    done
fi
echo "[fuzz] libFuzzer: ${CUSTOM_LIBFUZZER_PATH:-the one libfuzzer-sys compiles}"
# As cargo-fuzz runs them (with FUZZ_ASAN=1): ASan's one-definition-rule check misfires on
# Rust's generics.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"
BIN=fuzz/target/$HOST/release

# Start from the root lockfile so the fuzzed code uses the same dependency versions as the
# shipped binary; cargo only adds libfuzzer-sys & co. (fuzz/Cargo.lock is therefore not in git.)
cp Cargo.lock fuzz/Cargo.lock

if [ "${1:-}" = --replay ]; then
    [ $# -eq 3 ] || { echo "usage: fuzz.sh --replay TARGET FILE" >&2; exit 2; }
    build "$2"
    exec "$BIN/$2" "$3"
fi

if [ "${1:-}" = --build-only ]; then
    build
    exit
fi

SECS=${1:-10}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
    [ -f "fuzz/fuzz_targets/$t.rs" ] || { echo "[fuzz] no target $t (have: ${ALL[*]})" >&2; exit 2; }
done

# Build first, so a compile error is not reported as a finding (and is not fuzzing time).
if [ $# -eq 0 ]; then build; else build "${TARGETS[@]}"; fi

# The binaries built above, run directly: no cargo between targets, so nothing is rebuilt
# halfway and the budget is all fuzzing.
JOBS=${FUZZ_JOBS:-$(nproc)}
LOGS=fuzz/logs
rm -rf "$LOGS"
mkdir -p "$LOGS"

# One target: its log in fuzz/logs/TARGET.log, its exit status in TARGET.rc.
fuzz_one() {
    local t=$1 rc=0
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    # -timeout: one input taking > 10 s is a hang; -rss_limit_mb: the parsers must stay small.
    # New inputs go to the first directory (the corpus); the seeds are only read. Progress
    # lines and the dictionary are left out of the log; the final stats are kept.
    "$BIN/$t" -artifact_prefix="fuzz/artifacts/$t/" -seed="$SEED" -max_total_time="$SECS" \
        -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 "fuzz/corpus/$t" "fuzz/seeds/$t" \
        >"$LOGS/$t.raw" 2>&1 || rc=$?
    grep -vE '^(#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)|"|###### )' "$LOGS/$t.raw" >"$LOGS/$t.log" || true
    rm -f "$LOGS/$t.raw"
    echo "$rc" >"$LOGS/$t.rc"
}

failed=()
start=$SECONDS
running=0
for t in "${TARGETS[@]}"; do
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    echo "[fuzz] $t: ${SECS}s, seed $SEED"
    fuzz_one "$t" &
    running=$((running + 1))
done
wait
for t in "${TARGETS[@]}"; do
    echo "[fuzz] --- $t"
    cat "$LOGS/$t.log"
    if [ "$(cat "$LOGS/$t.rc")" != 0 ]; then
        failed+=("$t")
        echo "[fuzz] FAIL $t: reproducer(s), replay with: build-support/fuzz.sh --replay $t FILE" >&2
        ls -l "fuzz/artifacts/$t/" >&2 || true
    fi
done
echo "[fuzz] ${#TARGETS[@]} targets, $JOBS at once, $((SECONDS - start))s of fuzzing"
if [ ${#failed[@]} -gt 0 ]; then
    echo "[fuzz] FAIL: ${failed[*]}" >&2
    exit 1
fi
echo "[fuzz] PASS: no finding in ${SECS}s per target"
