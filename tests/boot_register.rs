//! The real binary's boot flow against the engine simulator (in-process, loopback only):
//! trust before anything is sent, one registration per host, the engine key installed and
//! persisted, the retry policy under faults, and the network worker running unprivileged.
//! Each run is a "boot" in a private mount namespace with a short `ovirt.reg.timeout`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::{Duration, Instant};

use qemu_tests::{Event, FaultSpec, Handle};

mod common;
use common::{stock_engine, Node, UUID};

impl Node {
    fn boot(&self, sim: &Handle, args: &str, timeout: u64) -> (Output, String) {
        let cmdline = format!(
            "ro management_server=127.0.0.1:{} ovirt.reg.store=/config hostname=node1.example.com \
             ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 ovirt.reg.timeout={timeout} {args}\n",
            sim.port()
        );
        self.write("/proc/cmdline", &cmdline);
        self.run(&["--debug", "boot"])
    }
}

fn pin(sim: &Handle) -> String {
    format!("ovirt.reg.ca_pin=sha256:{}", sim.ca_sha256())
}

fn commands(sim: &Handle) -> Vec<String> {
    sim.requests().iter().filter_map(command_of).collect()
}

fn command_of(e: &Event) -> Option<String> {
    let cmd = e
        .query
        .iter()
        .find(|(k, _)| k == "command")
        .map(|(_, v)| v.clone());
    cmd.or_else(|| e.path.clone())
}

fn registers(sim: &Handle) -> Vec<Event> {
    sim.requests()
        .into_iter()
        .filter(|e| command_of(e).as_deref() == Some("register"))
        .collect()
}

#[test]
fn first_boot_registers_second_boot_does_not() {
    let sim = stock_engine();
    let node = Node::new();
    node.write(
        "/root/.ssh/authorized_keys",
        "ssh-ed25519 AAAAkeep admin@laptop\nssh-rsa AAAAold ovirt-engine\n",
    );
    let (out, err) = node.boot(&sim, &pin(&sim), 30);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "ovirt-node-reg: waiting, step csr_submitted: registered, waiting for engine host deploy"
        ),
        "{err}"
    );
    assert_eq!(
        commands(&sim),
        [
            "get-version",
            "get-pki-trust",
            "get-ssh-trust",
            "register",
            "get-version"
        ],
        "the clock (engine Date), trust, then the key, one register, then the protocol version"
    );
    let reg = registers(&sim).remove(0);
    let q: Vec<(&str, &str)> = reg
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        q,
        [
            ("version", "1"),
            ("command", "register"),
            ("name", "node1.example.com"),
            ("address", "127.0.0.1"),
            ("uniqueId", UUID),
            ("sshUser", "root"),
            ("sshPort", "22"),
            ("vdsPort", "54321"),
        ]
    );
    assert_eq!(
        sim.host(UUID).map(|h| h.status),
        Some(qemu_tests::hosts::HostStatus::PendingApproval)
    );

    let keys = node.read("/config/root/.ssh/authorized_keys");
    assert_eq!(
        keys,
        format!("ssh-ed25519 AAAAkeep admin@laptop\n{}", sim.ssh_key_line()),
        "only the engine line replaced"
    );
    let mode = |p: &str| fs::metadata(node.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        (
            mode("/config/root/.ssh/authorized_keys"),
            mode("/config/root/.ssh")
        ),
        (0o600, 0o700)
    );
    assert!(node
        .read("/config/files")
        .contains("/root/.ssh/authorized_keys\n"));

    // Reboot: nothing is sent again.
    let before = sim.requests().len();
    let (out, err) = node.boot(&sim, &pin(&sim), 30);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("registered: skipped: already registered"),
        "{err}"
    );
    let again: Vec<String> = sim.requests()[before..]
        .iter()
        .filter_map(command_of)
        .collect();
    assert_eq!(
        again,
        ["get-version", "get-version"],
        "second boot: only the clock's health check and the protocol version (an upgraded engine would enrol)"
    );
    assert!(
        err.contains("clock kept") || err.contains("would set the clock"),
        "the clock step ran (dry run under --root): {err}"
    );
}

#[test]
fn worker_runs_unprivileged() {
    let sim = stock_engine();
    let node = Node::new();
    let (_, err) = node.boot(&sim, &pin(&sim), 30);
    let line = err
        .lines()
        .find(|l| l.contains("network worker: uid"))
        .unwrap_or_else(|| panic!("{err}"));
    // This tier runs as root (common::command insists): the worker must have dropped it all.
    assert!(
        line.contains("uid 65534 gid 65534, 0 supplementary groups"),
        "{line}"
    );
    assert!(line.contains("capabilities 0000000000000000"), "{line}");
    assert!(line.contains("no_new_privs true"), "{line}");
    assert!(line.contains("seccomp filter true"), "{line}");
    assert!(line.contains("open fds [0, 1, 2]"), "{line}");
    assert!(line.contains(", 0 environment variables"), "{line}");
}

#[test]
fn wrong_pin_is_refused_before_anything_is_sent() {
    let sim = stock_engine();
    let node = Node::new();
    let wrong = format!("ovirt.reg.ca_pin=sha256:{}", "ab".repeat(32));
    let (out, err) = node.boot(&sim, &wrong, 30);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let banner = err
        .lines()
        .find(|l| l.starts_with("ovirt-node-reg: FAILED"))
        .unwrap_or_default();
    assert!(banner.contains("FAILED at step engine_trusted"), "{err}");
    assert!(
        banner.contains(&format!("sha256:{}", sim.ca_sha256())),
        "the engine's fingerprint is shown: {banner}"
    );
    assert!(
        banner.contains(&"ab".repeat(32)),
        "the expected pin is shown: {banner}"
    );
    assert_eq!(
        commands(&sim),
        ["get-version", "get-pki-trust"],
        "nothing after the CA download"
    );
    assert!(registers(&sim).is_empty());
    assert!(!node.path("/config/root/.ssh/authorized_keys").exists());
}

#[test]
fn no_pin_refuses_and_prints_the_pin_to_add() {
    let sim = stock_engine();
    let node = Node::new();
    let (out, err) = node.boot(&sim, "", 30);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("add ovirt.reg.ca_pin=sha256:{}", sim.ca_sha256())),
        "{err}"
    );
    assert!(registers(&sim).is_empty());
}

#[test]
fn legacy_sha1_fingerprint_pin() {
    let sim = stock_engine();
    let node = Node::new();
    let fp = format!(
        "management_server_fingerprint={}",
        sim.ca_sha1().to_lowercase()
    );
    let (out, err) = node.boot(&sim, &fp, 30);
    assert!(out.status.success(), "{err}");
    assert_eq!(registers(&sim).len(), 1);
    assert!(
        node.read("/config/etc/vdsm-reg/vdsm-reg.conf")
            .contains("fingerprint="),
        "kept for vdsm-reg too"
    );
}

#[test]
fn tofu_pins_the_first_ca_and_refuses_another() {
    let sim = stock_engine();
    let node = Node::new();
    let (out, err) = node.boot(&sim, "ovirt.reg.insecure_tofu", 30);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("INSECURE"),
        "trust on first use is loud: {err}"
    );
    assert_eq!(
        node.read("/config/ovirt-node-reg/ca-pin").trim(),
        format!("sha256:{}", sim.ca_sha256())
    );

    // Another engine (another CA) at a new address: the stored pin refuses it.
    let other = stock_engine();
    let (out, err) = node.boot(&other, "ovirt.reg.insecure_tofu", 30);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("pinned in the store on first use"), "{err}");
    assert!(registers(&other).is_empty());
}

#[test]
fn engine_down_at_boot_then_up_registers_within_the_deadline() {
    let sim = stock_engine();
    sim.set_fault("refuse:secs=3".parse::<FaultSpec>().unwrap());
    let node = Node::new();
    let t0 = Instant::now();
    let (out, err) = node.boot(&sim, &pin(&sim), 40);
    assert!(out.status.success(), "{err}");
    assert!(
        t0.elapsed() >= Duration::from_secs(3),
        "it waited for the engine"
    );
    assert_eq!(registers(&sim).len(), 1);
}

#[test]
fn retry_after_is_honoured_on_register() {
    let sim = stock_engine();
    sim.set_fault(
        "status:status=503,retry_after=2,count=1,command=register"
            .parse::<FaultSpec>()
            .unwrap(),
    );
    let node = Node::new();
    let (out, err) = node.boot(&sim, &pin(&sim), 40);
    assert!(out.status.success(), "{err}");
    let regs = registers(&sim);
    assert_eq!(regs.len(), 2, "one 503, then success");
    let gap = regs[1].unix_ms - regs[0].unix_ms;
    assert!(gap >= 2000, "waited as Retry-After asked: {gap} ms");
}

#[test]
fn engine_that_stays_down_fails_clearly_within_the_deadline() {
    let sim = stock_engine();
    sim.set_fault("refuse:secs=120".parse::<FaultSpec>().unwrap());
    let node = Node::new();
    let t0 = Instant::now();
    let (out, err) = node.boot(&sim, &pin(&sim), 5);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "bounded by ovirt.reg.timeout: {:?}",
        t0.elapsed()
    );
    let banner = err
        .lines()
        .find(|l| l.starts_with("ovirt-node-reg: FAILED"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(banner.contains("engine_trusted"), "{banner}");
    let status: serde_json::Value =
        serde_json::from_str(&node.read("/run/ovirt-node-reg/status.json")).unwrap();
    assert_eq!(status["result"], "failed");
    // The store keeps the run's last word too (written durably at the end, while the steps'
    // progress copies are not synced).
    let kept: serde_json::Value =
        serde_json::from_str(&node.read("/config/ovirt-node-reg/status.json")).unwrap();
    assert_eq!(kept, status);
}

#[test]
fn register_subcommand_sends_again_on_request() {
    let sim = stock_engine();
    let node = Node::new();
    let (out, err) = node.boot(&sim, &pin(&sim), 30);
    assert!(out.status.success(), "{err}");
    let engine = format!("127.0.0.1:{}", sim.port());
    let (out, err) = node.run(&["register", "--engine", &engine]);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        registers(&sim).len(),
        2,
        "the operator asked: sent again, harmlessly"
    );
    let (out, err) = node.run(&["register", "--engine", "bad:port"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("--engine bad:port: expected HOST[:PORT]"),
        "{err}"
    );
}

/// Boot against `sim` with one fault switch set; returns the exit status and stderr.
fn boot_with_fault(spec: &str) -> (Handle, Node, Output, String) {
    let sim = stock_engine();
    sim.set_fault(spec.parse::<FaultSpec>().unwrap());
    let node = Node::new();
    let (out, err) = node.boot(&sim, &pin(&sim), 30);
    (sim, node, out, err)
}

#[test]
fn transient_faults_are_retried_or_worked_around() {
    for spec in [
        "status:status=500,count=2",
        "stall:secs=2,count=1",
        "oversized:count=1,command=get-pki-trust",
        "malformed:count=1,command=get-ssh-trust",
        "malformed:count=1,command=get-pki-trust",
    ] {
        let (sim, _node, out, err) = boot_with_fault(spec);
        assert!(out.status.success(), "{spec}: {err}");
        assert_eq!(registers(&sim).len(), 1, "{spec}");
        assert!(
            sim.requests().iter().any(|e| e.fault.is_some()),
            "{spec}: the fault was hit"
        );
    }
}

#[test]
fn unverifiable_engine_is_never_sent_a_registration() {
    for (spec, step) in [
        ("wrong_ca", "registered"),
        ("redirect_http", "engine_trusted"),
    ] {
        let (sim, _node, out, err) = boot_with_fault(spec);
        assert_eq!(out.status.code(), Some(1), "{spec}: {err}");
        let banner = err
            .lines()
            .find(|l| l.starts_with("ovirt-node-reg: FAILED"))
            .unwrap_or_else(|| panic!("{err}"));
        assert!(
            banner.contains(&format!("FAILED at step {step}")),
            "{spec}: {banner}"
        );
        assert!(registers(&sim).is_empty(), "{spec}: nothing registered");
    }
}

#[test]
fn host_ssh_key_fingerprint_is_sent() {
    let sim = stock_engine();
    let node = Node::new();
    node.write(
        "/etc/ssh/ssh_host_ed25519_key.pub",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFo5GBGhX5+w3z2Ao2N9j55v2vbTOkYPRkNH79P1njYk root@x\n",
    );
    let (out, err) = node.boot(&sim, &pin(&sim), 30);
    assert!(out.status.success(), "{err}");
    let reg = registers(&sim).remove(0);
    let fp = reg
        .query
        .iter()
        .find(|(k, _)| k == "sshKeyFingerprint")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        fp,
        Some("SHA256:gHJluyVyngICXTnOFNZbA3H7UW1FHk3UakPoiuWweAM")
    );
}
