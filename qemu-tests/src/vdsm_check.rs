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
