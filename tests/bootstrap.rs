//! `ovirt-node-reg bootstrap --check-only` and failing checks through the real binary (any
//! user, the default tier): the report on this machine (real /proc, dpkg, systemctl) and on
//! prepared roots with stand-in tools; a failed check changes nothing.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::BIN;
mod bootstrap_common;
use bootstrap_common::{engine, failed, report, snapshot, status_of, stderr, Host};

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
