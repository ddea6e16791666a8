//! v2 enrolment (docs/protocol-v2.md) from a fake host's point of view: rcgen keys and CSRs,
//! submit / poll over verified TLS, approval by admin or token, rejection, renewal, and the
//! mTLS check against a tiny stand-in vdsm. Loopback only; every wait is bounded.

use std::time::Duration;

use qemu_tests::client::{Client, Reply};
use qemu_tests::vdsm_check::stand_in_vdsm;
use qemu_tests::{Handle, HostStatus, SimConfig, Simulator};
use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData as _};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use serde_json::Value;
use x509_parser::prelude::*;

const REG: &str = "/ovirt-engine/services/host-register";
const ID: &str = "4C4C4544-0042-3510-8052-B4C04F4E4B32";

/// The host side: its two keys and CSRs.
struct FakeHost {
    vdsm_key: KeyPair,
    qemu_key: KeyPair,
    vdsm_csr: String,
    qemu_csr: String,
}

impl FakeHost {
    fn new(address: &str) -> FakeHost {
        let vdsm_key = KeyPair::generate().unwrap();
        let qemu_key = KeyPair::generate().unwrap();
        let vdsm_csr = csr(&vdsm_key, address, None);
        let qemu_csr = csr(&qemu_key, address, Some("qemu"));
        FakeHost {
            vdsm_key,
            qemu_key,
            vdsm_csr,
            qemu_csr,
        }
    }

    /// `sha256:` over both SPKIs, as the node computes it.
    fn fingerprint(&self) -> String {
        let mut both = self.vdsm_key.subject_public_key_info();
        both.extend(self.qemu_key.subject_public_key_info());
        format!("sha256:{}", qemu_tests::ca::sha256_hex(&both))
    }

    fn body(&self) -> String {
        serde_json::json!({ "vdsm_csr": self.vdsm_csr, "qemu_csr": self.qemu_csr }).to_string()
    }
}

/// The subject the CSR asks for is deliberately not what the engine issues.
fn csr(key: &KeyPair, cn: &str, ou: Option<&str>) -> String {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "asked-for");
    if let Some(ou) = ou {
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, ou);
    }
    p.serialize_request(key).unwrap().pem().unwrap()
}

fn start(config: SimConfig) -> (Handle, Client) {
    let sim = Simulator::start(config).unwrap();
    let c = Client::https(sim.addr(), &sim.ca_pem()).unwrap();
    (sim, c)
}

fn register(c: &Client, id: &str, address: &str) {
    let r = c
        .get(&format!(
            "{REG}?version=1&command=register&uniqueId={id}&address={address}&vdsPort=54322"
        ))
        .unwrap();
    assert_eq!(r.status, 200);
}

fn submit(c: &Client, id: &str, body: &str, token: Option<&str>) -> Reply {
    let token = token.map_or(String::new(), |t| {
        format!("X-Ovirt-Enrollment-Token: {t}\r\n")
    });
    let req = format!(
        "POST {REG}?version=2&command=submit-csr&uniqueId={id} HTTP/1.1\r\nHost: engine\r\n\
         Content-Type: application/json\r\n{token}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    c.raw(req.as_bytes()).unwrap()
}

fn poll(c: &Client, id: &str) -> Reply {
    c.get(&format!(
        "{REG}?version=2&command=get-certificates&uniqueId={id}"
    ))
    .unwrap()
}

fn json(r: &Reply) -> Value {
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        r.text()
    );
    serde_json::from_slice(&r.body).unwrap()
}

fn der(pem: &Value) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_str().unwrap().as_bytes())
        .unwrap()
        .to_vec()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Subject, SAN, extensions, validity and issuer of one issued certificate.
fn check_cert(cert_der: &[u8], ca_der: &[u8], key: &KeyPair, address: &str, ou: Option<&str>) {
    let (_, cert) = X509Certificate::from_der(cert_der).unwrap();
    let (_, ca) = X509Certificate::from_der(ca_der).unwrap();
    cert.verify_signature(Some(ca.public_key())).unwrap();
    assert_eq!(
        cert.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
    let mut want = format!("O=engine-sim, CN={address}");
    if let Some(ou) = ou {
        want.push_str(&format!(", OU={ou}"));
    }
    assert_eq!(cert.subject().to_string(), want);
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let name = format!("{:?}", san.value.general_names);
    assert!(
        name.contains("IPAddress") || name.contains(address),
        "{name}"
    );
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(!bc.value.ca);
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.digital_signature() && ku.value.key_encipherment());
    assert!(!ku.value.key_cert_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap();
    assert!(eku.critical && eku.value.server_auth && eku.value.client_auth);
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    assert!((now_unix() - 86_400 - nb).abs() < 120, "back-dated one day");
    assert!((na - now_unix() - 1827 * 86_400).abs() < 120, "1827 days");
}

#[test]
fn manual_approval_signs_both_csrs() {
    let (sim, c) = start(SimConfig::default());
    let host = FakeHost::new("127.0.0.1");
    register(&c, ID, "127.0.0.1");
    let r = submit(&c, ID, &host.body(), None);
    assert_eq!(r.status, 202);
    assert_eq!(r.header("retry-after"), Some("5"));
    let v = json(&r);
    assert_eq!(v["status"], "pending");
    assert_eq!(v["fingerprint"], host.fingerprint().as_str());
    assert_eq!(poll(&c, ID).status, 202);
    // Re-submitting the same keys is harmless.
    assert_eq!(submit(&c, ID, &host.body(), None).status, 202);
    assert_eq!(sim.enrollment(ID).unwrap().submissions, 2);

    let a = c.post(&format!("/admin/hosts/{ID}/approve"), "").unwrap();
    assert_eq!(a.status, 200);
    let r = poll(&c, ID);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = json(&r);
    assert_eq!(v["status"], "approved");
    assert_eq!(v["ca"], sim.ca_pem().as_str());
    assert_eq!(v["qemu_ca"], sim.qemu_ca_pem().as_str());
    assert_ne!(sim.ca_pem(), sim.qemu_ca_pem());
    assert_eq!(v["vdsm"]["management_port"], 54322);
    assert_eq!(v["vdsm"]["ssl"], true);
    let (ca, qca) = (der(&v["ca"]), der(&v["qemu_ca"]));
    check_cert(
        &der(&v["vdsm_cert"]),
        &ca,
        &host.vdsm_key,
        "127.0.0.1",
        None,
    );
    check_cert(
        &der(&v["qemu_cert"]),
        &qca,
        &host.qemu_key,
        "127.0.0.1",
        Some("qemu"),
    );
    // Polling again returns the same certificates (nothing new is signed).
    assert_eq!(json(&poll(&c, ID))["vdsm_cert"], v["vdsm_cert"]);
    assert_eq!(sim.enrollment(ID).unwrap().signed, 1);
    let pki = c.get("/ovirt-engine/services/pki-resource?resource=qemu-ca-certificate");
    assert_eq!(pki.unwrap().text(), sim.qemu_ca_pem());
    let events: Vec<String> = sim.events().into_iter().filter_map(|e| e.detail).collect();
    assert!(events
        .iter()
        .any(|d| d.starts_with(&format!("csr {ID} sha256:"))));
    assert!(events
        .iter()
        .any(|d| d.starts_with(&format!("signed {ID}"))));
}

#[test]
fn dns_address_gets_a_dns_san() {
    let (sim, c) = start(SimConfig::default());
    let host = FakeHost::new("node1.example.test");
    register(&c, "dns-host", "node1.example.test");
    sim.approve("dns-host").unwrap();
    // Approved before the CSR arrived: signed at once.
    let r = submit(&c, "dns-host", &host.body(), None);
    assert_eq!(r.status, 200);
    let cert_der = der(&json(&r)["vdsm_cert"]);
    let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names = &san.value.general_names;
    assert_eq!(names.len(), 1);
    assert!(matches!(
        names[0],
        GeneralName::DNSName("node1.example.test")
    ));
}

#[test]
fn token_approves_once() {
    let (sim, c) = start(SimConfig::default());
    let (a, b) = (FakeHost::new("127.0.0.1"), FakeHost::new("127.0.0.2"));
    register(&c, "a", "127.0.0.1");
    register(&c, "b", "127.0.0.2");
    let t = c.post("/admin/tokens", r#"{"ttl_secs": 600}"#).unwrap();
    let token = json(&t)["token"].as_str().unwrap().to_string();
    let r = submit(&c, "a", &a.body(), Some(&token));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(sim.host("a").unwrap().status, HostStatus::Approved);
    assert!(sim.enrollment("a").unwrap().approved_by_token);
    let r = submit(&c, "b", &b.body(), Some(&token));
    assert_eq!(r.status, 403);
    assert_eq!(json(&r)["status"], "token_refused");
    assert_eq!(sim.host("b").unwrap().status, HostStatus::PendingApproval);
    // A crashed node re-submitting its approved keys with the used token still finishes.
    assert_eq!(submit(&c, "a", &a.body(), Some(&token)).status, 200);
    // Expired, bound-to-another and unknown tokens are refused too.
    let old = sim.create_token(Duration::ZERO, None).unwrap();
    assert_eq!(submit(&c, "b", &b.body(), Some(&old.token)).status, 403);
    let bound = sim
        .create_token(Duration::from_secs(60), Some("a"))
        .unwrap();
    assert_eq!(submit(&c, "b", &b.body(), Some(&bound.token)).status, 403);
    assert_eq!(
        submit(&c, "b", &b.body(), Some("x".repeat(43).as_str())).status,
        403
    );
    // The secret never reaches the event log.
    let log = serde_json::to_string(&sim.events()).unwrap();
    assert!(!log.contains(&token));
}

#[test]
fn rejection_is_final_with_reason() {
    let (sim, c) = start(SimConfig::default());
    let host = FakeHost::new("127.0.0.1");
    register(&c, ID, "127.0.0.1");
    assert_eq!(submit(&c, ID, &host.body(), None).status, 202);
    let r = c
        .post(
            &format!("/admin/hosts/{ID}/reject"),
            r#"{"reason":"unknown hardware"}"#,
        )
        .unwrap();
    assert_eq!(r.status, 200);
    for r in [poll(&c, ID), submit(&c, ID, &host.body(), None)] {
        assert_eq!(r.status, 403);
        let v = json(&r);
        assert_eq!(
            (v["status"].as_str(), v["reason"].as_str()),
            (Some("rejected"), Some("unknown hardware"))
        );
    }
    let token = sim.create_token(Duration::from_secs(60), None).unwrap();
    assert_eq!(submit(&c, ID, &host.body(), Some(&token.token)).status, 403);
    assert_eq!(sim.host(ID).unwrap().status, HostStatus::Rejected);
}

#[test]
fn errors_have_json_reasons() {
    let (_sim, c) = start(SimConfig::default());
    let host = FakeHost::new("127.0.0.1");
    let r = submit(&c, "nobody", &host.body(), None);
    assert_eq!(
        (r.status, json(&r)["status"].as_str()),
        (404, Some("unknown_host"))
    );
    register(&c, ID, "127.0.0.1");
    let r = poll(&c, ID);
    assert_eq!(
        (r.status, json(&r)["status"].as_str()),
        (404, Some("no_enrollment"))
    );
    let bad = serde_json::json!({"vdsm_csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "qemu_csr": host.qemu_csr});
    let r = submit(&c, ID, &bad.to_string(), None);
    assert_eq!(r.status, 400);
    assert!(json(&r)["reason"]
        .as_str()
        .unwrap()
        .starts_with("vdsm_csr:"));
    assert_eq!(submit(&c, ID, "{", None).status, 400);
    assert_eq!(submit(&c, "", &host.body(), None).status, 400);
    let get = c
        .get(&format!("{REG}?version=2&command=submit-csr&uniqueId={ID}"))
        .unwrap();
    assert_eq!(get.status, 405);
    let plain = c
        .post(
            &format!("{REG}?version=2&command=submit-csr&uniqueId={ID}"),
            &host.body(),
        )
        .unwrap();
    assert_eq!(plain.status, 415);
    let unknown = c.get(&format!("{REG}?version=2&command=fly")).unwrap();
    assert_eq!(unknown.status, 400);
    let v1_under_v2 = c
        .get(&format!("{REG}?version=2&command=get-pki-trust"))
        .unwrap();
    assert_eq!(v1_under_v2.status, 200);
    let huge = format!(r#"{{"vdsm_csr":"{}","qemu_csr":""}}"#, "A".repeat(20_000));
    assert_eq!(submit(&c, ID, &huge, None).status, 400);
}

#[test]
fn stock_engine_refuses_v2() {
    let config = SimConfig {
        protocol_version: 1,
        ..SimConfig::default()
    };
    let (_sim, c) = start(config);
    register(&c, ID, "127.0.0.1");
    // The real servlet implements only doGet: a POST is 405 before any version check.
    let r = submit(&c, ID, &FakeHost::new("127.0.0.1").body(), None);
    assert_eq!(r.status, 405);
    let r = poll(&c, ID);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Invalid registration protocol version 2"));
}

#[test]
fn renewal_same_keys_is_signed_new_keys_wait() {
    let (sim, c) = start(SimConfig::default());
    let host = FakeHost::new("127.0.0.1");
    register(&c, ID, "127.0.0.1");
    sim.approve(ID).unwrap();
    let s = c.post(
        "/admin/settings",
        r#"{"cert_lifetime_secs": 600, "retry_after_secs": 1}"#,
    );
    assert_eq!(s.unwrap().status, 200);
    let first = json(&submit(&c, ID, &host.body(), None));
    let first_der = der(&first["vdsm_cert"]);
    let (_, cert) = X509Certificate::from_der(&first_der).unwrap();
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(
        (655..=665).contains(&lifetime),
        "600 s + a tenth back-dated: {lifetime}"
    );
    let again = json(&submit(&c, ID, &host.body(), None));
    assert_ne!(again["vdsm_cert"], first["vdsm_cert"], "renewed");
    assert_eq!(sim.enrollment(ID).unwrap().signed, 2);
    let rekeyed = FakeHost::new("127.0.0.1");
    let r = submit(&c, ID, &rekeyed.body(), None);
    assert_eq!((r.status, r.header("retry-after")), (202, Some("1")));
    assert_eq!(sim.host(ID).unwrap().status, HostStatus::PendingApproval);
    sim.approve(ID).unwrap();
    let v = json(&poll(&c, ID));
    check_key(&der(&v["vdsm_cert"]), &rekeyed.vdsm_key);
}

fn check_key(cert_der: &[u8], key: &KeyPair) {
    let (_, cert) = X509Certificate::from_der(cert_der).unwrap();
    assert_eq!(
        cert.public_key().raw,
        key.subject_public_key_info().as_slice()
    );
}

#[test]
fn engine_reaches_the_enrolled_host_over_mtls() {
    let (sim, c) = start(SimConfig::default());
    let host = FakeHost::new("127.0.0.1");
    register(&c, ID, "127.0.0.1");
    let token = sim.create_token(Duration::from_secs(60), Some(ID)).unwrap();
    let v = json(&submit(&c, ID, &host.body(), Some(&token.token)));
    let cert = der(&v["vdsm_cert"]);
    let ca = der(&v["ca"]);

    let (addr, vdsm) = stand_in_vdsm(cert.clone(), host.vdsm_key.serialize_der(), ca.clone());
    assert_eq!(sim.check_vdsm(ID, Some(addr)), Ok(()));
    assert_eq!(vdsm.join().unwrap(), Ok(()));

    // Same, through the admin API.
    let (addr, vdsm) = stand_in_vdsm(cert.clone(), host.vdsm_key.serialize_der(), ca.clone());
    let body = format!(r#"{{"connect":"{addr}"}}"#);
    let r = c
        .post(&format!("/admin/hosts/{ID}/check-vdsm"), &body)
        .unwrap();
    assert_eq!(json(&r)["ok"], true, "{}", r.text());
    vdsm.join().unwrap().unwrap();

    // A host serving a certificate the engine CA did not sign fails the check.
    let stranger = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&host.vdsm_key)
        .unwrap();
    let (addr, vdsm) = stand_in_vdsm(
        stranger.der().to_vec(),
        host.vdsm_key.serialize_der(),
        ca.clone(),
    );
    let err = sim.check_vdsm(ID, Some(addr)).unwrap_err();
    assert!(err.contains("TLS handshake"), "{err}");
    let _ = vdsm.join();

    // A host that does not trust the engine's CA refuses the engine's client certificate.
    let other = der(&serde_json::Value::String(sim.other_ca_pem()));
    let (addr, vdsm) = stand_in_vdsm(cert, host.vdsm_key.serialize_der(), other);
    assert!(sim.check_vdsm(ID, Some(addr)).is_err());
    assert!(vdsm.join().unwrap().is_err());
    let log: Vec<String> = sim.events().into_iter().filter_map(|e| e.detail).collect();
    assert!(log.iter().any(|d| d == &format!("check-vdsm {ID} ok")));
}

/// The engine's "add host" (docs/protocol-v2.md §10): the command line to run on the host and
/// a token bound to its address, for the command's stdin; a host registered from another
/// address cannot use it.
#[test]
fn add_host_mints_an_address_bound_token_and_the_command() {
    let (sim, c) = start(SimConfig::default());
    let r = c
        .post("/admin/hosts/add", r#"{"address": "127.0.0.2"}"#)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = json(&r);
    let token = v["stdin"].as_str().unwrap().to_string();
    let expected = format!(
        "ovirt-node-reg bootstrap --engine {} --ca-pin sha256:{} --token-file -",
        sim.addr(),
        sim.ca_sha256()
    );
    assert_eq!(v["command"], expected.as_str());
    assert!(!v["command"].as_str().unwrap().contains(&token));
    let (a, b) = (FakeHost::new("127.0.0.1"), FakeHost::new("127.0.0.2"));
    register(&c, "a", "127.0.0.1");
    register(&c, "b", "127.0.0.2");
    assert_eq!(submit(&c, "a", &a.body(), Some(&token)).status, 403);
    assert_eq!(submit(&c, "b", &b.body(), Some(&token)).status, 200);
    assert!(sim.enrollment("b").unwrap().approved_by_token);
    let r = c.post("/admin/hosts/add", "{}").unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("address"), "{}", r.text());
}
