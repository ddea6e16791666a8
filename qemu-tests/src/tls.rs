//! TLS material of one simulator run: the engine PKI and the two rustls server configurations
//! (the real one, and the one signed by an unrelated CA for the wrong-CA fault).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

use crate::ca::{self, CertificateAuthority, Leaf};
use crate::config::EngineKeyType;

const QEMU_CA_NAME: &str = "engine-sim QEMU CA";

/// Everything the servlets and the TLS listener need about keys and certificates.
pub struct Pki {
    pub ca: CertificateAuthority,
    /// Signs the QEMU certificates (`qemu-ca-certificate`), separate as on a real engine.
    pub qemu_ca: CertificateAuthority,
    /// Served as `engine-certificate`; its key is the engine SSH key.
    pub engine_cert_der: Vec<u8>,
    pub engine_key: rcgen::KeyPair,
    /// The unrelated CA behind the wrong-CA fault (tests trust it to see the switch happen).
    pub other_ca: CertificateAuthority,
    pub server: Arc<ServerConfig>,
    pub other_server: Arc<ServerConfig>,
}

impl Pki {
    /// `names` are the server certificate's SANs (DNS names or IP literals).
    pub fn new(
        state_dir: Option<&Path>,
        fqdn: &str,
        names: &[String],
        engine_key: EngineKeyType,
    ) -> Result<Pki> {
        let ca = match state_dir {
            Some(dir) => CertificateAuthority::load_or_create(dir, "engine-sim CA")?,
            None => CertificateAuthority::generate("engine-sim CA")?,
        };
        let qemu_ca = match state_dir {
            Some(dir) => CertificateAuthority::load_or_create(&dir.join("qemu"), QEMU_CA_NAME)?,
            None => CertificateAuthority::generate(QEMU_CA_NAME)?,
        };
        let engine_key = ca::engine_key(state_dir, engine_key)?;
        let engine = ca.issue_engine(fqdn, &engine_key)?;
        let other_ca = CertificateAuthority::generate("engine-sim other CA")?;
        let server = server_config(ca.issue_server(names)?)?;
        let other_server = server_config(other_ca.issue_server(names)?)?;
        Ok(Pki {
            engine_cert_der: engine.cert_der,
            engine_key,
            ca,
            qemu_ca,
            other_ca,
            server,
            other_server,
        })
    }

    /// The engine SSH key line with the given comment (`get-ssh-trust` uses `ovirt-engine`).
    pub fn engine_ssh_key(&self, alias: Option<&str>) -> String {
        ca::ssh_line(&self.engine_key, alias)
    }
}

/// TLS 1.2 and 1.3, ring only: the node binary must refuse < 1.2 itself, and offering 1.2 lets
/// its tests see that both versions work.
fn server_config(leaf: Leaf) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = vec![CertificateDer::from(leaf.cert_der)];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der));
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("server certificate")?;
    Ok(Arc::new(cfg))
}
