//! The host-register protocol, version 1: the `register` request (docs/ovirt-protocol.md §3).
//!
//! Parameter names are the ones the engine's `RegisterServlet.registerV1` reads (§3.3). In
//! particular the vdsm port goes in `vdsPort`: the stock clients' `port=` is ignored by the
//! servlet. Values are URL-encoded (the stock clients do not encode them, which breaks on a
//! `+` or `&`). Success is `200`; registering again with the same id is answered 200 too, so
//! the request is safe to repeat after a crash.

use std::fmt;

use log::info;

use serde::{Deserialize, Serialize};

use crate::http::{self, Answer, Client};
use crate::protocol::{GET_VERSION, HOST_REGISTER};
use crate::retry::{GaveUp, Retrier};
use crate::secret::Secret;

/// Small answers only: `OK\n` or an error page.
const MAX_ANSWER: u64 = 64 * 1024;

/// What the host tells the engine about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Display name in the engine.
    pub name: String,
    /// Address the engine uses to reach the host (stored as its host name).
    pub address: String,
    /// `/etc/vdsm/vdsm.id` or the SMBIOS UUID (docs/ovirt-protocol.md §6.1).
    pub unique_id: String,
    pub ssh_user: String,
    pub ssh_port: u16,
    /// This host's sshd key fingerprint (`SHA256:…`), for the engine to pin.
    pub ssh_key_fingerprint: Option<String>,
    pub vds_port: u16,
}

impl Registration {
    /// The query string, parameters in the order the stock client sends them.
    pub fn query(&self) -> String {
        let ssh_port = self.ssh_port.to_string();
        let vds_port = self.vds_port.to_string();
        let mut params: Vec<(&str, &str)> = vec![
            ("version", "1"),
            ("command", "register"),
            ("name", &self.name),
            ("address", &self.address),
            ("uniqueId", &self.unique_id),
            ("sshUser", &self.ssh_user),
            ("sshPort", &ssh_port),
        ];
        if let Some(fp) = &self.ssh_key_fingerprint {
            params.push(("sshKeyFingerprint", fp));
        }
        params.push(("vdsPort", &vds_port));
        encode_query(&params)
    }

    /// `/ovirt-engine/services/host-register?…`
    pub fn path_and_query(&self) -> String {
        format!("{HOST_REGISTER}?{}", self.query())
    }
}

/// `name=value&…`, both percent-encoded.
pub fn encode_query(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986: everything but the unreserved characters is `%XX`-encoded.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A failed host-register request (register, get-version, the v2 enrolment).
#[derive(Debug)]
pub struct Error(pub http::Error);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host-register request failed: {}", self.0)?;
        if let http::Error::Status { code: 400, .. } = self.0 {
            // The engine answers 400 for every client error (docs/ovirt-protocol.md §6.3).
            f.write_str(" (the engine rejected the request: check the unique id and parameters)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl crate::retry::Classify for Error {
    fn class(&self) -> crate::retry::Class {
        self.0.class()
    }
}

/// Send `register` over the pinned client until the engine answers 200 (retrying transient
/// failures within the retrier's deadline).
pub fn register(
    client: &Client,
    reg: &Registration,
    retrier: &mut Retrier,
) -> Result<(), GaveUp<Error>> {
    let path = reg.path_and_query();
    retrier.run("registering with the engine", |attempt| {
        let resp = client
            .get(&path, attempt.remaining, MAX_ANSWER)
            .map_err(Error)?;
        registered(resp.status, &resp.body).map_err(Error)
    })?;
    info!(
        "registered with {} as {}: pending approval on the engine",
        client.endpoint(),
        reg.unique_id
    );
    Ok(())
}

/// The servlet's one success answer is `200` with the body `OK` (docs/ovirt-protocol.md §3.2, as
/// docs/protocol-v2.md §1 restates it). Anything else, e.g. a login page a proxy serves with
/// 200, did not register the host: a permanent failure, never a success.
fn registered(status: u16, body: &[u8]) -> Result<(), http::Error> {
    if status == 200 && body.trim_ascii() == b"OK" {
        return Ok(());
    }
    let head = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
    let shown = crate::escape::controls(&head);
    Err(http::Error::Malformed(format!(
        "register answered HTTP {status} with \"{shown}\": expected HTTP 200 with the body OK"
    )))
}

/// `get-version`: the highest protocol version the engine speaks (a stock engine says 1;
/// docs/design.md §5's version 2 will be advertised here).
pub fn protocol_version(client: &Client, retrier: &mut Retrier) -> Result<u32, GaveUp<Error>> {
    retrier.run("asking the engine for its protocol version", |attempt| {
        let resp = client
            .get(GET_VERSION, attempt.remaining, MAX_ANSWER)
            .map_err(Error)?;
        parse_version(resp.text().map_err(Error)?).map_err(Error)
    })
}

fn parse_version(text: &str) -> Result<u32, http::Error> {
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| http::Error::Malformed("get-version did not answer a version number".into()))
}

// ------------------------------------------------------------------ protocol version 2

/// Largest v2 answer read (docs/protocol-v2.md §7: four certificates are a few KiB).
pub const MAX_V2_ANSWER: u64 = 64 * 1024;

/// The enrolment token header: a header, because query strings end up in access logs.
pub const TOKEN_HEADER: &str = "X-Ovirt-Enrollment-Token";

/// Longest `reason` shown on the console (docs/protocol-v2.md §7); the engine's text is never interpreted.
const MAX_REASON: usize = 512;

/// What the engine signed, as the approved answer carries it (docs/protocol-v2.md §4). Public material only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    pub vdsm_cert: String,
    pub qemu_cert: String,
    pub ca: String,
    pub qemu_ca: String,
    pub management_port: u16,
    pub ssl: bool,
}

impl Issued {
    /// What the node will install and apply, checked for form: each certificate field holds
    /// exactly one PEM certificate (a chain is refused: docs/protocol-v2.md §4) and the vdsm
    /// port is a real port. The root parent checks again what the worker hands it, and the
    /// certificates themselves against the keys and the pinned CA before installing.
    pub fn check(&self) -> Result<(), http::Error> {
        for (name, pem) in [
            ("vdsm_cert", &self.vdsm_cert),
            ("qemu_cert", &self.qemu_cert),
            ("ca", &self.ca),
            ("qemu_ca", &self.qemu_ca),
        ] {
            crate::trust::pem_certificate(pem)
                .map_err(|e| http::Error::Malformed(format!("{name}: {e}")))?;
        }
        if self.management_port == 0 {
            return Err(http::Error::Malformed(
                "vdsm.management_port 0: expected a port from 1 to 65535".into(),
            ));
        }
        Ok(())
    }
}

/// Where an enrolment stands, from either v2 command's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Enrollment {
    Pending {
        fingerprint: Option<String>,
        retry_after_secs: u64,
    },
    Approved {
        fingerprint: Option<String>,
        issued: Issued,
    },
    /// Final: an administrator refused this host.
    Rejected { reason: String },
    /// The token is unknown, expired or used; the host is neither approved nor rejected.
    TokenRefused { reason: String },
    /// The engine does not know this unique id: register again.
    UnknownHost { reason: String },
    /// Registered but never submitted (a poll after a crash before submitting).
    NoEnrollment { reason: String },
    /// A 400/405 that is not JSON: a stock engine after all (docs/protocol-v2.md §1); take the v1 path.
    StockEngine,
    /// A JSON error the node cannot fix by retrying (a bug, not transient).
    Refused { code: u16, reason: String },
}

/// `submit-csr` (POST, JSON): both CSRs at once, the token only here and only in a header.
pub fn submit_csr(
    client: &Client,
    unique_id: &str,
    csrs: (&str, &str),
    token: Option<&Secret>,
    retrier: &mut Retrier,
) -> Result<Enrollment, GaveUp<Error>> {
    let path = v2_path("submit-csr", unique_id);
    let body = serde_json::json!({ "vdsm_csr": csrs.0, "qemu_csr": csrs.1 }).to_string();
    let headers: Vec<(&str, &str)> = token
        .map(|t| (TOKEN_HEADER, t.expose()))
        .into_iter()
        .collect();
    retrier.run("submitting the certificate requests", |attempt| {
        let answer = client
            .post_json(
                &path,
                body.as_bytes(),
                &headers,
                attempt.remaining,
                MAX_V2_ANSWER,
            )
            .map_err(Error)?;
        parse_enrollment(&answer).map_err(Error)
    })
}

/// `get-certificates`: the poll. Never signs anything new and carries no secret.
pub fn poll_certificates(
    client: &Client,
    unique_id: &str,
    retrier: &mut Retrier,
) -> Result<Enrollment, GaveUp<Error>> {
    let path = v2_path("get-certificates", unique_id);
    retrier.run("polling for the certificates", |attempt| {
        let answer = client
            .get_answer(&path, attempt.remaining, MAX_V2_ANSWER)
            .map_err(Error)?;
        parse_enrollment(&answer).map_err(Error)
    })
}

fn v2_path(command: &str, unique_id: &str) -> String {
    let query = encode_query(&[
        ("version", "2"),
        ("command", command),
        ("uniqueId", unique_id),
    ]);
    format!("{HOST_REGISTER}?{query}")
}

/// The JSON body of every v2 answer (docs/protocol-v2.md §4); unknown fields are ignored.
#[derive(Deserialize)]
struct Body {
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    retry_after: Option<u64>,
    #[serde(default)]
    vdsm_cert: Option<String>,
    #[serde(default)]
    qemu_cert: Option<String>,
    #[serde(default)]
    ca: Option<String>,
    #[serde(default)]
    qemu_ca: Option<String>,
    #[serde(default)]
    vdsm: Option<VdsmBody>,
}

#[derive(Deserialize)]
struct VdsmBody {
    #[serde(default)]
    management_port: Option<u16>,
    #[serde(default)]
    ssl: Option<bool>,
}

/// Map an answer to an [`Enrollment`]. A body that is not what its status promises is
/// malformed: a permanent failure (asking again cannot change the form of the answer).
pub fn parse_enrollment(answer: &Answer) -> Result<Enrollment, http::Error> {
    let parsed = serde_json::from_slice::<Body>(&answer.body);
    let body = match (answer.status, parsed) {
        (_, Ok(b)) => b,
        (400 | 404 | 405, Err(_)) => return Ok(Enrollment::StockEngine),
        (code, Err(_)) => {
            return Err(http::Error::Malformed(format!(
                "HTTP {code} without the JSON answer of protocol v2"
            )))
        }
    };
    let reason = clean_reason(body.reason.as_deref());
    Ok(match (answer.status, body.status.as_str()) {
        (200, "approved") => approved(body)?,
        (202, "pending") => Enrollment::Pending {
            fingerprint: body.fingerprint,
            retry_after_secs: answer
                .retry_after
                .map(|d| d.as_secs())
                .or(body.retry_after)
                .unwrap_or(5),
        },
        (403, "rejected") => Enrollment::Rejected { reason },
        (403, "token_refused") => Enrollment::TokenRefused { reason },
        (404, "unknown_host") => Enrollment::UnknownHost { reason },
        (404, "no_enrollment") => Enrollment::NoEnrollment { reason },
        (code @ 200..=299, other) => {
            return Err(http::Error::Malformed(format!(
                "HTTP {code} with status {:?}",
                clean_reason(Some(other))
            )))
        }
        (code, _) => Enrollment::Refused { code, reason },
    })
}

fn approved(body: Body) -> Result<Enrollment, http::Error> {
    let missing = |what: &str| http::Error::Malformed(format!("approved answer without {what}"));
    let vdsm = body.vdsm.ok_or_else(|| missing("vdsm settings"))?;
    let issued = Issued {
        vdsm_cert: body.vdsm_cert.ok_or_else(|| missing("vdsm_cert"))?,
        qemu_cert: body.qemu_cert.ok_or_else(|| missing("qemu_cert"))?,
        ca: body.ca.ok_or_else(|| missing("ca"))?,
        qemu_ca: body.qemu_ca.ok_or_else(|| missing("qemu_ca"))?,
        management_port: vdsm
            .management_port
            .ok_or_else(|| missing("management_port"))?,
        ssl: vdsm.ssl.unwrap_or(true),
    };
    issued.check()?;
    Ok(Enrollment::Approved {
        fingerprint: body.fingerprint,
        issued,
    })
}

/// One printable line of at most 512 bytes: the engine's words reach a console, not a shell.
pub(crate) fn clean_reason(reason: Option<&str>) -> String {
    let text = crate::escape::controls(reason.unwrap_or("no reason given"));
    let mut end = text.len().min(MAX_REASON);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registration {
        Registration {
            name: "node1".into(),
            address: "node1.example.com".into(),
            unique_id: "4C4C4544-0042-3510-8052-B4C04F4E4B32".into(),
            ssh_user: "root".into(),
            ssh_port: 22,
            ssh_key_fingerprint: None,
            vds_port: 54321,
        }
    }

    #[test]
    fn query_uses_the_servlet_names() {
        assert_eq!(
            reg().query(),
            "version=1&command=register&name=node1&address=node1.example.com\
             &uniqueId=4C4C4544-0042-3510-8052-B4C04F4E4B32&sshUser=root&sshPort=22&vdsPort=54321"
        );
        assert!(!reg().query().contains("&port="));
    }

    #[test]
    fn values_are_encoded() {
        let mut r = reg();
        r.name = "a b&c=d+é".into();
        r.ssh_key_fingerprint = Some("SHA256:ab/cd+ef=".into());
        let q = r.query();
        assert!(q.contains("name=a%20b%26c%3Dd%2B%C3%A9&"), "{q}");
        assert!(
            q.contains("&sshKeyFingerprint=SHA256%3Aab%2Fcd%2Bef%3D&vdsPort=54321"),
            "{q}"
        );
        assert!(r
            .path_and_query()
            .starts_with("/ovirt-engine/services/host-register?version=1&command=register&"));
    }

    #[test]
    fn version_answers() {
        assert_eq!(parse_version("1").unwrap(), 1);
        assert_eq!(parse_version("2\n").unwrap(), 2);
        for bad in ["", "0", "one", "<html>", "-1"] {
            assert!(parse_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_request_hint() {
        let e = Error(http::Error::Status {
            code: 400,
            retry_after: None,
        });
        assert!(e.to_string().contains("HTTP 400"));
        assert!(e.to_string().contains("unique id"));
        use crate::retry::{Class, Classify};
        assert_eq!(e.class(), Class::Fatal);
    }

    #[test]
    fn register_succeeds_only_on_200_ok() {
        assert!(registered(200, b"OK\n").is_ok());
        assert!(registered(200, b"OK").is_ok());
        for (status, body) in [
            (200, &b"<html><title>Log in</title></html>"[..]),
            (200, b""),
            (201, b"OK\n"),
            (204, b""),
            (200, b"OK OK"),
        ] {
            let e = registered(status, body).unwrap_err();
            assert_eq!(
                crate::retry::Classify::class(&e),
                crate::retry::Class::Fatal
            );
            assert!(e.to_string().contains("expected HTTP 200 with the body OK"));
        }
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            retry_after: None,
            content_type: Some("application/json".into()),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn v2_answers() {
        let pending = answer(
            202,
            r#"{"status":"pending","fingerprint":"sha256:ab","retry_after":7}"#,
        );
        assert_eq!(
            parse_enrollment(&pending).unwrap(),
            Enrollment::Pending {
                fingerprint: Some("sha256:ab".into()),
                retry_after_secs: 7
            }
        );
        let pem = qemu_tests::ca::CertificateAuthority::generate("t")
            .unwrap()
            .pem();
        let approved = |port: u32, ca: &str| {
            let body = serde_json::json!({"status": "approved", "vdsm_cert": pem,
                "qemu_cert": pem, "ca": ca, "qemu_ca": pem,
                "vdsm": {"management_port": port, "ssl": true}, "new": 1});
            answer(200, &body.to_string())
        };
        let Enrollment::Approved { issued, .. } = parse_enrollment(&approved(54322, &pem)).unwrap()
        else {
            panic!("approved")
        };
        assert_eq!(
            (issued.management_port, issued.qemu_ca),
            (54322, pem.clone())
        );
        let e = parse_enrollment(&approved(0, &pem))
            .unwrap_err()
            .to_string();
        assert!(e.contains("vdsm.management_port 0: expected a port"), "{e}");
        assert!(parse_enrollment(&approved(65536, &pem)).is_err());
        let e = parse_enrollment(&approved(54321, &format!("{pem}{pem}")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ca: malformed answer: a chain of 2"), "{e}");
        let rejected = answer(
            403,
            "{\"status\":\"rejected\",\"reason\":\"no\\u001b[2Jway\"}",
        );
        assert_eq!(
            parse_enrollment(&rejected).unwrap(),
            Enrollment::Rejected {
                reason: "no\\x1b[2Jway".into()
            }
        );
        assert_eq!(
            parse_enrollment(&answer(
                400,
                "<html>Invalid registration protocol version 2"
            ))
            .unwrap(),
            Enrollment::StockEngine
        );
        assert!(matches!(
            parse_enrollment(&answer(400, r#"{"status":"error","reason":"bad csr"}"#)).unwrap(),
            Enrollment::Refused { code: 400, .. }
        ));
        assert!(parse_enrollment(&answer(200, r#"{"status":"approved"}"#)).is_err());
        assert!(parse_enrollment(&answer(200, "garbage")).is_err());
        let long = format!(r#"{{"status":"rejected","reason":"{}"}}"#, "é".repeat(400));
        let Enrollment::Rejected { reason } = parse_enrollment(&answer(403, &long)).unwrap() else {
            panic!("rejected")
        };
        assert!(reason.len() <= 512);
    }

    #[test]
    fn v2_query() {
        assert_eq!(
            v2_path("get-certificates", "a b"),
            "/ovirt-engine/services/host-register?version=2&command=get-certificates&uniqueId=a%20b"
        );
    }
}
