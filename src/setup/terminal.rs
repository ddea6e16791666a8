//! The console side of `setup`: lines read byte by byte from stdin (so a Ctrl-C interrupts a
//! read instead of being retried, and nothing is buffered past a line), passwords read with
//! echo off (restored on every way out), and SIGINT turned into an answer that stops setup.

use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::Errno;
use rustix::termios::{self, LocalModes, OptionalActions, Termios};

/// Longest answer we take.
const MAX_LINE: usize = 4096;

/// Why the questions stopped before the end: every one leaves the files as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Ctrl-D or the end of input.
    Eof,
    /// Ctrl-C.
    Interrupted,
    /// The question (or what was asked for).
    TooManyTries(String),
    /// "no" where only "yes" goes on.
    Declined(&'static str),
    Failed(String),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Eof => f.write_str("end of input"),
            Stop::Interrupted => f.write_str("interrupted"),
            Stop::TooManyTries(what) => write!(f, "too many bad answers to {what:?}"),
            Stop::Declined(what) => f.write_str(what),
            Stop::Failed(why) => f.write_str(why),
        }
    }
}

impl Stop {
    /// 130 for Ctrl-C (as a shell reports SIGINT), 1 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Stop::Interrupted => ExitCode::from(130),
            _ => ExitCode::FAILURE,
        }
    }
}

/// Where the questions go and the answers come from.
pub trait Term {
    /// One line without its newline; `hidden`: not echoed.
    fn line(&mut self, hidden: bool) -> Result<String, Stop>;
    fn say(&mut self, text: &str);
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch SIGINT without SA_RESTART: a read in progress returns EINTR and the flag says why.
fn catch_sigint() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic
    // (async-signal-safe).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = 0;
        if libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// SIGINT back to its default (before a registration: Ctrl-C then stops it as it stops `boot`).
pub fn release_sigint() {
    // SAFETY: restoring the default disposition.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

/// The controlling terminal on stdin/stdout.
pub struct Tty {
    _private: (),
}

impl Tty {
    pub fn open() -> anyhow::Result<Tty> {
        catch_sigint().map_err(|e| anyhow::anyhow!("catching SIGINT: {e}"))?;
        Ok(Tty { _private: () })
    }
}

/// Echo off while alive; the saved modes come back on drop.
struct EchoOff {
    saved: Termios,
}

impl EchoOff {
    fn new() -> Result<EchoOff, Stop> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin)
            .map_err(|e| Stop::Failed(format!("reading the terminal's modes: {e}")))?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        termios::tcsetattr(&stdin, OptionalActions::Now, &quiet)
            .map_err(|e| Stop::Failed(format!("turning echo off: {e}")))?;
        Ok(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

impl Term for Tty {
    fn line(&mut self, hidden: bool) -> Result<String, Stop> {
        let _echo = if hidden { Some(EchoOff::new()?) } else { None };
        let stdin = std::io::stdin();
        let mut buf = Vec::new();
        loop {
            if INTERRUPTED.load(Ordering::SeqCst) {
                return Err(Stop::Interrupted);
            }
            let mut byte = [0u8; 1];
            match rustix::io::read(&stdin, &mut byte) {
                Ok(0) => return Err(Stop::Eof),
                Ok(_) if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&buf).into_owned()),
                Ok(_) if buf.len() >= MAX_LINE => {
                    return Err(Stop::Failed(format!(
                        "an answer longer than {MAX_LINE} bytes"
                    )))
                }
                Ok(_) => buf.push(byte[0]),
                Err(Errno::INTR) => {}
                Err(e) => return Err(Stop::Failed(format!("reading the terminal: {e}"))),
            }
        }
    }

    fn say(&mut self, text: &str) {
        let mut out = std::io::stdout();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}
