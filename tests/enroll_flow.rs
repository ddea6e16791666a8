//! The whole enrolment (docs/protocol-v2.md) with the real binary against the engine simulator
//! in-process, loopback only: manual approval across two boots, token auto-approval, final
//! rejection, a stock engine, the installed files against docs/ovirt-protocol.md §5.4, `openssl
//! verify`, the simulator's mTLS check against a stand-in vdsm that loads only the installed
//! files, a reboot that sends nothing new, and one key pair per enrolment across crashes.
//! Each run is a "boot" in a private mount namespace with a short `ovirt.reg.timeout`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use qemu_tests::vdsm_check::stand_in_vdsm;
use qemu_tests::{Event, Handle, SimConfig, Simulator};

mod common;
use common::{Node, BIN, UUID};

const TOKEN_FILE: &str = "/etc/ovirt-node-reg/token";

impl Node {
    fn token_file(&self, token: &str, mode: u32) {
        self.write(TOKEN_FILE, &format!("{token}\n"));
        fs::set_permissions(self.path(TOKEN_FILE), fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Boot with `args` on the kernel command line; fast retries, bounded by `timeout`;
    /// `fault` sets a crash point.
    fn boot(
        &self,
        sim: &Handle,
        args: &str,
        timeout: u64,
        fault: Option<&str>,
    ) -> (Output, String) {
        self.set_cmdline(sim, args, timeout);
        self.run_with(&["--debug", "boot"], fault)
    }

    fn set_cmdline(&self, sim: &Handle, args: &str, timeout: u64) {
        let cmdline = format!(
            "ro management_server=127.0.0.1:{} ovirt.reg.store=/config hostname=node1.example.com \
             ovirt.reg.ca_pin=sha256:{} ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 \
             ovirt.reg.timeout={timeout} {args}\n",
            sim.port(),
            sim.ca_sha256()
        );
        self.write("/proc/cmdline", &cmdline);
    }

    fn status_json(&self) -> serde_json::Value {
        let out = Command::new(BIN)
            .arg("--root")
            .arg(&self.root)
            .args(["status", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn start(cfg: SimConfig) -> Handle {
    let sim = Simulator::start(cfg).expect("simulator starts");
    sim.set_retry_after(1);
    sim
}

fn banner(err: &str) -> &str {
    err.lines()
        .rev()
        .find(|l| l.starts_with("ovirt-node-reg: "))
        .unwrap_or_else(|| panic!("no banner: {err}"))
}

fn commands(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.is_request())
        .filter_map(|e| e.command().map(str::to_string))
        .collect()
}

fn count(sim: &Handle, command: &str) -> usize {
    commands(&sim.events())
        .iter()
        .filter(|c| *c == command)
        .count()
}

/// A node enrolled in one boot with a token file.
fn enrolled() -> (Handle, Node) {
    enrolled_with("")
}

/// The same, with more kernel arguments.
fn enrolled_with(args: &str) -> (Handle, Node) {
    let sim = start(SimConfig::default());
    let node = Node::new();
    let token = sim
        .create_token(Duration::from_secs(600), Some(UUID))
        .unwrap();
    node.token_file(&token.token, 0o600);
    let arg = format!("ovirt.reg.token_file={TOKEN_FILE} {args}");
    let (out, err) = node.boot(&sim, &arg, 30, None);
    assert!(out.status.success(), "{err}");
    assert!(
        banner(&err).starts_with("ovirt-node-reg: ok, step done"),
        "{err}"
    );
    assert!(!err.contains(&token.token), "the token is never logged");
    for f in [
        "/config/ovirt-node-reg/state.json",
        "/run/ovirt-node-reg/status.json",
    ] {
        assert!(!node.read(f).contains(&token.token), "{f}");
    }
    (sim, node)
}

#[test]
fn manual_approval_across_two_boots() {
    let sim = start(SimConfig::default());
    let node = Node::new();
    let t0 = Instant::now();
    let (out, err) = node.boot(&sim, "", 5, None);
    assert!(out.status.success(), "pending is not a failure: {err}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "bounded by the deadline"
    );
    let fp = sim.enrollment(UUID).expect("CSRs submitted").fingerprint;
    let line = banner(&err);
    assert!(
        line.starts_with("ovirt-node-reg: waiting, step approved: waiting for approval"),
        "{line}"
    );
    assert!(
        line.contains(&format!("enrolment fingerprint {fp}")),
        "{line}"
    );
    assert!(
        err.contains(&format!("enrolment fingerprint {fp}: compare it")),
        "shown on the console: {err}"
    );
    let cmds = commands(&sim.events());
    assert_eq!(
        cmds[..6],
        [
            "get-version",
            "get-pki-trust",
            "get-ssh-trust",
            "register",
            "get-version",
            "submit-csr"
        ]
    );
    assert!(
        cmds[6..].iter().all(|c| c == "get-certificates") && cmds.len() > 6,
        "{cmds:?}"
    );
    let status = node.status_json();
    assert_eq!(
        (status["step"].as_str(), status["result"].as_str()),
        (Some("approved"), Some("waiting"))
    );
    let reason = status["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("engine CA sha256:{}", sim.ca_sha256())),
        "{reason}"
    );

    sim.approve(UUID).unwrap();
    let before = sim.events().len();
    let (out, err) = node.boot(&sim, "", 30, None);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        commands(&sim.events()[before..]),
        ["get-version", "get-certificates"],
        "the clock, then one poll: nothing submitted again"
    );
    let status = node.status_json();
    assert_eq!(
        (status["step"].as_str(), status["result"].as_str()),
        (Some("done"), Some("ok"))
    );
    let reason = status["reason"].as_str().unwrap();
    for part in [
        format!("enrolled with 127.0.0.1:{}", sim.port()),
        format!("engine CA sha256:{}", sim.ca_sha256()),
        format!("keys {fp}"),
        "certificate valid until 20".to_string(),
    ] {
        assert!(reason.contains(&part), "{part}: {reason}");
    }
    assert_eq!(sim.enrollment(UUID).unwrap().submissions, 1);
    assert!(
        !node.path("/config/ovirt-node-reg/pending").exists(),
        "pending key material removed"
    );
}

#[test]
fn token_auto_approval_in_one_boot() {
    let (sim, _node) = enrolled();
    let e = sim.enrollment(UUID).unwrap();
    assert!(e.approved_by_token);
    assert_eq!((e.submissions, e.signed), (1, 1));
}

#[test]
fn a_readable_token_file_is_refused_before_anything_is_submitted() {
    let sim = start(SimConfig::default());
    let node = Node::new();
    let token = sim.create_token(Duration::from_secs(600), None).unwrap();
    node.token_file(&token.token, 0o644);
    let (out, err) = node.boot(
        &sim,
        &format!("ovirt.reg.token_file={TOKEN_FILE}"),
        10,
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        banner(&err).contains("FAILED at step csr_submitted: ovirt.reg.token_file"),
        "{err}"
    );
    assert!(banner(&err).contains("refused"), "{err}");
    assert!(!err.contains(&token.token));
    assert_eq!(count(&sim, "submit-csr"), 0);
}

#[test]
fn rsa_keys_enrol_for_engines_that_need_them() {
    let (_sim, node) = enrolled_with("ovirt.reg.key=rsa");
    for cert in [
        "/etc/pki/vdsm/certs/vdsmcert.pem",
        "/etc/pki/vdsm/libvirt-migrate/server-cert.pem",
    ] {
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(node.path(&format!("/config{cert}")))
            .output()
            .expect("openssl runs (apt-get install openssl)");
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("rsaEncryption") && text.contains("2048 bit"),
            "{cert}: {text}"
        );
    }
}

#[test]
fn rejection_is_final() {
    let sim = start(SimConfig::default());
    let node = Node::new();
    let (out, err) = node.boot(&sim, "", 3, None);
    assert!(out.status.success(), "{err}");
    sim.reject_with(UUID, "unknown hardware").unwrap();
    let (out, err) = node.boot(&sim, "", 10, None);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        banner(&err).contains("FAILED at step approved: rejected by engine: unknown hardware"),
        "{err}"
    );
    let polls = count(&sim, "get-certificates");
    let (out, err) = node.boot(&sim, "", 10, None);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        banner(&err).contains("rejected by engine: unknown hardware"),
        "{err}"
    );
    assert_eq!(
        count(&sim, "get-certificates"),
        polls,
        "never asked again on its own"
    );
    assert!(!node
        .path("/config/etc/pki/vdsm/certs/vdsmcert.pem")
        .exists());
}

#[test]
fn stock_engine_stops_after_registering() {
    let sim = start(SimConfig {
        protocol_version: 1,
        ..SimConfig::default()
    });
    let node = Node::new();
    let (out, err) = node.boot(&sim, "", 10, None);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        banner(&err),
        "ovirt-node-reg: waiting, step csr_submitted: registered, waiting for engine host deploy"
    );
    let cmds = commands(&sim.events());
    assert_eq!(
        cmds,
        [
            "get-version",
            "get-pki-trust",
            "get-ssh-trust",
            "register",
            "get-version"
        ]
    );
    assert!(
        !node.path("/config/ovirt-node-reg/pending").exists(),
        "no keys made"
    );
    assert!(
        node.read("/config/root/.ssh/authorized_keys")
            .contains("ovirt-engine"),
        "SSH trust kept"
    );
}

/// docs/ovirt-protocol.md §5.4 (Era D): path, uid, gid, mode; uid/gid 36 and 107 because the test
/// root has no passwd/group naming vdsm, kvm and qemu. Links: mode 0o777.
const TABLE: [(&str, u32, u32, u32); 14] = [
    ("/etc/pki/vdsm/keys/vdsmkey.pem", 36, 36, 0o440),
    ("/etc/pki/vdsm/certs/vdsmcert.pem", 0, 36, 0o644),
    ("/etc/pki/vdsm/certs/cacert.pem", 0, 36, 0o644),
    ("/etc/pki/vdsm/libvirt-spice/ca-cert.pem", 0, 36, 0o644),
    ("/etc/pki/vdsm/libvirt-spice/server-cert.pem", 0, 36, 0o644),
    ("/etc/pki/vdsm/libvirt-spice/server-key.pem", 36, 36, 0o440),
    ("/etc/pki/libvirt/clientcert.pem", 0, 36, 0o644),
    ("/etc/pki/libvirt/private/clientkey.pem", 36, 36, 0o440),
    ("/etc/pki/CA/cacert.pem", 0, 36, 0o644),
    ("/etc/pki/vdsm/libvirt-migrate/ca-cert.pem", 0, 36, 0o644),
    (
        "/etc/pki/vdsm/libvirt-migrate/server-cert.pem",
        0,
        36,
        0o644,
    ),
    (
        "/etc/pki/vdsm/libvirt-migrate/server-key.pem",
        0,
        107,
        0o440,
    ),
    (
        "/etc/pki/vdsm/libvirt-migrate/client-cert.pem",
        0,
        36,
        0o777,
    ),
    (
        "/etc/pki/vdsm/libvirt-migrate/client-key.pem",
        0,
        107,
        0o777,
    ),
];

#[test]
fn installed_files_owners_and_modes() {
    let (sim, node) = enrolled();
    let listed = node.read("/config/files");
    for (path, uid, gid, mode) in TABLE {
        // The stored copy is what every later boot mounts; the live file must match it.
        for at in [format!("/config{path}"), path.to_string()] {
            let m = fs::symlink_metadata(node.path(&at)).unwrap_or_else(|e| panic!("{at}: {e}"));
            assert_eq!(
                (m.uid(), m.gid(), m.mode() & 0o777),
                (uid, gid, mode),
                "{at}"
            );
        }
        assert!(
            listed.contains(&format!("{path}\n")),
            "{path} persisted: {listed}"
        );
    }
    let link = |p: &str| {
        fs::read_link(node.path(&format!("/config/etc/pki/vdsm/libvirt-migrate/{p}"))).unwrap()
    };
    assert_eq!(link("client-cert.pem"), PathBuf::from("server-cert.pem"));
    assert_eq!(link("client-key.pem"), PathBuf::from("server-key.pem"));
    for dir in [
        "/etc/pki/vdsm",
        "/etc/pki/vdsm/keys",
        "/etc/pki/vdsm/libvirt-migrate",
    ] {
        let m = fs::metadata(node.path(dir)).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o777),
            (36, 36, 0o755),
            "{dir}"
        );
    }
    assert_eq!(
        node.read("/config/etc/pki/vdsm/certs/cacert.pem"),
        sim.ca_pem()
    );
    assert_eq!(
        node.read("/config/etc/pki/vdsm/libvirt-migrate/ca-cert.pem"),
        sim.qemu_ca_pem()
    );
    let conf = node.read("/config/etc/vdsm/vdsm.conf");
    assert_eq!(
        conf,
        "[vars]\nssl = true\ntrust_store_path = /etc/pki/vdsm\n\n[addresses]\nmanagement_port = 54321\n"
    );
    assert_eq!(
        node.read("/config/etc/sysctl.d/ovirt-node-reg-core.conf"),
        "kernel.core_pattern = /var/log/core/core.%p.%t.dump\n"
    );
}

#[test]
fn openssl_verifies_the_installed_chains() {
    let (_sim, node) = enrolled();
    for (ca, cert) in [
        (
            "/etc/pki/vdsm/certs/cacert.pem",
            "/etc/pki/vdsm/certs/vdsmcert.pem",
        ),
        ("/etc/pki/CA/cacert.pem", "/etc/pki/libvirt/clientcert.pem"),
        (
            "/etc/pki/vdsm/libvirt-migrate/ca-cert.pem",
            "/etc/pki/vdsm/libvirt-migrate/client-cert.pem",
        ),
    ] {
        let out = Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(node.path(&format!("/config{ca}")))
            .arg(node.path(&format!("/config{cert}")))
            .output()
            .expect("the openssl CLI is installed (apt-get install openssl)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.trim_end().ends_with(": OK"),
            "{cert}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_engine_reaches_the_installed_vdsm_over_mtls() {
    let (sim, node) = enrolled();
    let read = |p: &str| node.read(&format!("/config/etc/pki/vdsm/{p}"));
    // The stand-in loads only the installed files.
    let (addr, vdsm) = stand_in_vdsm(
        pem_der(&read("certs/vdsmcert.pem")),
        pem_der(&read("keys/vdsmkey.pem")),
        pem_der(&read("certs/cacert.pem")),
    );
    assert_eq!(sim.check_vdsm(UUID, Some(addr)), Ok(()));
    assert_eq!(vdsm.join().unwrap(), Ok(()));
}

#[test]
fn reboot_when_done_sends_nothing_but_the_clock_check() {
    let (sim, node) = enrolled();
    let stored = || fs::read(node.path("/config/etc/pki/vdsm/certs/vdsmcert.pem")).unwrap();
    let cert = stored();
    let before = sim.events().len();
    let (out, err) = node.boot(&sim, "", 30, None);
    assert!(out.status.success(), "{err}");
    assert!(
        banner(&err).starts_with("ovirt-node-reg: ok, step done: enrolled with"),
        "{err}"
    );
    assert_eq!(commands(&sim.events()[before..]), ["get-version"]);
    assert_eq!(stored(), cert, "nothing re-issued");
}

#[test]
fn renews_with_the_same_keys_near_expiry() {
    let sim = start(SimConfig::default());
    // A 20 s lifetime is back-dated by a tenth: notBefore = issue − 2 s, notAfter = issue +
    // 20 s, so the 70–90 % renewal point lies 13.4–17.8 s after issue.
    sim.set_cert_lifetime(Duration::from_secs(20));
    let node = Node::new();
    let token = sim
        .create_token(Duration::from_secs(600), Some(UUID))
        .unwrap();
    node.token_file(&token.token, 0o600);
    let arg = format!("ovirt.reg.token_file={TOKEN_FILE}");
    let (out, err) = node.boot(&sim, &arg, 30, None);
    assert!(out.status.success(), "{err}");
    let stored = |p: &str| node.read(&format!("/config{p}"));
    let (key, cert) = (
        stored("/etc/pki/vdsm/keys/vdsmkey.pem"),
        stored("/etc/pki/vdsm/certs/vdsmcert.pem"),
    );
    let fp = sim.enrollment(UUID).unwrap().fingerprint;

    // Not due yet: nothing but the clock.
    let before = sim.events().len();
    let (out, err) = node.boot(&sim, &arg, 30, None);
    assert!(out.status.success(), "{err}");
    assert_eq!(commands(&sim.events()[before..]), ["get-version"]);

    thread::sleep(Duration::from_secs(18));
    // The token is used up (and gone): renewal does not need it.
    fs::remove_file(node.path(TOKEN_FILE)).unwrap();
    let (out, err) = node.boot(&sim, &arg, 30, None);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("enrolling again with the same keys: the certificate passed"),
        "{err}"
    );
    assert!(
        banner(&err).starts_with("ovirt-node-reg: ok, step done"),
        "{err}"
    );
    let e = sim.enrollment(UUID).unwrap();
    assert_eq!(
        (e.submissions, e.signed, e.fingerprint),
        (2, 2, fp),
        "same keys, signed again"
    );
    assert_eq!(
        stored("/etc/pki/vdsm/keys/vdsmkey.pem"),
        key,
        "never re-keyed"
    );
    assert_ne!(
        stored("/etc/pki/vdsm/certs/vdsmcert.pem"),
        cert,
        "a new certificate"
    );
    assert!(!node.path("/config/ovirt-node-reg/pending").exists());
}

/// Boot with a token and a crash at `fault`, then again without: the rerun finishes with one
/// host, one submission, one signing and the key pair of the first run.
fn crash_then_rerun(fault: &str) {
    let sim = start(SimConfig::default());
    let node = Node::new();
    let token = sim
        .create_token(Duration::from_secs(600), Some(UUID))
        .unwrap();
    node.token_file(&token.token, 0o400);
    let arg = format!("ovirt.reg.token_file={TOKEN_FILE}");
    let (out, err) = node.boot(&sim, &arg, 30, Some(fault));
    assert!(!out.status.success(), "{fault}: killed: {err}");
    let point = fault.split('#').next().unwrap();
    assert!(
        err.contains(&format!("fault point {point}")),
        "{fault}: {err}"
    );
    let (out, err) = node.boot(&sim, &arg, 30, None);
    assert!(out.status.success(), "{fault}: {err}");
    assert!(
        banner(&err).starts_with("ovirt-node-reg: ok, step done"),
        "{fault}: {err}"
    );
    assert_eq!(sim.hosts().len(), 1, "{fault}");
    let e = sim.enrollment(UUID).unwrap();
    assert_eq!((e.submissions, e.signed), (1, 1), "{fault}");
    let reason = node.status_json()["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains(&format!("keys {}", e.fingerprint)),
        "{fault}: {reason}"
    );
}

/// Inside the enrolment steps: after the keys are stored, after submitting, between
/// installed files, once all 14 are written but their store transaction not committed,
/// before the pending keys are removed.
#[test]
fn one_key_pair_per_enrolment_across_crashes() {
    for fault in [
        "flow.keys_written",
        "flow.csr_submitted",
        "flow.approved",
        "install.file#7",
        "install.file#14",
        "flow.vdsm_configured",
    ] {
        crash_then_rerun(fault);
    }
}

/// At every step: after its work, before and after its checkpoint.
#[test]
fn a_crash_at_every_step_boundary_resumes() {
    for step in [
        "configured",
        "clock_ok",
        "engine_trusted",
        "registered",
        "csr_submitted",
        "approved",
        "certs_installed",
        "vdsm_configured",
        "done",
    ] {
        crash_then_rerun(&format!("flow.{step}.done"));
        crash_then_rerun(&format!("flow.{step}.checkpointed"));
    }
}

// ------------------------------------------------------------------ the stand-in vdsm

fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn initramfs_stage_stops_after_submitting_and_system_stage_finishes() {
    let sim = start(SimConfig::default());
    let node = Node::new();
    let token = sim
        .create_token(Duration::from_secs(600), Some(UUID))
        .unwrap();
    node.token_file(&token.token, 0o600);
    node.set_cmdline(&sim, &format!("ovirt.reg.token_file={TOKEN_FILE}"), 30);
    let (out, err) = node.run(&["boot", "--stage", "initramfs"]);
    assert!(out.status.success(), "{err}");
    assert!(
        banner(&err)
            .starts_with("ovirt-node-reg: waiting, step csr_submitted: initramfs stage done"),
        "{err}"
    );
    assert_eq!(count(&sim, "submit-csr"), 1);
    assert_eq!(
        count(&sim, "get-certificates"),
        0,
        "the initramfs does not wait for approval"
    );
    let (out, err) = node.run(&["boot", "--stage", "system"]);
    assert!(out.status.success(), "{err}");
    assert!(
        banner(&err).starts_with("ovirt-node-reg: ok, step done"),
        "{err}"
    );
    assert_eq!(count(&sim, "submit-csr"), 1, "resumed, not submitted again");
    let status = node.status_json();
    assert_eq!(status["engine"], format!("127.0.0.1:{}", sim.port()));
    assert_eq!(
        status["ca_fingerprint"],
        format!("sha256:{}", sim.ca_sha256())
    );
    assert_eq!(
        status["csr_fingerprint"],
        sim.enrollment(UUID).unwrap().fingerprint
    );
    assert!(
        status["cert_not_after"].as_str().unwrap().starts_with("20"),
        "{status}"
    );
    let (out, err) = node.run(&["boot", "--stage", "later"]);
    assert!(!out.status.success());
    assert!(err.contains("initramfs or system"), "{err}");
}

#[test]
fn approval_wait_is_bounded_by_approval_timeout() {
    let sim = start(SimConfig::default());
    let node = Node::new();
    let t0 = Instant::now();
    let (out, err) = node.boot(&sim, "ovirt.reg.approval_timeout=3", 60, None);
    assert!(out.status.success(), "waiting is not a failure: {err}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "gave up waiting long before ovirt.reg.timeout: {:?}",
        t0.elapsed()
    );
    assert!(
        banner(&err).starts_with("ovirt-node-reg: waiting, step approved"),
        "{err}"
    );
}

#[test]
fn reenroll_gets_a_new_certificate_for_the_same_keys() {
    let (sim, node) = enrolled();
    let key_before = node.read("/config/etc/pki/vdsm/keys/vdsmkey.pem");
    let cert_before = node.read("/config/etc/pki/vdsm/certs/vdsmcert.pem");
    let fp = sim.enrollment(UUID).unwrap().fingerprint;
    std::thread::sleep(Duration::from_millis(1100)); // a new notBefore second
    let (out, err) = node.run(&["--debug", "reenroll"]);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("requested by ovirt-node-reg reenroll"),
        "{err}"
    );
    assert!(
        banner(&err).starts_with("ovirt-node-reg: ok, step done"),
        "{err}"
    );
    assert_eq!(
        node.read("/config/etc/pki/vdsm/keys/vdsmkey.pem"),
        key_before,
        "never re-keyed"
    );
    assert_ne!(
        node.read("/config/etc/pki/vdsm/certs/vdsmcert.pem"),
        cert_before,
        "a new certificate"
    );
    assert_eq!(sim.enrollment(UUID).unwrap().fingerprint, fp);
    let state: serde_json::Value =
        serde_json::from_str(&node.read("/config/ovirt-node-reg/state.json")).unwrap();
    assert_eq!(state["reenroll_requested"], false, "asked once, done once");

    let fresh = Node::new();
    fresh.set_cmdline(&sim, "", 10);
    let (out, err) = fresh.run(&["reenroll"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("not enrolled yet"), "{err}");
}
