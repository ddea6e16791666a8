//! The administrator's side, as JSON over the same listener: list, approve, reject and remove
//! hosts, read the event log, set fault switches. No authentication: the simulator is a test
//! tool bound to loopback (or to what a QEMU guestfwd reaches).

use serde::Serialize;

use crate::ca;
use crate::events::{Event, EventKind};
use crate::faults;
use crate::faults::FaultSpec;
use crate::hosts::{Host, HostStatus};
use crate::http::{url_decode, Request, Response};
use crate::server::Shared;

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
        ("DELETE", ["hosts", id]) => host_or_404(
            host_event(shared, id, "removed", shared.hosts.remove(id)),
            id,
        ),
        ("POST", ["hosts", id, "approve"]) => set_status(shared, id, HostStatus::Approved),
        ("POST", ["hosts", id, "reject"]) => set_status(shared, id, HostStatus::Rejected),
        ("GET", ["events"]) => events(shared, req),
        ("GET", ["faults"]) => Response::json(200, &shared.faults.list()),
        ("POST", ["faults"]) => add_faults(shared, req),
        ("DELETE", ["faults"]) | ("POST", ["faults", "clear"]) => clear_faults(shared),
        _ => Response::error(404, "no such admin endpoint"),
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
    host_event(shared, id, verb, shared.hosts.set_status(id, status))
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
