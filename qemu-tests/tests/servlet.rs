//! The simulator's engine endpoints answer as docs/ovirt-protocol.md §3 says the real servlets do.
//! Loopback only; every wait is bounded.

use qemu_tests::client::{Client, Reply};
use qemu_tests::{ca, EventKind, Handle, HostStatus, SimConfig, Simulator};
use rustls::pki_types::{pem::PemObject, CertificateDer};

const REG: &str = "/ovirt-engine/services/host-register";

fn start() -> (Handle, Client) {
    start_with(SimConfig::default())
}

fn start_with(config: SimConfig) -> (Handle, Client) {
    let sim = Simulator::start(config).expect("simulator starts");
    let client = Client::https(sim.addr(), &sim.ca_pem()).unwrap();
    (sim, client)
}

fn v1(client: &Client, query: &str) -> Reply {
    client.get(&format!("{REG}?version=1&{query}")).unwrap()
}

#[test]
fn get_version_is_plain_2_or_1_for_a_stock_engine() {
    let stock = SimConfig {
        protocol_version: 1,
        ..SimConfig::default()
    };
    let (_old, c1) = start_with(stock);
    assert_eq!(v1(&c1, "command=get-version").body, b"1");
    let v2 = c1
        .get(&format!("{REG}?version=2&command=get-version"))
        .unwrap();
    assert_eq!(v2.status, 400);
    assert!(v2
        .text()
        .contains("Invalid registration protocol version 2"));
    let (_sim, c) = start();
    let r = v1(&c, "command=get-version");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.body, b"2");
    assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")));
}

#[test]
fn get_pki_trust_serves_the_pinned_ca() {
    let (sim, c) = start();
    let r = v1(&c, "command=get-pki-trust");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-x509-ca-cert"));
    assert_eq!(r.text(), sim.ca_pem());
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
    assert!(lines[1..lines.len() - 2].iter().all(|l| l.len() == 76));
    assert!(text.ends_with("-----END CERTIFICATE-----\n"));
    let der = CertificateDer::from_pem_slice(&r.body).unwrap();
    assert_eq!(ca::sha256_hex(&der), sim.ca_sha256());
    assert_eq!(ca::sha1_colon(&der), sim.ca_sha1());
    assert_eq!(sim.ca_sha1().len(), 59);
}

#[test]
fn ssh_key_is_the_same_on_every_path() {
    let (sim, c) = start();
    let r = v1(&c, "command=get-ssh-trust");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let line = r.text();
    assert!(line.ends_with(" ovirt-engine\n"), "{line:?}");
    assert_eq!(line.lines().count(), 1);
    assert_eq!(line, sim.ssh_key_line());
    for path in [
        "/engine.ssh.key.txt",
        "/rhevm.ssh.key.txt",
        "/ovirt-engine/services/pki-resource?resource=engine-certificate&format=OPENSSH-PUBKEY",
    ] {
        let r = c.get(path).unwrap();
        assert_eq!((r.status, r.text()), (200, line.clone()), "{path}");
    }
    let custom = c
        .get("/ovirt-engine/services/pki-resource?resource=engine-certificate&format=OPENSSH-PUBKEY&alias=x")
        .unwrap();
    assert!(custom.text().ends_with(" x\n"));
}

#[test]
fn pki_resource_formats_and_errors() {
    let (sim, c) = start();
    let pki = "/ovirt-engine/services/pki-resource";
    let get = |q: &str| c.get(&format!("{pki}?{q}")).unwrap();
    let r = get("resource=ca-certificate&format=X509-PEM-CA");
    assert_eq!(r.header("content-type"), Some("application/x-x509-ca-cert"));
    assert_eq!(r.text(), sim.ca_pem());
    assert_eq!(get("resource=ca-certificate").text(), sim.ca_pem());
    let r = get("resource=ca-certificate&format=X509-PEM");
    assert_eq!(r.header("content-type"), Some("application/x-x509-cert"));
    let engine = get("resource=engine-certificate");
    assert_eq!(
        engine.header("content-type"),
        Some("application/x-x509-cert")
    );
    assert_ne!(engine.text(), sim.ca_pem());
    let ca_ssh = get("resource=ca-certificate&format=OPENSSH-PUBKEY").text();
    assert!(ca_ssh.starts_with("ecdsa-sha2-nistp256 ") && !ca_ssh.contains("ovirt-engine"));
    for bad in ["", "resource=nope", "resource=ca-certificate&format=DER"] {
        assert_eq!(get(bad).status, 400, "{bad}");
    }
    let legacy = c.get("/ca.crt").unwrap();
    assert_eq!(
        legacy.header("content-type"),
        Some("application/x-x509-ca-cert")
    );
    assert_eq!(legacy.text(), sim.ca_pem());
}

#[test]
fn protocol_errors_are_400() {
    let (_sim, c) = start();
    let cases = [
        ("", "Invalid registration protocol version -1"),
        (
            "version=x&command=get-version",
            "Invalid registration protocol version -1",
        ),
        (
            "version=3&command=get-version",
            "Invalid registration protocol version 3",
        ),
        ("version=1", "command parameter is missing"),
        ("version=1&command=fly", "Invalid command"),
        ("version=1&command=register", "Unique id was not provided"),
        (
            "version=1&command=register&uniqueId=a&sshPort=x",
            "For input string",
        ),
        (
            "version=1&command=register&uniqueId=a&vdsPort=1.5",
            "For input string",
        ),
        (
            "version=1&command=register&uniqueId=%24%25",
            "runInternalQuery failed",
        ),
        (
            "version=1&command=register&uniqueId=a&address=",
            "runInternalQuery failed",
        ),
    ];
    for (q, msg) in cases {
        let r = c.get(&format!("{REG}?{q}")).unwrap();
        assert_eq!(r.status, 400, "{q}");
        assert!(r.text().contains(msg), "{q}: {}", r.text());
    }
}

#[test]
fn register_with_all_parameters() {
    let (sim, c) = start();
    let q = "command=register&name=node%201&address=node1.lab&uniqueId=ID-1&sshUser=admin\
             &sshPort=2222&sshKeyFingerprint=SHA256%3Aabc&vdsPort=54322";
    let r = v1(&c, q);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.body, b"OK\n");
    let h = sim.host("ID-1").expect("host added");
    assert_eq!(h.status, HostStatus::PendingApproval);
    assert_eq!(h.reg.name, "node 1");
    assert_eq!(h.reg.address, "node1.lab");
    assert_eq!(h.reg.ssh_user, "admin");
    assert_eq!((h.reg.ssh_port, h.reg.vds_port), (2222, 54322));
    assert_eq!(h.reg.ssh_key_fingerprint.as_deref(), Some("SHA256:abc"));
}

#[test]
fn register_defaults_and_the_ignored_port_parameter() {
    let (sim, c) = start();
    // Stock clients send `port=`, which the servlet never reads (docs/ovirt-protocol.md §3.3).
    assert_eq!(
        v1(&c, "command=register&uniqueId=u%2F1&port=1234").status,
        200
    );
    let h = sim.host("u1").expect("id sanitised like the engine does");
    assert_eq!(h.reg.address, "127.0.0.1");
    assert_eq!(h.reg.name, "127.0.0.1");
    assert_eq!(h.reg.ssh_user, "root");
    assert_eq!((h.reg.ssh_port, h.reg.vds_port), (22, 54321));
    assert_eq!(h.reg.ssh_key_fingerprint, None);
}

#[test]
fn re_register_answers_200_and_changes_nothing() {
    let (sim, c) = start();
    assert_eq!(v1(&c, "command=register&uniqueId=X&address=a").status, 200);
    sim.approve("X").unwrap();
    let again = v1(&c, "command=register&uniqueId=X&address=b&vdsPort=1");
    assert_eq!((again.status, again.body.as_slice()), (200, &b"OK\n"[..]));
    let h = sim.host("X").unwrap();
    assert_eq!(h.reg.address, "a");
    assert_eq!(h.reg.vds_port, 54321);
    assert_eq!(h.status, HostStatus::Approved);
    assert_eq!(h.registrations, 2);
    assert_eq!(sim.hosts().len(), 1);
}

#[test]
fn approve_and_reject_through_the_admin_api() {
    let (sim, c) = start();
    v1(&c, "command=register&uniqueId=h1");
    v1(&c, "command=register&uniqueId=h2");
    let list: serde_json::Value =
        serde_json::from_slice(&c.get("/admin/hosts").unwrap().body).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["status"], "pending_approval");
    assert_eq!(list[0]["unique_id"], "h1");
    let r = c.post("/admin/hosts/h1/approve", "").unwrap();
    assert_eq!(r.status, 200);
    let h: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(h["status"], "approved");
    assert_eq!(c.post("/admin/hosts/h2/reject", "").unwrap().status, 200);
    assert_eq!(sim.host("h2").unwrap().status, HostStatus::Rejected);
    assert_eq!(c.post("/admin/hosts/nope/approve", "").unwrap().status, 404);
    assert_eq!(
        c.send("DELETE", "/admin/hosts/h2", b"").unwrap().status,
        200
    );
    assert!(sim.host("h2").is_none());
    let hosts: Vec<String> = sim
        .events()
        .into_iter()
        .filter(|e| e.kind == EventKind::Host)
        .filter_map(|e| e.detail)
        .collect();
    assert_eq!(
        hosts,
        [
            "added h1 pending_approval",
            "added h2 pending_approval",
            "approved h1",
            "rejected h2",
            "removed h2"
        ]
    );
}

#[test]
fn auto_approve_patterns_skip_pending() {
    let config = SimConfig {
        auto_approve: vec!["node-".into()],
        ..SimConfig::default()
    };
    let (sim, c) = start_with(config);
    v1(&c, "command=register&uniqueId=a&address=node-1.lab");
    v1(&c, "command=register&uniqueId=b&address=other.lab");
    assert_eq!(sim.host("a").unwrap().status, HostStatus::Approved);
    assert_eq!(sim.host("b").unwrap().status, HostStatus::PendingApproval);
}

#[test]
fn event_log_records_requests_as_received() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let config = SimConfig {
        event_log: Some(path.clone()),
        ..SimConfig::default()
    };
    let (sim, c) = start_with(config);
    v1(&c, "command=register&uniqueId=E1&vdsPort=54321&port=1");
    let reg = sim
        .requests()
        .into_iter()
        .find(|e| e.command() == Some("register"))
        .unwrap();
    assert_eq!(reg.method.as_deref(), Some("GET"));
    assert_eq!(reg.path.as_deref(), Some(REG));
    assert_eq!(reg.status, Some(200));
    assert_eq!(reg.scheme.as_deref(), Some("https"));
    assert!(reg.remote.as_deref().unwrap().starts_with("127.0.0.1:"));
    let names: Vec<&str> = reg.query.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["version", "command", "uniqueId", "vdsPort", "port"]);
    assert_eq!(
        reg.raw_query.as_deref(),
        Some("version=1&command=register&uniqueId=E1&vdsPort=54321&port=1")
    );
    assert_eq!(qemu_tests::events::read_log(&path).unwrap(), sim.events());
    let since = sim.events().last().unwrap().seq;
    let r = c
        .get(&format!("/admin/events?since={}", since - 1))
        .unwrap();
    let tail: Vec<qemu_tests::Event> = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(tail.len(), 1);
}

#[test]
fn certificate_names_cover_loopback_and_the_guest_address() {
    let (sim, _) = start();
    for name in ["127.0.0.1", "localhost", "engine-sim.test", "10.0.2.100"] {
        // Connects to loopback, verifies the certificate as `name`.
        let c = Client::https(sim.addr(), &sim.ca_pem())
            .unwrap()
            .server_name(name)
            .unwrap();
        assert_eq!(c.get("/ca.crt").unwrap().status, 200, "{name}");
    }
    let c = Client::https(sim.addr(), &sim.ca_pem())
        .unwrap()
        .server_name("10.0.2.99")
        .unwrap();
    assert!(c.get("/ca.crt").is_err());
}

#[test]
fn extra_names_are_configurable() {
    let config = SimConfig {
        extra_names: vec!["engine.example".into(), "192.0.2.7".into()],
        ..SimConfig::default()
    };
    let (sim, _) = start_with(config);
    for name in ["engine.example", "192.0.2.7"] {
        let c = Client::https(sim.addr(), &sim.ca_pem())
            .unwrap()
            .server_name(name)
            .unwrap();
        assert_eq!(c.get("/ca.crt").unwrap().status, 200, "{name}");
    }
}

#[test]
fn state_dir_keeps_the_ca_and_ssh_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        state_dir: Some(dir.path().to_path_buf()),
        ..SimConfig::default()
    };
    let (first, _) = start_with(config.clone());
    let (pin, pem, ssh) = (first.ca_sha256(), first.ca_pem(), first.ssh_key_line());
    first.stop();
    let (second, c) = start_with(config);
    assert_eq!(second.ca_sha256(), pin);
    assert_eq!(second.ssh_key_line(), ssh);
    // The new server certificate chains to the CA saved by the first run.
    let old = Client::https(second.addr(), &pem).unwrap();
    assert_eq!(old.get("/ca.crt").unwrap().status, 200);
    assert_eq!(v1(&c, "command=get-version").body, b"2");
}

#[test]
fn other_paths_and_methods() {
    let (_sim, c) = start();
    assert_eq!(c.get("/nope").unwrap().status, 404);
    assert_eq!(c.get("/admin/nope").unwrap().status, 404);
    let post = c
        .post(&format!("{REG}?version=1&command=get-version"), "")
        .unwrap();
    assert_eq!(post.status, 405);
    let head = c
        .send("HEAD", &format!("{REG}?version=1&command=get-version"), b"")
        .unwrap();
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length"), Some("1"));
}

#[test]
fn bad_input_is_answered_not_fatal() {
    let (sim, c) = start();
    let r = c.raw(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    assert_eq!(r.status, 400);
    let mut huge = b"GET /".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 40_000));
    huge.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    assert_eq!(c.raw(&huge).unwrap().status, 431);
    let body = format!(
        "POST /admin/faults HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        1 << 20
    );
    assert_eq!(c.raw(body.as_bytes()).unwrap().status, 413);
    let plain = Client::http(sim.addr());
    assert!(plain.get("/ca.crt").is_err(), "plain http on the TLS port");
    let bad = sim
        .events()
        .into_iter()
        .filter(|e| e.kind == EventKind::BadRequest)
        .count();
    assert_eq!(bad, 3);
    // The TLS failure is logged after the client already gave up: poll, bounded.
    let tls_logged = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        sim.events().iter().any(|e| e.kind == EventKind::TlsError)
    });
    assert!(tls_logged);
    assert_eq!(v1(&c, "command=get-version").status, 200, "still serving");
}

#[test]
fn admin_info_and_handle_agree() {
    let (sim, c) = start();
    let info: serde_json::Value =
        serde_json::from_slice(&c.get("/admin/info").unwrap().body).unwrap();
    assert_eq!(info["ca_sha256"], sim.ca_sha256());
    assert_eq!(info["ca_sha1"], sim.ca_sha1());
    assert_eq!(info["ca_pem"], sim.ca_pem());
    assert_eq!(info["https_url"], sim.base_url());
    assert_eq!(info["ssh_key"], sim.ssh_key_line());
}

/// `sendError(status, message)` on the engine's container: the servlet's own message, escaped,
/// as the whole body of a minimal HTML page (docs/ovirt-protocol.md §3.6).
#[test]
fn error_bodies_carry_the_servlet_message() {
    let (_sim, c) = start();
    let page = |m: &str| format!("<html><head><title>Error</title></head><body>{m}</body></html>");
    let r = c.get(&format!("{REG}?version=1")).unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("text/html;charset=UTF-8"));
    assert_eq!(r.text(), page("command parameter is missing"));
    let r = c.get(&format!("{REG}?version=x")).unwrap();
    assert_eq!(r.text(), page("Invalid registration protocol version -1"));
    let r = c
        .get("/ovirt-engine/services/pki-resource?resource=%3Cb%3E")
        .unwrap();
    assert_eq!(r.text(), page("Resource '&lt;b&gt;' is invalid"));
    let r = c
        .post(&format!("{REG}?version=1&command=get-version"), "")
        .unwrap();
    assert_eq!(
        r.text(),
        page("HTTP method POST is not supported by this URL")
    );
}

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "OPTIONS"];

/// The methods in an `Allow` value.
fn allow_set(value: Option<&str>) -> Vec<String> {
    let mut set: Vec<String> = value
        .unwrap_or_default()
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    set.sort();
    set
}

/// For each target: OPTIONS names the methods served; every other method is 405 with
/// exactly that `Allow`, and every listed one is answered without 405.
fn assert_allow_matches(c: &Client, target: &str, want: &str) {
    let options = c.send("OPTIONS", target, b"").unwrap();
    assert_eq!(options.status, 200, "OPTIONS {target}");
    let allowed = allow_set(options.header("allow"));
    assert_eq!(allowed, allow_set(Some(want)), "OPTIONS {target}");
    let other = c.send("PATCH", target, b"").unwrap();
    assert_eq!(other.status, 501, "PATCH {target}: not a servlet method");
    for method in METHODS {
        let r = c.send(method, target, b"").unwrap();
        if allowed.iter().any(|m| m == method) {
            assert_ne!(r.status, 405, "{method} {target} is in Allow");
        } else {
            assert_eq!(r.status, 405, "{method} {target}");
            assert_eq!(allow_set(r.header("allow")), allowed, "{method} {target}");
        }
    }
}

#[test]
fn allow_lists_exactly_what_is_served() {
    let (_sim, c) = start();
    for target in [
        format!("{REG}?version=1&command=get-version"),
        format!("{REG}?version=1&command=nope"),
        "/ovirt-engine/services/pki-resource?resource=ca-certificate".to_string(),
        "/ca.crt".to_string(),
        "/engine.ssh.key.txt".to_string(),
        format!("{REG}?version=2&command=get-certificates"),
    ] {
        assert_allow_matches(&c, &target, "GET, HEAD, OPTIONS");
    }
    assert_allow_matches(
        &c,
        &format!("{REG}?version=2&command=submit-csr"),
        "POST, OPTIONS",
    );
    assert_allow_matches(
        &c,
        &format!("{REG}?version=2&command=nope"),
        "GET, HEAD, POST, OPTIONS",
    );
    // A stock engine has no POST command: version=2 is a GET that gets its 400.
    let (_stock, c1) = start_with(SimConfig {
        protocol_version: 1,
        ..SimConfig::default()
    });
    assert_allow_matches(
        &c1,
        &format!("{REG}?version=2&command=submit-csr"),
        "GET, HEAD, OPTIONS",
    );
}

/// HEAD is GET without the body: same status, type and length, for answers and errors alike.
#[test]
fn head_is_get_without_the_body() {
    let (_sim, c) = start();
    for target in [
        format!("{REG}?version=1&command=get-version"),
        format!("{REG}?version=1&command=get-pki-trust"),
        format!("{REG}?version=1&command=get-ssh-trust"),
        format!("{REG}?version=1&command=nope"),
        "/ovirt-engine/services/pki-resource?resource=engine-certificate&format=X509-PEM"
            .to_string(),
        "/ca.crt".to_string(),
        "/rhevm.ssh.key.txt".to_string(),
        "/nope".to_string(),
    ] {
        let get = c.get(&target).unwrap();
        let head = c.send("HEAD", &target, b"").unwrap();
        assert_eq!(head.status, get.status, "{target}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{target}"
        );
        let len = get.body.len().to_string();
        assert_eq!(
            head.header("content-length"),
            Some(len.as_str()),
            "{target}"
        );
        assert!(head.body.is_empty(), "{target}: HEAD has no body");
    }
}

/// The `(e, n)` of an `ssh-rsa` line, or None for another type.
fn ssh_rsa_parts(line: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::Engine as _;
    let b64 = line.strip_prefix("ssh-rsa ")?.split(' ').next()?;
    let blob = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let mut fields = Vec::new();
    let mut rest = &blob[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
        fields.push(rest.get(4..4 + len)?.to_vec());
        rest = &rest[4 + len..];
    }
    match &fields[..] {
        [alg, e, n] if alg == b"ssh-rsa" => Some((e.clone(), n.clone())),
        _ => None,
    }
}

#[test]
fn engine_ssh_key_is_rsa_like_a_stock_engine_or_ecdsa_when_asked() {
    let (sim, c) = start();
    let line = v1(&c, "command=get-ssh-trust").text();
    assert!(line.ends_with(" ovirt-engine\n"), "{line}");
    let (e, n) = ssh_rsa_parts(line.trim_end()).expect("an ssh-rsa line");
    assert_eq!(e, [1, 0, 1]);
    assert_eq!((n.len(), n[0]), (257, 0), "2048-bit modulus as an mpint");
    // It is the engine certificate's key, as on the engine.
    let pem = c
        .get("/ovirt-engine/services/pki-resource?resource=engine-certificate&format=X509-PEM")
        .unwrap()
        .body;
    let der = CertificateDer::from_pem_slice(&pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let spki = cert.public_key();
    assert_eq!(
        spki.algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.1"
    );
    let x509_parser::public_key::PublicKey::RSA(rsa) = spki.parsed().unwrap() else {
        panic!("not an RSA key");
    };
    let strip = |b: &[u8]| {
        b.iter()
            .skip_while(|x| **x == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    assert_eq!(strip(rsa.modulus), strip(&n));
    assert_eq!(line, sim.ssh_key_line());

    let (_ec, c2) = start_with(SimConfig {
        engine_key: qemu_tests::EngineKeyType::Ecdsa,
        ..SimConfig::default()
    });
    let line = v1(&c2, "command=get-ssh-trust").text();
    assert!(line.starts_with("ecdsa-sha2-nistp256 "), "{line}");
}

/// The admin side of a node upgrade (docs/protocol-v2.md §9): an offer names the image, the
/// simulator answers its size, SHA-256 and the command the node runs, and serves the bytes.
#[test]
fn an_upgrade_offer_serves_the_image_and_the_command() {
    let (_sim, client) = start();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("node-2.iso");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&image, &data).unwrap();
    let id = "4c4c4544-0042-3510-8052-b4c04f4e5501";
    let none = client
        .get(&format!("/admin/hosts/{id}/upgrade/image"))
        .unwrap();
    assert_eq!(none.status, 404);

    let body = serde_json::json!({ "image": image }).to_string();
    let reply = client
        .post(&format!("/admin/hosts/{id}/upgrade"), &body)
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let offer: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, &data);
    let sha: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(offer["sha256"], sha.as_str());
    assert_eq!(offer["size"], data.len());
    assert_eq!(offer["command"], format!("upgrade --sha256 {sha}").as_str());
    let shown = client.get(&format!("/admin/hosts/{id}/upgrade")).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&shown.body).unwrap(),
        offer
    );

    let bytes = client.get(offer["url"].as_str().unwrap()).unwrap();
    assert_eq!(bytes.status, 200);
    assert!(bytes.body == data, "the served image differs");
    let missing = serde_json::json!({ "image": dir.path().join("nope.iso") }).to_string();
    let reply = client
        .post(&format!("/admin/hosts/{id}/upgrade"), &missing)
        .unwrap();
    assert_eq!(reply.status, 400);
}
