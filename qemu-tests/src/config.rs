//! What one simulator run looks like. Defaults suit in-process tests: an ephemeral loopback
//! port, a fresh CA, no files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::faults::FaultSpec;

/// The address QEMU guests reach the host at through `guestfwd` with `restrict=on`
/// (docs/qemu-harness.md §7); the server certificate must name it.
pub const GUEST_ENGINE_ADDR: &str = "10.0.2.100";

/// The type of the engine key (the engine certificate's key, served as the engine SSH key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKeyType {
    /// RSA-2048, as a stock engine's `engine.p12` holds (`ssh-rsa` SSH key).
    #[default]
    Rsa,
    /// ECDSA P-256 (`ecdsa-sha2-nistp256`): for clients that must handle both.
    Ecdsa,
}

impl std::str::FromStr for EngineKeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rsa" => Ok(EngineKeyType::Rsa),
            "ecdsa" => Ok(EngineKeyType::Ecdsa),
            _ => Err(format!("engine key type {s:?}: expected rsa or ecdsa")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// HTTPS listener (port 0: pick a free one).
    pub listen: SocketAddr,
    /// Optional plain-HTTP listener: same endpoints, target of the redirect fault.
    pub http_listen: Option<SocketAddr>,
    /// Where the CA and the engine key live between runs; `None`: generated per run.
    pub state_dir: Option<PathBuf>,
    /// JSON-lines event log file (truncated at start).
    pub event_log: Option<PathBuf>,
    /// The engine's name: CN of the engine and server certificates.
    pub fqdn: String,
    /// Type of a newly made engine key (one kept in `state_dir` is used whatever its type).
    pub engine_key: EngineKeyType,
    /// Server certificate SANs besides `127.0.0.1` and `localhost`.
    pub extra_names: Vec<String>,
    /// `AutoApprovePatterns`.
    pub auto_approve: Vec<String>,
    /// Fault switches active from the start.
    pub faults: Vec<FaultSpec>,
    /// Per read/write on a connection.
    pub io_timeout: Duration,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Close every connection after its first answer (`Connection: close`), as the simulator
    /// did before it kept connections alive: the node must then reconnect for each request.
    pub close_each: bool,
    /// HTTP/1.1 persistent connections: requests served on one connection at most; the
    /// answer to the last one says `Connection: close` (Apache httpd's default: 100).
    pub keep_alive_requests: u32,
    /// How long a kept-alive connection may wait for its next request before the simulator
    /// closes it (Apache httpd's default: 5 s).
    pub keep_alive_idle: Duration,
    /// What `get-version` answers: 2 speaks our enrolment extension (docs/protocol-v2.md),
    /// 1 behaves like a stock engine (every `version=2` request is a 400).
    pub protocol_version: i32,
    /// `OrganizationName`: the `O=` of issued host certificates.
    pub organization: String,
    /// Lifetime of issued host certificates (`VdsCertificateValidityInDays`); short values
    /// let tests see re-enrolment.
    pub cert_lifetime: Duration,
    /// `Retry-After` of a pending (202) enrolment answer.
    pub retry_after_secs: u64,
    /// Engine requests served per second (fixed 1-s windows); more get 503 + `Retry-After`.
    /// 0: no limit (the rates are measured anyway).
    pub rate_limit: u32,
    /// `Retry-After` of those 503s; `None`: derived from the backlog (rate_limit.rs).
    pub rate_limit_retry_after: Option<u64>,
}

/// `VdsCertificateValidityInDays` default (docs/ovirt-protocol.md §4.2).
pub const DEFAULT_CERT_DAYS: u64 = 1827;

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: None,
            state_dir: None,
            event_log: None,
            fqdn: "engine-sim.test".into(),
            engine_key: EngineKeyType::default(),
            extra_names: vec![GUEST_ENGINE_ADDR.into()],
            auto_approve: Vec::new(),
            faults: Vec::new(),
            io_timeout: Duration::from_secs(10),
            max_connections: 256,
            close_each: false,
            keep_alive_requests: 100,
            keep_alive_idle: Duration::from_secs(5),
            protocol_version: 2,
            organization: "engine-sim".into(),
            cert_lifetime: Duration::from_secs(DEFAULT_CERT_DAYS * 86_400),
            retry_after_secs: 5,
            rate_limit: 0,
            rate_limit_retry_after: None,
        }
    }
}

impl SimConfig {
    /// SANs of the server certificate, first one becomes the CN.
    pub fn server_names(&self) -> Vec<String> {
        let mut names = vec![self.fqdn.clone(), "localhost".into(), "127.0.0.1".into()];
        for n in &self.extra_names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        names
    }
}
