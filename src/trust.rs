//! Trust bootstrap: get the engine CA, check it against the pin, and get the engine's SSH key.
//!
//! The CA is downloaded over a connection that cannot be verified yet (we do not have the CA),
//! so nothing is believed until its fingerprint matches `ovirt.reg.ca_pin=sha256:…` (SHA-256
//! of the DER certificate, several allowed for rollover) or the legacy
//! `management_server_fingerprint` (SHA-1). Without a pin the CA is trusted on first use only
//! when `ovirt.reg.insecure_tofu` is set; the caller then pins it in the store, and a later
//! boot refuses any other CA. From then on every request goes through a client that trusts
//! only this CA (http.rs).

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use log::{info, warn};

use crate::config::RegConfig;
use crate::http::{self, Client, Endpoint, Response, Timeouts, MAX_BODY};
use crate::paths;
use crate::protocol::{CA_SOURCES, SSH_KEY_SOURCES};
use crate::retry::{Class, Classify, GaveUp, Retrier};
use crate::store::{Persisted, Store};
use crate::values::{Sha1Fingerprint, Sha256Pin};

/// The comment that marks the engine's line in `authorized_keys` (the engine's default
/// `SSHKeyAlias`); only lines ending with it are ever replaced.
pub const ENGINE_KEY_COMMENT: &str = "ovirt-engine";
/// Largest `authorized_keys` we read back and rewrite.
const MAX_AUTHORIZED_KEYS: u64 = 1 << 20;

/// The engine CA certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCert {
    der: Vec<u8>,
}

impl fmt::Debug for CaCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaCert({})", self.sha256_pin())
    }
}

impl CaCert {
    /// Exactly one PEM `CERTIFICATE` block that parses as an X.509 trust anchor.
    pub fn from_pem(pem: &[u8]) -> Result<CaCert, http::Error> {
        let text = std::str::from_utf8(pem).map_err(|_| malformed("the CA is not PEM text"))?;
        let der = pem_certificate(text)?;
        CaCert::from_der(der)
    }

    pub fn from_der(der: Vec<u8>) -> Result<CaCert, http::Error> {
        // Parsing it as a trust anchor is the check rustls itself will make later.
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(der.clone().into())
            .map_err(|e| malformed(&format!("the CA certificate does not parse: {e}")))?;
        Ok(CaCert { der })
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM as the engine serves it (base64 wrapped at 76 columns).
    pub fn pem(&self) -> String {
        pem_encode(&self.der)
    }

    pub fn sha256_pin(&self) -> Sha256Pin {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Sha256Pin(out)
    }

    pub fn sha1(&self) -> Sha1Fingerprint {
        let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.der);
        let mut out = [0u8; 20];
        out.copy_from_slice(d.as_ref());
        Sha1Fingerprint(out)
    }
}

fn malformed(msg: &str) -> http::Error {
    http::Error::Malformed(msg.to_string())
}

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// One certificate as PEM, the way the engine writes it (base64 wrapped at 76 columns):
/// what is installed is always re-encoded from the DER that was checked, so no text the
/// engine sent around or after the block reaches a file.
pub fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("{PEM_BEGIN}\n");
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

/// The DER inside the one `CERTIFICATE` block of `text`. A chain (several blocks) is
/// refused: the engine sends each certificate alone (docs/protocol-v2.md §4), and which
/// block would be meant is a guess we do not make.
pub(crate) fn pem_certificate(text: &str) -> Result<Vec<u8>, http::Error> {
    const BEGIN: &str = PEM_BEGIN;
    const END: &str = PEM_END;
    match text.matches(BEGIN).count() {
        1 => {}
        0 => return Err(malformed("expected a PEM certificate, found none")),
        n => {
            return Err(malformed(&format!(
                "a chain of {n} PEM certificates: expected exactly one certificate"
            )))
        }
    }
    let start = text.find(BEGIN).map(|i| i + BEGIN.len()).unwrap_or(0);
    let len = text[start..]
        .find(END)
        .ok_or_else(|| malformed("PEM certificate without its END line"))?;
    let b64: String = text[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| malformed("PEM certificate with bad base64"))
}

/// What the CA may be checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    /// `ovirt.reg.ca_pin` (repeatable, for rollover).
    pub sha256: Vec<Sha256Pin>,
    /// Legacy `management_server_fingerprint`.
    pub sha1: Option<Sha1Fingerprint>,
    /// The CA pinned in the store by an earlier trust-on-first-use.
    pub stored: Option<Sha256Pin>,
    pub insecure_tofu: bool,
}

impl Pins {
    pub fn from_config(reg: &RegConfig, stored: Option<Sha256Pin>) -> Pins {
        Pins {
            sha256: reg.ca_pins.clone(),
            sha1: reg.ca_sha1.clone(),
            stored,
            insecure_tofu: reg.insecure_tofu,
        }
    }
}

/// Why the CA was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    Sha256(Sha256Pin),
    Sha1(Sha1Fingerprint),
    /// Matches the pin kept in the store from an earlier first use.
    Stored(Sha256Pin),
    /// Trusted on first use (`ovirt.reg.insecure_tofu`): the caller must store this pin.
    FirstUse(Sha256Pin),
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verified::Sha256(_) => f.write_str("matches ovirt.reg.ca_pin"),
            Verified::Sha1(_) => f.write_str("matches management_server_fingerprint (SHA-1)"),
            Verified::Stored(_) => f.write_str("matches the pin kept in the store"),
            Verified::FirstUse(_) => f.write_str("trusted on first use (ovirt.reg.insecure_tofu)"),
        }
    }
}

/// A CA we refuse. Always fatal: retrying cannot make a wrong CA right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustError {
    /// The engine served a CA that matches no pin: both its fingerprints and the pins.
    Mismatch {
        sha256: Sha256Pin,
        sha1: Sha1Fingerprint,
        expected: Vec<String>,
    },
    /// No pin and no opt-in to trust on first use.
    NoPin {
        sha256: Sha256Pin,
        sha1: Sha1Fingerprint,
    },
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::Mismatch {
                sha256,
                sha1,
                expected,
            } => write!(
                f,
                "the engine CA ({sha256}, SHA-1 {sha1}) matches none of the configured pins \
                 ({}): refusing to talk to this engine",
                expected.join(", ")
            ),
            TrustError::NoPin { sha256, sha1 } => write!(
                f,
                "no CA pin configured, refusing to trust the engine CA {sha256} (SHA-1 {sha1}). \
                 Check it against the engine's /etc/pki/ovirt-engine/ca.pem and add \
                 ovirt.reg.ca_pin={sha256} to the kernel command line \
                 (or set ovirt.reg.insecure_tofu to trust it on first use)"
            ),
        }
    }
}

impl std::error::Error for TrustError {}

/// Check `ca` against the pins. Explicit pins win over the stored one; either kind matching
/// is enough (a new SHA-256 pin next to a stale legacy SHA-1 one during rollover).
pub fn verify(ca: &CaCert, pins: &Pins) -> Result<Verified, TrustError> {
    let (sha256, sha1) = (ca.sha256_pin(), ca.sha1());
    let mut expected: Vec<String> = pins.sha256.iter().map(|p| p.to_string()).collect();
    expected.extend(pins.sha1.iter().map(|p| format!("SHA-1 {p}")));
    if !expected.is_empty() {
        if pins.sha256.contains(&sha256) {
            return Ok(Verified::Sha256(sha256));
        }
        if pins.sha1.as_ref() == Some(&sha1) {
            return Ok(Verified::Sha1(sha1));
        }
    } else if let Some(stored) = &pins.stored {
        if *stored == sha256 {
            return Ok(Verified::Stored(sha256));
        }
        expected.push(format!("{stored} (pinned in the store on first use)"));
    } else if pins.insecure_tofu {
        warn!("!!! INSECURE: trusting the engine CA {sha256} (SHA-1 {sha1}) on first use, as ovirt.reg.insecure_tofu asks; it is pinned from now on. Verify it and set ovirt.reg.ca_pin={sha256}");
        return Ok(Verified::FirstUse(sha256));
    } else {
        return Err(TrustError::NoPin { sha256, sha1 });
    }
    Err(TrustError::Mismatch {
        sha256,
        sha1,
        expected,
    })
}

/// A trust-bootstrap failure: the sources tried with what each answered, or a refused CA.
#[derive(Debug)]
pub enum Error {
    Fetch {
        what: &'static str,
        endpoint: String,
        tried: Vec<(&'static str, http::Error)>,
    },
    Trust(TrustError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Fetch {
                what,
                endpoint,
                tried,
            } => {
                write!(f, "cannot get the {what} from {endpoint}")?;
                for (source, e) in tried {
                    write!(f, "; {}: {e}", short_source(source))?;
                }
                Ok(())
            }
            Error::Trust(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl Classify for Error {
    /// Fatal only when every source failed fatally (e.g. all answered 404).
    fn class(&self) -> Class {
        match self {
            Error::Trust(_) => Class::Fatal,
            // Transient if any source was; then the longest hint any of them gave, so a
            // busy engine is not asked again sooner than it said.
            Error::Fetch { tried, .. } => tried
                .iter()
                .map(|(_, e)| e.class())
                .filter(|c| *c != Class::Fatal)
                .max_by_key(|c| match c {
                    Class::Transient { retry_after } => *retry_after,
                    Class::Fatal => None,
                })
                .unwrap_or(Class::Fatal),
        }
    }
}

/// `command=get-pki-trust` from the full URL, for messages.
fn short_source(source: &str) -> &str {
    source.rsplit(['&', '?']).next().unwrap_or(source)
}

/// Try `sources` in order until one answers something `parse` accepts. Stops early on a
/// network failure or a busy answer (408/429/5xx): the next source is on the same server,
/// and asking it at once would only add load to an engine that asked us to wait.
fn fetch_first<T>(
    client: &Client,
    what: &'static str,
    sources: &[&'static str],
    budget: std::time::Duration,
    parse: impl Fn(&Response) -> Result<T, http::Error>,
) -> Result<T, Error> {
    let mut tried = Vec::new();
    for source in sources {
        let result = client.get(source, budget, MAX_BODY).and_then(|r| parse(&r));
        match result {
            Ok(v) => return Ok(v),
            Err(e) => {
                let stop = matches!(
                    e,
                    http::Error::Connect(_)
                        | http::Error::Timeout(_)
                        | http::Error::Tls(_)
                        | http::Error::TlsIncompatible(_)
                        | http::Error::Certificate(_)
                        | http::Error::Status {
                            code: 408 | 429 | 500..=599,
                            ..
                        }
                );
                tried.push((*source, e));
                if stop {
                    break;
                }
            }
        }
    }
    Err(Error::Fetch {
        what,
        endpoint: client.endpoint().to_string(),
        tried,
    })
}

/// The CA, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trusted {
    pub ca: CaCert,
    pub how: Verified,
}

/// Download the engine CA without verifying the server and without trusting it: `setup`
/// shows its fingerprints to the administrator, who decides. Retries transient failures.
/// `client` must be a [`Client::for_ca_fetch`].
pub fn fetch_ca(client: &Client, retrier: &mut Retrier) -> Result<CaCert, GaveUp<Error>> {
    retrier.run("fetching the engine CA", |attempt| {
        fetch_ca_once(client, attempt.remaining)
    })
}

/// One try of every CA source, the first certificate that parses.
fn fetch_ca_once(client: &Client, budget: std::time::Duration) -> Result<CaCert, Error> {
    fetch_first(client, "engine CA", &CA_SOURCES, budget, |r| {
        CaCert::from_pem(&r.body)
    })
}

/// Download the engine CA without verifying the server, then check it against the pins
/// before anything else is sent. Retries transient failures; a refused CA is fatal.
pub fn establish(
    endpoint: &Endpoint,
    pins: &Pins,
    timeouts: Timeouts,
    retrier: &mut Retrier,
) -> Result<Trusted, GaveUp<Error>> {
    let client = Client::for_ca_fetch(endpoint.clone(), timeouts);
    establish_over(&client, pins, retrier)
}

/// [`establish`] over `client`, which must be a [`Client::for_ca_fetch`] (the worker keeps
/// one for the clock's `Date` and the CA download, so both share a connection).
pub fn establish_over(
    client: &Client,
    pins: &Pins,
    retrier: &mut Retrier,
) -> Result<Trusted, GaveUp<Error>> {
    let trusted = retrier.run("fetching the engine CA", |attempt| {
        let ca = fetch_ca_once(client, attempt.remaining)?;
        let how = verify(&ca, pins).map_err(Error::Trust)?;
        Ok(Trusted { ca, how })
    })?;
    info!(
        "engine CA {} trusted: {}",
        trusted.ca.sha256_pin(),
        trusted.how
    );
    Ok(trusted)
}

/// One OpenSSH public key line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    pub key_type: String,
    /// The base64 key blob.
    pub blob: String,
}

/// Key types an engine can have (RSA by default, ECDSA or Ed25519 on newer or test engines).
const SSH_KEY_TYPES: [&str; 5] = [
    "ssh-rsa",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
];

impl SshKey {
    /// Exactly one line `TYPE BASE64 [COMMENT]`, no options, whose blob decodes and names
    /// the same type.
    pub fn parse(text: &str) -> Result<SshKey, http::Error> {
        let line = text.strip_suffix('\n').unwrap_or(text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.len() > 16 * 1024 || line.chars().any(|c| c.is_control()) {
            return Err(malformed("expected exactly one SSH public key line"));
        }
        let mut fields = line.split_whitespace();
        let key_type = fields.next().unwrap_or_default();
        let blob = fields.next().unwrap_or_default();
        if !SSH_KEY_TYPES.contains(&key_type) {
            return Err(malformed("not an SSH public key of a known type"));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| malformed("SSH public key with bad base64"))?;
        check_blob(key_type, &raw).map_err(|why| {
            malformed(&format!(
                "not a valid {key_type} public key ({why}): expected the engine's key line"
            ))
        })?;
        Ok(SshKey {
            key_type: key_type.to_string(),
            blob: blob.to_string(),
        })
    }

    /// The `authorized_keys` line, always with our marker comment.
    pub fn line(&self) -> String {
        format!("{} {} {ENGINE_KEY_COMMENT}", self.key_type, self.blob)
    }
}

/// The blob must be exactly the fields of its type (RFC 4253 §6.6, RFC 5656 §3.1,
/// RFC 8709 §4), each of the right size, and nothing after them: a type name alone, or a
/// blob with trailing bytes, is not a key sshd could use.
fn check_blob(key_type: &str, raw: &[u8]) -> Result<(), &'static str> {
    let mut r = WireReader(raw);
    if r.string()? != key_type.as_bytes() {
        return Err("the blob names another type");
    }
    match key_type {
        "ssh-ed25519" => {
            if r.string()?.len() != 32 {
                return Err("an Ed25519 key is 32 bytes");
            }
        }
        "ssh-rsa" => {
            let e = r.mpint()?;
            let n_bits = mpint_bits(r.mpint()?);
            if e.is_empty() || !(1024..=16384).contains(&n_bits) {
                return Err("an RSA key needs an exponent and a 1024 to 16384 bit modulus");
            }
        }
        _ => {
            let curve = key_type.trim_start_matches("ecdsa-sha2-");
            let point_len = match curve {
                "nistp256" => 65,
                "nistp384" => 97,
                _ => 133,
            };
            let (name, point) = (r.string()?, r.string()?);
            if name != curve.as_bytes() || point.len() != point_len || point[0] != 4 {
                return Err("an ECDSA key is its curve name and an uncompressed point");
            }
        }
    }
    if !r.0.is_empty() {
        return Err("bytes after the key");
    }
    Ok(())
}

/// Reads SSH wire-format fields from a key blob.
struct WireReader<'a>(&'a [u8]);

impl<'a> WireReader<'a> {
    /// A `string`: a big-endian u32 length, then that many bytes.
    fn string(&mut self) -> Result<&'a [u8], &'static str> {
        let len = self.0.get(..4).ok_or("the blob ends early")?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let end = len.checked_add(4).ok_or("the blob ends early")?;
        let field = self.0.get(4..end).ok_or("the blob ends early")?;
        self.0 = &self.0[end..];
        Ok(field)
    }

    /// A positive `mpint`, without its sign byte.
    fn mpint(&mut self) -> Result<&'a [u8], &'static str> {
        let v = self.string()?;
        if v.first().is_some_and(|b| b & 0x80 != 0) {
            return Err("a negative number");
        }
        Ok(v.strip_prefix(&[0]).unwrap_or(v))
    }
}

/// The number of significant bits of a big-endian unsigned number.
fn mpint_bits(v: &[u8]) -> usize {
    match v.iter().position(|&b| b != 0) {
        Some(i) => (v.len() - i) * 8 - v[i].leading_zeros() as usize,
        None => 0,
    }
}

/// Download the engine's SSH public key over the pinned client.
pub fn fetch_ssh_key(client: &Client, retrier: &mut Retrier) -> Result<SshKey, GaveUp<Error>> {
    retrier.run("fetching the engine SSH key", |attempt| {
        fetch_first(
            client,
            "engine SSH key",
            &SSH_KEY_SOURCES,
            attempt.remaining,
            |r| SshKey::parse(r.text()?),
        )
    })
}

/// `authorized_keys` with the engine's key: every line ending in ` ovirt-engine` (an older
/// engine key) is replaced by `key`; all other lines are kept as they are, in order.
pub fn update_authorized_keys(existing: &str, key: &SshKey) -> String {
    let marker = format!(" {ENGINE_KEY_COMMENT}");
    let mut out = String::with_capacity(existing.len() + 512);
    for line in existing.lines() {
        if !line.trim_end().ends_with(&marker) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&key.line());
    out.push('\n');
    out
}

/// Install the key into root's `authorized_keys` (dir 0700, file 0600) and persist it. A
/// planted `/root/.ssh` link is an error: nothing is created or chmod-ed through it.
pub fn install_ssh_key(store: &Store, key: &SshKey) -> anyhow::Result<Persisted> {
    let fs = store.root().fs();
    let dir = Path::new(paths::ROOT_SSH_DIR);
    fs.create_dirs(dir, 0o700)?;
    // sshd refuses keys in a group- or world-writable directory.
    fs.set_mode(dir, 0o700)?;
    let file = Path::new(paths::ROOT_AUTHORIZED_KEYS);
    let existing = fs.read_text(file, MAX_AUTHORIZED_KEYS)?.unwrap_or_default();
    let text = update_authorized_keys(&existing, key);
    store.write_persisted(
        Path::new(paths::ROOT_AUTHORIZED_KEYS),
        text.as_bytes(),
        0o600,
    )
}

/// The pin an earlier trust-on-first-use left in the store, if any. A damaged pin file is
/// an error, not "no pin": that would silently reopen first use.
pub fn stored_pin(store: &Store) -> anyhow::Result<Option<Sha256Pin>> {
    let Some(text) = store.read_state(paths::STORE_CA_PIN)? else {
        return Ok(None);
    };
    let pin = text
        .trim()
        .parse::<Sha256Pin>()
        .map_err(|e| anyhow::anyhow!("{} in the store: {e}", paths::STORE_CA_PIN))?;
    Ok(Some(pin))
}

/// Keep the pin of a CA trusted on first use, so later boots refuse any other CA.
pub fn store_pin(store: &Store, pin: &Sha256Pin) -> anyhow::Result<()> {
    store.write_state(paths::STORE_CA_PIN, format!("{pin}\n").as_bytes(), 0o600)
}

#[cfg(test)]
mod tests;
