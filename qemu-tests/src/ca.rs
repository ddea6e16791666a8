//! The simulator's PKI: an engine CA, the HTTPS server certificate it signs, the engine
//! certificate (whose public key is also the engine SSH key, as `get-ssh-trust` derives it on a
//! real engine, docs/ovirt-protocol.md §3.2) and a second, unrelated CA for the wrong-CA fault.
//!
//! The engine key is RSA-2048 by default, as on a stock engine (its SSH key line is
//! `ssh-rsa …`), or ECDSA P-256 when asked: ring cannot generate RSA keys (docs/toolchain.md
//! §7), so the `rsa` crate makes it and ring signs with it. The CAs and the server certificate
//! are ECDSA P-256: quick to make, and the node must not care about their key type.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::EngineKeyType;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use ring::rand::SecureRandom as _;

const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const ENGINE_KEY_FILE: &str = "engine.key";

/// The alias the engine puts at the end of its SSH key line (`SSHKeyAlias`, default
/// `ovirt-engine`); the node replaces `authorized_keys` lines that end with it.
pub const SSH_KEY_ALIAS: &str = "ovirt-engine";

/// A CA that can sign. Its subject is fixed so a CA reloaded from disk rebuilds exactly the
/// issuer name that the saved certificate carries (rcgen cannot parse certificates without the
/// x509-parser feature, which we do not need otherwise).
pub struct CertificateAuthority {
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate with its private key (PKCS#8 DER), ready for rustls.
pub struct Leaf {
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

impl CertificateAuthority {
    /// A fresh CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<Self> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let params = ca_params(common_name)?;
        let der = params.self_signed(&key)?.der().to_vec();
        Ok(CertificateAuthority {
            der,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads `ca.pem` + `ca.key` from `dir`, or creates and saves them, so that a CA pin stays
    /// valid across simulator runs (QEMU images can carry it on their kernel command line).
    pub fn load_or_create(dir: &Path, common_name: &str) -> Result<Self> {
        if dir.join(CA_FILE).exists() {
            return Self::load(dir, common_name);
        }
        let ca = Self::generate(common_name)?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_private(&dir.join(CA_KEY_FILE), &ca.issuer.key().serialize_pem())?;
        fs::write(dir.join(CA_FILE), ca.pem())?;
        Ok(ca)
    }

    fn load(dir: &Path, common_name: &str) -> Result<Self> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let cert_path = dir.join(CA_FILE);
        let der = CertificateDer::from_pem_file(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?
            .to_vec();
        let key = read_key(&dir.join(CA_KEY_FILE))?;
        // Cheap consistency check without an X.509 parser: the certificate embeds the raw
        // public key of the key we are about to sign with.
        if !contains(&der, key.public_key_raw()) {
            bail!("{} does not belong to {}", CA_KEY_FILE, CA_FILE);
        }
        Ok(CertificateAuthority {
            der,
            issuer: Issuer::new(ca_params(common_name)?, key),
        })
    }

    /// The signing half, for host certificates (signing.rs).
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// The CA as the engine serves it (76-column PEM, docs/ovirt-protocol.md §3.2).
    pub fn pem(&self) -> String {
        engine_pem(&self.der)
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The CA key's public key as an OpenSSH line (pki-resource `OPENSSH-PUBKEY` of the CA).
    pub fn ssh_public_key(&self, alias: Option<&str>) -> String {
        ssh_line(self.issuer.key(), alias)
    }

    /// A TLS server certificate for the given DNS names / IP literals (first one is the CN).
    pub fn issue_server(&self, names: &[String]) -> Result<Leaf> {
        let key = KeyPair::generate()?;
        let mut params = leaf_params(names.to_vec(), names.first().map_or("", |s| s))?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }

    /// The engine's own certificate (`engine.cer`): the key the engine uses as a TLS client
    /// towards vdsm and whose public half is the engine SSH key.
    pub fn issue_engine(&self, fqdn: &str, key: &KeyPair) -> Result<Leaf> {
        let mut params = leaf_params(vec![fqdn.to_string()], fqdn)?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(key, &self.issuer)?;
        Ok(Leaf {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }
}

/// The engine key: loaded from / saved to `dir` when given, so the SSH key line stays the
/// same across runs (a kept key is used whatever its type); else a new key of type `kind`.
pub fn engine_key(dir: Option<&Path>, kind: EngineKeyType) -> Result<KeyPair> {
    let Some(dir) = dir else {
        return new_key(kind);
    };
    let path = dir.join(ENGINE_KEY_FILE);
    if path.exists() {
        return read_key(&path);
    }
    let key = new_key(kind)?;
    fs::create_dir_all(dir)?;
    write_private(&path, &key.serialize_pem())?;
    Ok(key)
}

fn new_key(kind: EngineKeyType) -> Result<KeyPair> {
    match kind {
        EngineKeyType::Ecdsa => Ok(KeyPair::generate()?),
        EngineKeyType::Rsa => rsa_key(),
    }
}

/// RSA-2048: made by the `rsa` crate (PKCS#8), signed with by ring through rcgen.
fn rsa_key() -> Result<KeyPair> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).context("generating RSA-2048")?;
    let der = key.to_pkcs8_der().context("encoding the RSA key")?;
    let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_bytes());
    KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
        .context("loading the RSA key for signing")
}

fn read_key(path: &Path) -> Result<KeyPair> {
    let pem = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    KeyPair::from_pem(&pem).with_context(|| format!("parsing {}", path.display()))
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn ca_params(common_name: &str) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, "engine-sim");
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(3650);
    p.serial_number = Some(random_serial()?);
    Ok(p)
}

/// Leaf defaults after the engine's enrolment script: back-dated one day against clock skew,
/// 1827 days validity (docs/ovirt-protocol.md §4.2).
fn leaf_params(sans: Vec<String>, common_name: &str) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(sans)?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, "engine-sim");
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(1827);
    p.serial_number = Some(random_serial()?);
    Ok(p)
}

pub(crate) fn random_serial() -> Result<SerialNumber> {
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    b[0] &= 0x7f; // keep the DER INTEGER positive
    Ok(SerialNumber::from_slice(&b))
}

/// PEM exactly as the engine's `PKIResources.formatPEM` writes it: base64 wrapped at 76
/// characters (commons-codec), every line and the footer ending in `\n`.
pub fn engine_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// OpenSSH public key line (RFC 4253 §6.6 `ssh-rsa`, RFC 5656 §3.1 `ecdsa-sha2-nistp256`),
/// with the alias as comment and the trailing newline the engine's
/// `OpenSSHUtils.getKeyString` emits.
pub fn ssh_line(key: &KeyPair, alias: Option<&str>) -> String {
    let (alg, fields) = if key.is_compatible(&rcgen::PKCS_RSA_SHA256) {
        // ring gives the RSA public key as DER `RSAPublicKey ::= SEQUENCE { n, e }`; a DER
        // INTEGER's content is already an SSH mpint (big-endian, a 0 byte before a high bit).
        let (n, e) = rsa_public_parts(key.public_key_raw()).unwrap_or_default();
        ("ssh-rsa", vec![e, n])
    } else {
        let point = key.public_key_raw().to_vec();
        ("ecdsa-sha2-nistp256", vec![b"nistp256".to_vec(), point])
    };
    let mut blob = Vec::new();
    for field in std::iter::once(alg.as_bytes()).chain(fields.iter().map(Vec::as_slice)) {
        blob.extend_from_slice(&(field.len() as u32).to_be_bytes());
        blob.extend_from_slice(field);
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
    match alias {
        Some(a) => format!("{alg} {b64} {a}\n"),
        None => format!("{alg} {b64}\n"),
    }
}

/// `(n, e)` of a DER `RSAPublicKey`.
fn rsa_public_parts(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (tag, seq, _) = der_item(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag_n, n, rest) = der_item(seq)?;
    let (tag_e, e, _) = der_item(rest)?;
    (tag_n == 2 && tag_e == 2).then(|| (n.to_vec(), e.to_vec()))
}

/// One DER item: its tag, its content and what follows it (short and long lengths).
fn der_item(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The pin format of `ovirt.reg.ca_pin=sha256:<hex>`: SHA-256 of the DER, lower-case hex.
pub fn sha256_hex(der: &[u8]) -> String {
    hex(
        ring::digest::digest(&ring::digest::SHA256, der).as_ref(),
        "",
    )
}

/// The legacy `management_server_fingerprint` format: SHA-1 of the DER, lower-case hex
/// bytes joined by `:` (vdsm-tool, docs/ovirt-protocol.md §3.4 step 4).
pub fn sha1_colon(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    hex(d.as_ref(), ":")
}

fn hex(bytes: &[u8], sep: &str) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(sep)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_wraps_at_76_and_ends_with_newline() {
        let der = vec![7u8; 200];
        let pem = engine_pem(&der);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 76);
        assert_eq!(*lines.last().unwrap(), "-----END CERTIFICATE-----");
        assert!(pem.ends_with("-----\n"));
    }

    #[test]
    fn fingerprints_have_the_pin_formats() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha1_colon(b"abc"),
            "a9:99:3e:36:47:06:81:6a:ba:3e:25:71:78:50:c2:6c:9c:d0:d8:9d"
        );
    }

    #[test]
    fn ssh_line_has_alias_and_decodable_blob() {
        let key = KeyPair::generate().unwrap();
        let line = ssh_line(&key, Some(SSH_KEY_ALIAS));
        let parts: Vec<&str> = line.trim_end().split(' ').collect();
        assert_eq!(parts[0], "ecdsa-sha2-nistp256");
        assert_eq!(parts[2], "ovirt-engine");
        assert!(line.ends_with(" ovirt-engine\n"));
        let blob = base64::engine::general_purpose::STANDARD
            .decode(parts[1])
            .unwrap();
        assert_eq!(&blob[..4], &19u32.to_be_bytes());
        assert_eq!(blob.len(), 4 + 19 + 4 + 8 + 4 + 65);
        assert!(!ssh_line(&key, None).contains("ovirt-engine"));
    }

    #[test]
    fn ca_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let a = CertificateAuthority::load_or_create(dir.path(), "t").unwrap();
        let b = CertificateAuthority::load_or_create(dir.path(), "t").unwrap();
        assert_eq!(a.der(), b.der());
        assert_eq!(
            a.pem(),
            fs::read_to_string(dir.path().join(CA_FILE)).unwrap()
        );
        let k1 = engine_key(Some(dir.path()), EngineKeyType::Ecdsa).unwrap();
        // A kept key is used whatever type a later run asks for.
        let k2 = engine_key(Some(dir.path()), EngineKeyType::Rsa).unwrap();
        assert_eq!(k1.public_key_raw(), k2.public_key_raw());
    }

    /// The fields of an SSH key blob (each a length-prefixed string).
    fn blob_fields(line: &str) -> Vec<Vec<u8>> {
        let b64 = line.split(' ').nth(1).unwrap();
        let mut blob = &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()[..];
        let mut out = Vec::new();
        while !blob.is_empty() {
            let len = u32::from_be_bytes(blob[..4].try_into().unwrap()) as usize;
            out.push(blob[4..4 + len].to_vec());
            blob = &blob[4 + len..];
        }
        out
    }

    #[test]
    fn rsa_engine_key_is_an_ssh_rsa_line_and_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let key = engine_key(Some(dir.path()), EngineKeyType::Rsa).unwrap();
        let line = ssh_line(&key, Some(SSH_KEY_ALIAS));
        assert!(
            line.starts_with("ssh-rsa ") && line.ends_with(" ovirt-engine\n"),
            "{line}"
        );
        let fields = blob_fields(line.trim_end());
        assert_eq!(fields.len(), 3, "type, e, n");
        assert_eq!(fields[0], b"ssh-rsa");
        assert_eq!(fields[1], [1, 0, 1], "e = 65537");
        let n = &fields[2];
        assert_eq!(
            (n.len(), n[0], n[1] & 0x80),
            (257, 0, 0x80),
            "a 2048-bit mpint"
        );
        let again = engine_key(Some(dir.path()), EngineKeyType::Rsa).unwrap();
        assert_eq!(ssh_line(&again, None), ssh_line(&key, None));
        // And it signs: the engine certificate is made with it.
        let ca = CertificateAuthority::generate("t").unwrap();
        ca.issue_engine("engine.test", &key).unwrap();
    }

    #[test]
    fn mismatched_ca_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::load_or_create(dir.path(), "t").unwrap();
        let other = KeyPair::generate().unwrap();
        fs::write(dir.path().join(CA_KEY_FILE), other.serialize_pem()).unwrap();
        assert!(CertificateAuthority::load_or_create(dir.path(), "t").is_err());
    }
}
