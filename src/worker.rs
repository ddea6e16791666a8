//! The unprivileged network worker.
//!
//! Everything that talks to the network or parses what the engine sends runs in a child
//! process: this binary re-executed as `worker`, with uid/gid 65534 (nobody), no
//! supplementary groups, no capabilities and `no_new_privs`, an empty environment, no
//! inherited descriptor but its pipes and stderr, killed when its parent dies, and a seccomp
//! filter that refuses file creation (src/sandbox.rs). The root parent sends one typed
//! job (JSON on the child's stdin) and reads one typed reply (JSON on its stdout); only the
//! parent writes files or touches keys. A bug in TLS or HTTP parsing is then a bug in a
//! process that can write nothing of ours.

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::clock::{self, Limits, Observation, SntpOptions, SystemClock};
use crate::engine::{self, Enrollment, Registration};
use crate::http::{Client, Endpoint, Timeouts};
use crate::paths;
use crate::retry::{Policy, Retrier, MAX_ATTEMPTS};
use crate::secret::Secret;
use crate::trust::{self, CaCert, Pins};
use crate::values::EngineAddr;

/// The unprivileged identity (nobody/nogroup: exists on every system, owns nothing).
pub const WORKER_ID: u32 = 65534;

/// Replies are small (a CA PEM, a key line); anything bigger is a broken child.
const MAX_REPLY: u64 = 1024 * 1024;

/// Extra time the parent gives a child past the job's own deadline before killing it.
const GRACE: Duration = Duration::from_secs(30);

/// Where and how long: shared by every job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Net {
    /// `HOST:PORT` of the engine (IPv6 in brackets).
    pub engine: String,
    pub deadline_ms: u64,
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
}

/// What the parent asks of the worker. The one secret it can carry, the enrolment token,
/// is a [`Secret`]: Debug redacts it and only the pipe to the child sees its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    /// Fetch the engine CA and check it against the pins (`sha256:…`, SHA-1 colon hex).
    Trust {
        net: Net,
        pins: Vec<String>,
        sha1: Option<String>,
        stored: Option<String>,
        insecure_tofu: bool,
    },
    /// Fetch the engine CA and check nothing (`setup`: the parent shows its fingerprints).
    FetchCa { net: Net },
    /// Fetch the engine's SSH public key over the pinned connection.
    SshKey { net: Net, ca_pem: String },
    /// Register with the engine (host-register v1).
    Register {
        net: Net,
        ca_pem: String,
        host: HostInfo,
    },
    /// Measure the clock offset: SNTP to `ntp` servers, else the engine's `Date` header.
    Clock { net: Net, ntp: Vec<String> },
    /// `get-version` over the pinned connection: 1 (stock engine) or 2 (docs/protocol-v2.md).
    Version { net: Net, ca_pem: String },
    /// `submit-csr`: both CSRs (PEM), the token in its header when there is one.
    SubmitCsr {
        net: Net,
        ca_pem: String,
        unique_id: String,
        vdsm_csr: String,
        qemu_csr: String,
        #[serde(with = "pipe_secret")]
        token: Option<Secret>,
    },
    /// `get-certificates`: one poll (the parent waits between polls).
    PollCerts {
        net: Net,
        ca_pem: String,
        unique_id: String,
    },
    /// Report the worker's own credentials and sandbox (for tests and `--debug`).
    Whoami,
    /// Tests: try every kind of file creation in `dir` and report each errno.
    #[cfg(feature = "test-hooks")]
    TryCreate { dir: String },
}

/// The token crosses the pipe in clear (the child must send it); everywhere else a
/// [`Secret`] prints `<redacted>`.
mod pipe_secret {
    use super::Secret;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(Secret::expose).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(Secret::new))
    }
}

/// What the host tells the engine; `name`/`address` default to the address the engine is
/// routed through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub name: Option<String>,
    pub address: Option<String>,
    pub unique_id: String,
    pub ssh_user: String,
    pub ssh_port: u16,
    pub ssh_key_fingerprint: Option<String>,
    pub vds_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The CA the worker fetched and found matching the pins. The parent checks it again
    /// against its own pins and decides by itself whether this is a first use.
    Trusted {
        ca_pem: String,
    },
    /// The CA the worker fetched, unchecked: the parent re-parses it and decides.
    Ca {
        ca_pem: String,
    },
    SshKey {
        line: String,
    },
    Registered {
        name: String,
        address: String,
    },
    Clock {
        observation: Option<Observation>,
        error: Option<String>,
    },
    Version {
        version: u32,
    },
    Enrollment {
        answer: Enrollment,
    },
    Whoami {
        uid: u32,
        gid: u32,
        groups: usize,
        no_new_privs: bool,
        cap_eff: String,
        /// A seccomp filter is installed (`Seccomp: 2` in /proc/self/status).
        seccomp: bool,
        /// Open descriptors, without the one that reads /proc/self/fd.
        fds: Vec<i32>,
        /// Names of the environment variables (never their values).
        env: Vec<String>,
    },
    /// Tests: what each creation attempt of `TryCreate` got, `None` for success.
    #[cfg(feature = "test-hooks")]
    Created {
        results: Vec<(String, Option<i32>)>,
    },
    Failed {
        message: String,
    },
}

// ------------------------------------------------------------------------- parent side

/// Run `job` in an unprivileged child and return its reply. A `Failed` reply becomes an
/// error carrying the child's message.
pub fn run(job: &Job, debug: bool) -> Result<Reply> {
    run_in(&own_binary()?, job, debug)
}

/// Tests: [`run`] with `exe` as the worker (an integration test's own binary is not ours).
#[cfg(feature = "test-hooks")]
pub fn run_binary(exe: &Path, job: &Job, debug: bool) -> Result<Reply> {
    run_in(exe, job, debug)
}

fn run_in(exe: &Path, job: &Job, debug: bool) -> Result<Reply> {
    let mut child = spawn(exe, debug)?;
    let input = serde_json::to_vec(job).context("encoding the worker job")?;
    let mut stdin = child.stdin.take().context("worker stdin")?;
    // A child that died early closes its stdin; its exit status then tells why.
    let _ = stdin.write_all(&input);
    drop(stdin);
    let watchdog = kill_after(child.id(), job_deadline(job) + GRACE, "the network worker");
    let mut out = Vec::new();
    let stdout = child.stdout.take().context("worker stdout")?;
    stdout
        .take(MAX_REPLY)
        .read_to_end(&mut out)
        .context("reading the worker's reply")?;
    let status = child.wait().context("waiting for the worker")?;
    drop(watchdog);
    #[cfg(feature = "test-hooks")]
    let out = lie::replace(job, out);
    match serde_json::from_slice::<Reply>(&out) {
        Ok(Reply::Failed { message }) => Err(anyhow!(message)),
        Ok(reply) => Ok(reply),
        Err(_) => bail!("the network worker ended without a reply ({status})"),
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

/// The binary again, as `worker`, dropped to nobody when we are root, in its sandbox.
fn spawn(exe: &Path, debug: bool) -> Result<std::process::Child> {
    let mut cmd = Command::new(exe);
    if crate::logging::early() {
        cmd.arg("--kmsg");
    }
    if debug {
        cmd.arg("--debug");
    }
    // Nothing from our environment: logging travels in the arguments above, and the worker
    // reads no variable (no TZ: it formats no local time; no proxy: ureq's is off, src/http.rs).
    cmd.arg("worker")
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if rustix::process::geteuid().is_root() {
        // std drops the supplementary groups when root sets a uid.
        cmd.uid(WORKER_ID).gid(WORKER_ID);
    } else {
        log::debug!(
            "not root: the worker keeps uid {}",
            rustix::process::geteuid().as_raw()
        );
    }
    let parent = rustix::process::getpid();
    // SAFETY: sandbox::in_child makes async-signal-safe calls only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || crate::sandbox::in_child(parent));
    }
    cmd.spawn()
        .context("starting the unprivileged network worker")
}

fn job_deadline(job: &Job) -> Duration {
    match job {
        Job::Trust { net, .. }
        | Job::FetchCa { net }
        | Job::SshKey { net, .. }
        | Job::Register { net, .. }
        | Job::Clock { net, .. }
        | Job::Version { net, .. }
        | Job::SubmitCsr { net, .. }
        | Job::PollCerts { net, .. } => Duration::from_millis(net.deadline_ms),
        Job::Whoami => Duration::ZERO,
        #[cfg(feature = "test-hooks")]
        Job::TryCreate { .. } => Duration::ZERO,
    }
}

/// Kill the child if it is still running after `after`; dropping the guard disarms it.
pub(crate) struct Watchdog {
    _disarm: std::sync::mpsc::Sender<()>,
}

pub(crate) fn kill_after(pid: u32, after: Duration, what: &'static str) -> Watchdog {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if rx.recv_timeout(after) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            log::warn!("{what} overran its deadline; stopping it");
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    });
    Watchdog { _disarm: tx }
}

/// Test builds only: a worker that lies. `OVIRT_NODE_REG_TEST_REPLIES=DIR` replaces the
/// reply to a job by `DIR/<job>.json` (e.g. `trust.json`) after the real worker has run, as a
/// compromised worker would; the tests then show that the parent trusts, installs and sends
/// nothing on its word.
#[cfg(feature = "test-hooks")]
mod lie {
    pub const ENV: &str = "OVIRT_NODE_REG_TEST_REPLIES";

    pub fn replace(job: &super::Job, real: Vec<u8>) -> Vec<u8> {
        let Some(dir) = std::env::var_os(ENV) else {
            return real;
        };
        let name = serde_json::to_value(job)
            .ok()
            .and_then(|v| v.get("job")?.as_str().map(str::to_string))
            .unwrap_or_default();
        match std::fs::read(std::path::Path::new(&dir).join(format!("{name}.json"))) {
            Ok(fake) => {
                log::warn!("test hook: the {name} job's reply is replaced");
                fake
            }
            Err(_) => real,
        }
    }
}

// -------------------------------------------------------------------------- child side

/// `ovirt-node-reg worker`: read one job from stdin, write one reply to stdout. The seccomp
/// filter goes on before the job is even read.
pub fn serve() -> Result<()> {
    let reply = match crate::sandbox::deny_file_creation() {
        Ok(()) => {
            log_sandbox();
            read_and_perform()?
        }
        Err(e) => Reply::Failed {
            message: format!("{e:#}"),
        },
    };
    let out = serde_json::to_vec(&reply).context("encoding the reply")?;
    std::io::stdout()
        .write_all(&out)
        .context("writing the reply")
}

fn log_sandbox() {
    if let Reply::Whoami {
        uid,
        gid,
        groups,
        no_new_privs,
        cap_eff,
        seccomp,
        fds,
        env,
    } = whoami()
    {
        log::debug!(
            "network worker: uid {uid} gid {gid}, {groups} supplementary groups, no_new_privs {no_new_privs}, capabilities {cap_eff}, seccomp filter {seccomp}, open fds {fds:?}, {} environment variables",
            env.len()
        );
    }
}

fn read_and_perform() -> Result<Reply> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_REPLY)
        .read_to_end(&mut input)
        .context("reading the job")?;
    Ok(match serde_json::from_slice::<Job>(&input) {
        Ok(job) => perform(&job).unwrap_or_else(|e| Reply::Failed {
            message: format!("{e:#}"),
        }),
        Err(e) => Reply::Failed {
            message: format!("the worker got an invalid job: {e}"),
        },
    })
}

fn perform(job: &Job) -> Result<Reply> {
    match job {
        Job::Trust {
            net,
            pins,
            sha1,
            stored,
            insecure_tofu,
        } => {
            let pins = Pins {
                sha256: pins
                    .iter()
                    .map(|p| parse(p, "CA pin"))
                    .collect::<Result<_>>()?,
                sha1: sha1
                    .as_deref()
                    .map(|p| parse(p, "SHA-1 fingerprint"))
                    .transpose()?,
                stored: stored
                    .as_deref()
                    .map(|p| parse(p, "stored CA pin"))
                    .transpose()?,
                insecure_tofu: *insecure_tofu,
            };
            let trusted = trust::establish(
                &endpoint(net)?,
                &pins,
                Timeouts::default(),
                &mut retrier(net),
            )?;
            Ok(Reply::Trusted {
                ca_pem: trusted.ca.pem(),
            })
        }
        Job::FetchCa { net } => {
            let ca = trust::fetch_ca(&endpoint(net)?, Timeouts::default(), &mut retrier(net))?;
            Ok(Reply::Ca { ca_pem: ca.pem() })
        }
        Job::SshKey { net, ca_pem } => {
            let key = trust::fetch_ssh_key(&pinned(net, ca_pem)?, &mut retrier(net))?;
            Ok(Reply::SshKey { line: key.line() })
        }
        Job::Register { net, ca_pem, host } => register(net, ca_pem, host),
        Job::Clock { net, ntp } => measure_clock(net, ntp),
        Job::Version { net, ca_pem } => {
            let version = engine::protocol_version(&pinned(net, ca_pem)?, &mut retrier(net))?;
            Ok(Reply::Version { version })
        }
        Job::SubmitCsr {
            net,
            ca_pem,
            unique_id,
            vdsm_csr,
            qemu_csr,
            token,
        } => {
            let client = pinned(net, ca_pem)?;
            let csrs = (vdsm_csr.as_str(), qemu_csr.as_str());
            let answer =
                engine::submit_csr(&client, unique_id, csrs, token.as_ref(), &mut retrier(net))?;
            Ok(Reply::Enrollment { answer })
        }
        Job::PollCerts {
            net,
            ca_pem,
            unique_id,
        } => {
            let client = pinned(net, ca_pem)?;
            let answer = engine::poll_certificates(&client, unique_id, &mut retrier(net))?;
            Ok(Reply::Enrollment { answer })
        }
        Job::Whoami => Ok(whoami()),
        #[cfg(feature = "test-hooks")]
        Job::TryCreate { dir } => Ok(Reply::Created {
            results: crate::sandbox::try_create(dir),
        }),
    }
}

fn register(net: &Net, ca_pem: &str, host: &HostInfo) -> Result<Reply> {
    let client = pinned(net, ca_pem)?;
    let address = match &host.address {
        Some(a) => a.clone(),
        None => local_address_towards(client.endpoint())?,
    };
    let reg = Registration {
        name: host.name.clone().unwrap_or_else(|| address.clone()),
        address: address.clone(),
        unique_id: host.unique_id.clone(),
        ssh_user: host.ssh_user.clone(),
        ssh_port: host.ssh_port,
        ssh_key_fingerprint: host.ssh_key_fingerprint.clone(),
        vds_port: host.vds_port,
    };
    engine::register(&client, &reg, &mut retrier(net))?;
    Ok(Reply::Registered {
        name: reg.name,
        address,
    })
}

/// The clock is read here but set by the parent: the offset travels, not the time.
fn measure_clock(net: &Net, ntp: &[String]) -> Result<Reply> {
    let engine = Client::for_ca_fetch(endpoint(net)?, Timeouts::default());
    let measured = clock::measure(
        ntp,
        Some(&engine),
        &SystemClock,
        &Limits::build(),
        &SntpOptions::default(),
        &mut retrier(net),
    );
    Ok(match measured {
        Ok(o) => Reply::Clock {
            observation: Some(o),
            error: None,
        },
        Err(e) => Reply::Clock {
            observation: None,
            error: Some(e),
        },
    })
}

/// The local address the kernel would use to reach the engine (what vdsm-reg computed
/// from the routing table): a connected UDP socket sends nothing.
fn local_address_towards(endpoint: &Endpoint) -> Result<String> {
    use std::net::{ToSocketAddrs, UdpSocket};
    let target = (endpoint.host.bare(), endpoint.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving the engine {endpoint}"))?
        .next()
        .with_context(|| format!("the engine {endpoint} has no address"))?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(bind).context("opening a socket to find our address")?;
    sock.connect(target)
        .with_context(|| format!("no route to the engine {endpoint}"))?;
    Ok(sock
        .local_addr()
        .context("reading our address")?
        .ip()
        .to_string())
}

fn parse<T: std::str::FromStr<Err = &'static str>>(text: &str, what: &str) -> Result<T> {
    text.parse()
        .map_err(|e| anyhow!("{what} {text}: expected {e}"))
}

fn endpoint(net: &Net) -> Result<Endpoint> {
    let addr: EngineAddr = parse(&net.engine, "engine")?;
    Ok(Endpoint::new(&addr, crate::values::DEFAULT_ENGINE_PORT))
}

fn pinned(net: &Net, ca_pem: &str) -> Result<Client> {
    let ca =
        CaCert::from_pem(ca_pem.as_bytes()).map_err(|e| anyhow!("the pinned engine CA: {e}"))?;
    Ok(Client::pinned(
        endpoint(net)?,
        ca.der(),
        Timeouts::default(),
    ))
}

fn retrier(net: &Net) -> Retrier {
    Retrier::system(Policy {
        base: Duration::from_millis(net.retry_base_ms),
        cap: Duration::from_millis(net.retry_cap_ms),
        deadline: Duration::from_millis(net.deadline_ms),
        max_attempts: MAX_ATTEMPTS,
    })
}

fn whoami() -> Reply {
    let status = std::fs::read_to_string(paths::PROC_SELF_STATUS).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let groups = field("Groups:").split_whitespace().count();
    Reply::Whoami {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        groups,
        no_new_privs: field("NoNewPrivs:") == "1",
        cap_eff: field("CapEff:"),
        seccomp: field("Seccomp:") == "2",
        fds: open_fds(),
        env: std::env::vars_os()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect(),
    }
}

/// Our open descriptors, less the one `read_dir` holds on /proc/self/fd itself.
fn open_fds() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(paths::PROC_SELF_FD) else {
        return Vec::new();
    };
    let mut fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| {
            let target =
                std::fs::read_link(format!("{}/{fd}", paths::PROC_SELF_FD)).unwrap_or_default();
            // The directory's descriptor, while it was being read.
            !(target.starts_with(paths::PROC) && target.ends_with("fd"))
        })
        .collect();
    fds.sort_unstable();
    fds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_crosses_the_pipe_but_is_never_printed() {
        let job = Job::SubmitCsr {
            net: Net {
                engine: "e:443".into(),
                deadline_ms: 1,
                retry_base_ms: 1,
                retry_cap_ms: 1,
            },
            ca_pem: String::new(),
            unique_id: "id".into(),
            vdsm_csr: String::new(),
            qemu_csr: String::new(),
            token: Some(Secret::new("s3cr3t-token-value")),
        };
        assert!(!format!("{job:?}").contains("s3cr3t"));
        let wire = serde_json::to_string(&job).unwrap();
        assert!(wire.contains("s3cr3t-token-value"));
        assert_eq!(serde_json::from_str::<Job>(&wire).unwrap(), job);
    }
}
