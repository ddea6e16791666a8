#!/usr/bin/env bash
# THE test command (README, .ci/run): machine setup, lints, unit + integration tests, the static
# release build and its gate, then a bounded fuzz run of every parser of untrusted input.
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
stage "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
stage "cargo test (unit, integration, simulator, QEMU boots)"
BOOT_TIMES=target/qemu-artifacts/boot-times.tsv
rm -f "$BOOT_TIMES"
cargo test --workspace
[ -s "$BOOT_TIMES" ] || { echo "no QEMU boot ran: the boot tests are missing" >&2; exit 1; }
awk -F'\t' '{n++; t+=$2} END {printf "QEMU boots: %d, total QEMU time %.1f s\n", n, t}' "$BOOT_TIMES"
stage "static musl build (min-z)"
build-support/build-static.sh
stage "static binary gate"
build-support/check-static.sh
stage "fuzz: 17 parsers, 10 s each"
build-support/fuzz.sh 10

printf '\n=== [%s] ALL GREEN in %ss\n' "$(date -u +%H:%M:%S)" "$((SECONDS - START))"
