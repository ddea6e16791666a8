use std::time::{Duration, SystemTime};

use qemu_tests::ca::CertificateAuthority;
use qemu_tests::signing::{self, HostCsr, Profile};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn key() -> HostKey {
    HostKey::generate(KeyType::Ecdsa).unwrap()
}

/// Signs `csr` the way the engine (simulator) does.
fn sign(ca: &CertificateAuthority, csr: &Csr, address: &str, lifetime: Duration) -> String {
    let parsed = HostCsr::parse(&csr.pem).unwrap();
    let profile = Profile {
        organization: "oVirt",
        address,
        unit: None,
        lifetime,
    };
    qemu_tests::ca::engine_pem(&signing::sign(ca, &parsed, &profile).unwrap())
}

fn ca_cert(ca: &CertificateAuthority) -> CaCert {
    CaCert::from_der(ca.der().to_vec()).unwrap()
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn rsa_2048_keys_round_trip_and_sign_csrs() {
    let k = HostKey::generate(KeyType::Rsa).unwrap();
    let pem = k.private_pem();
    assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
    let back = HostKey::from_pem(&pem).unwrap();
    assert_eq!(back.spki_der(), k.spki_der(), "the same key after a reboot");
    // A 2048-bit modulus makes the SubjectPublicKeyInfo about 294 bytes (P-256: 91).
    assert!(k.spki_der().len() > 280, "{}", k.spki_der().len());
    let csr = csr(&k, "node1.example.com", Purpose::Vdsm).unwrap();
    assert!(csr.pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
}

#[test]
fn key_round_trips_and_never_prints() {
    let k = key();
    let pem = k.private_pem();
    assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(format!("{pem:?}"), crate::secret::REDACTED);
    let again = HostKey::from_pem(&pem).unwrap();
    assert_eq!(again.spki_der(), k.spki_der());
    let shown = format!("{k:?}");
    assert!(shown.starts_with("HostKey(sha256:") && !shown.contains("PRIVATE"));
    assert!(HostKey::from_pem(&Secret::new("not a key")).is_err());
}

#[test]
fn csrs_parse_on_the_engine_side_with_the_same_fingerprint() {
    let (vk, qk) = (key(), key());
    let v = csr(&vk, "192.0.2.7", Purpose::Vdsm).unwrap();
    let q = csr(&qk, "192.0.2.7", Purpose::Qemu).unwrap();
    assert!(v.pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    let (pv, pq) = (
        HostCsr::parse(&v.pem).unwrap(),
        HostCsr::parse(&q.pem).unwrap(),
    );
    assert_eq!(pv.spki, vk.spki_der());
    assert_eq!(
        enrollment_fingerprint(&v, &q),
        signing::enrollment_fingerprint(&pv, &pq)
    );
    let fp = spki_sha256(&v.spki_der);
    assert_eq!(fp.len(), "sha256:".len() + 64);
    assert_ne!(
        enrollment_fingerprint(&v, &q),
        enrollment_fingerprint(&q, &v)
    );
}

#[test]
fn issued_certificate_verifies_for_ip_and_dns_names() {
    let ca = CertificateAuthority::generate("test CA").unwrap();
    let k = key();
    for host in ["192.0.2.7", "node1.example.test", "2001:db8::7"] {
        let pem = sign(
            &ca,
            &csr(&k, host, Purpose::Vdsm).unwrap(),
            host,
            1827 * DAY,
        );
        let issued = verify_issued(&pem, &k, &ca_cert(&ca), host, SystemTime::now()).unwrap();
        let v = issued.validity;
        assert!((now_unix() - 86_400 - v.not_before).abs() < 120, "{v:?}");
        assert!(
            (v.not_after - now_unix() - 1827 * 86_400).abs() < 120,
            "{v:?}"
        );
        assert_eq!(validity(&issued.der).unwrap(), v);
    }
}

#[test]
fn wrong_key_ca_name_or_time_is_refused() {
    let ca = CertificateAuthority::generate("test CA").unwrap();
    let other = CertificateAuthority::generate("other CA").unwrap();
    let k = key();
    let host = "192.0.2.7";
    let pem = sign(&ca, &csr(&k, host, Purpose::Vdsm).unwrap(), host, 30 * DAY);
    let now = SystemTime::now();
    let err = |r: Result<IssuedCert>| format!("{:#}", r.unwrap_err());
    assert!(err(verify_issued(&pem, &key(), &ca_cert(&ca), host, now)).contains("key"));
    assert!(err(verify_issued(&pem, &k, &ca_cert(&other), host, now)).contains("verify"));
    assert!(verify_issued(&pem, &k, &ca_cert(&ca), "192.0.2.8", now).is_err());
    assert!(verify_issued(&pem, &k, &ca_cert(&ca), "node1.example.test", now).is_err());
    assert!(verify_issued(&pem, &k, &ca_cert(&ca), host, now + 31 * DAY).is_err());
    assert!(verify_issued(&pem, &k, &ca_cert(&ca), host, now - 2 * DAY).is_err());
    assert!(verify_issued("garbage", &k, &ca_cert(&ca), host, now).is_err());
    let two = format!("{pem}{pem}");
    assert!(verify_issued(&two, &k, &ca_cert(&ca), host, now).is_err());
    assert!(verify_issued(&pem, &k, &ca_cert(&ca), "bad name!", now).is_err());
}

#[test]
fn renewal_point_is_a_fraction_of_the_lifetime() {
    let v = Validity {
        not_before: 1_000,
        not_after: 11_000,
    };
    assert_eq!(v.renew_at(0), 1_000);
    assert_eq!(v.renew_at(700), 8_000);
    assert_eq!(v.renew_at(900), 10_000);
    assert_eq!(v.renew_at(1000), 11_000);
    let backwards = Validity {
        not_before: 5,
        not_after: 1,
    };
    assert_eq!(backwards.renew_at(800), 5);
}

#[test]
fn validity_of_garbage_is_an_error() {
    assert!(validity(b"").is_err());
    assert!(validity(&[0x30, 0x82, 0xff, 0xff]).is_err());
}
