//! Engine simulator, QEMU boot harness ([`qemu`]) and the boot tests' common set-up
//! ([`scenario`]) for ovirt-node-reg.
//!
//! The simulator stands in for the oVirt Engine's registration side: the `host-register`
//! servlet (protocol v1, docs/ovirt-protocol.md §3), the `pki-resource` servlet and the legacy
//! `/ca.crt` and `/engine.ssh.key.txt` paths, with its own CA, an admin API, an event log and
//! fault switches. Tests start it in-process:
//!
//! ```no_run
//! use qemu_tests::{Simulator, SimConfig};
//! let sim = Simulator::start(SimConfig::default()).unwrap();
//! println!("{} pin sha256:{}", sim.base_url(), sim.ca_sha256());
//! ```

pub mod admin;
pub mod ca;
pub mod client;
pub mod config;
pub mod enroll;
pub mod events;
pub mod faults;
pub mod hosts;
pub mod http;
mod port_hold;
pub mod qemu;
pub mod rate_limit;
mod router;
pub mod scenario;
pub mod server;
pub mod servlet;
pub mod servlet_v2;
pub mod signing;
pub mod tls;
pub mod tokens;
pub mod upgrades;
pub mod vdsm_check;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

pub use config::{EngineKeyType, SimConfig};
pub use events::{Event, EventKind};
pub use faults::{FaultKind, FaultSpec};
pub use hosts::{Host, HostStatus};

use server::Shared;

pub struct Simulator;

impl Simulator {
    /// Binds the listeners, creates or loads the CA and starts serving in background threads.
    pub fn start(config: SimConfig) -> anyhow::Result<Handle> {
        let (shared, threads) = server::start(config)?;
        Ok(Handle { shared, threads })
    }
}

/// A running simulator; dropping it stops it.
pub struct Handle {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Handle {
    /// The HTTPS listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.https_addr
    }

    pub fn port(&self) -> u16 {
        self.shared.https_addr.port()
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.shared.http_addr
    }

    /// `https://IP:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.shared.https_addr)
    }

    /// The engine CA exactly as `get-pki-trust` serves it.
    pub fn ca_pem(&self) -> String {
        self.shared.pki.ca.pem()
    }

    pub fn ca_der(&self) -> Vec<u8> {
        self.shared.pki.ca.der().to_vec()
    }

    /// Pin for `ovirt.reg.ca_pin=sha256:…`.
    pub fn ca_sha256(&self) -> String {
        ca::sha256_hex(self.shared.pki.ca.der())
    }

    /// Legacy `management_server_fingerprint` (SHA-1, colon hex).
    pub fn ca_sha1(&self) -> String {
        ca::sha1_colon(self.shared.pki.ca.der())
    }

    /// The CA behind the wrong-CA fault.
    pub fn other_ca_pem(&self) -> String {
        self.shared.pki.other_ca.pem()
    }

    /// The `get-ssh-trust` line (ends with ` ovirt-engine\n`).
    pub fn ssh_key_line(&self) -> String {
        self.shared.pki.engine_ssh_key(Some(ca::SSH_KEY_ALIAS))
    }

    pub fn info(&self) -> admin::Info {
        admin::info(&self.shared)
    }

    pub fn events(&self) -> Vec<Event> {
        self.shared.events.since(0)
    }

    pub fn events_since(&self, seq: u64) -> Vec<Event> {
        self.shared.events.since(seq)
    }

    /// Only the request events.
    pub fn requests(&self) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(Event::is_request)
            .collect()
    }

    pub fn hosts(&self) -> Vec<Host> {
        self.shared.hosts.list()
    }

    pub fn host(&self, unique_id: &str) -> Option<Host> {
        self.shared.hosts.get(unique_id)
    }

    /// Approves a host; `None` if the id is unknown.
    pub fn approve(&self, unique_id: &str) -> Option<Host> {
        admin::set_host_status(&self.shared, unique_id, HostStatus::Approved)
    }

    pub fn reject(&self, unique_id: &str) -> Option<Host> {
        admin::set_host_status(&self.shared, unique_id, HostStatus::Rejected)
    }

    /// Rejects with a reason the node shows (v2 `403 rejected`).
    pub fn reject_with(&self, unique_id: &str, reason: &str) -> Option<Host> {
        admin::reject_host(&self.shared, unique_id, Some(reason))
    }

    /// The QEMU CA (`qemu-ca-certificate`, the `qemu_ca` of v2 answers).
    pub fn qemu_ca_pem(&self) -> String {
        self.shared.pki.qemu_ca.pem()
    }

    /// A single-use enrollment token (docs/protocol-v2.md §6).
    pub fn create_token(
        &self,
        ttl: std::time::Duration,
        unique_id: Option<&str>,
    ) -> anyhow::Result<tokens::Token> {
        let bound = tokens::Binding {
            unique_id: unique_id.map(str::to_string),
            address: None,
        };
        admin::create_token(&self.shared, ttl, bound)
    }

    /// The engine's "add host" (`POST /admin/hosts/add`): a token bound to `address` and the
    /// command line to run on the host, the token for its stdin.
    pub fn add_host(
        &self,
        address: &str,
        engine: Option<&str>,
    ) -> anyhow::Result<admin::AddedHost> {
        admin::add_host(&self.shared, address, engine, tokens::DEFAULT_TTL)
    }

    pub fn enrollment(&self, unique_id: &str) -> Option<enroll::Enrollment> {
        self.shared.enrollments.get(unique_id)
    }

    /// Lifetime of certificates issued from now on (short ones test re-enrolment).
    pub fn set_cert_lifetime(&self, lifetime: std::time::Duration) {
        events::lock(&self.shared.settings).cert_lifetime_secs = lifetime.as_secs().max(1);
    }

    /// `Retry-After` of pending answers from now on.
    pub fn set_retry_after(&self, secs: u64) {
        events::lock(&self.shared.settings).retry_after_secs = secs;
    }

    /// The mTLS proof (docs/protocol-v2.md §8) against the host's `address:vdsPort`, or
    /// against `connect` when given (a stand-in vdsm on an ephemeral port).
    pub fn check_vdsm(&self, unique_id: &str, connect: Option<SocketAddr>) -> Result<(), String> {
        admin::check_vdsm(&self.shared, unique_id, connect)
    }

    /// Offer the node ISO `image` to host `unique_id` (`POST /admin/hosts/<id>/upgrade`).
    pub fn offer_upgrade(
        &self,
        unique_id: &str,
        image: &std::path::Path,
    ) -> anyhow::Result<upgrades::Offer> {
        self.shared.upgrades.offer(unique_id, image)
    }

    /// Engine requests per second (0: none) and the `Retry-After` of the 503s over it
    /// (`None`: derived from the backlog), from now on.
    pub fn set_rate_limit(&self, per_sec: u32, retry_after: Option<u64>) {
        self.shared.limiter.set_limit(rate_limit::Limit {
            rate_limit: per_sec,
            rate_limit_retry_after_secs: retry_after,
        });
    }

    /// What the simulator saw: requests per second accepted and refused, peaks, means.
    pub fn stats(&self) -> rate_limit::Stats {
        self.shared.limiter.stats()
    }

    /// TLS connections accepted so far (handshake completed): how many connections a client
    /// needed for its requests.
    pub fn tls_connections(&self) -> u64 {
        self.shared.tls_connections()
    }

    pub fn set_fault(&self, fault: FaultSpec) {
        admin::add_fault(&self.shared, fault);
    }

    pub fn clear_faults(&self) {
        admin::clear(&self.shared);
    }

    pub fn active_faults(&self) -> Vec<FaultSpec> {
        self.shared.faults.list()
    }

    /// Stops accepting and waits for the accept threads; connections in progress end on
    /// their own timeouts (stalls end early).
    pub fn stop(mut self) {
        server::stop(&self.shared, &mut self.threads);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        server::stop(&self.shared, &mut self.threads);
    }
}
