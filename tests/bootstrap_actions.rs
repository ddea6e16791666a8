//! `ovirt-node-reg bootstrap` with its actions, against the simulator (privileged tier: the
//! certificates are chowned to vdsm's ids, a node's store bind-mounts what it persists): the
//! full bootstrap of a storeless host, and the seed's "add node as host" on a node root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

mod common;
use common::UUID;
mod bootstrap_common;
use bootstrap_common::{engine, status_of, stderr, Host};

/// A host with every package, whose retries are short enough for a test (1 s, at most 2 s,
/// 60 s in all).
fn quick_host() -> Host {
    let host = Host::new(&[]);
    host.node.write(
        "/proc/cmdline",
        "ro ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 ovirt.reg.timeout=60\n",
    );
    host
}

#[test]
fn full_bootstrap_of_a_storeless_host() {
    let sim = engine();
    let host = quick_host();
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

/// The engine's side played by the simulator: "add host" gives the command line and the
/// token bound to the host's address; running that command (no SSH server) on the host's
/// root leaves it enrolled and approved by the token.
#[test]
fn the_engine_adds_a_host_with_the_command_it_gives() {
    let sim = engine();
    let host = quick_host();
    // The host registers with the address it reaches the engine from: loopback here.
    let added = sim.add_host("127.0.0.1", None).unwrap();
    let (out, lines) = host.run_engine_command(&added.command, &added.stdin);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(status_of(&lines, "complete"), "OK");
    let e = sim.enrollment(UUID).expect("enrolled");
    assert!(e.approved_by_token);
    assert_eq!(
        sim.host(UUID).unwrap().status,
        qemu_tests::HostStatus::Approved
    );
    assert!(
        !stderr(&out).contains(&added.stdin),
        "the token is never printed"
    );
}
