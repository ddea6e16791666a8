//! Every fault switch is observable from a plain client, and set/cleared through both the
//! library handle and the admin API. Loopback only; every wait is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use qemu_tests::client::{Client, Reply};
use qemu_tests::{EventKind, FaultKind, FaultSpec, Handle, SimConfig, Simulator};
use rustls::pki_types::{pem::PemObject, CertificateDer};

const VERSION: &str = "/ovirt-engine/services/host-register?version=1&command=get-version";
const PKI_TRUST: &str = "/ovirt-engine/services/host-register?version=1&command=get-pki-trust";

fn start() -> (Handle, Client) {
    start_with(SimConfig::default())
}

fn start_with(config: SimConfig) -> (Handle, Client) {
    let sim = Simulator::start(config).expect("simulator starts");
    let client = Client::https(sim.addr(), &sim.ca_pem()).unwrap();
    (sim, client)
}

fn fault(spec: &str) -> FaultSpec {
    spec.parse().unwrap()
}

/// Polls `f` every 20 ms until it is true or `limit` passes.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn refused(addr: SocketAddr) -> bool {
    matches!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[test]
fn refuse_closes_the_port_for_a_while() {
    let (sim, c) = start();
    sim.set_fault(fault("refuse:secs=1"));
    let start = Instant::now();
    assert!(eventually(Duration::from_secs(1), || refused(sim.addr())));
    assert!(eventually(Duration::from_secs(5), || c
        .get(VERSION)
        .is_ok()));
    assert!(start.elapsed() >= Duration::from_millis(900));
    let details: Vec<String> = sim
        .events()
        .into_iter()
        .filter(|e| e.kind == EventKind::Fault)
        .filter_map(|e| e.detail)
        .collect();
    assert!(
        details.iter().any(|d| d.contains("listener closed")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("listener reopened")),
        "{details:?}"
    );
}

#[test]
fn status_503_with_retry_after_for_k_requests() {
    let (sim, c) = start();
    sim.set_fault(fault("status:status=503,retry_after=2,count=2"));
    for _ in 0..2 {
        let r = c.get(VERSION).unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("2"));
    }
    assert_eq!(c.get(VERSION).unwrap().status, 200);
    let faults: Vec<Option<String>> = sim.requests().into_iter().map(|e| e.fault).collect();
    assert_eq!(
        faults,
        [Some("status:503".into()), Some("status:503".into()), None]
    );
}

#[test]
fn status_500_only_for_one_command() {
    let (sim, c) = start();
    sim.set_fault(fault("status:status=500,command=register"));
    assert_eq!(c.get(VERSION).unwrap().status, 200);
    let reg = "/ovirt-engine/services/host-register?version=1&command=register&uniqueId=a";
    let r = c.get(reg).unwrap();
    assert_eq!((r.status, r.header("retry-after")), (500, None));
    assert!(sim.host("a").is_none(), "a failed answer registers nothing");
    assert_eq!(c.get(reg).unwrap().status, 500, "no count: until cleared");
    sim.clear_faults();
    assert_eq!(c.get(reg).unwrap().status, 200);
}

#[test]
fn admin_api_is_never_faulted() {
    let (_sim, c) = start();
    assert_eq!(
        c.post("/admin/faults", "status:status=503").unwrap().status,
        200
    );
    assert_eq!(c.get(VERSION).unwrap().status, 503);
    assert_eq!(c.get("/admin/hosts").unwrap().status, 200);
    assert_eq!(c.send("DELETE", "/admin/faults", b"").unwrap().status, 200);
    assert_eq!(c.get(VERSION).unwrap().status, 200);
}

#[test]
fn stall_holds_the_answer() {
    let (sim, c) = start();
    sim.set_fault(fault("stall:secs=1,count=2"));
    let impatient = c.clone().timeout(Duration::from_millis(200));
    assert!(impatient.get(VERSION).is_err());
    let t = Instant::now();
    let r = c.get(VERSION).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"2"[..]));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert!(sim.active_faults().is_empty());
    assert!(eventually(Duration::from_secs(3), || {
        sim.requests()
            .iter()
            .filter(|e| e.fault.as_deref() == Some("stall"))
            .count()
            == 2
    }));
}

#[test]
fn stop_does_not_wait_for_a_stall() {
    let (sim, c) = start();
    sim.set_fault(fault("stall:secs=30"));
    let client = std::thread::spawn(move || c.timeout(Duration::from_secs(5)).get(VERSION));
    let stalling = || {
        sim.events().iter().any(|e| {
            e.detail
                .as_deref()
                .is_some_and(|d| d.starts_with("stalling"))
        })
    };
    assert!(eventually(Duration::from_secs(3), stalling));
    let t = Instant::now();
    sim.stop();
    let r = client.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // Stopped mid-stall, the request is still answered normally.
    assert_eq!(r.unwrap().status, 200);
}

#[test]
fn oversized_body_keeps_status_and_type() {
    let (sim, c) = start();
    sim.set_fault(fault("oversized:bytes=200000,count=2"));
    let capped = c.clone().max_response(64 * 1024);
    let err = capped.get(PKI_TRUST).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    let r: Reply = c.get(PKI_TRUST).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-x509-ca-cert"));
    assert_eq!(r.header("content-length"), Some("200000"));
    assert_eq!(r.body.len(), 200_000);
}

#[test]
fn malformed_bodies_do_not_parse() {
    let (sim, c) = start();
    sim.set_fault(fault("malformed:count=2"));
    let pem = c.get(PKI_TRUST).unwrap();
    assert_eq!(pem.status, 200);
    assert!(pem.text().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(CertificateDer::from_pem_slice(&pem.body).is_err());
    let ssh = c
        .get("/ovirt-engine/services/host-register?version=1&command=get-ssh-trust")
        .unwrap();
    assert_eq!(ssh.header("content-type"), Some("text/plain"));
    assert!(std::str::from_utf8(&ssh.body).is_err());
    assert_eq!(c.get(PKI_TRUST).unwrap().text(), sim.ca_pem());
}

#[test]
fn wrong_ca_is_refused_by_a_pinned_client() {
    let (sim, c) = start();
    sim.set_fault(fault("wrong_ca:count=2"));
    // A bare TCP probe (a harness waiting for the port) does not use up the count.
    drop(std::net::TcpStream::connect(sim.addr()).unwrap());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sim.active_faults()[0].count, Some(2));
    let err = c.get(PKI_TRUST).unwrap_err();
    assert!(format!("{err:#}").contains("UnknownIssuer"), "{err:#}");
    // A client that trusts the other CA sees the switch happen.
    let other = Client::https(sim.addr(), &sim.other_ca_pem()).unwrap();
    let r = other.get(VERSION).unwrap();
    assert_eq!(r.status, 200);
    // Back to the real certificate after `count` connections.
    assert_eq!(c.get(VERSION).unwrap().status, 200);
    assert!(other.get(VERSION).is_err());
    // The server logs the handshake failure after the client has given up: poll.
    let tls_error = || {
        sim.events()
            .iter()
            .any(|e| e.kind == EventKind::TlsError && e.fault.as_deref() == Some("wrong_ca"))
    };
    assert!(eventually(Duration::from_secs(3), tls_error));
    let requests = sim.requests();
    assert!(requests.iter().all(|e| e.command() == Some("get-version")));
}

#[test]
fn wrong_ca_certificate_is_what_an_insecure_client_sees() {
    let (sim, _) = start();
    let insecure = Client::https_insecure(sim.addr()).unwrap();
    let good = insecure.get(PKI_TRUST).unwrap().peer_cert.unwrap();
    sim.set_fault(FaultSpec::new(FaultKind::WrongCa).count(1));
    let bad = insecure.get(PKI_TRUST).unwrap();
    assert_ne!(bad.peer_cert.as_ref(), Some(&good));
    assert_eq!(
        bad.text(),
        sim.ca_pem(),
        "the body still carries the real CA"
    );
}

#[test]
fn redirect_to_plain_http() {
    let config = SimConfig {
        http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..SimConfig::default()
    };
    let (sim, c) = start_with(config);
    let http = sim.http_addr().unwrap();
    sim.set_fault(FaultSpec::new(FaultKind::RedirectHttp).count(1));
    let r = c.get(VERSION).unwrap();
    assert_eq!(r.status, 302);
    let location = r.header("location").unwrap().to_string();
    assert_eq!(
        location,
        format!("http://127.0.0.1:{}{VERSION}", http.port())
    );
    let followed = Client::http(http).get(VERSION).unwrap();
    assert_eq!(
        (followed.status, followed.body.as_slice()),
        (200, &b"2"[..])
    );
    let schemes: Vec<_> = sim
        .requests()
        .into_iter()
        .map(|e| e.scheme.unwrap())
        .collect();
    assert_eq!(schemes, ["https", "http"]);
}

#[test]
fn faults_from_config_and_admin_json() {
    let config = SimConfig {
        faults: vec![fault("status:status=502,count=1")],
        ..SimConfig::default()
    };
    let (sim, c) = start_with(config);
    assert_eq!(c.get(VERSION).unwrap().status, 502);
    let body = r#"[{"fault":"status","status":504,"count":1},{"fault":"malformed","command":"get-pki-trust"}]"#;
    let r = c.post("/admin/faults", body).unwrap();
    assert_eq!(r.status, 200);
    let active: Vec<FaultSpec> =
        serde_json::from_slice(&c.get("/admin/faults").unwrap().body).unwrap();
    assert_eq!(active.len(), 2);
    assert_eq!(c.get(VERSION).unwrap().status, 504);
    assert_eq!(c.get(VERSION).unwrap().status, 200);
    assert_eq!(c.post("/admin/faults", "bogus").unwrap().status, 400);
    assert_eq!(c.post("/admin/faults", "").unwrap().status, 400);
    assert_eq!(c.post("/admin/faults/clear", "").unwrap().status, 200);
    assert!(sim.active_faults().is_empty());
}
