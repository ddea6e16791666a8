//! The trust boundary between the root parent and the unprivileged network worker, and what a
//! hostile engine can make of an answer. A test-only hook (`OVIRT_NODE_REG_TEST_REPLIES`, in
//! builds with the `test-hooks` feature) replaces the worker's reply to one job after the real
//! worker ran, as a compromised worker would: the parent must check every CA, key, address
//! and setting itself, and trust, install and send nothing on the worker's word.

use std::process::Output;

use qemu_tests::{Event, FaultSpec, Handle, SimConfig, Simulator};

mod common;
use common::{Node, UUID};

/// The engine simulator (protocol v2, so the enrolment steps run too).
fn start() -> Handle {
    let sim = Simulator::start(SimConfig::default()).expect("simulator starts");
    sim.set_retry_after(1);
    sim
}

fn pin(sim: &Handle) -> String {
    format!("ovirt.reg.ca_pin=sha256:{}", sim.ca_sha256())
}

/// Boot once with `args`; `lies` are (job, reply JSON) pairs the hook hands the parent.
fn boot(sim: &Handle, node: &Node, args: &str, lies: &[(&str, String)]) -> (Output, String) {
    let cmdline = format!(
        "ro management_server=127.0.0.1:{} ovirt.reg.store=/config hostname=node1.example.com \
         ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 ovirt.reg.timeout=30 {args}\n",
        sim.port()
    );
    node.write("/proc/cmdline", &cmdline);
    let dir = tempfile::tempdir().unwrap();
    for (job, reply) in lies {
        std::fs::write(dir.path().join(format!("{job}.json")), reply).unwrap();
    }
    let env = [("OVIRT_NODE_REG_TEST_REPLIES", dir.path())];
    node.run_env(&["--debug", "boot"], None, &env)
}

fn banner(err: &str) -> &str {
    err.lines()
        .rev()
        .find(|l| l.starts_with("ovirt-node-reg: "))
        .unwrap_or_else(|| panic!("no banner: {err}"))
}

fn command_of(e: &Event) -> String {
    e.command()
        .map(str::to_string)
        .or_else(|| e.path.clone())
        .unwrap_or_default()
}

/// The engine requests after the first `after` command.
fn sent_after(sim: &Handle, after: &str) -> Vec<String> {
    let all: Vec<String> = sim.requests().iter().map(command_of).collect();
    let first = all.iter().position(|c| c == after).expect(after);
    all[first + 1..].to_vec()
}

fn exists(node: &Node, p: &str) -> bool {
    node.path(p).symlink_metadata().is_ok()
}

fn completed(node: &Node) -> Vec<String> {
    let text = std::fs::read_to_string(node.path("/config/ovirt-node-reg/state.json"))
        .unwrap_or_else(|_| "{}".into());
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["completed"]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn assert_failed_at(out: &Output, err: &str, step: &str, why: &str) {
    assert_eq!(out.status.code(), Some(1), "{err}");
    let b = banner(err);
    assert!(b.contains(&format!("FAILED at step {step}")), "{b}");
    assert!(b.contains(why), "{b}");
}

/// Nothing of a trust decision was kept: no CA installed, no first-use pin, no checkpoint.
fn assert_nothing_trusted(node: &Node) {
    for p in [
        "/config/ovirt-node-reg/ca-pin",
        "/etc/pki/ovirt-engine/ca.pem",
        "/config/etc/pki/ovirt-engine/ca.pem",
    ] {
        assert!(!exists(node, p), "{p} written");
    }
    assert!(!completed(node).contains(&"engine_trusted".to_string()));
}

fn trusted_reply(ca_pem: &str) -> String {
    serde_json::json!({ "reply": "trusted", "ca_pem": ca_pem, "first_use": true }).to_string()
}

#[test]
fn a_worker_handing_over_another_ca_is_not_believed() {
    let (sim, node) = (start(), Node::new());
    let lie = trusted_reply(&sim.other_ca_pem());
    let (out, err) = boot(&sim, &node, &pin(&sim), &[("trust", lie)]);
    assert_failed_at(
        &out,
        &err,
        "engine_trusted",
        "matches none of the configured pins",
    );
    assert_nothing_trusted(&node);
    assert_eq!(sent_after(&sim, "get-pki-trust"), Vec::<String>::new());
    assert!(sim.host(UUID).is_none(), "never registered");
}

#[test]
fn a_worker_claiming_a_first_use_is_not_believed() {
    // No pin and no ovirt.reg.insecure_tofu: only the parent may decide a first use.
    let (sim, node) = (start(), Node::new());
    let lie = trusted_reply(&sim.ca_pem());
    let (out, err) = boot(&sim, &node, "", &[("trust", lie)]);
    assert_failed_at(&out, &err, "engine_trusted", "no CA pin configured");
    assert_nothing_trusted(&node);
    assert_eq!(sent_after(&sim, "get-pki-trust"), Vec::<String>::new());
}

#[test]
fn a_first_use_is_decided_and_pinned_by_the_parent() {
    let (sim, node) = (start(), Node::new());
    let (out, err) = boot(&sim, &node, "ovirt.reg.insecure_tofu", &[]);
    assert!(completed(&node).contains(&"engine_trusted".into()), "{err}");
    let kept = node.read("/config/ovirt-node-reg/ca-pin");
    assert_eq!(kept.trim(), format!("sha256:{}", sim.ca_sha256()));
    assert!(out.status.code().is_some());
}

#[test]
fn a_worker_handing_over_a_bare_ssh_key_type_is_not_believed() {
    let (sim, node) = (start(), Node::new());
    let lie = r#"{"reply":"ssh_key","line":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 ovirt-engine"}"#;
    let (out, err) = boot(&sim, &node, &pin(&sim), &[("ssh_key", lie.into())]);
    assert_failed_at(
        &out,
        &err,
        "registered",
        "not a valid ssh-ed25519 public key",
    );
    assert!(!exists(&node, "/root/.ssh/authorized_keys"));
    assert!(!exists(&node, "/config/root/.ssh/authorized_keys"));
    assert_eq!(sent_after(&sim, "get-ssh-trust"), Vec::<String>::new());
}

#[test]
fn a_worker_reporting_another_address_is_not_believed() {
    let (sim, node) = (start(), Node::new());
    let lie = r#"{"reply":"registered","name":"node1.example.com","address":"../../etc\nx"}"#;
    let (out, err) = boot(&sim, &node, &pin(&sim), &[("register", lie.into())]);
    assert_failed_at(&out, &err, "registered", "expected an IP address");
    assert!(!completed(&node).contains(&"registered".to_string()));
    assert!(!node
        .read("/etc/default/ovirt")
        .contains("OVIRT_NODE_REGISTER"));
    assert_eq!(sent_after(&sim, "register"), Vec::<String>::new());
}

#[test]
fn a_worker_handing_over_bad_engine_settings_is_not_believed() {
    let (sim, node) = (start(), Node::new());
    let cert = sim.ca_pem();
    let approved = serde_json::json!({
        "reply": "enrollment",
        "answer": { "status": "approved", "fingerprint": null, "issued": {
            "vdsm_cert": cert, "qemu_cert": cert, "ca": cert, "qemu_ca": cert,
            "management_port": 0, "ssl": true } }
    });
    let lie = [("submit_csr", approved.to_string())];
    let (out, err) = boot(
        &sim,
        &node,
        &format!(
            "{} ovirt.reg.token=t0k3n-value-123 ovirt.reg.insecure_token_on_cmdline",
            pin(&sim)
        ),
        &lie,
    );
    assert_failed_at(&out, &err, "csr_submitted", "management_port 0");
    assert!(
        !err.contains("t0k3n-value-123"),
        "the token is never logged"
    );
    assert!(!exists(&node, "/etc/vdsm/vdsm.conf"));
    assert!(!exists(&node, "/etc/pki/vdsm/certs/vdsmcert.pem"));
    assert_eq!(sent_after(&sim, "submit-csr"), Vec::<String>::new());
}

#[test]
fn a_login_page_is_not_a_registration() {
    let (sim, node) = (start(), Node::new());
    sim.set_fault("login_page:command=register".parse::<FaultSpec>().unwrap());
    let (out, err) = boot(&sim, &node, &pin(&sim), &[]);
    assert_failed_at(
        &out,
        &err,
        "registered",
        "expected HTTP 200 with the body OK",
    );
    let registers = sim
        .requests()
        .iter()
        .filter(|e| command_of(e) == "register")
        .count();
    assert_eq!(registers, 1, "a permanent failure is not retried");
    assert!(!completed(&node).contains(&"registered".to_string()));
    assert!(!node
        .read("/etc/default/ovirt")
        .contains("OVIRT_NODE_REGISTER"));
}

/// A reply file for another job changes nothing.
#[test]
fn the_hook_only_replaces_the_named_job() {
    let (sim, node) = (start(), Node::new());
    let (_, err) = boot(&sim, &node, &pin(&sim), &[("whoami", "{}".into())]);
    assert!(completed(&node).contains(&"registered".into()), "{err}");
}

#[test]
fn the_engine_certificate_must_name_the_management_server() {
    // 127.0.0.2 is loopback too, but not among the server certificate's names.
    let cfg = SimConfig {
        listen: "127.0.0.2:0".parse().unwrap(),
        ..SimConfig::default()
    };
    let sim = Simulator::start(cfg).expect("simulator starts");
    let node = Node::new();
    let cmdline = format!(
        "ro management_server=127.0.0.2:{} ovirt.reg.store=/config ovirt.reg.retry_base=1 \
         ovirt.reg.retry_cap=2 ovirt.reg.timeout=20 {}\n",
        sim.port(),
        pin(&sim)
    );
    node.write("/proc/cmdline", &cmdline);
    let (out, err) = node.run(&["boot"]);
    assert_failed_at(&out, &err, "registered", "server certificate refused");
    assert!(err.contains("127.0.0.2"), "{err}");
    let commands: Vec<String> = sim.requests().iter().map(command_of).collect();
    assert!(!commands.contains(&"register".to_string()), "{commands:?}");
}

/// `setup`: the CA the worker fetched is re-parsed by the parent and its fingerprints
/// computed there; a worker handing over another CA, or two, changes nothing.
#[test]
fn setup_computes_the_fingerprints_of_what_it_got_itself() {
    let sim = start();
    let node = Node::new();
    node.write("/proc/cmdline", "ro ovirt.reg.store=/config\n");
    let other = sim.other_ca_pem();
    let chain = format!("{}{}", sim.ca_pem(), other);
    let engine = format!("127.0.0.1:{}", sim.port());
    let real_pin = format!("sha256:{}", sim.ca_sha256());
    // The fingerprint the parent computed of what the worker handed over.
    let other_pin = ovirt_node_reg::trust::CaCert::from_pem(other.as_bytes())
        .unwrap()
        .sha256_pin()
        .to_string();
    let mismatch = format!(
        "does not match the CA the engine 127.0.0.1:{} presents ({other_pin}",
        sim.port()
    );
    for (lie, why) in [
        (other.clone(), mismatch.as_str()),
        (chain, "a chain of 2 PEM certificates"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let reply = serde_json::json!({ "reply": "ca", "ca_pem": lie }).to_string();
        std::fs::write(dir.path().join("download_ca.json"), reply).unwrap();
        let env = [("OVIRT_NODE_REG_TEST_REPLIES", dir.path())];
        let args = ["setup", "--engine", &engine, "--ca-pin", &real_pin, "--yes"];
        let (out, err) = node.run_env(&args, None, &env);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(why), "{err}");
        assert!(!exists(&node, "/etc/default/ovirt") && !exists(&node, "/config/files"));
    }
    assert!(sim
        .requests()
        .iter()
        .all(|e| command_of(e) == "get-pki-trust"));
}
