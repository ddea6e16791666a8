//! `ovirt-node-reg bootstrap` through the real binary: the check report on this machine
//! (real /proc, dpkg, systemctl), on prepared roots with stand-in tools (a failed check
//! changes nothing), and the full bootstrap of a storeless host against the simulator.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use qemu_tests::{Handle, SimConfig, Simulator};
use serde_json::Value;

mod common;
use common::{output_with_stdin, Node, BIN, UUID};

const PACKAGES: [&str; 4] = ["vdsm", "libvirt-daemon-kvm", "qemu-kvm", "openssh-server"];

/// A prepared host root (Rocky 9, VT, 8 GiB, the packages, the services running) and a
/// directory of stand-in tools (`rpm`, `systemctl`) that answer for it.
struct Host {
    node: Node,
    tools: tempfile::TempDir,
}

impl Host {
    fn new(missing: &[&str]) -> Host {
        let node = Node::new();
        fs::remove_dir(node.path("/config")).unwrap();
        node.write(
            "/etc/os-release",
            "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n",
        );
        node.write("/proc/sys/kernel/osrelease", "5.14.0-427.el9.x86_64\n");
        node.write(
            "/proc/cpuinfo",
            "processor\t: 0\nflags\t\t: fpu vme vmx sse2\n",
        );
        node.write("/dev/kvm", "");
        node.write("/proc/meminfo", "MemTotal:        8000000 kB\n");
        fs::create_dir_all(node.path("/run/systemd/system")).unwrap();
        node.write(
            "/etc/yum.repos.d/rocky.repo",
            "[baseos]\nname=BaseOS\n[extras]\nenabled=0\n",
        );
        node.write("/etc/hostname", "host1.example.com\n");
        node.write("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
        node.write("/etc/group", "root:x:0:\n");
        let tools = tempfile::tempdir().unwrap();
        let installed: Vec<&str> = PACKAGES
            .iter()
            .copied()
            .filter(|p| !missing.contains(p))
            .collect();
        tool(
            tools.path(),
            "rpm",
            &format!(
                "for last; do :; done\ncase \" {} \" in *\" $last \"*) printf '1.0-1.el9'; exit 0;; esac\n\
                 echo \"package $last is not installed\"; exit 1\n",
                installed.join(" ")
            ),
        );
        tool(
            tools.path(),
            "systemctl",
            "case $1 in is-enabled) echo enabled;; is-active) echo active;; esac\n",
        );
        Host { node, tools }
    }

    fn bootstrap(&self, sim: &Handle, extra: &[&str], stdin: &str) -> (Output, Vec<Value>) {
        let engine = format!("127.0.0.1:{}", sim.port());
        let pin = format!("sha256:{}", sim.ca_sha256());
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", BIN, "--root"])
            .arg(&self.node.root)
            .args([
                "bootstrap",
                "--engine",
                &engine,
                "--ca-pin",
                &pin,
                "--tools-path",
            ])
            .arg(self.tools.path())
            .args(extra);
        let out = output_with_stdin(&mut cmd, stdin);
        let lines = report(&out);
        (out, lines)
    }
}

fn tool(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Every stdout line is one report line with exactly the three documented fields.
fn report(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, ["component", "message", "status"], "{l}");
            assert!(
                ["OK", "WARN", "FAIL"].contains(&v["status"].as_str().unwrap()),
                "{l}"
            );
            v
        })
        .collect()
}

fn status_of<'a>(lines: &'a [Value], component: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l["component"] == component)
        .and_then(|l| l["status"].as_str())
        .unwrap_or_else(|| panic!("no {component} line: {lines:?}"))
}

fn failed(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["status"] == "FAIL")
        .map(|l| l["component"].as_str().unwrap().to_string())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir` with its content and mode, to show that nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                todo.push(p.clone());
            }
            let data = if meta.is_file() {
                fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.insert(p, (data, meta.permissions().mode()));
        }
    }
    out
}

fn engine() -> Handle {
    Simulator::start(SimConfig::default()).expect("simulator starts")
}

#[test]
fn check_report_on_this_machine() {
    let sim = engine();
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["bootstrap", "--check-only", "--engine"])
        .arg(format!("127.0.0.1:{}", sim.port()))
        .arg("--ca-pin")
        .arg(format!("sha256:{}", sim.ca_sha256()))
        .output()
        .unwrap();
    let took = started.elapsed();
    let lines = report(&out);
    let components: Vec<&str> = lines
        .iter()
        .map(|l| l["component"].as_str().unwrap())
        .collect();
    for c in [
        "platform",
        "os",
        "kernel",
        "cpu_virtualization",
        "memory",
        "repositories",
        "engine",
        "clock",
        "hostname",
    ] {
        assert!(components.contains(&c), "{c} missing: {components:?}");
    }
    assert!(
        components.iter().any(|c| c.starts_with("package:")),
        "{components:?}"
    );
    assert!(
        components
            .iter()
            .any(|c| *c == "services" || c.starts_with("service:")),
        "{components:?}"
    );
    assert_eq!(
        status_of(&lines, "engine"),
        "OK",
        "the simulator is reachable"
    );
    assert_eq!(status_of(&lines, "platform"), "OK");
    let code = out.status.code();
    assert_eq!(
        code,
        Some(if failed(&lines).is_empty() { 0 } else { 2 }),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("bootstrap: OK   platform: Linux"),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn a_prepared_host_passes_every_check() {
    let sim = engine();
    let host = Host::new(&[]);
    let before = snapshot(&host.node.root);
    let (out, lines) = host.bootstrap(&sim, &["--check-only"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(failed(&lines).is_empty(), "{lines:?}");
    assert_eq!(status_of(&lines, "os"), "OK");
    assert_eq!(status_of(&lines, "package:vdsm"), "OK");
    assert_eq!(status_of(&lines, "service:sshd"), "OK");
    let repos = lines
        .iter()
        .find(|l| l["component"] == "repositories")
        .unwrap();
    assert_eq!(
        repos["message"], "1 configured: baseos",
        "disabled repos are left out"
    );
    assert_eq!(
        before,
        snapshot(&host.node.root),
        "--check-only changes nothing"
    );
}

/// What a case does to a good host before the run.
type Prepare = Box<dyn Fn(&Host)>;

#[test]
fn failed_checks_change_nothing() {
    let sim = engine();
    let cases: [(&str, Prepare, &str); 3] = [
        ("missing package", Box::new(|_| {}), "package:vdsm"),
        (
            "no VT",
            Box::new(|h| {
                h.node.write("/proc/cpuinfo", "flags\t\t: fpu sse2\n");
                fs::remove_file(h.node.path("/dev/kvm")).unwrap();
            }),
            "cpu_virtualization",
        ),
        (
            "unsupported OS",
            Box::new(|h| h.node.write("/etc/os-release", "NAME=Arch\nID=arch\n")),
            "os",
        ),
    ];
    for (what, prepare, component) in cases {
        let missing: &[&str] = if what == "missing package" {
            &["vdsm"]
        } else {
            &[]
        };
        let host = Host::new(missing);
        prepare(&host);
        let before = snapshot(&host.node.root);
        let (out, lines) = host.bootstrap(&sim, &["--token-file", "-"], "tok");
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(&out));
        assert!(
            failed(&lines).contains(&component.to_string()),
            "{what}: {lines:?}"
        );
        assert!(stderr(&out).contains("nothing was changed"), "{what}");
        assert_eq!(before, snapshot(&host.node.root), "{what}: nothing changed");
    }
    assert!(sim.hosts().is_empty(), "nothing was registered");
}

#[test]
fn full_bootstrap_of_a_storeless_host() {
    let sim = engine();
    let host = Host::new(&[]);
    host.node.write(
        "/proc/cmdline",
        "ro ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 ovirt.reg.timeout=60\n",
    );
    let token = sim
        .create_token(Duration::from_secs(600), Some(UUID))
        .unwrap();
    let started = Instant::now();
    let (out, lines) = host.bootstrap(&sim, &["--token-file", "-"], &token.token);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(status_of(&lines, "complete"), "OK", "{lines:?}");
    assert!(status_of(&lines, "mode") == "OK");
    let mode = lines.iter().find(|l| l["component"] == "mode").unwrap();
    assert!(
        mode["message"]
            .as_str()
            .unwrap()
            .contains("no config store"),
        "{mode}"
    );
    for step in [
        "action:configured",
        "action:registered",
        "action:certs_installed",
        "action:done",
    ] {
        assert_eq!(status_of(&lines, step), "OK", "{step}");
    }
    assert!(
        !err.contains(&token.token) && !String::from_utf8_lossy(&out.stdout).contains(&token.token)
    );
    let e = sim.enrollment(UUID).expect("enrolled");
    assert!(e.approved_by_token, "approved by the token");
    let n = &host.node;
    assert!(n
        .read("/etc/pki/vdsm/certs/vdsmcert.pem")
        .contains("BEGIN CERTIFICATE"));
    assert!(n
        .read("/root/.ssh/authorized_keys")
        .contains(&sim.ssh_key_line()));
    assert!(n
        .read("/etc/default/ovirt")
        .contains("OVIRT_MANAGEMENT_SERVER="));
    assert!(n
        .read("/var/lib/ovirt-node-reg/state.json")
        .contains("\"done\""));
    assert!(!n.path("/config").exists(), "no store");
    let token_mode = fs::metadata(n.path("/etc/ovirt-node-reg/token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(token_mode & 0o777, 0o600);
}

/// The seed's "add node as host": the engine runs the same command on an oVirt Node, which
/// saves the engine and the token in its own files (persisted in its store), installs the
/// engine's key and enrols through its own flow, approved by the token; its next boot
/// finds everything done.
#[test]
fn add_node_as_host() {
    let sim = engine();
    let host = Host::new(&[]);
    let node = &host.node;
    fs::create_dir_all(node.path("/config")).unwrap();
    node.write(
        "/etc/os-release",
        "NAME=\"CentOS Stream\"\nID=\"centos\"\nID_LIKE=\"rhel fedora\"\nVERSION_ID=\"9\"\n\
         VARIANT=\"oVirt Node 4.5.5\"\nVARIANT_ID=\"ovirt-node\"\n",
    );
    node.write(
        "/proc/cmdline",
        "ro ovirt.reg.store=/config ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 \
         ovirt.reg.timeout=60\n",
    );
    let token = sim
        .create_token(Duration::from_secs(600), Some(UUID))
        .unwrap();
    let (out, lines) = host.bootstrap(&sim, &["--token-file", "-"], &token.token);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(status_of(&lines, "os"), "OK");
    let mode = lines.iter().find(|l| l["component"] == "mode").unwrap();
    assert!(
        mode["message"].as_str().unwrap().starts_with("oVirt Node"),
        "{mode}"
    );
    assert_eq!(status_of(&lines, "complete"), "OK");
    assert!(sim.enrollment(UUID).expect("enrolled").approved_by_token);
    let engine = format!("127.0.0.1:{}", sim.port());
    assert!(node
        .read("/etc/default/ovirt")
        .contains(&format!("OVIRT_MANAGEMENT_SERVER=\"{engine}\"")));
    assert!(node
        .read("/etc/vdsm-reg/vdsm-reg.conf")
        .contains("vdc_host_name=127.0.0.1"));
    let files = node.read("/config/files");
    for p in [
        "/etc/default/ovirt",
        "/etc/ovirt-node-reg/token",
        "/root/.ssh/authorized_keys",
    ] {
        assert!(files.lines().any(|l| l == p), "{p} persisted: {files}");
    }
    assert!(node
        .read("/config/root/.ssh/authorized_keys")
        .contains(&sim.ssh_key_line()));
    assert!(node
        .read("/config/ovirt-node-reg/state.json")
        .contains("\"done\""));

    // The next boot reads the saved settings from the store and has nothing left to do.
    let registers = sim.requests().len();
    let (out, err) = node.run(&["boot"]);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ok, step done"), "{err}");
    let again: Vec<_> = sim.requests()[registers..]
        .iter()
        .filter_map(|e| e.command().map(str::to_string))
        .collect();
    assert!(!again.contains(&"register".to_string()), "{again:?}");
}
