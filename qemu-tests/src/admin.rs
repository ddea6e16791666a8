//! The administrator's side, as JSON over the same listener: list, approve, reject and remove
//! hosts, read the event log, set fault switches. No authentication: the simulator is a test
//! tool bound to loopback (or to what a QEMU guestfwd reaches).

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ca;
use crate::events::{lock, Event, EventKind};
use crate::faults;
use crate::faults::FaultSpec;
use crate::hosts::{Host, HostStatus};
use crate::http::{url_decode, Request, Response};
use crate::server::Shared;
use crate::tokens::{self, Token};
use crate::vdsm_check::{self, EngineIdentity};

#[derive(Serialize)]
pub struct Info {
    pub https_url: String,
    pub http_url: Option<String>,
    pub ca_sha256: String,
    pub ca_sha1: String,
    pub ca_pem: String,
    pub ssh_key: String,
}

pub fn info(shared: &Shared) -> Info {
    let der = shared.pki.ca.der();
    Info {
        https_url: format!("https://{}", shared.https_addr),
        http_url: shared.http_addr.map(|a| format!("http://{a}")),
        ca_sha256: ca::sha256_hex(der),
        ca_sha1: ca::sha1_colon(der),
        ca_pem: shared.pki.ca.pem(),
        ssh_key: shared.pki.engine_ssh_key(Some(ca::SSH_KEY_ALIAS)),
    }
}

pub fn handle(shared: &Shared, req: &Request) -> Response {
    let segs: Vec<String> = req
        .path
        .trim_start_matches("/admin")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(url_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["info"]) => Response::json(200, &info(shared)),
        ("GET", ["hosts"]) => Response::json(200, &shared.hosts.list()),
        ("GET", ["hosts", id]) => host_or_404(shared.hosts.get(id), id),
        ("DELETE", ["hosts", id]) => host_or_404(remove_host(shared, id), id),
        ("POST", ["hosts", id, "approve"]) => set_status(shared, id, HostStatus::Approved),
        ("POST", ["hosts", id, "reject"]) => reject(shared, id, req),
        ("POST", ["hosts", id, "check-vdsm"]) => check_vdsm_endpoint(shared, id, req),
        ("POST", ["hosts", id, "upgrade"]) => offer_upgrade(shared, id, req),
        ("GET", ["hosts", id, "upgrade"]) => match shared.upgrades.get(id) {
            Some(o) => Response::json(200, &o),
            None => Response::error(404, &format!("no upgrade offered to {id}")),
        },
        ("GET", ["hosts", id, "upgrade", "image"]) => upgrade_image(shared, id),
        ("GET", ["enrollments"]) => Response::json(200, &shared.enrollments.list()),
        ("GET", ["enrollments", id]) => match shared.enrollments.get(id) {
            Some(e) => Response::json(200, &e),
            None => Response::error(404, &format!("no enrollment for {id}")),
        },
        ("POST", ["tokens"]) => create_token_endpoint(shared, req),
        ("POST", ["hosts", "add"]) => add_host_endpoint(shared, req),
        ("GET", ["settings"]) => settings(shared),
        ("GET", ["stats"]) => Response::json(200, &shared.limiter.stats()),
        ("GET", ["connections"]) => {
            let tls = shared.tls_connections();
            Response::json(200, &serde_json::json!({ "tls": tls }))
        }
        ("POST", ["settings"]) => settings_endpoint(shared, req),
        ("GET", ["events"]) => events(shared, req),
        ("GET", ["faults"]) => Response::json(200, &shared.faults.list()),
        ("POST", ["faults"]) => add_faults(shared, req),
        ("DELETE", ["faults"]) | ("POST", ["faults", "clear"]) => clear_faults(shared),
        _ => Response::error(404, "no such admin endpoint"),
    }
}

/// `{"image": "/path/node.iso"}`: offer that image to host `id`.
fn offer_upgrade(shared: &Shared, id: &str, req: &Request) -> Response {
    #[derive(Deserialize, Default)]
    struct Body {
        image: String,
    }
    let body: Body = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match shared.upgrades.offer(id, std::path::Path::new(&body.image)) {
        Ok(o) => Response::json(200, &o),
        Err(e) => Response::error(400, &format!("{e:#}")),
    }
}

/// The offered image's bytes.
fn upgrade_image(shared: &Shared, id: &str) -> Response {
    let Some(offer) = shared.upgrades.get(id) else {
        return Response::error(404, &format!("no upgrade offered to {id}"));
    };
    match std::fs::read(&offer.image) {
        Ok(data) => Response::new(200, "application/octet-stream", data),
        Err(e) => Response::error(500, &format!("{}: {e}", offer.image.display())),
    }
}

fn set_status(shared: &Shared, id: &str, status: HostStatus) -> Response {
    host_or_404(set_host_status(shared, id, status), id)
}

/// Approve or reject (also used by the library `Handle`), logged as a host event.
pub fn set_host_status(shared: &Shared, id: &str, status: HostStatus) -> Option<Host> {
    let verb = match status {
        HostStatus::Approved => "approved",
        HostStatus::Rejected => "rejected",
        HostStatus::PendingApproval => "pending",
    };
    let host = host_event(shared, id, verb, shared.hosts.set_status(id, status));
    if host.is_some() && status == HostStatus::Approved {
        // Approval signs a waiting CSR pair at once (docs/protocol-v2.md §6).
        shared.enroller().approved(id);
    }
    host
}

/// Rejects with the reason the node will show (final, docs/protocol-v2.md §4).
pub fn reject_host(shared: &Shared, id: &str, reason: Option<&str>) -> Option<Host> {
    if let Some(r) = reason.filter(|r| !r.is_empty()) {
        shared.enrollments.set_reason(id, &truncate(r, 512));
    }
    set_host_status(shared, id, HostStatus::Rejected)
}

fn remove_host(shared: &Shared, id: &str) -> Option<Host> {
    shared.enrollments.forget(id);
    host_event(shared, id, "removed", shared.hosts.remove(id))
}

#[derive(Deserialize, Default)]
struct RejectBody {
    reason: Option<String>,
}

fn reject(shared: &Shared, id: &str, req: &Request) -> Response {
    let body: RejectBody = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    host_or_404(reject_host(shared, id, body.reason.as_deref()), id)
}

/// An empty body means all defaults.
fn json_body<T: for<'de> Deserialize<'de> + Default>(req: &Request) -> Result<T, Response> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| Response::error(400, &format!("bad JSON body: {e}")))
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[derive(Deserialize, Default)]
struct TokenBody {
    ttl_secs: Option<u64>,
    unique_id: Option<String>,
}

fn create_token_endpoint(shared: &Shared, req: &Request) -> Response {
    let body: TokenBody = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ttl = body
        .ttl_secs
        .map_or(tokens::DEFAULT_TTL, Duration::from_secs);
    let bound = tokens::Binding {
        unique_id: body.unique_id,
        address: None,
    };
    match create_token(shared, ttl, bound) {
        Ok(t) => Response::json(200, &t),
        Err(e) => Response::error(500, &e.to_string()),
    }
}

/// A new single-use enrollment token; the event names its binding, never the secret.
pub fn create_token(
    shared: &Shared,
    ttl: Duration,
    bound: tokens::Binding,
) -> anyhow::Result<Token> {
    let t = shared.tokens.create(ttl, bound)?;
    let bound = t
        .unique_id
        .as_deref()
        .or(t.address.as_deref())
        .unwrap_or("any host");
    let detail = format!("token created for {bound}, expires {}", t.expires_unix);
    shared
        .events
        .push(Event::new(EventKind::Host).detail(detail));
    Ok(t)
}

#[derive(Deserialize, Default)]
struct AddHostBody {
    /// The host's address, as the administrator types it in "New Host".
    address: Option<String>,
    /// The engine as the host reaches it (`HOST:PORT`); default: the simulator's listener.
    engine: Option<String>,
    ttl_secs: Option<u64>,
}

/// What "add host" gives the engine's SSH session: the command it runs on the host and the
/// token it writes to the command's stdin (docs/protocol-v2.md §10).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddedHost {
    pub address: String,
    pub command: String,
    /// The enrolment token, for the command's stdin (never in its arguments).
    pub stdin: String,
    pub expires_unix: u64,
}

/// The engine's "add host": a token bound to the address, and the exact command line the
/// engine would run over SSH as root on it.
pub fn add_host(
    shared: &Shared,
    address: &str,
    engine: Option<&str>,
    ttl: Duration,
) -> anyhow::Result<AddedHost> {
    anyhow::ensure!(
        !address.is_empty() && !address.contains(char::is_whitespace),
        "address: expected a host name or IP address"
    );
    let bound = tokens::Binding {
        unique_id: None,
        address: Some(address.to_string()),
    };
    let t = create_token(shared, ttl, bound)?;
    let engine = engine.map_or_else(|| shared.https_addr.to_string(), str::to_string);
    let pin = ca::sha256_hex(shared.pki.ca.der());
    Ok(AddedHost {
        address: address.to_string(),
        command: format!(
            "ovirt-node-reg bootstrap --engine {engine} --ca-pin sha256:{pin} --token-file -"
        ),
        stdin: t.token,
        expires_unix: t.expires_unix,
    })
}

fn add_host_endpoint(shared: &Shared, req: &Request) -> Response {
    let body: AddHostBody = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(address) = body.address.as_deref() else {
        return Response::error(400, "address: required (the host to add)");
    };
    let ttl = body
        .ttl_secs
        .map_or(tokens::DEFAULT_TTL, Duration::from_secs);
    match add_host(shared, address, body.engine.as_deref(), ttl) {
        Ok(a) => Response::json(200, &a),
        Err(e) => Response::error(400, &format!("{e:#}")),
    }
}

#[derive(Deserialize, Default)]
struct SettingsBody {
    cert_lifetime_secs: Option<u64>,
    retry_after_secs: Option<u64>,
    /// Engine requests per second; 0 = no limit.
    rate_limit: Option<u32>,
    /// `Retry-After` of the rate limit's 503s; 0 = derived from the backlog.
    rate_limit_retry_after_secs: Option<u64>,
}

/// The enrolment settings and the rate limit, as one object.
fn settings(shared: &Shared) -> Response {
    let mut v = serde_json::to_value(&*lock(&shared.settings)).unwrap_or_default();
    let limit = serde_json::to_value(shared.limiter.limit()).unwrap_or_default();
    if let (Some(obj), Some(limit)) = (v.as_object_mut(), limit.as_object()) {
        obj.extend(limit.clone());
    }
    Response::json(200, &v)
}

fn settings_endpoint(shared: &Shared, req: &Request) -> Response {
    let body: SettingsBody = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    {
        let mut s = lock(&shared.settings);
        if let Some(v) = body.cert_lifetime_secs.filter(|v| *v > 0) {
            s.cert_lifetime_secs = v;
        }
        if let Some(v) = body.retry_after_secs {
            s.retry_after_secs = v;
        }
    }
    if body.rate_limit.is_some() || body.rate_limit_retry_after_secs.is_some() {
        let mut limit = shared.limiter.limit();
        if let Some(v) = body.rate_limit {
            limit.rate_limit = v;
        }
        if let Some(v) = body.rate_limit_retry_after_secs {
            limit.rate_limit_retry_after_secs = (v > 0).then_some(v);
        }
        shared.limiter.set_limit(limit);
        let detail = format!(
            "rate limit {}/s, Retry-After {}",
            limit.rate_limit,
            limit
                .rate_limit_retry_after_secs
                .map_or("derived".to_string(), |s| format!("{s}s"))
        );
        shared
            .events
            .push(Event::new(EventKind::Rate).detail(detail));
    }
    settings(shared)
}

#[derive(Deserialize, Default)]
struct CheckBody {
    /// Where to connect instead of `address:vdsPort` (tests: the stand-in's ephemeral port).
    connect: Option<SocketAddr>,
}

fn check_vdsm_endpoint(shared: &Shared, id: &str, req: &Request) -> Response {
    let body: CheckBody = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if shared.hosts.get(id).is_none() {
        return Response::error(404, &format!("no host with unique id {id}"));
    }
    match check_vdsm(shared, id, body.connect) {
        Ok(()) => Response::json(200, &json!({ "ok": true })),
        Err(e) => Response::json(200, &json!({ "ok": false, "error": e })),
    }
}

/// The mTLS proof against an approved host, logged as a host event.
pub fn check_vdsm(shared: &Shared, id: &str, connect: Option<SocketAddr>) -> Result<(), String> {
    let result = check_host(shared, id, connect);
    let detail = match &result {
        Ok(()) => format!("check-vdsm {id} ok"),
        Err(e) => format!("check-vdsm {id} failed: {e}"),
    };
    shared
        .events
        .push(Event::new(EventKind::Host).detail(detail));
    result
}

fn check_host(shared: &Shared, id: &str, connect: Option<SocketAddr>) -> Result<(), String> {
    let host = shared.hosts.get(id).ok_or("unknown host")?;
    let port = u16::try_from(host.reg.vds_port).map_err(|_| "bad vdsm port")?;
    let addr = match connect {
        Some(a) => a,
        None => (host.reg.address.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or("cannot resolve the host address")?,
    };
    let key_der = shared.pki.engine_key.serialize_der();
    let identity = EngineIdentity {
        ca_der: shared.pki.ca.der(),
        cert_der: &shared.pki.engine_cert_der,
        key_der: &key_der,
    };
    vdsm_check::check_vdsm(addr, &host.reg.address, &identity, vdsm_check::TIMEOUT)
        .map_err(|e| format!("{e:#}"))
}

fn host_event(shared: &Shared, id: &str, verb: &str, host: Option<Host>) -> Option<Host> {
    if host.is_some() {
        let ev = Event::new(EventKind::Host).detail(format!("{verb} {id}"));
        shared.events.push(ev);
    }
    host
}

fn host_or_404(host: Option<Host>, id: &str) -> Response {
    match host {
        Some(h) => Response::json(200, &h),
        None => Response::error(404, &format!("no host with unique id {id}")),
    }
}

/// `?since=N` returns only events after sequence number N, for cheap polling.
fn events(shared: &Shared, req: &Request) -> Response {
    let since = req.param("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    Response::json(200, &shared.events.since(since))
}

fn add_faults(shared: &Shared, req: &Request) -> Response {
    let body = String::from_utf8_lossy(&req.body);
    match faults::parse_body(&body) {
        Ok(list) if !list.is_empty() => {
            for f in list {
                add_fault(shared, f);
            }
            Response::json(200, &shared.faults.list())
        }
        Ok(_) => Response::error(400, "no fault given"),
        Err(e) => Response::error(400, &e),
    }
}

/// Sets a fault switch (also used by the library `Handle`), logged as a fault event.
pub fn add_fault(shared: &Shared, f: FaultSpec) {
    let detail = serde_json::to_string(&f).unwrap_or_default();
    shared
        .events
        .push(Event::new(EventKind::Fault).detail(format!("set {detail}")));
    shared.faults.add(f);
}

fn clear_faults(shared: &Shared) -> Response {
    clear(shared);
    Response::json(200, &shared.faults.list())
}

pub fn clear(shared: &Shared) {
    shared.faults.clear();
    shared
        .events
        .push(Event::new(EventKind::Fault).detail("cleared"));
}
