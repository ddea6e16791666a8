//! The one way commands print to the console: stdout for results, stderr for messages.
//!
//! Rust ignores SIGPIPE, so `println!` panics when the reader has gone away
//! (`ovirt-node-reg config show | head -1`): a panic message and exit code 101 for what is
//! the reader's normal choice, and in process 1 a kernel panic. Here a closed stdout
//! (`EPIPE`) silences every later write instead, and the command finishes what it was
//! doing (a `persist` of several paths is not cut short because nobody reads its report)
//! with its own exit code. Any other write error (a full disk under `> file`) is returned:
//! the result is lost and the caller must say so. Writes to stderr never fail the caller:
//! there is nowhere left to report that.

use std::io::{self, ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout's reader has gone away; later results are dropped.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Write `text` to stdout as given (add the `\n` yourself). A closed pipe is not an error.
pub fn out(text: &str) -> io::Result<()> {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        other => other,
    }
}

/// `text` and a newline to stdout: [`out`].
pub fn line(text: &str) -> io::Result<()> {
    out(&format!("{text}\n"))
}

/// `text` and a newline to stderr; errors (a closed or full stderr) are ignored.
pub fn err_line(text: &str) {
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_all(format!("{text}\n").as_bytes());
}
