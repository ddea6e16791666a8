//! Emits `BUILD_UNIX_TIME` (seconds since the Unix epoch) for clock.rs: the binary never sets
//! the clock below the time it was built. `SOURCE_DATE_EPOCH` (reproducible-builds.org) wins
//! over the build machine's clock, so that two builds of one commit are identical.

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // Rerunning only when SOURCE_DATE_EPOCH changes: a floor from an earlier build of this
    // tree is still a safe (lower) floor, and nothing else rebuilds for it.
    println!("cargo:rerun-if-changed=build.rs");
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=BUILD_UNIX_TIME={epoch}");
}
