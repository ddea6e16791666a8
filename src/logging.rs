//! Logging: `log` + `simplelog` to stderr and, in early boot, to the kernel log
//! (`/dev/kmsg`), where the console and the journal pick it up.

use simplelog::{CombinedLogger, ConfigBuilder, LevelFilter, SharedLogger, WriteLogger};
use std::fs::OpenOptions;

/// Start logging. `debug` lowers the level; `kmsg` adds `/dev/kmsg` when it can be opened.
pub fn init(debug: bool, kmsg: bool) {
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    // No timestamps: the kernel log and the journal add their own, and reading the local
    // UTC offset is unreliable in early boot.
    let config = ConfigBuilder::new()
        .set_time_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .build();
    let mut loggers: Vec<Box<dyn SharedLogger>> =
        vec![WriteLogger::new(level, config.clone(), std::io::stderr())];
    if kmsg {
        if let Ok(f) = OpenOptions::new().write(true).open(crate::paths::DEV_KMSG) {
            loggers.push(WriteLogger::new(level, config, f));
        }
    }
    // A second init (tests) keeps the first logger; that is fine.
    let _ = CombinedLogger::init(loggers);
}
