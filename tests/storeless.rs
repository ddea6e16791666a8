//! A host without a config store (`ovirt.reg.store=none`, or found so): files written in
//! place, nothing bind-mounted, the state in /var/lib/ovirt-node-reg; an oVirt Node still
//! refuses to run without its store. Against the stock engine simulator on loopback.

use std::fs;
use std::os::unix::fs::MetadataExt;

use qemu_tests::Handle;

mod common;
use common::{stock_engine, Node};

fn cmdline(sim: &Handle, store: &str) -> String {
    format!(
        "ro management_server=127.0.0.1:{} ovirt.reg.ca_pin=sha256:{} {store} \
         hostname=host1.example.com ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 \
         ovirt.reg.timeout=30\n",
        sim.port(),
        sim.ca_sha256()
    )
}

/// A plain installed host's root: no /config at all.
fn host() -> Node {
    let node = Node::new();
    fs::remove_dir(node.path("/config")).unwrap();
    node
}

fn assert_written_in_place(node: &Node) {
    for p in [
        "/etc/vdsm/vdsm.id",
        "/root/.ssh/authorized_keys",
        "/etc/default/ovirt",
    ] {
        let meta = fs::symlink_metadata(node.path(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(meta.is_file(), "{p} is a plain file");
    }
    assert!(!node.path("/config").exists(), "no store was made");
    let state = node.read("/var/lib/ovirt-node-reg/state.json");
    assert!(state.contains("\"registered\""), "{state}");
    let mode = fs::metadata(node.path("/var/lib/ovirt-node-reg/state.json"))
        .unwrap()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the checkpoint is private");
}

#[test]
fn store_none_on_the_command_line_writes_in_place() {
    let sim = stock_engine();
    let node = host();
    node.write("/proc/cmdline", &cmdline(&sim, "ovirt.reg.store=none"));
    let (out, err) = node.run(&["boot"]);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("no config store (ovirt.reg.store=none)"),
        "{err}"
    );
    assert!(err.contains("files are written in place"), "{err}");
    assert_written_in_place(&node);
    assert!(node
        .read("/root/.ssh/authorized_keys")
        .contains(&sim.ssh_key_line()));
}

#[test]
fn no_store_found_on_a_persistent_root_is_storeless() {
    let sim = stock_engine();
    let node = host();
    node.write("/proc/cmdline", &cmdline(&sim, ""));
    let (out, err) = node.run(&["boot"]);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("no config store"), "{err}");
    assert_written_in_place(&node);
}

#[test]
fn register_takes_store_none_as_an_option() {
    let sim = stock_engine();
    let node = host();
    node.write("/proc/cmdline", &cmdline(&sim, ""));
    let engine = format!("127.0.0.1:{}", sim.port());
    let (out, err) = node.run(&["register", "--engine", &engine, "--store", "none"]);
    assert!(out.status.success(), "{err}");
    assert!(node.path("/var/lib/ovirt-node-reg/state.json").exists());
    let (out, err) = node.run(&["register", "--engine", &engine, "--store", "relative"]);
    assert!(!out.status.success());
    assert!(err.contains("ovirt.reg.store=relative: expected an absolute path (a directory or a block device), or none"), "{err}");
}

#[test]
fn a_node_refuses_to_run_without_its_store() {
    let sim = stock_engine();
    for store in ["ovirt.reg.store=none", ""] {
        let node = host();
        node.write(
            "/etc/os-release",
            "NAME=\"oVirt Node\"\nID=ovirt-node-reg-live\n",
        );
        node.write("/proc/cmdline", &cmdline(&sim, store));
        let (out, err) = node.run(&["boot"]);
        assert!(!out.status.success(), "{store}: {err}");
        assert!(err.contains("this is an oVirt Node"), "{store}: {err}");
        assert!(!node.path("/var/lib/ovirt-node-reg").exists(), "{store}");
        assert!(!node.path("/etc/vdsm/vdsm.id").exists(), "{store}");
    }
    assert!(sim.requests().is_empty(), "nothing was sent");
}

#[test]
fn persist_on_a_storeless_host_keeps_the_file_and_unpersist_says_why_not() {
    let node = host();
    node.write("/proc/cmdline", "ro ovirt.reg.store=none\n");
    node.write("/etc/ssh/sshd_config", "Port 22\n");
    let (out, err) = node.run(&["persist", "/etc/ssh/sshd_config"]);
    assert!(out.status.success(), "{err}");
    assert_eq!(node.read("/etc/ssh/sshd_config"), "Port 22\n");
    let (out, err) = node.run(&["unpersist", "/etc/ssh/sshd_config"]);
    assert!(!out.status.success());
    assert!(err.contains("this host has no config store"), "{err}");
}
