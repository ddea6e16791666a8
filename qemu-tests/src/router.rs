//! Sends a request to the admin API or the engine servlets, and bends the engine's answer
//! when a fault switch applies.

use std::net::SocketAddr;
use std::time::Duration;

use crate::admin;
use crate::events::{Event, EventKind};
use crate::faults::FaultKind;
use crate::http::{reason, Body, Request, Response};
use crate::rate_limit::{self, Decision};
use crate::server::Shared;

/// The answer, and the label of the fault that shaped it.
pub fn route(shared: &Shared, req: &Request, peer: SocketAddr) -> (Response, Option<String>) {
    if req.path == "/admin" || req.path.starts_with("/admin/") {
        return (admin::handle(shared, req), None);
    }
    // Every engine request is counted; over the rate limit nothing else is looked at.
    let (decision, closed) = shared.limiter.check();
    let limit = shared.limiter.limit().rate_limit;
    for b in &closed {
        let ev = Event::new(EventKind::Rate).detail(rate_limit::describe(b, limit));
        shared.events.push(ev);
    }
    if let Decision::Refuse { retry_after } = decision {
        let resp =
            Response::error(503, reason(503)).with_header("Retry-After", retry_after.to_string());
        return (resp, Some(rate_limit::FAULT_LABEL.to_string()));
    }
    match shared
        .faults
        .take_for_request(req.param("command"), &req.path)
    {
        None => (shared.engine().handle(req, peer), None),
        Some(kind) => {
            let label = kind.label();
            (apply(shared, req, peer, kind), Some(label))
        }
    }
}

fn apply(shared: &Shared, req: &Request, peer: SocketAddr, kind: FaultKind) -> Response {
    let engine = shared.engine();
    match kind {
        FaultKind::Status {
            status,
            retry_after,
        } => {
            let resp = Response::error(status, reason(status));
            match retry_after {
                Some(s) => resp.with_header("Retry-After", s.to_string()),
                None => resp,
            }
        }
        FaultKind::Stall { secs } => {
            // Logged up front so a test can tell the request is inside the stall.
            let detail = format!("stalling {} for {secs}s", req.target);
            shared
                .events
                .push(Event::new(EventKind::Fault).detail(detail));
            shared.sleep(Duration::from_secs(secs));
            engine.handle(req, peer)
        }
        FaultKind::Oversized { bytes } => {
            let mut resp = engine.handle(req, peer);
            resp.body = Body::Repeat {
                byte: b'A',
                len: bytes,
            };
            resp
        }
        FaultKind::Malformed => {
            let mut resp = engine.handle(req, peer);
            resp.body = Body::Bytes(malformed_body(&resp.content_type));
            resp
        }
        FaultKind::LoginPage => Response::new(200, "text/html", LOGIN_PAGE),
        FaultKind::RedirectHttp => redirect(shared, req),
        // Connection-level switches never reach here (see Faults::take_for_request).
        FaultKind::Refuse { .. } | FaultKind::WrongCa => engine.handle(req, peer),
    }
}

/// What a single-sign-on proxy answers to any path it does not let through.
const LOGIN_PAGE: &str =
    "<!DOCTYPE html>\n<html><head><title>Log in</title></head><body><form method=\"post\">\
     <input name=\"username\"><input name=\"password\" type=\"password\"></form></body></html>\n";

/// Garbage shaped like the expected answer, so a client has to really parse it: a PEM frame
/// around junk for certificates, binary junk with NUL for text.
pub fn malformed_body(content_type: &str) -> Vec<u8> {
    if content_type.starts_with("application/x-x509") {
        b"-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=!!*\n-----END CERTIFICATE-----\n"
            .to_vec()
    } else {
        b"\x00\xff\xfegarbage \x01\x02 ovirt-engine\n".to_vec()
    }
}

/// `302` to the same target on the plain-http listener (or, without one, the https port
/// spoken as http: a client must refuse the scheme change before trying it).
fn redirect(shared: &Shared, req: &Request) -> Response {
    let port = shared
        .http_addr
        .map_or(shared.https_addr.port(), |a| a.port());
    let host = req
        .header("host")
        .map(strip_port)
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| shared.https_addr.ip().to_string());
    let location = format!("http://{host}:{port}{}", req.target);
    Response::error(302, "Found").with_header("Location", location)
}

/// `host:port`, `[v6]:port` or `host` → host (brackets kept for IPv6).
fn strip_port(h: &str) -> String {
    if let Some(end) = h.find(']') {
        return h[..=end].to_string();
    }
    h.split(':').next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
        assert_eq!(strip_port("engine"), "engine");
    }

    #[test]
    fn malformed_pem_is_not_base64() {
        use base64::Engine as _;
        let body = malformed_body("application/x-x509-ca-cert");
        let text = String::from_utf8(body).unwrap();
        let inner = text.lines().nth(1).unwrap();
        assert!(base64::engine::general_purpose::STANDARD
            .decode(inner)
            .is_err());
        assert!(std::str::from_utf8(&malformed_body("text/plain")).is_err());
    }
}
