//! Logging: `log` records to stderr and, in early boot, to the kernel log (`/dev/kmsg`),
//! where the console and the journal pick them up. A few lines of our own instead of a
//! logging crate: the size budget (then 2.5 MiB) needed the room for RSA keys.

use log::{LevelFilter, Log, Metadata, Record};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

struct Logger {
    level: LevelFilter,
    kmsg: Option<Mutex<File>>,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // No wall-clock time: the kernel log and the journal add their own, and the clock may
        // be wrong in early boot. On the console (early boot) the seconds since the kernel
        // started, as the kernel prints them. One write per line keeps lines whole.
        let line = line(record);
        let console = if early() {
            format!("[{:9.3}] {line}", uptime())
        } else {
            line.clone()
        };
        let _ = std::io::stderr().write_all(console.as_bytes());
        if let Some(kmsg) = &self.kmsg {
            if let Ok(mut f) = kmsg.lock() {
                let _ = f.write_all(format!("ovirt-node-reg: {line}").as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// `[LEVEL] message\n`. Messages carry values from the command line, files and the engine:
/// escaped, so they cannot rewrite the console or forge a second line.
fn line(record: &Record) -> String {
    let message = record.args().to_string();
    format!(
        "[{}] {}\n",
        record.level(),
        crate::escape::controls(&message)
    )
}

/// Seconds since the kernel started (the console's timestamps count the same way).
pub fn uptime() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

static EARLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process logs for early boot (`--kmsg`, process 1): console lines then carry
/// the seconds since boot, and the worker is started the same way.
pub fn early() -> bool {
    EARLY.load(std::sync::atomic::Ordering::Relaxed)
}

/// Start logging. `debug` lowers the level; `kmsg` adds `/dev/kmsg` when it can be opened.
pub fn init(debug: bool, kmsg: bool) {
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let early = kmsg;
    let kmsg = kmsg
        .then(|| {
            OpenOptions::new()
                .write(true)
                .open(crate::paths::DEV_KMSG)
                .ok()
        })
        .flatten()
        .map(Mutex::new);
    let logger = Box::leak(Box::new(Logger { level, kmsg }));
    // A second init (tests) keeps the first logger and its mode; that is fine.
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
        EARLY.store(early, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_per_record_whatever_the_message_holds() {
        let value = "x\x1b[2J\n[ERROR] forged";
        let line = super::line(
            &log::Record::builder()
                .level(log::Level::Warn)
                .args(format_args!("bad value {value}"))
                .build(),
        );
        assert_eq!(line, "[WARN] bad value x\\x1b[2J\\n[ERROR] forged\n");
    }

    #[test]
    fn uptime_is_positive() {
        assert!(super::uptime() > 0.0);
    }
}
