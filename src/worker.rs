//! The unprivileged network worker.
//!
//! Everything that talks to the network or parses what the engine sends runs in a child
//! process: this binary re-executed as `worker`, with uid/gid 65534 (nobody), no
//! supplementary groups, no capabilities and `no_new_privs`, an empty environment, no
//! inherited descriptor but its pipes and stderr, killed when its parent dies, and a seccomp
//! filter that refuses file creation, installed before the first job is read
//! (src/sandbox.rs). Only the parent writes files or touches keys. A bug in TLS or HTTP
//! parsing is then a bug in a process that can write nothing of ours.
//!
//! One worker serves a whole run: a [`Session`] starts it at the first network job and sends
//! it one job after the other over its pipes (length-prefixed JSON frames, bounded in size,
//! each job under a watchdog); the worker ends when the session is dropped at the end of the
//! run. In between, the worker keeps its HTTPS clients, so the requests of a run share one
//! pinned TLS connection (and the CA download its own unverified one) instead of a process
//! and a handshake each.
//!
//! Each job is a type of its own with [`Call::Reply`] the type the parent gets back; the
//! parent re-checks every reply with its own strict parsers (the CA against its pins in
//! flow/trust.rs, the SSH key line here, names, addresses and issued certificates in the
//! steps). The JSON on the pipe is an implementation detail of this module (`wire`).

mod child;
mod session;
pub(crate) mod wire;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::clock::Observation;
use crate::engine::Enrollment;
use crate::http::Endpoint;
use crate::retry::Policy;
use crate::secret::Secret;
use crate::trust::{CaCert, Pins, SshKey};
use crate::values::Host;

pub use child::serve;
pub use session::Session;

use wire::Reply;

/// The unprivileged identity (nobody/nogroup: exists on every system, owns nothing).
pub const WORKER_ID: u32 = 65534;

/// Jobs and replies are small (a CA PEM, two CSRs, issued certificates); a bigger frame is a
/// broken peer.
const MAX_FRAME: usize = 1024 * 1024;

/// Extra time the parent gives a job past its own deadline before killing the worker.
const GRACE: Duration = Duration::from_secs(30);

/// Where the engine is, and how long and how often to try: what every network job carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Net {
    #[serde(with = "wire::endpoint")]
    pub endpoint: Endpoint,
    /// Its deadline is what is left of the run's (`ovirt.reg.timeout`).
    #[serde(with = "wire::policy")]
    pub policy: Policy,
}

/// Fetch the engine CA (unverified TLS) and check it against the pins. The reply is the CA
/// the worker found matching; the parent checks it again against its own pins and decides
/// by itself whether this is a first use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchCa {
    pub net: Net,
    #[serde(with = "wire::pins")]
    pub pins: Pins,
}

/// Fetch the engine CA (unverified TLS) and check nothing: `setup` shows its fingerprints,
/// which the parent computes itself from the CA it parses again, to the administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadCa {
    pub net: Net,
}

/// Fetch the engine's SSH public key over the pinned connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchSshKey {
    pub net: Net,
    #[serde(with = "wire::ca")]
    pub ca: CaCert,
}

/// Register with the engine (host-register v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    pub net: Net,
    #[serde(with = "wire::ca")]
    pub ca: CaCert,
    pub host: HostInfo,
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

/// The name and address the worker says it registered (the parent checks both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub name: String,
    pub address: String,
}

/// Measure the clock offset: SNTP to `ntp` servers, else the engine's `Date` header (over
/// the unverified CA-fetch client: the clock may be too wrong for a certificate check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasureClock {
    pub net: Net,
    #[serde(with = "wire::hosts")]
    pub ntp: Vec<Host>,
}

/// What the clock measurement found: an offset, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    pub observation: Option<Observation>,
    pub error: Option<String>,
}

/// Resolve this host's name and find the local address the engine is reached from (a UDP
/// `connect`, which sends nothing): what `bootstrap` compares (docs/ovirt-protocol.md: the
/// engine reaches the host by its name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolve {
    pub net: Net,
    pub name: String,
}

/// The name's addresses and the management address (the source towards the engine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub addresses: Vec<std::net::IpAddr>,
    pub management: Option<std::net::IpAddr>,
    /// Why the name did not resolve, when it did not.
    pub error: Option<String>,
}

/// `get-version` over the pinned connection: 1 (stock engine) or 2 (docs/protocol-v2.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetVersion {
    pub net: Net,
    #[serde(with = "wire::ca")]
    pub ca: CaCert,
}

/// `submit-csr`: both CSRs (PEM), the token in its header when there is one. The token is a
/// [`Secret`]: Debug redacts it and only the pipe to the worker sees its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitCsr {
    pub net: Net,
    #[serde(with = "wire::ca")]
    pub ca: CaCert,
    pub unique_id: String,
    pub vdsm_csr: String,
    pub qemu_csr: String,
    #[serde(with = "wire::secret")]
    pub token: Option<Secret>,
}

/// `get-certificates`: one poll (the parent waits between polls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollCerts {
    pub net: Net,
    #[serde(with = "wire::ca")]
    pub ca: CaCert,
    pub unique_id: String,
}

/// Ask DNS for SRV records (engine discovery, docs/ovirt-protocol.md §7): `names` in
/// order, the first with records answers. The reply's names and targets are checked again by
/// the parent (flow/discover.rs) before anything is tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupSrv {
    pub names: Vec<String>,
    pub servers: Vec<std::net::SocketAddr>,
    /// Ask over TCP alone (resolv.conf's `options use-vc`).
    pub tcp_only: bool,
    /// What is left of the run's deadline for the whole lookup.
    #[serde(with = "wire::millis")]
    pub deadline: Duration,
}

/// The name that had SRV records and its records (`records` empty: none of the names had).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrvFound {
    pub name: String,
    pub records: Vec<crate::net::srv::Srv>,
}

/// Report the worker's own credentials and sandbox (for tests and `--debug`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {}

/// The worker as it sees itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    pub uid: u32,
    pub gid: u32,
    pub groups: usize,
    pub no_new_privs: bool,
    pub cap_eff: String,
    /// A seccomp filter is installed (`Seccomp: 2` in /proc/self/status).
    pub seccomp: bool,
    /// Open descriptors, without the one that reads /proc/self/fd.
    pub fds: Vec<i32>,
    /// Names of the environment variables (never their values).
    pub env: Vec<String>,
    /// The worker's process id, so tests can tell workers apart.
    pub pid: u32,
}

/// Tests: try every kind of file creation in `dir` and report each errno (`None`: it worked).
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TryCreate {
    pub dir: String,
}

/// A job the worker can do: what it sends back ([`Call::Reply`]), already re-parsed on the
/// parent's side. Only the jobs of this module implement it.
pub trait Call: wire::Job {
    type Reply;

    /// The reply to this job from what came over the pipe: the wrong kind of reply is an
    /// error naming the job, and a reply with content is parsed again here.
    #[doc(hidden)]
    fn reply(reply: Reply) -> Result<Self::Reply>;
}

/// The error for a reply of the wrong kind.
fn unexpected<J: wire::Job>(reply: &Reply) -> anyhow::Error {
    anyhow!(
        "the network worker answered the {} job with a {} reply",
        J::NAME,
        reply.kind()
    )
}

/// `impl Call` for each job: its reply type, the one reply variant it accepts and what the
/// parent makes of it (parsed again where the reply has content); any other variant is an
/// error naming the job. One line per job keeps the table readable as the jobs grow.
macro_rules! calls {
    ($($(#[$attr:meta])* $job:ty => $out:ty: $pat:pat => $val:expr;)*) => {$(
        $(#[$attr])*
        impl Call for $job {
            type Reply = $out;
            fn reply(reply: Reply) -> Result<$out> {
                match reply {
                    $pat => $val,
                    other => Err(unexpected::<Self>(&other)),
                }
            }
        }
    )*};
}

calls! {
    FetchCa => CaCert: Reply::Trusted { ca_pem } => CaCert::from_pem(ca_pem.as_bytes())
        .map_err(|e| anyhow!("the engine CA the network worker fetched: {e}"));
    DownloadCa => CaCert: Reply::Ca { ca_pem } => CaCert::from_pem(ca_pem.as_bytes())
        .map_err(|e| anyhow!("the engine CA the network worker downloaded: {e}"));
    FetchSshKey => SshKey: Reply::SshKey { line } =>
        SshKey::parse(&line).map_err(|e| anyhow!("the engine SSH key: {e}"));
    Register => Registered: Reply::Registered(r) => Ok(r);
    MeasureClock => Measured: Reply::Clock(m) => Ok(m);
    Resolve => Resolved: Reply::Resolved(r) => Ok(r);
    GetVersion => u32: Reply::Version { version } => Ok(version);
    SubmitCsr => Enrollment: Reply::Enrollment { answer } => Ok(answer);
    PollCerts => Enrollment: Reply::Enrollment { answer } => Ok(answer);
    LookupSrv => SrvFound: Reply::Srv(found) => Ok(found);
    Whoami => Sandbox: Reply::Whoami(s) => Ok(s);
    #[cfg(feature = "test-hooks")]
    TryCreate => Vec<(String, Option<i32>)>: Reply::Created { results } => Ok(results);
}

/// Kill the child if it is still running after `after`; dropping the guard disarms it.
pub(crate) struct Watchdog {
    _disarm: std::sync::mpsc::Sender<()>,
    fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watchdog {
    /// Whether it killed the child.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }
}

pub(crate) fn kill_after(pid: u32, after: Duration, what: &'static str) -> Watchdog {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&fired);
    std::thread::spawn(move || {
        if rx.recv_timeout(after) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            log::warn!("{what} overran its deadline; stopping it");
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    });
    Watchdog { _disarm: tx, fired }
}
