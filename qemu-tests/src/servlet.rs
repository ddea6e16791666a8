//! The engine endpoints as the real servlets answer them (docs/ovirt-protocol.md §3, §6.5):
//! `RegisterServlet` (host-register v1), `PKIResourceServlet` and the legacy paths that the
//! engine maps onto the latter.

use std::net::SocketAddr;

use crate::ca;
use crate::enroll::Enroller;
use crate::events::{Event, EventKind, EventLog};
use crate::hosts::{sanitize_unique_id, Hosts, Outcome, Registration};
use crate::http::{Request, Response};
use crate::tls::Pki;

pub const REGISTER_PATH: &str = "/ovirt-engine/services/host-register";
pub const PKI_PATH: &str = "/ovirt-engine/services/pki-resource";
/// The engine's `SSH_PORT` / `VDSM_PORT` defaults for `register`.
const SSH_PORT: i32 = 22;
const VDSM_PORT: i32 = 54321;
/// The engine side the servlets talk to.
pub struct Engine<'a> {
    pub pki: &'a Pki,
    pub hosts: &'a Hosts,
    pub events: &'a EventLog,
    /// What `get-version` answers: 2 with our enrolment extension, 1 like a stock engine.
    pub version: i32,
    pub enroll: Enroller<'a>,
}

/// Servlet errors become `sendError(400, message)`, as in `doV1` and `PKIResourceServlet`.
type Answer = Result<Response, String>;

#[derive(Clone, Copy)]
enum Format {
    X509Pem,
    X509PemCa,
    OpenSsh,
}

impl Engine<'_> {
    /// Answers any non-admin request, including 404/405 for what the engine does not serve.
    pub fn handle(&self, req: &Request, remote: SocketAddr) -> Response {
        let known = matches!(
            req.path.as_str(),
            REGISTER_PATH | PKI_PATH | "/ca.crt" | "/engine.ssh.key.txt" | "/rhevm.ssh.key.txt"
        );
        if !known {
            return Response::error(404, &format!("{} not found", req.path));
        }
        // HttpServlet.service knows seven methods; any other is not implemented (§3.6).
        if !SERVLET_METHODS.contains(&req.method.as_str()) {
            let m = format!(
                "Method {} is not implemented by this servlet for this URI",
                req.method
            );
            return Response::error(501, &m);
        }
        // OPTIONS lists what this target serves, as HttpServlet's doOptions does
        // (docs/ovirt-protocol.md §3.6).
        if req.method == "OPTIONS" {
            return Response::new(200, "", Vec::new()).with_header("Allow", self.allowed(req));
        }
        // v2 has a POST command, so it sorts out methods itself (docs/protocol-v2.md §2).
        if self.speaks_v2(req) {
            return crate::servlet_v2::handle(self, req, remote);
        }
        // The servlets implement only doGet: HEAD is GET without the body (the writer drops
        // it, the headers stay), every other method is 405.
        if req.method != "GET" && req.method != "HEAD" {
            return not_allowed(req, GET_ONLY);
        }
        let answer = match req.path.as_str() {
            REGISTER_PATH => return self.host_register(req, remote),
            PKI_PATH => self.pki_resource(
                req.param("resource"),
                req.param("format"),
                req.param("alias"),
            ),
            // The legacy paths are PKIResourceServlet mappings with fixed init parameters.
            "/ca.crt" => self.pki_resource(Some("ca-certificate"), Some("X509-PEM-CA"), None),
            _ => self.pki_resource(Some("engine-certificate"), Some("OPENSSH-PUBKEY"), None),
        };
        answer.unwrap_or_else(|m| Response::error(400, &m))
    }

    /// A v2 request to an engine that speaks v2: the only target with a POST command.
    fn speaks_v2(&self, req: &Request) -> bool {
        req.path == REGISTER_PATH && self.version >= 2 && req.param("version") == Some("2")
    }

    /// The methods this target answers without 405: what `Allow` says, on a 405 and to
    /// OPTIONS.
    fn allowed(&self, req: &Request) -> &'static str {
        if self.speaks_v2(req) {
            crate::servlet_v2::allowed(req.param("command"))
        } else {
            GET_ONLY
        }
    }

    /// `doGet`: a missing or unparsable `version` is -1, anything but a known version is 400.
    fn host_register(&self, req: &Request, remote: SocketAddr) -> Response {
        let version = req
            .param("version")
            .map_or(-1, |v| parse_int(v).unwrap_or(-1));
        // version=2 on a v2 engine never gets here (see handle); a stock engine refuses it.
        match version {
            1 => self.v1_response(req, remote),
            v => Response::error(400, &format!("Invalid registration protocol version {v}")),
        }
    }

    /// A v1 command, errors as `sendError(400)`; v2 serves the v1 commands through this too.
    pub(crate) fn v1_response(&self, req: &Request, remote: SocketAddr) -> Response {
        self.v1(req, remote)
            .unwrap_or_else(|m| Response::error(400, &m))
    }

    fn v1(&self, req: &Request, remote: SocketAddr) -> Answer {
        let cmd = req.param("command").ok_or("command parameter is missing")?;
        match cmd {
            "get-version" => Ok(Response::new(200, "text/plain", self.version.to_string())),
            "get-pki-trust" => self.pki_resource(Some("ca-certificate"), Some("X509-PEM-CA"), None),
            "get-ssh-trust" => {
                self.pki_resource(Some("engine-certificate"), Some("OPENSSH-PUBKEY"), None)
            }
            "register" => self.register(req, remote),
            _ => Err("Invalid command".into()),
        }
    }

    /// `registerV1` + `doRegister`, in the engine's order: defaults, number parsing, then the
    /// unique id check.
    fn register(&self, req: &Request, remote: SocketAddr) -> Answer {
        // The engine reverse-resolves the client address; the simulator stays off DNS and
        // uses the literal address.
        let address = req
            .param("address")
            .map_or_else(|| remote.ip().to_string(), str::to_string);
        let ssh_port = int_param(req, "sshPort", SSH_PORT)?;
        let vds_port = int_param(req, "vdsPort", VDSM_PORT)?;
        let ssh_user = req.param("sshUser").unwrap_or("root").to_string();
        let name = req.param("name").unwrap_or(&address).to_string();
        let raw_id = req.param("uniqueId").ok_or("Unique id was not provided")?;
        let unique_id = sanitize_unique_id(raw_id);
        // RegisterVdsQuery refuses these; the servlet turns the failed query into a 400.
        if unique_id.is_empty() {
            return Err("runInternalQuery failed 'VDS_REGISTER_EMPTY_ID'".into());
        }
        if address.is_empty() {
            return Err("runInternalQuery failed 'VDS_REGISTER_EMPTY_HOST_NAME'".into());
        }
        let reg = Registration {
            unique_id,
            name,
            address,
            ssh_user,
            ssh_port,
            ssh_key_fingerprint: req.param("sshKeyFingerprint").map(str::to_string),
            vds_port,
        };
        if let Outcome::Added(h) = self.hosts.register(reg, &remote.to_string()) {
            let status = serde_json::to_value(h.status).unwrap_or_default();
            let detail = format!(
                "added {} {}",
                h.reg.unique_id,
                status.as_str().unwrap_or("")
            );
            self.events.push(Event::new(EventKind::Host).detail(detail));
        }
        Ok(Response::new(200, "text/plain", "OK\n"))
    }

    /// `PKIResourceServlet.doGet` with `PKIResources`' content types and defaults.
    fn pki_resource(
        &self,
        resource: Option<&str>,
        format: Option<&str>,
        alias: Option<&str>,
    ) -> Answer {
        let resource = resource.ok_or("Missing resource name")?;
        let (is_ca, ca_der) = match resource {
            "ca-certificate" => (true, self.pki.ca.der()),
            "qemu-ca-certificate" => (true, self.pki.qemu_ca.der()),
            "engine-certificate" => (false, self.pki.engine_cert_der.as_slice()),
            r => return Err(format!("Resource '{r}' is invalid")),
        };
        let format = match format {
            None if is_ca => Format::X509PemCa,
            None => Format::X509Pem,
            Some("X509-PEM") => Format::X509Pem,
            Some("X509-PEM-CA") => Format::X509PemCa,
            Some("OPENSSH-PUBKEY") => Format::OpenSsh,
            Some(f) => return Err(format!("Format '{f}' is invalid")),
        };
        let der = ca_der;
        let alias = alias.or((!is_ca).then_some(ca::SSH_KEY_ALIAS));
        Ok(match format {
            Format::X509Pem => Response::new(200, "application/x-x509-cert", ca::engine_pem(der)),
            Format::X509PemCa => {
                Response::new(200, "application/x-x509-ca-cert", ca::engine_pem(der))
            }
            Format::OpenSsh if resource == "qemu-ca-certificate" => {
                Response::new(200, "text/plain", self.pki.qemu_ca.ssh_public_key(alias))
            }
            Format::OpenSsh if is_ca => {
                Response::new(200, "text/plain", self.pki.ca.ssh_public_key(alias))
            }
            Format::OpenSsh => Response::new(200, "text/plain", self.pki.engine_ssh_key(alias)),
        })
    }
}

/// The methods `HttpServlet.service` dispatches; others are 501.
const SERVLET_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE"];

/// What a servlet with only `doGet` serves (TRACE is refused, as WildFly does by default).
pub(crate) const GET_ONLY: &str = "GET, HEAD, OPTIONS";

/// `405` with the `Allow` of the target: every method listed is answered without 405.
pub(crate) fn not_allowed(req: &Request, allow: &str) -> Response {
    Response::error(
        405,
        &format!("HTTP method {} is not supported by this URL", req.method),
    )
    .with_header("Allow", allow)
}

fn int_param(req: &Request, name: &str, default: i32) -> Result<i32, String> {
    match req.param(name) {
        None => Ok(default),
        Some(v) => parse_int(v).ok_or_else(|| format!("For input string: \"{v}\"")),
    }
}

/// Java's `Integer.parseInt`: optional sign, ASCII digits, 32-bit range.
fn parse_int(s: &str) -> Option<i32> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_int;

    #[test]
    fn java_int_parsing() {
        assert_eq!(parse_int("1"), Some(1));
        assert_eq!(parse_int("+1"), Some(1));
        assert_eq!(parse_int("-7"), Some(-7));
        for bad in ["", "+", "1.0", " 1", "0x1", "99999999999", "١"] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
    }
}
