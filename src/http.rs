//! The one HTTP client: ureq 3 over rustls with the ring provider.
//!
//! * It trusts exactly one CA, the engine's, verified against the pin before this client is
//!   built (trust.rs), and checks the server certificate's host name or IP SAN. The single
//!   exception is [`Client::for_ca_fetch`], which does not verify the server: its only use is
//!   downloading the CA itself, whose fingerprint is checked before anything else is sent.
//! * TLS 1.2 and 1.3 only: rustls implements nothing older.
//! * Connect and read timeouts, a per-request deadline, a cap on the response body.
//! * No redirects: a 3xx is an error (an engine never redirects these endpoints, and
//!   following one could leave TLS or the pinned host).
//! * Every error says whether it was the network, TLS, the status (with `Retry-After`) or the
//!   body, so the retry policy can classify it.
//! * A client keeps its connection between requests (ureq pools it per agent), so the worker's
//!   requests of a run share one TLS handshake. A connection the engine closed while idle is
//!   noticed before reuse (ureq probes it) and replaced; one that breaks under a request is
//!   not sent again by ureq: it is a `Connect` error, which the retry policy retries.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::config::Config;
use crate::retry::{Class, Classify};
use crate::values::{EngineAddr, Host};

/// Network timeouts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Longest silence while reading or writing.
    pub io: Duration,
    /// Whole request, body included.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            io: Duration::from_secs(20),
            request: Duration::from_secs(30),
        }
    }
}

/// Largest answer we read: far above a CA PEM (a few KiB), an SSH key line or `OK`.
pub const MAX_BODY: u64 = 256 * 1024;

/// Where the engine is: host and HTTPS port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: Host,
    pub port: u16,
}

impl Endpoint {
    /// The engine from `management_server` / `ovirt.reg.engine`, if configured.
    pub fn from_config(cfg: &Config) -> Option<Endpoint> {
        let engine = cfg.reg.engine.as_ref()?;
        Some(Endpoint {
            host: engine.host.clone(),
            port: cfg.engine_port(),
        })
    }

    pub fn new(addr: &EngineAddr, default_port: u16) -> Endpoint {
        Endpoint {
            host: addr.host.clone(),
            port: addr.port.unwrap_or(default_port),
        }
    }

    /// `https://host:port` (IPv6 in brackets), no trailing slash.
    pub fn base_url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A successful (2xx) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    /// The `Date` header as sent: the engine's clock, a fallback time source (clock.rs).
    pub date: Option<String>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text; engine answers are ASCII, anything else is malformed.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body)
            .map_err(|_| Error::Malformed("the answer is not text".into()))
    }
}

/// What went wrong with one request.
#[derive(Debug)]
pub enum Error {
    /// Could not reach the engine: refused, unreachable, reset, name not resolved.
    Connect(String),
    Timeout(String),
    /// The server certificate was refused (unknown CA, wrong name, expired): a trust failure.
    Certificate(String),
    /// Another TLS failure (e.g. the handshake was cut short).
    Tls(String),
    /// The server cannot speak TLS as we require (e.g. only TLS 1.0/1.1): retrying won't help.
    TlsIncompatible(String),
    /// A non-2xx, non-3xx status, with the `Retry-After` seconds if given.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// A 3xx: never followed.
    Redirect {
        code: u16,
        location: Option<String>,
    },
    TooLarge {
        limit: u64,
    },
    /// The answer does not have the expected form (set by the caller that parses it).
    Malformed(String),
    /// Anything else: a broken HTTP exchange.
    Protocol(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect(m) => write!(f, "cannot connect: {m}"),
            Error::Timeout(m) => write!(f, "timed out: {m}"),
            Error::Certificate(m) => write!(f, "server certificate refused: {m}"),
            Error::Tls(m) => write!(f, "TLS failure: {m}"),
            Error::TlsIncompatible(m) => write!(f, "TLS not possible with this server: {m}"),
            Error::Status {
                code,
                retry_after: Some(ra),
            } => write!(f, "HTTP {code} (Retry-After {}s)", ra.as_secs()),
            Error::Status { code, .. } => write!(f, "HTTP {code}"),
            Error::Redirect { code, location } => write!(
                f,
                "HTTP {code} redirect to {} refused",
                location.as_deref().unwrap_or("(no location)")
            ),
            Error::TooLarge { limit } => write!(f, "answer larger than {limit} bytes"),
            Error::Malformed(m) => write!(f, "malformed answer: {m}"),
            Error::Protocol(m) => write!(f, "HTTP protocol error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl Classify for Error {
    fn class(&self) -> Class {
        let transient = Class::Transient { retry_after: None };
        match self {
            Error::Connect(_) | Error::Timeout(_) | Error::Tls(_) | Error::Protocol(_) => transient,
            Error::Certificate(_) | Error::TlsIncompatible(_) | Error::Redirect { .. } => {
                Class::Fatal
            }
            Error::Status { code, retry_after } => match code {
                408 | 429 | 500..=599 => Class::Transient {
                    retry_after: *retry_after,
                },
                _ => Class::Fatal,
            },
            // An answer of the wrong form or size can never become right by asking again
            // (a chain, a login page, an oversized body): the step ends at once with its
            // reason. Only a broken exchange (Protocol), the network and busy answers are
            // retried.
            Error::TooLarge { .. } | Error::Malformed(_) => Class::Fatal,
        }
    }
}

/// An HTTPS client bound to one engine endpoint.
pub struct Client {
    agent: ureq::Agent,
    endpoint: Endpoint,
    timeouts: Timeouts,
}

impl Client {
    /// Verifies the server against exactly `ca_der` (the pinned engine CA).
    pub fn pinned(endpoint: Endpoint, ca_der: &[u8], timeouts: Timeouts) -> Client {
        let ca = Certificate::from_der(ca_der).to_owned();
        let tls = tls_builder()
            .root_certs(RootCerts::new_with_certs(&[ca]))
            .build();
        Client::with_tls(endpoint, tls, timeouts)
    }

    /// Does NOT verify the server. Only for downloading the engine CA, which is then checked
    /// against the pin before any other request is made; never send anything secret with it.
    pub fn for_ca_fetch(endpoint: Endpoint, timeouts: Timeouts) -> Client {
        let tls = tls_builder().disable_verification(true).build();
        Client::with_tls(endpoint, tls, timeouts)
    }

    fn with_tls(endpoint: Endpoint, tls: TlsConfig, timeouts: Timeouts) -> Client {
        // No proxy from the environment: the engine is reached directly, as vdsm-reg did,
        // and the worker gets no environment to read one from (src/worker.rs).
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(None)
            .https_only(true)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .http_status_as_error(false)
            .timeout_connect(Some(timeouts.connect))
            .timeout_per_read(Some(timeouts.io))
            .timeout_per_write(Some(timeouts.io))
            .timeout_global(Some(timeouts.request))
            .max_response_header_size(16 * 1024)
            .user_agent(concat!("ovirt-node-reg/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            endpoint,
            timeouts,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// GET `path_and_query` (starting with `/`, already URL-encoded). `budget` caps the whole
    /// request below the configured timeout (the retry loop's remaining time); `max_body`
    /// caps the answer.
    pub fn get(
        &self,
        path_and_query: &str,
        budget: Duration,
        max_body: u64,
    ) -> Result<Response, Error> {
        let mut resp = self.send_get(path_and_query, budget)?;
        let status = resp.status().as_u16();
        check_status(status, &resp)?;
        let content_type = header(&resp, "content-type");
        let date = header(&resp, "date");
        let body = read_body(&mut resp, max_body)?;
        Ok(Response {
            status,
            content_type,
            date,
            body,
        })
    }
}

/// An answer read whatever its status below 500: the v2 commands report pending, refusals
/// and rejections as JSON with 202/4xx (docs/protocol-v2.md §4), which callers must read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Client {
    /// GET like [`Client::get`], but a 4xx answer is returned with its body, not as an error.
    pub fn get_answer(
        &self,
        path_and_query: &str,
        budget: Duration,
        max_body: u64,
    ) -> Result<Answer, Error> {
        read_answer(self.send_get(path_and_query, budget)?, max_body)
    }

    /// Send a GET within the request limit; the answer's headers, its body still unread.
    fn send_get(
        &self,
        path_and_query: &str,
        budget: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, Error> {
        let url = self.prepare(path_and_query);
        self.agent
            .get(&url)
            .config()
            .timeout_global(Some(self.limit(budget)))
            .build()
            .call()
            .map_err(classify_ureq)
    }

    /// POST a JSON body with extra `headers` (never logged: ureq redacts unknown headers);
    /// the answer as in [`Client::get_answer`].
    pub fn post_json(
        &self,
        path_and_query: &str,
        json: &[u8],
        headers: &[(&str, &str)],
        budget: Duration,
        max_body: u64,
    ) -> Result<Answer, Error> {
        let url = self.prepare(path_and_query);
        let mut req = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req
            .config()
            .timeout_global(Some(self.limit(budget)))
            .build()
            .send(json)
            .map_err(classify_ureq)?;
        read_answer(resp, max_body)
    }

    /// Before each request: the kernel's random number generator ready for the handshake (a
    /// wait for it is said on the console, not hidden in the connect: src/entropy.rs), and
    /// the URL of `path_and_query`.
    fn prepare(&self, path_and_query: &str) -> String {
        crate::entropy::wait_until_ready();
        format!("{}{path_and_query}", self.endpoint.base_url())
    }

    /// The request limit: the configured timeout, or less when the retry budget is shorter.
    fn limit(&self, budget: Duration) -> Duration {
        self.timeouts
            .request
            .min(budget)
            .max(Duration::from_millis(1))
    }
}

/// Redirects stay errors (never followed), and so do the statuses worth retrying (408, 429,
/// 5xx), so that the retry policy sees them; every other status comes back with its body.
fn read_answer(mut resp: ureq::http::Response<ureq::Body>, max_body: u64) -> Result<Answer, Error> {
    let status = resp.status().as_u16();
    if matches!(status, 300..=399 | 408 | 429 | 500..=599) {
        check_status(status, &resp)?;
    }
    let retry_after = header(&resp, "retry-after").and_then(|v| parse_retry_after(&v));
    let content_type = header(&resp, "content-type");
    let body = read_body(&mut resp, max_body)?;
    Ok(Answer {
        status,
        retry_after,
        content_type,
        body,
    })
}

/// The answer's body, refused beyond `max_body` bytes.
fn read_body(resp: &mut ureq::http::Response<ureq::Body>, max_body: u64) -> Result<Vec<u8>, Error> {
    resp.body_mut()
        .with_config()
        .limit(max_body)
        .read_to_vec()
        .map_err(classify_ureq)
}

/// rustls with ring, TLS 1.2 and 1.3; nothing else in the tree (docs/toolchain.md §6.1).
fn tls_builder() -> ureq::tls::TlsConfigBuilder {
    TlsConfig::builder()
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    let value = resp.headers().get(name)?.to_str().ok()?;
    Some(value.chars().take(256).collect())
}

fn check_status(code: u16, resp: &ureq::http::Response<ureq::Body>) -> Result<(), Error> {
    match code {
        200..=299 => Ok(()),
        300..=399 => Err(Error::Redirect {
            code,
            location: header(resp, "location"),
        }),
        _ => Err(Error::Status {
            code,
            retry_after: header(resp, "retry-after").and_then(|v| parse_retry_after(&v)),
        }),
    }
}

/// `Retry-After` in its delay-seconds form. The HTTP-date form would need a trustworthy
/// clock, which an early-boot host may not have yet; it is ignored (plain backoff applies).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// Map ureq's error to ours, looking inside I/O errors for the rustls error they carry.
fn classify_ureq(e: ureq::Error) -> Error {
    match e {
        ureq::Error::Io(io) => classify_io(io),
        ureq::Error::Timeout(t) => Error::Timeout(t.to_string()),
        ureq::Error::HostNotFound => Error::Connect("host name not resolved".into()),
        ureq::Error::ConnectionFailed => Error::Connect("connection failed".into()),
        ureq::Error::BodyExceedsLimit(limit) => Error::TooLarge { limit },
        ureq::Error::Rustls(r) => classify_rustls(&r),
        ureq::Error::Tls(m) => Error::Tls(m.to_string()),
        ureq::Error::LargeResponseHeader(..) => {
            Error::Malformed("response header too large".into())
        }
        other => Error::Protocol(other.to_string()),
    }
}

fn classify_io(e: io::Error) -> Error {
    if let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return classify_rustls(r);
    }
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout(e.to_string()),
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::NotConnected
        | io::ErrorKind::AddrNotAvailable
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::NetworkDown
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => Error::Connect(e.to_string()),
        _ => Error::Protocol(e.to_string()),
    }
}

/// Certificate problems are trust failures (fatal); the rest of TLS may be a glitch.
fn classify_rustls(e: &rustls::Error) -> Error {
    match e {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::UnsupportedNameType => Error::Certificate(e.to_string()),
        rustls::Error::PeerIncompatible(_) => Error::TlsIncompatible(e.to_string()),
        _ => Error::Tls(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
