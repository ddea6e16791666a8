//! Host certificates as the engine's `pki-enroll-request.sh` issues them (docs/ovirt-protocol.md
//! §4.2, §4.3; docs/protocol-v2.md §5): the subject is forced to `/O=<org>/CN=<address>`
//! (plus `/OU=qemu` for QEMU) whatever the CSR says, the SAN follows `CertificateUtils`, the
//! start is back-dated and the extensions are those of `cert.template`.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, CustomExtension, DnType, IsCa,
    KeyUsagePurpose, PublicKeyData as _, SanType,
};

use crate::ca::{self, CertificateAuthority};

/// A CSR PEM larger than this is refused before parsing (docs/protocol-v2.md §7).
pub const MAX_CSR_PEM: usize = 16 * 1024;
/// The engine back-dates by one day against clock skew.
const BACKDATE: Duration = Duration::from_secs(86_400);
/// `extendedKeyUsage` = serverAuth, clientAuth (SEQUENCE of two OIDs). Written by hand because
/// rcgen marks EKU non-critical and `cert.template` says `critical`.
const EKU_OID: &[u64] = &[2, 5, 29, 37];
const EKU_SERVER_CLIENT: &[u8] = &[
    0x30, 0x14, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01, 0x06, 0x08, 0x2b, 0x06,
    0x01, 0x05, 0x05, 0x07, 0x03, 0x02,
];

/// A parsed CSR whose self-signature checked out (proof the submitter holds the key).
#[derive(Clone)]
pub struct HostCsr {
    csr: CertificateSigningRequestParams,
    /// DER SubjectPublicKeyInfo: what the fingerprint covers.
    pub spki: Vec<u8>,
}

impl HostCsr {
    pub fn parse(pem: &str) -> Result<HostCsr, String> {
        if pem.len() > MAX_CSR_PEM {
            return Err(format!("CSR is over {MAX_CSR_PEM} bytes"));
        }
        let csr = CertificateSigningRequestParams::from_pem(pem)
            .map_err(|e| format!("unusable CSR: {e}"))?;
        let spki = csr.public_key.subject_public_key_info();
        Ok(HostCsr { csr, spki })
    }
}

/// `sha256:<hex>` over the vdsm SPKI then the qemu SPKI: one value for both keys, so the
/// qemu key cannot be swapped under an approved vdsm key (docs/protocol-v2.md §6).
pub fn enrollment_fingerprint(vdsm: &HostCsr, qemu: &HostCsr) -> String {
    let mut both = vdsm.spki.clone();
    both.extend_from_slice(&qemu.spki);
    format!("sha256:{}", ca::sha256_hex(&both))
}

/// What the engine puts into a host certificate besides the key.
pub struct Profile<'a> {
    pub organization: &'a str,
    /// The address the host registered with: CN and SAN.
    pub address: &'a str,
    /// `Some("qemu")` for the QEMU certificate.
    pub unit: Option<&'a str>,
    pub lifetime: Duration,
}

/// Signs `csr` with `ca` under `profile`; only the CSR's public key is used. DER out.
pub fn sign(ca: &CertificateAuthority, csr: &HostCsr, profile: &Profile) -> Result<Vec<u8>> {
    let forced = CertificateSigningRequestParams {
        params: host_params(profile)?,
        public_key: csr.csr.public_key.clone(),
    };
    Ok(forced.signed_by(ca.issuer())?.der().to_vec())
}

fn host_params(profile: &Profile) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, profile.organization);
    p.distinguished_name
        .push(DnType::CommonName, profile.address);
    if let Some(unit) = profile.unit {
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, unit);
    }
    p.subject_alt_names = vec![san(profile.address)?];
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let mut eku = CustomExtension::from_oid_content(EKU_OID, EKU_SERVER_CLIENT.to_vec());
    eku.set_criticality(true);
    p.custom_extensions = vec![eku];
    p.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - backdate(profile.lifetime);
    p.not_after = now + profile.lifetime;
    p.serial_number = Some(ca::random_serial()?);
    Ok(p)
}

/// One day, as the engine does; for test lifetimes under ten days a tenth of the lifetime,
/// so that "70–90 % of the lifetime" still lies in the future.
fn backdate(lifetime: Duration) -> Duration {
    if lifetime < BACKDATE * 10 {
        lifetime / 10
    } else {
        BACKDATE
    }
}

/// `CertificateUtils`: `IP:` for an IPv4/IPv6 literal, else `DNS:`.
fn san(address: &str) -> Result<SanType> {
    Ok(match address.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(address.try_into()?),
    })
}
