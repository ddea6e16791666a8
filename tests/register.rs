//! Trust bootstrap and registration against the engine simulator, in-process on loopback:
//! the exact request the engine sees, pin checks before anything is sent, and the retry
//! policy under each fault switch. Every wait is bounded (short deadlines, fault counts).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ovirt_node_reg::engine::{self, Registration};
use ovirt_node_reg::http::{self, Client, Endpoint, Timeouts};
use ovirt_node_reg::retry::{Jitter, Policy, Reason, Retrier, SystemClock};
use ovirt_node_reg::trust::{self, Pins, SshKey, TrustError, Verified};
use qemu_tests::{Event, EventKind, FaultSpec, Handle, SimConfig, Simulator};

const ID: &str = "4C4C4544-0042-3510-8052-B4C04F4E4B32";

fn start() -> Handle {
    Simulator::start(SimConfig::default()).expect("simulator starts")
}

fn endpoint(sim: &Handle) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".parse().unwrap(),
        port: sim.port(),
    }
}

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        io: Duration::from_secs(3),
        request: Duration::from_secs(5),
    }
}

/// Fast backoff so the tests stay short; the deadline bounds every test.
fn retrier(deadline_secs: u64) -> Retrier {
    let policy = Policy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(2),
        deadline: Duration::from_secs(deadline_secs),
        max_attempts: 200,
    };
    Retrier::new(policy, Box::<SystemClock>::default(), Jitter::seeded(7))
}

fn sha256_pins(sim: &Handle) -> Pins {
    Pins {
        sha256: vec![format!("sha256:{}", sim.ca_sha256()).parse().unwrap()],
        ..Pins::default()
    }
}

fn fault(spec: &str) -> FaultSpec {
    spec.parse().expect("fault spec")
}

fn registration() -> Registration {
    Registration {
        name: "node1".into(),
        address: "node1.example.com".into(),
        unique_id: ID.into(),
        ssh_user: "root".into(),
        ssh_port: 22,
        ssh_key_fingerprint: Some("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into()),
        vds_port: 54321,
    }
}

/// Trust bootstrap with a SHA-256 pin, then the pinned client.
fn trusted_client(sim: &Handle, r: &mut Retrier) -> Client {
    let t = trust::establish(&endpoint(sim), &sha256_pins(sim), timeouts(), r).unwrap();
    Client::pinned(endpoint(sim), t.ca.der(), timeouts())
}

fn commands(sim: &Handle) -> Vec<String> {
    sim.requests()
        .iter()
        .map(|e| {
            e.command()
                .map(str::to_string)
                .or_else(|| e.path.clone())
                .unwrap_or_default()
        })
        .collect()
}

fn registers(sim: &Handle) -> Vec<Event> {
    sim.requests()
        .into_iter()
        .filter(|e| e.command() == Some("register"))
        .collect()
}

fn refused(addr: SocketAddr) -> bool {
    matches!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[test]
fn full_registration_sends_exactly_the_servlet_parameters() {
    let sim = start();
    let mut r = retrier(20);
    let client = trusted_client(&sim, &mut r);
    assert_eq!(engine::protocol_version(&client, &mut r).unwrap(), 2);
    let key = trust::fetch_ssh_key(&client, &mut r).unwrap();
    assert_eq!(format!("{}\n", key.line()), sim.ssh_key_line());
    let reg = registration();
    engine::register(&client, &reg, &mut r).unwrap();

    let regs = registers(&sim);
    assert_eq!(regs.len(), 1);
    let e = &regs[0];
    assert_eq!(e.status, Some(200));
    assert_eq!(e.raw_query.as_deref(), Some(reg.query().as_str()));
    let names: Vec<&str> = e.query.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "version",
            "command",
            "name",
            "address",
            "uniqueId",
            "sshUser",
            "sshPort",
            "sshKeyFingerprint",
            "vdsPort"
        ]
    );
    assert_eq!(
        e.param("sshKeyFingerprint"),
        reg.ssh_key_fingerprint.as_deref(),
        "the '+' and '/' survive URL encoding"
    );
    let host = sim.host(ID).expect("host added");
    assert_eq!(format!("{:?}", host.status), "PendingApproval");
    assert_eq!(
        commands(&sim),
        ["get-pki-trust", "get-version", "get-ssh-trust", "register"],
        "nothing else is sent"
    );

    // Registering again is harmless: 200, still one host.
    engine::register(&client, &reg, &mut r).unwrap();
    assert_eq!(registers(&sim).len(), 2);
    assert_eq!(sim.hosts().len(), 1);
}

#[test]
fn legacy_sha1_fingerprint_is_accepted() {
    let sim = start();
    let pins = Pins {
        sha1: Some(sim.ca_sha1().to_uppercase().parse().unwrap()),
        ..Pins::default()
    };
    let t = trust::establish(&endpoint(&sim), &pins, timeouts(), &mut retrier(10)).unwrap();
    assert!(matches!(t.how, Verified::Sha1(_)));
    assert_eq!(t.ca.pem(), sim.ca_pem());
}

#[test]
fn wrong_pin_is_fatal_before_anything_else_is_sent() {
    let sim = start();
    let other = trust::CaCert::from_pem(sim.other_ca_pem().as_bytes()).unwrap();
    let pins = Pins {
        sha256: vec![other.sha256_pin()],
        ..Pins::default()
    };
    let started = Instant::now();
    let e = trust::establish(&endpoint(&sim), &pins, timeouts(), &mut retrier(20)).unwrap_err();
    assert_eq!((e.reason, e.attempts), (Reason::Fatal, 1));
    assert!(started.elapsed() < Duration::from_secs(5), "not retried");
    match &e.last {
        trust::Error::Trust(TrustError::Mismatch { sha256, .. }) => {
            assert_eq!(sha256.to_string(), format!("sha256:{}", sim.ca_sha256()))
        }
        other => panic!("expected a mismatch, got {other}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(&sim.ca_sha256()) && msg.contains(&other.sha256_pin().to_string()));
    assert_eq!(commands(&sim), ["get-pki-trust"]);
}

#[test]
fn server_certificate_from_another_ca_is_refused_before_register() {
    let sim = start();
    let mut r = retrier(20);
    // The CA download works (it cannot verify yet) and matches the pin...
    let client = trusted_client(&sim, &mut r);
    // ...but from now on the server presents a certificate of an unrelated CA.
    sim.set_fault(fault("wrong_ca"));
    let e = trust::fetch_ssh_key(&client, &mut r).unwrap_err();
    assert_eq!(e.reason, Reason::Fatal, "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");
    // The caller stops here; had it gone on, register would fail the same way.
    let e = engine::register(&client, &registration(), &mut r).unwrap_err();
    assert_eq!(e.reason, Reason::Fatal);
    assert!(
        matches!(e.last.0, http::Error::Certificate(_)),
        "{:?}",
        e.last
    );
    assert!(registers(&sim).is_empty(), "no register reached the engine");
    assert_eq!(commands(&sim), ["get-pki-trust"]);
    assert!(sim.events().iter().any(|e| e.kind == EventKind::TlsError));
}

#[test]
fn no_pin_means_no_trust_unless_first_use_is_allowed() {
    let sim = start();
    let e = trust::establish(
        &endpoint(&sim),
        &Pins::default(),
        timeouts(),
        &mut retrier(10),
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::Fatal);
    assert!(matches!(
        e.last,
        trust::Error::Trust(TrustError::NoPin { .. })
    ));
    assert!(
        e.to_string()
            .contains(&format!("ovirt.reg.ca_pin=sha256:{}", sim.ca_sha256())),
        "{e}"
    );

    let tofu = Pins {
        insecure_tofu: true,
        ..Pins::default()
    };
    let t = trust::establish(&endpoint(&sim), &tofu, timeouts(), &mut retrier(10)).unwrap();
    let Verified::FirstUse(pin) = t.how else {
        panic!("expected first use, got {:?}", t.how)
    };
    // Next boot: the stored pin is what counts, and it holds.
    let next = Pins {
        stored: Some(pin),
        ..tofu
    };
    let t = trust::establish(&endpoint(&sim), &next, timeouts(), &mut retrier(10)).unwrap();
    assert!(matches!(t.how, Verified::Stored(_)));
    assert!(registers(&sim).is_empty());
}

#[test]
fn retry_after_of_a_503_is_respected() {
    let sim = start();
    let mut r = retrier(30);
    let client = trusted_client(&sim, &mut r);
    sim.set_fault(fault(
        "status:status=503,retry_after=1,count=2,command=register",
    ));
    let started = Instant::now();
    engine::register(&client, &registration(), &mut r).unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited 2 x 1 s"
    );
    let regs = registers(&sim);
    let statuses: Vec<Option<u16>> = regs.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(200)]);
    for pair in regs.windows(2) {
        let gap = pair[1].unix_ms - pair[0].unix_ms;
        assert!(gap >= 1000, "retried after {gap} ms, before Retry-After");
    }
}

#[test]
fn a_busy_engine_is_not_asked_the_fallback_sources_at_once() {
    let sim = start();
    sim.set_fault(fault("status:status=503,retry_after=2,count=1"));
    let started = Instant::now();
    let t = trust::establish(
        &endpoint(&sim),
        &sha256_pins(&sim),
        timeouts(),
        &mut retrier(20),
    );
    assert!(t.is_ok(), "{:?}", t.err());
    // The 503 ends the attempt (no pki-resource, no /ca.crt behind its back) and the next
    // one waits the engine's Retry-After.
    assert_eq!(commands(&sim), ["get-pki-trust", "get-pki-trust"]);
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[test]
fn plain_5xx_is_retried_with_backoff_and_4xx_is_not() {
    let sim = start();
    let mut r = retrier(30);
    let client = trusted_client(&sim, &mut r);
    sim.set_fault(fault("status:status=500,count=2,command=register"));
    engine::register(&client, &registration(), &mut r).unwrap();
    assert_eq!(registers(&sim).len(), 3);

    // An empty uniqueId is a 400 from the servlet: fatal at once.
    let mut bad = registration();
    bad.unique_id.clear();
    let e = engine::register(&client, &bad, &mut r).unwrap_err();
    assert_eq!((e.reason, e.attempts), (Reason::Fatal, 1), "{e}");
    assert!(e.to_string().contains("HTTP 400"), "{e}");
}

#[test]
fn refused_connections_are_retried_until_the_engine_is_back() {
    let sim = start();
    sim.set_fault(fault("refuse:secs=2"));
    let end = Instant::now() + Duration::from_secs(2);
    while !refused(sim.addr()) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(refused(sim.addr()), "the simulator refuses connections");
    let started = Instant::now();
    let t = trust::establish(
        &endpoint(&sim),
        &sha256_pins(&sim),
        timeouts(),
        &mut retrier(20),
    );
    assert!(t.is_ok(), "{:?}", t.err());
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert_eq!(commands(&sim), ["get-pki-trust"]);
}

#[test]
fn engine_down_for_good_fails_within_the_deadline() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = Endpoint {
        host: "127.0.0.1".parse().unwrap(),
        port,
    };
    let started = Instant::now();
    let e = trust::establish(&ep, &Pins::default(), timeouts(), &mut retrier(2)).unwrap_err();
    assert_eq!(e.reason, Reason::Deadline);
    // The deadline is 2 s; generous, as QEMU boots may share the cores.
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(e.to_string().contains("cannot connect"), "{e}");
}

#[test]
fn oversized_answers_are_rejected_and_the_next_source_used() {
    let sim = start();
    sim.set_fault(fault("oversized:count=1"));
    let t = trust::establish(
        &endpoint(&sim),
        &sha256_pins(&sim),
        timeouts(),
        &mut retrier(20),
    )
    .unwrap();
    assert!(matches!(t.how, Verified::Sha256(_)));
    assert_eq!(
        commands(&sim),
        ["get-pki-trust", "/ovirt-engine/services/pki-resource"]
    );
}

#[test]
fn oversized_from_every_source_fails_at_once() {
    let sim = start();
    sim.set_fault(fault("oversized"));
    let started = Instant::now();
    let e = trust::establish(
        &endpoint(&sim),
        &sha256_pins(&sim),
        timeouts(),
        &mut retrier(30),
    )
    .unwrap_err();
    // Permanent: asking again cannot make the answer smaller, so no retry until the deadline.
    assert_eq!((e.reason, e.attempts), (Reason::Fatal, 1));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(e.to_string().contains("larger than"), "{e}");
}

#[test]
fn malformed_answers_are_rejected_without_panic() {
    let sim = start();
    sim.set_fault(fault("malformed"));
    let e = trust::establish(
        &endpoint(&sim),
        &sha256_pins(&sim),
        timeouts(),
        &mut retrier(30),
    )
    .unwrap_err();
    assert_eq!((e.reason, e.attempts), (Reason::Fatal, 1));
    assert!(e.to_string().contains("malformed answer"), "{e}");
    sim.clear_faults();

    let mut r = retrier(20);
    let client = trusted_client(&sim, &mut r);
    sim.set_fault(fault("malformed:count=1,command=get-ssh-trust"));
    // get-ssh-trust sends junk once; the legacy path serves the same key.
    let key = trust::fetch_ssh_key(&client, &mut r).unwrap();
    assert_eq!(format!("{}\n", key.line()), sim.ssh_key_line());
    assert!(commands(&sim).contains(&"/engine.ssh.key.txt".to_string()));
}

#[test]
fn redirect_to_plain_http_is_never_followed() {
    let sim = start();
    let mut r = retrier(20);
    let client = trusted_client(&sim, &mut r);
    sim.set_fault(fault("redirect_http:command=register"));
    let e = engine::register(&client, &registration(), &mut r).unwrap_err();
    assert_eq!((e.reason, e.attempts), (Reason::Fatal, 1));
    assert!(matches!(e.last.0, http::Error::Redirect { code: 302, .. }));
    assert!(sim.host(ID).is_none());
    assert!(sim
        .requests()
        .iter()
        .all(|e| e.scheme.as_deref() == Some("https")));
}

#[test]
fn a_stalled_engine_times_out_and_is_retried() {
    let sim = start();
    let mut r = retrier(20);
    let ca = trust::establish(&endpoint(&sim), &sha256_pins(&sim), timeouts(), &mut r).unwrap();
    let quick = Timeouts {
        connect: Duration::from_secs(2),
        io: Duration::from_secs(1),
        request: Duration::from_secs(1),
    };
    let client = Client::pinned(endpoint(&sim), ca.ca.der(), quick);
    sim.set_fault(fault("stall:secs=3,count=1,command=register"));
    let started = Instant::now();
    engine::register(&client, &registration(), &mut r).unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the stall was waited out"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "not the whole stall"
    );
    assert!(sim.host(ID).is_some());
}

/// A stock engine's SSH key is RSA (the simulator's default); ECDSA engines exist too.
#[test]
fn ssh_key_from_the_engine_validates() {
    let sim = start();
    let line = sim.ssh_key_line();
    assert!(line.starts_with("ssh-rsa "), "{line}");
    assert!(SshKey::parse(&line).is_ok());
    let ecdsa = Simulator::start(SimConfig {
        engine_key: qemu_tests::EngineKeyType::Ecdsa,
        ..SimConfig::default()
    })
    .expect("simulator starts");
    let line = ecdsa.ssh_key_line();
    assert!(line.starts_with("ecdsa-sha2-nistp256 "), "{line}");
    assert!(SshKey::parse(&line).is_ok());
}

/// ureq keeps the pinned client's connection between requests; one the engine closed while
/// idle is noticed before reuse (ureq probes a pooled connection) and replaced, with no
/// failed attempt.
#[test]
fn a_connection_the_engine_closed_while_idle_is_replaced_transparently() {
    let cfg = SimConfig {
        keep_alive_idle: Duration::from_millis(200),
        ..SimConfig::default()
    };
    let sim = Simulator::start(cfg).expect("simulator starts");
    let mut r = retrier(20);
    let client = trusted_client(&sim, &mut r);
    let get = |client: &Client| client.get("/ca.crt", Duration::from_secs(5), 64 * 1024);
    get(&client).expect("first request");
    get(&client).expect("second request, at once");
    let before = sim.tls_connections();
    std::thread::sleep(Duration::from_millis(600));
    get(&client).expect("a request after the engine closed the idle connection");
    let by_conn: Vec<u64> = sim.requests().iter().filter_map(|e| e.connection).collect();
    // The CA download, then two requests on one pinned connection, then a new one.
    assert_eq!(by_conn.len(), 4, "{by_conn:?}");
    assert_eq!(by_conn[1], by_conn[2], "{by_conn:?}");
    assert_ne!(by_conn[2], by_conn[3], "{by_conn:?}");
    assert_eq!(sim.tls_connections(), before + 1);
}
