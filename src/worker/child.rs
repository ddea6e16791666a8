//! The worker's side: `ovirt-node-reg worker` reads jobs until its parent closes the pipe,
//! and keeps its HTTPS clients between them.

use anyhow::{Context, Result};
use std::net::{ToSocketAddrs, UdpSocket};

use super::wire::{self, Reply, Wire};
use super::{
    DownloadCa, FetchCa, LookupSrv, MeasureClock, Measured, Net, Register, Registered, Resolve,
    Resolved, Sandbox, SrvFound, SubmitCsr, MAX_FRAME,
};
use crate::clock::{self, Limits, SntpOptions, SystemClock};
use crate::engine::{self, Registration};
use crate::http::{Client, Endpoint, Timeouts};
use crate::paths;
use crate::retry::Retrier;
use crate::trust::{self, CaCert};

/// `ovirt-node-reg worker`: the seccomp filter goes on before the first job is read; then one
/// reply for each job, until the parent closes our input (the end of its session) or dies
/// (and takes us with it: src/sandbox.rs). A worker whose filter could not be installed
/// fails every job (fail closed).
pub fn serve() -> Result<()> {
    let sandboxed = crate::sandbox::deny_file_creation().map_err(|e| format!("{e:#}"));
    if sandboxed.is_ok() {
        log_sandbox();
    }
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    let mut clients = Clients::default();
    while let Some(frame) = wire::read_frame(&mut input, MAX_FRAME).context("reading a job")? {
        let reply = match &sandboxed {
            Ok(()) => answer(&frame, &mut clients),
            Err(message) => Reply::Failed {
                message: message.clone(),
            },
        };
        let out = serde_json::to_vec(&reply).context("encoding the reply")?;
        wire::write_frame(&mut output, &out).context("writing the reply")?;
    }
    Ok(())
}

fn answer(frame: &[u8], clients: &mut Clients) -> Reply {
    match serde_json::from_slice::<Wire>(frame) {
        Ok(job) => perform(job, clients).unwrap_or_else(|e| Reply::Failed {
            message: format!("{e:#}"),
        }),
        Err(e) => Reply::Failed {
            message: format!("the worker got an invalid job: {e}"),
        },
    }
}

/// The worker's HTTPS clients, kept across the jobs of a session: ureq keeps each client's
/// connection open between requests, so the requests of a run share one TLS connection. The
/// unverified client (CA download, the clock's `Date`) lives only until the first pinned job:
/// from then on the engine is reached over the pinned client alone. One engine and one CA at
/// a time; another one replaces the client.
#[derive(Default)]
struct Clients {
    unverified: Option<Client>,
    pinned: Option<(CaCert, Client)>,
}

impl Clients {
    fn unverified(&mut self, endpoint: &Endpoint) -> &Client {
        if self.unverified.as_ref().map(Client::endpoint) != Some(endpoint) {
            self.unverified = None;
        }
        self.unverified
            .get_or_insert_with(|| Client::for_ca_fetch(endpoint.clone(), Timeouts::default()))
    }

    fn pinned(&mut self, endpoint: &Endpoint, ca: &CaCert) -> &Client {
        let same = |(kept, client): &(CaCert, Client)| kept == ca && client.endpoint() == endpoint;
        if !self.pinned.as_ref().is_some_and(same) {
            self.pinned = None;
        }
        // The CA download's connection is of no further use.
        self.unverified = None;
        let client = || Client::pinned(endpoint.clone(), ca.der(), Timeouts::default());
        &self.pinned.get_or_insert_with(|| (ca.clone(), client())).1
    }
}

fn perform(job: Wire, clients: &mut Clients) -> Result<Reply> {
    Ok(match job {
        Wire::Trust(FetchCa { net, pins }) => {
            let client = clients.unverified(&net.endpoint);
            let trusted = trust::establish_over(client, &pins, &mut retrier(&net))?;
            Reply::Trusted {
                ca_pem: trusted.ca.pem(),
            }
        }
        Wire::DownloadCa(DownloadCa { net }) => {
            let client = clients.unverified(&net.endpoint);
            let ca = trust::fetch_ca(client, &mut retrier(&net))?;
            Reply::Ca { ca_pem: ca.pem() }
        }
        Wire::SshKey(j) => {
            let client = clients.pinned(&j.net.endpoint, &j.ca);
            let key = trust::fetch_ssh_key(client, &mut retrier(&j.net))?;
            Reply::SshKey { line: key.line() }
        }
        Wire::Register(j) => {
            let client = clients.pinned(&j.net.endpoint, &j.ca);
            Reply::Registered(register(client, &j)?)
        }
        Wire::Clock(j) => Reply::Clock(measure_clock(clients.unverified(&j.net.endpoint), &j)),
        Wire::Version(j) => {
            let client = clients.pinned(&j.net.endpoint, &j.ca);
            let version = engine::protocol_version(client, &mut retrier(&j.net))?;
            Reply::Version { version }
        }
        Wire::SubmitCsr(j) => {
            let SubmitCsr {
                net,
                ca,
                unique_id,
                vdsm_csr,
                qemu_csr,
                token,
            } = &j;
            let client = clients.pinned(&net.endpoint, ca);
            let csrs = (vdsm_csr.as_str(), qemu_csr.as_str());
            let answer =
                engine::submit_csr(client, unique_id, csrs, token.as_ref(), &mut retrier(net))?;
            Reply::Enrollment { answer }
        }
        Wire::Resolve(j) => Reply::Resolved(resolve(&j)),
        Wire::PollCerts(j) => {
            let client = clients.pinned(&j.net.endpoint, &j.ca);
            let answer = engine::poll_certificates(client, &j.unique_id, &mut retrier(&j.net))?;
            Reply::Enrollment { answer }
        }
        Wire::LookupSrv(j) => Reply::Srv(lookup_srv(&j)?),
        Wire::Whoami(_) => Reply::Whoami(whoami()),
        #[cfg(feature = "test-hooks")]
        Wire::TryCreate(j) => Reply::Created {
            results: crate::sandbox::try_create(&j.dir),
        },
    })
}

fn register(client: &Client, job: &Register) -> Result<Registered> {
    let host = &job.host;
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
    engine::register(client, &reg, &mut retrier(&job.net))?;
    Ok(Registered {
        name: reg.name,
        address,
    })
}

/// The clock is read here but set by the parent: the offset travels, not the time.
/// The host name's addresses (the system resolver: /etc/hosts, then DNS) and the source
/// address of the route to the engine.
fn resolve(job: &Resolve) -> Resolved {
    use std::net::{ToSocketAddrs, UdpSocket};
    let (addresses, error) = match (job.name.as_str(), 0).to_socket_addrs() {
        Ok(found) => {
            let mut ips: Vec<_> = found.map(|a| a.ip()).collect();
            ips.dedup();
            (ips, None)
        }
        Err(e) => (Vec::new(), Some(format!("{}: {e}", job.name))),
    };
    let target = (job.net.endpoint.host.bare(), job.net.endpoint.port);
    let management = target
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .and_then(|a| {
            let any: std::net::SocketAddr = if a.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = UdpSocket::bind(any).ok()?;
            sock.connect(a).ok()?;
            sock.local_addr().ok().map(|l| l.ip())
        });
    Resolved {
        addresses,
        management,
        error,
    }
}

fn measure_clock(engine: &Client, job: &MeasureClock) -> Measured {
    let ntp: Vec<String> = job.ntp.iter().map(ToString::to_string).collect();
    let measured = clock::measure(
        &ntp,
        Some(engine),
        &SystemClock,
        &Limits::build(),
        &SntpOptions::default(),
        &mut retrier(&job.net),
    );
    match measured {
        Ok(o) => Measured {
            observation: Some(o),
            error: None,
        },
        Err(e) => Measured {
            observation: None,
            error: Some(e),
        },
    }
}

/// Each name in turn, until one has SRV records; a name that does not exist or has none
/// passes to the next. A server failure ends the lookup with its reason.
fn lookup_srv(job: &LookupSrv) -> Result<SrvFound> {
    use crate::net::dns::{self, Answer};
    let until = std::time::Instant::now() + job.deadline;
    for name in &job.names {
        let answer = dns::lookup(&job.servers, name, until, job.tcp_only)
            .map_err(|e| anyhow::anyhow!("asking DNS for {name}: {e}"))?;
        match answer {
            Answer::Records(records) if !records.is_empty() => {
                return Ok(SrvFound {
                    name: name.clone(),
                    records,
                })
            }
            other => log::debug!("DNS SRV {name}: {other:?}"),
        }
    }
    Ok(SrvFound {
        name: String::new(),
        records: Vec::new(),
    })
}

/// The local address the kernel would use to reach the engine (what vdsm-reg computed
/// from the routing table): a connected UDP socket sends nothing.
fn local_address_towards(endpoint: &Endpoint) -> Result<String> {
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

/// Each job's deadline counts from its start in the worker (the parent gave it what is left
/// of the run's).
fn retrier(net: &Net) -> Retrier {
    Retrier::system(net.policy)
}

fn log_sandbox() {
    let Sandbox {
        uid,
        gid,
        groups,
        no_new_privs,
        cap_eff,
        seccomp,
        fds,
        env,
        pid,
    } = whoami();
    log::debug!(
        "network worker: uid {uid} gid {gid}, {groups} supplementary groups, no_new_privs {no_new_privs}, capabilities {cap_eff}, seccomp filter {seccomp}, open fds {fds:?}, {} environment variables, pid {pid}",
        env.len()
    );
}

fn whoami() -> Sandbox {
    let status = std::fs::read_to_string(paths::PROC_SELF_STATUS).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let groups = field("Groups:").split_whitespace().count();
    Sandbox {
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
        pid: std::process::id(),
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
