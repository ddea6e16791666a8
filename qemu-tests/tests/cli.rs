//! The `engine-sim` binary starts with one command, says where it listens and what to pin.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use qemu_tests::ca;
use qemu_tests::client::Client;
use rustls::pki_types::{pem::PemObject, CertificateDer};

/// Kills the child however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns its first `n` stdout lines (bounded wait).
fn start(args: &[&str], n: usize) -> (Running, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine-sim"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("engine-sim runs");
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    // Read to the end, passing on the first `n` lines: a pipe closed after them would make
    // the simulator's next line of output fail (EPIPE) while a test still talks to it.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let lines = (0..n)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("startup lines")
        })
        .collect();
    (running, lines)
}

fn field<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` in {lines:?}"))
}

#[test]
fn starts_prints_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let events = dir.path().join("events.jsonl");
    let state = dir.path().join("state");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().unwrap(),
        "--event-log",
        events.to_str().unwrap(),
        "--ready-file",
        ready.to_str().unwrap(),
        "--san",
        "engine.example",
        "--fault",
        "status:status=503,retry_after=1,count=1",
    ];
    let (_sim, lines) = start(&args, 5);
    let url = field(&lines, "engine-sim listening on https://");
    let addr: std::net::SocketAddr = url.parse().unwrap();
    assert!(field(&lines, "engine-sim plain http on http://").starts_with("127.0.0.1:"));
    let sha256 = field(&lines, "engine-sim CA sha256 ");
    let sha1 = field(&lines, "engine-sim CA sha1 ");

    // The printed pins are those of the CA the server serves and saved.
    let pem = std::fs::read_to_string(state.join("ca.pem")).unwrap();
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(ca::sha256_hex(&der), sha256);
    assert_eq!(ca::sha1_colon(&der), sha1);
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    assert_eq!(info["ca_sha256"], sha256);

    let c = Client::https(addr, &pem).unwrap();
    let get = |cmd: &str| {
        c.get(&format!(
            "/ovirt-engine/services/host-register?version=1&command={cmd}"
        ))
        .unwrap()
    };
    let first = get("get-version");
    assert_eq!(
        (first.status, first.header("retry-after")),
        (503, Some("1"))
    );
    assert_eq!(get("get-version").body, b"2");
    let named = Client::https(addr, &pem)
        .unwrap()
        .server_name("engine.example")
        .unwrap();
    assert_eq!(named.get("/ca.crt").unwrap().text(), pem);

    let logged = qemu_tests::events::read_log(&events).unwrap();
    assert_eq!(logged.iter().filter(|e| e.is_request()).count(), 3);
    let ssh = info["ssh_key"].as_str().unwrap();
    assert!(
        ssh.starts_with("ssh-rsa "),
        "a stock engine's key type: {ssh}"
    );
}

#[test]
fn engine_key_flag_picks_the_ssh_key_type() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let args = [
        "--engine-key",
        "ecdsa",
        "--ready-file",
        ready.to_str().unwrap(),
    ];
    let (_sim, _) = start(&args, 3);
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    let ssh = info["ssh_key"].as_str().unwrap();
    assert!(ssh.starts_with("ecdsa-sha2-nistp256 "), "{ssh}");
    let out = Command::new(env!("CARGO_BIN_EXE_engine-sim"))
        .args(["--engine-key", "dsa"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected rsa or ecdsa"));
}

#[test]
fn bad_fault_flag_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_engine-sim"))
        .args(["--fault", "explode"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("explode"));
}

#[test]
fn close_each_flag_closes_after_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let args = ["--close-each", "--ready-file", ready.to_str().unwrap()];
    let (_sim, lines) = start(&args, 1);
    let url = field(&lines, "engine-sim listening on https://");
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    let pem = info["ca_pem"].as_str().unwrap();
    let mut conn = Client::https(url.parse().unwrap(), pem)
        .unwrap()
        .connect()
        .unwrap();
    let version = "/ovirt-engine/services/host-register?version=1&command=get-version";
    let first = conn.get(version).unwrap();
    assert_eq!(first.header("connection"), Some("close"));
    assert!(
        conn.get(version).is_err(),
        "the second request needs a new connection"
    );
}
