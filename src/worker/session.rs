//! The parent's side: one worker for a whole run, started at the first job and ended when
//! the session is dropped.

use anyhow::{anyhow, bail, Context, Result};
use log::{debug, warn};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::wire::{self, Reply};
use super::{kill_after, Call, GRACE, MAX_FRAME, WORKER_ID};
use crate::paths;

/// Workers one session may start: a worker that dies is replaced at the next job, but one
/// that keeps dying is not started again and again.
const MAX_STARTS: u32 = 3;

/// How long a worker may take to exit once its session has ended before it is killed.
const EXIT_WAIT: Duration = Duration::from_secs(1);

/// The network worker of one run. Nothing runs until the first [`Session::call`]; dropping
/// the session ends the worker. Used from the main thread only: the worker's death signal
/// follows the thread that started it (src/sandbox.rs).
pub struct Session {
    /// The binary to run as the worker; `None`: our own.
    exe: Option<PathBuf>,
    debug: bool,
    worker: Option<Worker>,
    started: u32,
}

/// A running worker and its pipes.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    jobs: u64,
}

impl Session {
    /// `debug`: the worker logs at debug level too.
    pub fn new(debug: bool) -> Session {
        Session {
            exe: None,
            debug,
            worker: None,
            started: 0,
        }
    }

    /// Tests: `exe` as the worker (an integration test's own binary is not ours).
    #[cfg(feature = "test-hooks")]
    pub fn with_binary(exe: &Path, debug: bool) -> Session {
        let mut session = Session::new(debug);
        session.exe = Some(exe.to_path_buf());
        session
    }

    /// Run `job` in the worker (started now if none runs) and return its reply. A `Failed`
    /// reply becomes an error carrying the worker's message; a worker that dies or breaks
    /// the protocol fails the job with an error naming it, and the next job gets a new one.
    pub fn call<J: Call>(&mut self, job: &J) -> Result<J::Reply> {
        let input = serde_json::to_vec(&job.wire()).context("encoding the worker job")?;
        let output = self.exchange(J::NAME, &input, job.deadline())?;
        #[cfg(feature = "test-hooks")]
        let output = lie::replace(J::NAME, output);
        let reply = match serde_json::from_slice::<Reply>(&output) {
            Ok(r) => r,
            Err(e) => {
                let status = self.stop();
                bail!(
                    "the network worker's reply to the {} job is not valid ({e}); it was stopped ({status})",
                    J::NAME
                );
            }
        };
        match reply {
            Reply::Failed { message } => Err(anyhow!(message)),
            other => J::reply(other),
        }
    }

    /// Send one frame and read the reply frame, under the job's watchdog.
    fn exchange(&mut self, name: &str, input: &[u8], deadline: Duration) -> Result<Vec<u8>> {
        let worker = self.running()?;
        let watchdog = kill_after(worker.child.id(), deadline + GRACE, "the network worker");
        let result = worker.send(input).and_then(|()| worker.receive());
        let overran = watchdog.fired();
        drop(watchdog);
        match result {
            Ok(output) => {
                worker.jobs += 1;
                Ok(output)
            }
            Err(e) => {
                let status = self.stop();
                if overran {
                    bail!("the network worker overran the deadline of the {name} job and was stopped ({status})");
                }
                bail!("the network worker died during the {name} job ({status}): {e:#}")
            }
        }
    }

    /// The running worker: the one of this session, or a new one when there is none yet or
    /// it has exited since the last job.
    fn running(&mut self) -> Result<&mut Worker> {
        if let Some(w) = self.worker.as_mut() {
            if let Ok(Some(status)) = w.child.try_wait() {
                warn!("the network worker exited between jobs ({status}); starting another");
                self.worker = None;
            }
        }
        if self.worker.is_none() {
            anyhow::ensure!(
                self.started < MAX_STARTS,
                "the network worker was started {} times in this run and did not last; not starting it again",
                self.started
            );
            let exe = match &self.exe {
                Some(e) => e.clone(),
                None => own_binary()?,
            };
            self.started += 1;
            self.worker = Some(Worker::start(&exe, self.debug)?);
        }
        self.worker.as_mut().context("no network worker")
    }

    /// Kill the worker (if it still runs) and say how it ended.
    fn stop(&mut self) -> String {
        match self.worker.take() {
            Some(mut w) => {
                let _ = w.child.kill();
                describe(w.child.wait())
            }
            None => "not running".into(),
        }
    }
}

impl Drop for Session {
    /// The end of the session: the worker reads the end of its input and exits.
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            w.finish();
        }
    }
}

impl Worker {
    /// The binary again, as `worker`, dropped to nobody when we are root, in its sandbox.
    fn start(exe: &Path, debug: bool) -> Result<Worker> {
        let mut cmd = Command::new(exe);
        if crate::logging::early() {
            cmd.arg("--kmsg");
        }
        if debug {
            cmd.arg("--debug");
        }
        // Nothing from our environment: logging travels in the arguments above, and the worker
        // reads no variable (no TZ: it formats no local time; no proxy: ureq's is off,
        // src/http.rs).
        cmd.arg("worker")
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if rustix::process::geteuid().is_root() {
            // std drops the supplementary groups when root sets a uid.
            cmd.uid(WORKER_ID).gid(WORKER_ID);
        } else {
            debug!(
                "not root: the worker keeps uid {}",
                rustix::process::geteuid().as_raw()
            );
        }
        let parent = rustix::process::getpid();
        // SAFETY: sandbox::in_child makes async-signal-safe calls only, between fork and exec.
        unsafe {
            cmd.pre_exec(move || crate::sandbox::in_child(parent));
        }
        let mut child = cmd
            .spawn()
            .context("starting the unprivileged network worker")?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the network worker has no pipes");
        };
        debug!("network worker {} started", child.id());
        Ok(Worker {
            child,
            stdin,
            stdout,
            jobs: 0,
        })
    }

    fn send(&mut self, input: &[u8]) -> Result<()> {
        wire::write_frame(&mut self.stdin, input).context("sending the job")
    }

    fn receive(&mut self) -> Result<Vec<u8>> {
        wire::read_frame(&mut self.stdout, MAX_FRAME)
            .context("reading the reply")?
            .context("the worker closed its output without a reply")
    }

    /// Close the worker's input and wait (bounded) for it to exit.
    fn finish(self) {
        let Worker {
            mut child,
            stdin,
            stdout,
            jobs,
        } = self;
        drop(stdin);
        drop(stdout);
        let end = Instant::now() + EXIT_WAIT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(2)),
                _ => {
                    let _ = child.kill();
                    break child.wait();
                }
            }
        };
        debug!(
            "network worker {}: {jobs} job(s), {}",
            child.id(),
            describe(status)
        );
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("status unknown: {e}"),
    }
}

/// /proc/self/exe reaches the binary even where nobody could not walk its directory.
fn own_binary() -> Result<PathBuf> {
    [paths::PROC_SELF_EXE]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .map_or_else(std::env::current_exe, Ok)
        .context("finding our own binary")
}

/// Test builds only: a worker that lies. `OVIRT_NODE_REG_TEST_REPLIES=DIR` replaces the
/// reply to a job by `DIR/<job>.json` (e.g. `trust.json`) after the real worker has done the
/// job, as a compromised worker would; the tests then show that the parent trusts, installs
/// and sends nothing on its word.
#[cfg(feature = "test-hooks")]
mod lie {
    pub const ENV: &str = "OVIRT_NODE_REG_TEST_REPLIES";

    pub fn replace(name: &str, real: Vec<u8>) -> Vec<u8> {
        let Some(dir) = std::env::var_os(ENV) else {
            return real;
        };
        match std::fs::read(std::path::Path::new(&dir).join(format!("{name}.json"))) {
            Ok(fake) => {
                log::warn!("test hook: the {name} job's reply is replaced");
                fake
            }
            Err(_) => real,
        }
    }
}
