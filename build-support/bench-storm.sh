#!/usr/bin/env bash
# Registration storm benchmark (issue 8): STORM_NODES (default 500) real `ovirt-node-reg boot`
# processes, each with its own root tree (on tmpfs), DMI UUID, enrolment token and directory
# store, against one in-process engine simulator that serves at most STORM_LIMIT (default 50)
# engine requests per second and answers the rest 503 + Retry-After. It runs the same test
# as the suite (tests/storm.rs, built with --release) with more nodes, so the same checks
# apply: everyone registers once and ends `done`, nobody gives up, the limit is hit, the
# accepted rate stays within twice the limit. Numbers, not assertions beyond those: nodes,
# total time, peak and mean request rates at the simulator (accepted and offered), 503s,
# retries per node. The report goes to stdout and is appended to target/bench/storm.txt.
# STORM_PARALLEL: node processes at once (default: all, up to 250). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=${STORM_NODES:-500}
LIMIT=${STORM_LIMIT:-50}
case "$NODES$LIMIT" in
    *[!0-9]*) echo "bench-storm: STORM_NODES and STORM_LIMIT must be numbers" >&2; exit 2 ;;
esac
command -v unshare >/dev/null || { echo "bench-storm: unshare missing (apt-get install util-linux)" >&2; exit 1; }

OUTDIR=$PWD/target/bench
mkdir -p "$OUTDIR"
WORK=$(mktemp -d /tmp/ovirt-node-reg-storm.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
REPORT=$WORK/report.txt

cargo build -q --release --tests --features privileged
{
    echo "# ovirt-node-reg registration storm, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores," \
        "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$REPORT"
# A hard bound on the whole run: the nodes' own deadline is 900 s.
STORM_NODES=$NODES STORM_LIMIT=$LIMIT STORM_REPORT=$REPORT \
    timeout 1200 cargo test -q --release --features privileged --test storm -- --nocapture --test-threads 1 \
    >"$WORK/test.log" 2>&1 || { cat "$WORK/test.log" >&2; echo "bench-storm: the storm failed" >&2; exit 1; }
cat "$REPORT"
cat "$REPORT" >>"$OUTDIR/storm.txt"
echo "(appended to target/bench/storm.txt)"
