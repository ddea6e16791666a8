//! Fault points for crash tests.
//!
//! `OVIRT_NODE_REG_FAULT=<name>` (optionally `<name>#<n>` for the n-th hit, 1-based) makes
//! the process kill itself with SIGKILL when it reaches that point, as a power cut would.
//! Tests use it to show every write in the store is either old or new, never torn.
//! Without the variable a fault point costs one environment lookup.

use std::sync::atomic::{AtomicU32, Ordering};

pub const ENV: &str = "OVIRT_NODE_REG_FAULT";

static HITS: AtomicU32 = AtomicU32::new(0);

/// Die here if the environment asks for it.
pub fn point(name: &str) {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let (want, nth) = match spec.split_once('#') {
        Some((w, n)) => (w, n.parse::<u32>().unwrap_or(1)),
        None => (spec.as_str(), 1),
    };
    if want != name {
        return;
    }
    if HITS.fetch_add(1, Ordering::SeqCst) + 1 == nth {
        eprintln!("fault point {name}: killing self");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}
