//! The host-register protocol, version 1: the `register` request (ovirt-protocol.md §3).
//!
//! Parameter names are the ones the engine's `RegisterServlet.registerV1` reads (§3.3). In
//! particular the vdsm port goes in `vdsPort`: the stock clients' `port=` is ignored by the
//! servlet. Values are URL-encoded (the stock clients do not encode them, which breaks on a
//! `+` or `&`). Success is `200`; registering again with the same id is answered 200 too, so
//! the request is safe to repeat after a crash.

use std::fmt;

use log::{info, warn};

use crate::http::{self, Client};
use crate::retry::{GaveUp, Retrier};

pub const HOST_REGISTER: &str = "/ovirt-engine/services/host-register";

/// Small answers only: `OK\n` or an error page.
const MAX_ANSWER: u64 = 64 * 1024;

/// What the host tells the engine about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Display name in the engine.
    pub name: String,
    /// Address the engine uses to reach the host (stored as its host name).
    pub address: String,
    /// `/etc/vdsm/vdsm.id` or the SMBIOS UUID (§6.1).
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

/// A rejected or failed registration.
#[derive(Debug)]
pub struct Error(pub http::Error);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registration refused or failed: {}", self.0)?;
        if let http::Error::Status { code: 400, .. } = self.0 {
            // The engine answers 400 for every client error (§6.3).
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
    let resp = retrier.run("registering with the engine", |attempt| {
        client
            .get(&path, attempt.remaining, MAX_ANSWER)
            .map_err(Error)
    })?;
    if resp.status != 200 {
        // 2xx other than 200 is not what the servlet sends; say so, but it did not fail.
        warn!("register answered HTTP {} instead of 200", resp.status);
    }
    info!(
        "registered with {} as {}: pending approval on the engine",
        client.endpoint(),
        reg.unique_id
    );
    Ok(())
}

/// `get-version`: the highest protocol version the engine speaks (a stock engine says 1;
/// design §5's version 2 will be advertised here).
pub fn protocol_version(client: &Client, retrier: &mut Retrier) -> Result<u32, GaveUp<Error>> {
    let path = format!("{HOST_REGISTER}?version=1&command=get-version");
    retrier.run("asking the engine for its protocol version", |attempt| {
        let resp = client
            .get(&path, attempt.remaining, MAX_ANSWER)
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
}
