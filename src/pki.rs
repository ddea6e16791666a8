//! The host's key pairs, its certificate requests and the checks on what the engine signs
//! (docs/protocol-v2.md). Keys are generated here and never leave the host; private keys are
//! kept in a [`Secret`] so they cannot reach a log by accident.
//!
//! Installing the files (owners, modes, links) is a separate step; this module only makes and
//! checks material.

pub(crate) mod der;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData as _};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::secret::Secret;
use crate::trust::CaCert;
use crate::values::KeyType;

/// The `OU` the engine gives QEMU certificates (docs/ovirt-protocol.md §4.3).
pub const QEMU_UNIT: &str = "qemu";

/// What a key and its certificate are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Vdsm,
    Qemu,
}

/// A host private key. Debug never shows the key.
pub struct HostKey {
    key: KeyPair,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostKey({})", spki_sha256(&self.spki_der()))
    }
}

/// RSA-2048 for engines that need it: ring cannot generate RSA keys but signs with them, so
/// the `rsa` crate only generates the key (PKCS#8) and ring does every signature.
fn rsa_key() -> Result<KeyPair> {
    use rsa::pkcs8::EncodePrivateKey;
    let key =
        rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).context("generating an RSA-2048 key")?;
    let der = key.to_pkcs8_der().context("encoding the RSA key")?;
    let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_bytes());
    KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
        .context("loading the RSA key for signing")
}

impl HostKey {
    /// A fresh key of the configured type (`ovirt.reg.key`).
    pub fn generate(kind: KeyType) -> Result<HostKey> {
        crate::entropy::wait_until_ready();
        match kind {
            KeyType::Ecdsa => {
                let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .context("generating an ECDSA P-256 key")?;
                Ok(HostKey { key })
            }
            // ring cannot generate RSA keys; another generator would not fit the size budget yet.
            KeyType::Rsa => Ok(HostKey { key: rsa_key()? }),
        }
    }

    /// A key read back from its PKCS#8 PEM file (resume after a reboot: never re-key).
    pub fn from_pem(pem: &Secret) -> Result<HostKey> {
        let key = KeyPair::from_pem(pem.expose()).context("the stored host key does not parse")?;
        Ok(HostKey { key })
    }

    /// PKCS#8 PEM, for the key file only.
    pub fn private_pem(&self) -> Secret {
        Secret::new(self.key.serialize_pem())
    }

    /// DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        self.key.subject_public_key_info()
    }
}

/// A certificate signing request and the public key it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    pub pem: String,
    pub spki_der: Vec<u8>,
}

/// The CSR for `purpose`, named after the host's address. The engine forces its own subject
/// (`/O=<org>/CN=<address>[/OU=qemu]`); ours only helps whoever reads the request.
pub fn csr(key: &HostKey, address: &str, purpose: Purpose) -> Result<Csr> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, address);
    if purpose == Purpose::Qemu {
        dn.push(DnType::OrganizationalUnitName, QEMU_UNIT);
    }
    params.distinguished_name = dn;
    let request = params
        .serialize_request(&key.key)
        .context("building the certificate request")?;
    Ok(Csr {
        pem: request.pem().context("encoding the certificate request")?,
        spki_der: key.spki_der(),
    })
}

/// `sha256:<hex>` of one public key (DER SubjectPublicKeyInfo).
pub fn spki_sha256(spki_der: &[u8]) -> String {
    format!("sha256:{}", hex(spki_der_digest(&[spki_der]).as_ref()))
}

/// The enrolment fingerprint shown on the console and compared by the administrator: SHA-256
/// over the vdsm then the qemu public key, so neither key can be swapped on its own
/// (docs/protocol-v2.md §6).
pub fn enrollment_fingerprint(vdsm: &Csr, qemu: &Csr) -> String {
    let d = spki_der_digest(&[&vdsm.spki_der, &qemu.spki_der]);
    format!("sha256:{}", hex(d.as_ref()))
}

fn spki_der_digest(parts: &[&[u8]]) -> ring::digest::Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// When a certificate is valid, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// The moment `per_mille` of the lifetime has passed; the caller picks a jittered
    /// 700–900 for re-enrolment (docs/design.md §4).
    pub fn renew_at(&self, per_mille: u16) -> i64 {
        let span = i128::from((self.not_after - self.not_before).max(0));
        let part = span * i128::from(per_mille) / 1000;
        self.not_before
            .saturating_add(i64::try_from(part).unwrap_or(i64::MAX))
    }
}

/// A certificate that passed [`verify_issued`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub der: Vec<u8>,
    pub validity: Validity,
}

/// The validity of a certificate (DER), e.g. `notAfter` of an installed one.
pub fn validity(cert_der: &[u8]) -> Result<Validity> {
    let f = der::cert_fields(cert_der).context("reading the certificate")?;
    Ok(Validity {
        not_before: f.not_before,
        not_after: f.not_after,
    })
}

/// Checks an issued certificate before it is installed: it carries our public key, chains to
/// `ca`, names `host` (the address we registered: IP SAN or DNS SAN) and is valid at `now`.
pub fn verify_issued(
    cert_pem: &str,
    key: &HostKey,
    ca: &CaCert,
    host: &str,
    now: SystemTime,
) -> Result<IssuedCert> {
    let der = crate::trust::pem_certificate(cert_pem).context("the issued certificate")?;
    let fields = der::cert_fields(&der).context("reading the issued certificate")?;
    ensure!(
        fields.spki == key.spki_der().as_slice(),
        "the issued certificate is not for this host's key"
    );
    verify_chain_and_name(&der, ca, host, now)?;
    Ok(IssuedCert {
        validity: Validity {
            not_before: fields.not_before,
            not_after: fields.not_after,
        },
        der,
    })
}

/// rustls's own WebPKI verifier: the same chain, time and name rules as a TLS peer would
/// apply (the engine connects to vdsm as a TLS client, so serverAuth is what matters).
fn verify_chain_and_name(der: &[u8], ca: &CaCert, host: &str, now: SystemTime) -> Result<()> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der().to_vec()))
        .context("the CA certificate does not parse")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .context("building the certificate verifier")?;
    let name = server_name(host)?;
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
    verifier
        .verify_server_cert(&CertificateDer::from(der), &[], &name, &[], time)
        .map_err(|e| anyhow::anyhow!("the issued certificate does not verify for {host}: {e}"))?;
    Ok(())
}

fn server_name(host: &str) -> Result<ServerName<'static>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string())
        .map_err(|_| anyhow::anyhow!("{host:?} is neither an IP address nor a DNS name"))
}

#[cfg(test)]
mod tests;
