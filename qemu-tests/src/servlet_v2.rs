//! `host-register?version=2`: our enrolment extension (docs/protocol-v2.md). Every v1
//! command still works here; `submit-csr` (POST) and `get-certificates` (GET) are new and
//! answer JSON.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::enroll::{Enrollment, State, Submission};
use crate::hosts::sanitize_unique_id;
use crate::http::{Request, Response};
use crate::servlet::{not_allowed, Engine, GET_ONLY};

/// The token header (a header, not a parameter: query strings end up in logs).
pub const TOKEN_HEADER: &str = "X-Ovirt-Enrollment-Token";
const V1_COMMANDS: [&str; 4] = ["get-version", "get-pki-trust", "get-ssh-trust", "register"];

#[derive(Deserialize)]
struct SubmitBody {
    vdsm_csr: String,
    qemu_csr: String,
}

#[derive(Serialize)]
struct VdsmSettings {
    management_port: i32,
    ssl: bool,
}

pub fn handle(engine: &Engine, req: &Request, remote: SocketAddr) -> Response {
    let cmd = req.param("command");
    // One rule for 405 and `Allow`: a method is answered exactly when `allowed` lists it.
    let allow = allowed(cmd);
    if !allow.split(", ").any(|m| m == req.method) {
        return not_allowed(req, allow);
    }
    let Some(cmd) = cmd else {
        return Response::error(400, "command parameter is missing");
    };
    match cmd {
        c if V1_COMMANDS.contains(&c) => engine.v1_response(req, remote),
        "get-certificates" => with_id(req, |id| answer(engine, id, engine.enroll.poll(id))),
        "submit-csr" => submit(engine, req),
        _ => Response::error(400, "Invalid command"),
    }
}

/// The methods a v2 request with `command` is answered with (not 405): `submit-csr` is a
/// POST, the other commands GETs; without a known command every method gets its 400.
pub fn allowed(command: Option<&str>) -> &'static str {
    match command {
        Some("submit-csr") => "POST, OPTIONS",
        Some(c) if V1_COMMANDS.contains(&c) || c == "get-certificates" => GET_ONLY,
        _ => "GET, HEAD, POST, OPTIONS",
    }
}

fn with_id(req: &Request, f: impl FnOnce(&str) -> Response) -> Response {
    match req.param("uniqueId").map(sanitize_unique_id) {
        Some(id) if !id.is_empty() => f(&id),
        _ => failure(400, "error", "Unique id was not provided"),
    }
}

fn submit(engine: &Engine, req: &Request) -> Response {
    let json = req
        .header("content-type")
        .is_some_and(|t| t.trim_start().starts_with("application/json"));
    if !json {
        return failure(415, "error", "submit-csr takes application/json");
    }
    let body: SubmitBody = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(e) => return failure(400, "error", &format!("bad JSON body: {e}")),
    };
    with_id(req, |id| {
        let sub = Submission {
            unique_id: id,
            vdsm_csr: &body.vdsm_csr,
            qemu_csr: &body.qemu_csr,
            token: req.header(TOKEN_HEADER),
        };
        answer(engine, id, engine.enroll.submit(&sub))
    })
}

fn answer(engine: &Engine, id: &str, state: Result<State, String>) -> Response {
    let state = match state {
        Ok(s) => s,
        Err(reason) => return failure(400, "error", &reason),
    };
    match state {
        State::Approved(e) => approved(engine, id, &e),
        State::Pending { fingerprint } => pending(engine, &fingerprint),
        State::Rejected(reason) => failure(403, "rejected", &reason),
        State::TokenRefused(r) => failure(403, "token_refused", r.reason()),
        State::UnknownHost => failure(
            404,
            "unknown_host",
            &format!("no host with unique id {id}: register first"),
        ),
        State::NoEnrollment => failure(
            404,
            "no_enrollment",
            &format!("host {id} has not submitted CSRs"),
        ),
    }
}

fn approved(engine: &Engine, id: &str, e: &Enrollment) -> Response {
    let Some(issued) = &e.issued else {
        return failure(500, "error", "approved without certificates");
    };
    let port = engine.hosts.get(id).map_or(54321, |h| h.reg.vds_port);
    let body = json!({
        "status": "approved",
        "fingerprint": e.fingerprint,
        "vdsm_cert": issued.vdsm_cert,
        "qemu_cert": issued.qemu_cert,
        "ca": engine.pki.ca.pem(),
        "qemu_ca": engine.pki.qemu_ca.pem(),
        "vdsm": VdsmSettings { management_port: port, ssl: true },
    });
    Response::json(200, &body)
}

fn pending(engine: &Engine, fingerprint: &str) -> Response {
    let secs = engine.enroll.settings.retry_after_secs;
    let body = json!({ "status": "pending", "fingerprint": fingerprint, "retry_after": secs });
    Response::json(202, &body).with_header("Retry-After", secs.to_string())
}

fn failure(status: u16, state: &str, reason: &str) -> Response {
    Response::json(status, &json!({ "status": state, "reason": reason }))
}
