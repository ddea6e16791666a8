//! A tiny HTTP(S) client for tests: one request per connection (or several on one kept-alive
//! [`Connection`]), bounded in time and size, trusting exactly the CA it is given (or nothing,
//! to see what a server presents). It is deliberately not the node's client: tests of the
//! simulator must not depend on the code the simulator exists to test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// DER of the certificate the server presented (https only).
    pub peer_cert: Option<Vec<u8>>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    timeout: Duration,
    max_response: usize,
}

impl Client {
    /// Plain http.
    pub fn http(addr: SocketAddr) -> Client {
        Client {
            addr,
            tls: None,
            timeout: Duration::from_secs(10),
            max_response: 1024 * 1024,
        }
    }

    /// https trusting only the CA certificate(s) in `ca_pem`, checking the IP SAN of `addr`.
    pub fn https(addr: SocketAddr, ca_pem: &str) -> Result<Client> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.context("CA PEM")?)?;
        }
        let cfg = builder()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client::with_tls(addr, cfg))
    }

    /// https that accepts any certificate, like `vdsm-tool register`'s first handshake;
    /// `Reply::peer_cert` shows what was presented.
    pub fn https_insecure(addr: SocketAddr) -> Result<Client> {
        let cfg = builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth();
        Ok(Client::with_tls(addr, cfg))
    }

    fn with_tls(addr: SocketAddr, cfg: ClientConfig) -> Client {
        let name = ServerName::IpAddress(addr.ip().into());
        Client {
            tls: Some((Arc::new(cfg), name)),
            ..Client::http(addr)
        }
    }

    /// Verify the server as `name` (a DNS name or an IP literal) instead of the address.
    pub fn server_name(mut self, name: &str) -> Result<Client> {
        let sn = ServerName::try_from(name.to_string())?;
        if let Some((_, n)) = self.tls.as_mut() {
            *n = sn;
        }
        Ok(self)
    }

    pub fn timeout(mut self, d: Duration) -> Client {
        self.timeout = d;
        self
    }

    pub fn max_response(mut self, n: usize) -> Client {
        self.max_response = n;
        self
    }

    pub fn get(&self, target: &str) -> Result<Reply> {
        self.send("GET", target, b"")
    }

    pub fn post(&self, target: &str, body: &str) -> Result<Reply> {
        self.send("POST", target, body.as_bytes())
    }

    pub fn send(&self, method: &str, target: &str, body: &[u8]) -> Result<Reply> {
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        )
        .into_bytes();
        if !body.is_empty() || method == "POST" {
            req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        self.raw(&req)
    }

    /// Sends arbitrary bytes and parses whatever comes back.
    pub fn raw(&self, request: &[u8]) -> Result<Reply> {
        let mut tcp = TcpStream::connect_timeout(&self.addr, self.timeout)
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_read_timeout(Some(self.timeout))?;
        tcp.set_write_timeout(Some(self.timeout))?;
        match &self.tls {
            None => {
                let raw = exchange(&mut tcp, request, self.max_response, self.timeout)?;
                parse_reply(&raw, None)
            }
            Some((cfg, name)) => {
                let conn = ClientConnection::new(Arc::clone(cfg), name.clone())?;
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let raw = exchange(&mut tls, request, self.max_response, self.timeout)?;
                let peer = tls.conn.peer_certificates().and_then(|c| c.first());
                parse_reply(&raw, peer.map(|c| c.to_vec()))
            }
        }
    }
}

impl Client {
    /// One TLS connection for several requests (HTTP/1.1 keep-alive); https only.
    pub fn connect(&self) -> Result<Connection> {
        let (cfg, name) = self
            .tls
            .as_ref()
            .context("keep-alive connections are https only")?;
        let tcp = TcpStream::connect_timeout(&self.addr, self.timeout)
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_read_timeout(Some(self.timeout))?;
        tcp.set_write_timeout(Some(self.timeout))?;
        let conn = ClientConnection::new(Arc::clone(cfg), name.clone())?;
        Ok(Connection {
            tls: rustls::StreamOwned::new(conn, tcp),
            host: self.addr.to_string(),
            timeout: self.timeout,
            max_response: self.max_response,
        })
    }
}

/// A kept-alive TLS connection: each answer is read by its `Content-Length` (the simulator
/// always sends one), so the next request can follow on the same connection.
pub struct Connection {
    tls: rustls::StreamOwned<ClientConnection, TcpStream>,
    host: String,
    timeout: Duration,
    max_response: usize,
}

impl Connection {
    /// GET without `Connection: close`; an error if the server closed the connection.
    pub fn get(&mut self, target: &str) -> Result<Reply> {
        let req = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.tls
            .write_all(req.as_bytes())
            .context("handshake or write")?;
        self.tls.flush()?;
        let raw = read_one(&mut self.tls, self.max_response, self.timeout)?;
        parse_reply(&raw, None)
    }
}

/// Reads one answer: the head, then `Content-Length` bytes of body.
fn read_one(r: &mut impl Read, max: usize, timeout: Duration) -> Result<Vec<u8>> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let len = parse_reply(&out[..end + 4], None)?
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .context("an answer without Content-Length")?;
            if out.len() >= end + 4 + len {
                out.truncate(end + 4 + len);
                return Ok(out);
            }
        }
        if start.elapsed() > timeout || out.len() > max {
            bail!("no complete answer within {timeout:?} and {max} bytes");
        }
        match r.read(&mut buf) {
            Ok(0) => bail!(
                "the server closed the connection ({} bytes read)",
                out.len()
            ),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e).context("reading the response"),
        }
    }
}

/// Writes the request (for https this first runs the handshake) and reads the answer.
fn exchange(
    s: &mut (impl Read + Write),
    request: &[u8],
    max: usize,
    timeout: Duration,
) -> Result<Vec<u8>> {
    s.write_all(request).context("handshake or write")?;
    s.flush()?;
    read_all(s, max, timeout)
}

/// Reads until the server closes (it does: this client sends `Connection: close`).
fn read_all(r: &mut impl Read, max: usize, timeout: Duration) -> Result<Vec<u8>> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if start.elapsed() > timeout {
            bail!("response not complete within {timeout:?}");
        }
        match r.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A peer closing without close_notify after a complete answer is fine for tests.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {
                return Ok(out)
            }
            Err(e) => return Err(e).context("reading the response"),
        }
        if out.len() > max {
            bail!("response larger than {max} bytes");
        }
    }
}

fn parse_reply(raw: &[u8], peer_cert: Option<Vec<u8>>) -> Result<Reply> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP head in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end]).context("head not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
        peer_cert,
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>> {
    Ok(ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?)
}

/// Accepts any server certificate but still checks handshake signatures, so the TLS session
/// itself is real.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
