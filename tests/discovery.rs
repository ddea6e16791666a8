//! Finding the engine by DNS SRV (step `engine_found`), end to end: a network namespace this
//! test creates holds a real DNS server (dnsmasq, on the namespace's own loopback, nothing
//! else on the network) serving `--srv-host` records, and the engine simulator; the real
//! binary boots inside it with only
//! `management_server=auto ovirt.reg.domain=example.test ovirt.reg.ca_pin=…`. Privileged tier.
//!
//! The node's resolver is its root's `/etc/resolv.conf`; the binary's own name lookups (the
//! engine's address, by the system resolver) see the same file, bind-mounted over
//! `/etc/resolv.conf` in the run's private mount namespace, as on a node whose root is `/`.
//! Needs root, `ip` (iproute2), `unshare`/`mount` (util-linux) and `dnsmasq` (Debian
//! dnsmasq-base, build-support/setup.sh); without them the tests fail and say so.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use qemu_tests::{Handle, SimConfig, Simulator};

mod common;
use common::{Node, BIN};

const DNSMASQ: &str = "dnsmasq";
const SRV: &str = "_ovirt-engine._tcp.example.test";
const LEGACY: &str = "_ovirt._tcp.example.test";
const ENGINE: &str = "engine.example.test";

fn require_tools() {
    common::require_root();
    assert!(
        common::tool_present("ip"),
        "`ip` (iproute2) is missing: run build-support/setup.sh"
    );
    assert!(
        common::tool_present(DNSMASQ),
        "dnsmasq is missing: install Debian's dnsmasq-base (build-support/setup.sh)"
    );
}

/// A network namespace with only its loopback up; deleted when dropped, even on failure.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "onr-dns-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns(name);
        run_ok(Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]));
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("running a setup command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespace, its DNS server and its engine.
struct Lab {
    ns: Netns,
    sim: Handle,
    dir: tempfile::TempDir,
    dnsmasq: Option<Child>,
}

impl Lab {
    /// The simulator listens on the namespace's loopback (its socket is made by a thread
    /// moved into the namespace), with `engine.example.test` in its server certificate.
    fn new() -> Lab {
        require_tools();
        let ns = Netns::new();
        let handle = fs::File::open(format!("/run/netns/{}", ns.0)).unwrap();
        let sim = std::thread::spawn(move || {
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&handle),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("entering the namespace");
            Simulator::start(SimConfig {
                protocol_version: 1,
                extra_names: vec![ENGINE.into()],
                ..SimConfig::default()
            })
            .expect("simulator starts")
        })
        .join()
        .expect("starting the simulator");
        Lab {
            ns,
            sim,
            dir: tempfile::tempdir().unwrap(),
            dnsmasq: None,
        }
    }

    /// dnsmasq on 127.0.0.1:53 of the namespace, UDP and TCP, answering from `records`
    /// (`--srv-host=…`, `--host-record=…`) only: no upstream, no /etc/hosts.
    fn dns(&mut self, records: &[String]) {
        let pid = self.dir.path().join("dnsmasq.pid");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns.0, DNSMASQ])
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--user=root",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--log-queries",
                "--local=/example.test/",
            ])
            .arg(format!("--pid-file={}", pid.display()))
            .arg(format!(
                "--log-facility={}",
                self.dir.path().join("dnsmasq.log").display()
            ))
            .args(records);
        self.dnsmasq = Some(common::start_dnsmasq(&mut cmd, &pid));
    }

    fn dns_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    fn pin(&self) -> String {
        format!("sha256:{}", self.sim.ca_sha256())
    }

    /// `boot` of `node` inside the namespace with `cmdline`, its root's resolv.conf also the
    /// system resolver's for this run.
    fn boot(&self, node: &Node, resolv: &str, cmdline: &str) -> (Output, String) {
        self.run(node, resolv, cmdline, "boot")
    }

    /// `command` of `node` inside the namespace, as [`Lab::boot`] runs `boot`.
    fn run(&self, node: &Node, resolv: &str, cmdline: &str, command: &str) -> (Output, String) {
        node.write("/etc/resolv.conf", resolv);
        let conf = node.path("/etc/resolv.conf");
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).unwrap();
        node.write(
            "/proc/cmdline",
            &format!("ro ovirt.reg.store=/config ovirt.reg.timeout=40 {cmdline}\n"),
        );
        let script = r#"mount --bind "$1" /etc/resolv.conf && shift && exec "$@""#;
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns.0])
            .args(["unshare", "--mount", "--propagation", "private"])
            .args(["sh", "-c", script, "sh"])
            .arg(&conf)
            .arg(BIN)
            .arg("--root")
            .arg(&node.root)
            .args(["--debug", command])
            .env_remove("OVIRT_NODE_REG_FAULT")
            .output()
            .expect("running the node in the namespace");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out, err)
    }

    fn commands(&self) -> Vec<String> {
        self.sim
            .requests()
            .iter()
            .filter_map(|e| e.command().map(str::to_string).or_else(|| e.path.clone()))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn banner(err: &str) -> &str {
    err.lines()
        .rev()
        .find(|l| l.starts_with("ovirt-node-reg: "))
        .unwrap_or("(no banner)")
}

/// The SRV records under `srv`: a dead engine first (priority 0, a port nobody listens on),
/// then the simulator (priority 1), then `fillers` records of priority 9 with long names
/// that push the answer past 512 bytes (so it comes truncated over UDP and whole over TCP);
/// every name resolves to the namespace's loopback.
fn records(lab: &Lab, srv: &str, fillers: usize) -> Vec<String> {
    let mut r = vec![
        format!("--srv-host={srv},dead.example.test,1,0,0"),
        format!("--srv-host={srv},{ENGINE},{},1,0", lab.sim.port()),
        "--host-record=dead.example.test,127.0.0.1".into(),
        format!("--host-record={ENGINE},127.0.0.1"),
    ];
    for i in 0..fillers {
        r.push(format!(
            "--srv-host={srv},filler-{i:02}-{}.example.test,1,9,0",
            "x".repeat(50)
        ));
    }
    r
}

#[test]
fn a_node_with_only_auto_a_domain_and_a_pin_finds_the_engine_and_registers() {
    let mut lab = Lab::new();
    lab.dns(&records(&lab, SRV, 0));
    // Over UDP, then over TCP only (`use-vc`), as a node behind QEMU's guestfwd must.
    for (resolv, what) in [
        ("nameserver 127.0.0.1\n", "UDP"),
        ("nameserver 127.0.0.1\noptions use-vc\n", "TCP"),
    ] {
        let node = Node::new();
        let cmdline = format!(
            "management_server=auto ovirt.reg.domain=example.test ovirt.reg.ca_pin={}",
            lab.pin()
        );
        let (out, err) = lab.boot(&node, resolv, &cmdline);
        let engine = format!("{ENGINE}:{}", lab.sim.port());
        assert!(out.status.success(), "{what}: {err}");
        assert_eq!(
            banner(&err),
            format!(
                "ovirt-node-reg: waiting, step csr_submitted: registered, waiting for engine \
                 host deploy (engine {engine} from DNS SRV {SRV})"
            ),
            "{what}: {err}"
        );
        // The dead engine was tried first, in the SRV order, and skipped.
        assert!(
            err.contains("engine dead.example.test:1 from DNS SRV"),
            "{what}: {err}"
        );
        let status = node.read("/run/ovirt-node-reg/status.json");
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(v["engine"], engine.as_str(), "{what}");
        assert_eq!(v["engine_source"], format!("DNS SRV {SRV}"), "{what}");
        // The legacy files name the engine found, as they name a configured one.
        let reg_conf = node.read("/config/etc/vdsm-reg/vdsm-reg.conf");
        assert!(
            reg_conf.contains(&format!("vdc_host_name={ENGINE}\n"))
                && reg_conf.contains(&format!("vdc_host_port={}\n", lab.sim.port())),
            "{what}: {reg_conf}"
        );
        let default_ovirt = node.read("/config/etc/default/ovirt");
        assert!(
            default_ovirt.contains(&format!("OVIRT_MANAGEMENT_SERVER=\"{engine}\"")),
            "{what}: {default_ovirt}"
        );
    }
    assert_eq!(
        lab.commands().iter().filter(|c| *c == "register").count(),
        2,
        "one registration per node: {:?}",
        lab.commands()
    );
    assert!(
        lab.dns_log().contains(&format!("query[SRV] {SRV}")),
        "{}",
        lab.dns_log()
    );
}

#[test]
fn a_truncated_answer_is_asked_again_over_tcp_and_the_legacy_name_is_asked_second() {
    let mut lab = Lab::new();
    // Only the legacy name has records, and too many for one UDP answer.
    lab.dns(&records(&lab, LEGACY, 12));
    let node = Node::new();
    let cmdline = format!(
        "management_server=auto ovirt.reg.domain=example.test ovirt.reg.ca_pin={}",
        lab.pin()
    );
    let (out, err) = lab.boot(&node, "nameserver 127.0.0.1\n", &cmdline);
    assert!(out.status.success(), "{err}");
    assert!(
        banner(&err).ends_with(&format!(
            "(engine {ENGINE}:{} from DNS SRV {LEGACY})",
            lab.sim.port()
        )),
        "{err}"
    );
    assert!(err.contains("truncated over UDP; asking over TCP"), "{err}");
    // The engine's own name first, then the legacy one.
    let log = lab.dns_log();
    let own = log.find(&format!("query[SRV] {SRV}")).expect(&log);
    let legacy = log.find(&format!("query[SRV] {LEGACY}")).expect(&log);
    assert!(own < legacy, "{log}");
    // The fillers (priority 9) come after the engine (priority 1): never tried.
    assert!(!err.contains("filler-"), "{err}");
    let status = node.output(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("from:      DNS SRV {LEGACY}")),
        "{text}"
    );
    // `register` without --engine sends `register` again to the engine found, not asking DNS.
    let asked = lab.dns_log().matches("query[SRV]").count();
    let (out, err) = lab.run(&node, "nameserver 127.0.0.1\n", &cmdline, "register");
    assert!(out.status.success(), "{err}");
    let registers = lab.commands().iter().filter(|c| *c == "register").count();
    assert_eq!(registers, 2, "{:?}", lab.commands());
    assert_eq!(lab.dns_log().matches("query[SRV]").count(), asked);
}

#[test]
fn a_discovered_engine_with_another_ca_is_refused_and_sent_nothing() {
    let mut lab = Lab::new();
    lab.dns(&records(&lab, SRV, 0));
    let other = ovirt_node_reg::trust::CaCert::from_pem(lab.sim.other_ca_pem().as_bytes())
        .unwrap()
        .sha256_pin();
    let node = Node::new();
    let cmdline =
        format!("management_server=auto ovirt.reg.domain=example.test ovirt.reg.ca_pin={other}");
    let (out, err) = lab.boot(&node, "nameserver 127.0.0.1\n", &cmdline);
    assert!(!out.status.success(), "{err}");
    let line = banner(&err);
    assert!(
        line.starts_with(&format!(
            "ovirt-node-reg: FAILED at step engine_found: no engine DNS SRV {SRV} named could be trusted"
        )) && line.contains(&lab.sim.ca_sha256()),
        "{line}"
    );
    assert_eq!(
        lab.commands(),
        ["get-pki-trust"],
        "nothing but the CA download"
    );
    assert!(!node.path("/config/etc/pki/ovirt-engine/ca.pem").exists());
}

#[test]
fn without_records_or_a_pin_discovery_says_what_to_give() {
    let mut lab = Lab::new();
    lab.dns(&[]);
    let node = Node::new();
    let cmdline = format!(
        "management_server=auto ovirt.reg.domain=example.test ovirt.reg.ca_pin={}",
        lab.pin()
    );
    let started = Instant::now();
    let (out, err) = lab.boot(&node, "nameserver 127.0.0.1\n", &cmdline);
    assert!(!out.status.success(), "{err}");
    assert!(
        banner(&err).contains(&format!(
            "no SRV records for {SRV} or _ovirt._tcp.example.test"
        )),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // No pin: discovery is not even tried (it would widen trust to whatever DNS names).
    let node = Node::new();
    let (out, err) = lab.boot(
        &node,
        "nameserver 127.0.0.1\n",
        "management_server=auto ovirt.reg.domain=example.test ovirt.reg.insecure_tofu",
    );
    assert!(!out.status.success(), "{err}");
    assert!(
        banner(&err).contains("ovirt.reg.ca_pin=sha256:… to find the engine by DNS SRV"),
        "{err}"
    );
    assert!(lab.commands().is_empty(), "{:?}", lab.commands());
}
