//! The proof that an enrolled host is manageable (docs/protocol-v2.md §8): connect to its
//! vdsm port with TLS, present the engine's client certificate, verify the host's certificate
//! against the engine CA and the host's name. Every step is bounded by one deadline.

use std::io::{ErrorKind, Read as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// Default bound of one check.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The engine side of the connection: the CA it trusts and its own certificate and key.
pub struct EngineIdentity<'a> {
    pub ca_der: &'a [u8],
    pub cert_der: &'a [u8],
    /// PKCS#8 DER.
    pub key_der: &'a [u8],
}

/// Ok when a mutual TLS session with `addr` is set up and closed cleanly, with the server
/// certificate valid for `host_name` (the address the host registered with).
pub fn check_vdsm(
    addr: SocketAddr,
    host_name: &str,
    id: &EngineIdentity,
    timeout: Duration,
) -> Result<()> {
    let name = ServerName::try_from(host_name.to_string())
        .with_context(|| format!("{host_name:?} is not a host name or address"))?;
    let mut conn = ClientConnection::new(client_config(id)?, name)?;
    let deadline = Instant::now() + timeout;
    let mut tcp = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to vdsm at {addr}"))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    while conn.is_handshaking() {
        past(deadline)?;
        conn.complete_io(&mut tcp)
            .context("TLS handshake with vdsm")?;
    }
    // With TLS 1.3 the server judges our certificate only after our Finished: its verdict
    // comes back as an alert or as its own close_notify, so wait for one of them.
    conn.send_close_notify();
    conn.complete_io(&mut tcp)
        .context("closing the TLS session")?;
    await_close(&mut conn, &mut tcp, deadline)
}

fn client_config(id: &EngineIdentity) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(id.ca_der.to_vec()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.to_vec()));
    let chain = vec![CertificateDer::from(id.cert_der.to_vec())];
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("engine client certificate")?;
    Ok(Arc::new(cfg))
}

/// Reads until the server's close_notify (ok) or an alert / reset (the server refused us).
fn await_close(conn: &mut ClientConnection, tcp: &mut TcpStream, deadline: Instant) -> Result<()> {
    let mut sink = [0u8; 1024];
    loop {
        past(deadline)?;
        match conn.read_tls(tcp) {
            Ok(0) => bail!("vdsm closed the connection without close_notify"),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading from vdsm"),
        }
        let state = conn
            .process_new_packets()
            .context("vdsm refused the session")?;
        if state.peer_has_closed() {
            return Ok(());
        }
        // Application data before the close is fine (a real vdsm may greet); drop it.
        while conn.reader().read(&mut sink).is_ok_and(|n| n > 0) {}
    }
}

fn past(deadline: Instant) -> Result<()> {
    if Instant::now() > deadline {
        bail!("vdsm check timed out");
    }
    Ok(())
}

/// The host side of [`check_vdsm`] for tests: a one-connection TLS listener on loopback that
/// presents `cert_der` with `key_pkcs8_der` and requires a client certificate issued by
/// `client_ca_der`, as vdsm does. The thread ends with the outcome of that one connection
/// (bounded: 10 s to be reached, 5 s to read).
pub fn stand_in_vdsm(
    cert_der: Vec<u8>,
    key_pkcs8_der: Vec<u8>,
    client_ca_der: Vec<u8>,
) -> (SocketAddr, std::thread::JoinHandle<Result<(), String>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(client_ca_der)).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8_der));
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![CertificateDer::from(cert_der)], key)
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = std::thread::spawn(move || serve_one(&listener, Arc::new(cfg)));
    (addr, serve)
}

fn serve_one(
    listener: &std::net::TcpListener,
    cfg: Arc<rustls::ServerConfig>,
) -> std::result::Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tcp = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e.to_string()),
        }
    };
    tcp.set_nonblocking(false).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut conn = rustls::ServerConnection::new(cfg).map_err(|e| e.to_string())?;
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    let mut buf = [0u8; 64];
    // Reading drives the handshake; Ok(0) is the engine's close_notify.
    let read = stream.read(&mut buf).map_err(|e| e.to_string());
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    read.map(|_| ())
}
