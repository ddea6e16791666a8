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
    [ "$rc" -eq 0 ] || printf '\n=== [%s] FAILED (exit %s) after %ss\n' "$(date -u +%H:%M:%S)" "$rc" "$((SECONDS - START))" >&2
}
trap on_exit EXIT

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
stage "cargo test, every tier (unit, integration, privileged, simulator, QEMU boots)"
BOOT_TIMES=target/qemu-artifacts/boot-times.tsv
rm -f "$BOOT_TIMES"
cargo test --workspace --all-features
[ -s "$BOOT_TIMES" ] || { echo "no QEMU boot ran: the boot tests are missing" >&2; exit 1; }
awk -F'\t' '{n++; t+=$2} END {printf "QEMU boots: %d, total QEMU time %.1f s\n", n, t}' "$BOOT_TIMES"
stage "static musl build (min-z)"
build-support/build-static.sh
stage "static binary gate"
build-support/check-static.sh
stage "fuzz: 19 parsers, 10 s each"
build-support/fuzz.sh 10

printf '\n=== [%s] ALL GREEN in %ss\n' "$(date -u +%H:%M:%S)" "$((SECONDS - START))"
