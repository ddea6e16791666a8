//! Fault points for crash tests.
//!
//! `OVIRT_NODE_REG_FAULT=<name>` (optionally `<name>#<n>` for the n-th hit, 1-based) makes
//! the process kill itself with SIGKILL when it reaches that point, as a power cut would.
//! Tests use it to show every write in the store is either old or new, never torn.
//! Only builds with the `test-hooks` feature (the default, so `cargo test`) read the
//! variable; the shipped static build leaves it out and a fault point is then nothing at all
//! (build-support/check-static.sh checks the variable's name is not in the binary).

#[cfg(feature = "test-hooks")]
pub const ENV: &str = "OVIRT_NODE_REG_FAULT";

#[cfg(feature = "test-hooks")]
static HITS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Die here if the environment asks for it. `name` is formatted only when the variable is
/// set, so `format_args!` names cost nothing on the normal path.
#[cfg(feature = "test-hooks")]
pub fn point(name: impl std::fmt::Display) {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let (want, nth) = match spec.split_once('#') {
        Some((w, n)) => (w, n.parse::<u32>().unwrap_or(1)),
        None => (spec.as_str(), 1),
    };
    let name = name.to_string();
    if want != name {
        return;
    }
    if HITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == nth {
        crate::console::err_line(&format!("fault point {name}: killing self"));
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}

/// Without `test-hooks` a fault point compiles to nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn point(_name: impl std::fmt::Display) {}
