//! The static binary booted in QEMU (qemu_tests::qemu, docs/qemu-harness.md Recipe A)
//! under the busybox `/init` of [`qemu::Image::ScriptInit`], which prints the links, bonds,
//! VLANs and addresses the binary made (tests/pid1.rs boots the binary as PID 1), against
//! the engine simulator, started here on loopback. The guest reaches only the
//! simulator's port (user-mode networking, `restrict=on`, `guestfwd` to 10.0.2.100). Each test
//! is one boot of about 3 s under TCG; the console log of a failed boot stays in
//! `target/qemu-artifacts/`. A missing qemu-system-x86, linux-image-amd64, busybox-static or
//! socat fails the test with the package's name (build-support/setup.sh installs them).

use std::collections::BTreeMap;

use qemu_tests::qemu::{self, Boot};
use qemu_tests::scenario::{Machine, Node, Scenario};

/// A stock engine (protocol v1): the flow ends at "registered, waiting for engine host
/// deploy", which is all a boot needs to prove the network, the clock and the trust.
fn engine(test: &str) -> Scenario {
    Scenario::start(test, 1)
}

/// Boots machine `name` of the busybox-`/init` image with what `setup` adds; `timeout` bounds
/// the binary in the guest. `/init` must finish and `network_up` be done.
fn script_boot<'s>(
    s: &'s Scenario,
    name: &str,
    timeout: u32,
    setup: impl FnOnce(Machine<'s>) -> Machine<'s>,
) -> (Node<'s>, Boot) {
    let mut node = setup(s.machine(name).script().timeout(timeout)).build();
    let boot = node.boot();
    assert_step(&boot, "network_up");
    (node, boot)
}

/// `QH-LINK` facts of link `name`, which must be a `kind` enslaved to `master` (`-`: none).
fn assert_link(boot: &Boot, name: &str, kind: &str, master: &str) -> BTreeMap<String, String> {
    let link = boot
        .link(name)
        .unwrap_or_else(|| panic!("no {name}\n{}", boot.tail()));
    assert_eq!(link["kind"], kind, "{name}\n{}", boot.tail());
    assert_eq!(link["master"], master, "{name}\n{}", boot.tail());
    link
}

fn completed_steps(boot: &Boot) -> Vec<String> {
    let st = boot
        .status()
        .unwrap_or_else(|| panic!("no status JSON in the guest log\n{}", boot.tail()));
    st["completed"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The simulator saw this guest register (by its SMBIOS UUID), through the guestfwd.
fn assert_registered(node: &Node, boot: &Boot) {
    let regs = node.scenario.count("register");
    assert_eq!(regs, 1, "one register request\n{}", boot.tail());
    node.assert_registered_once(boot);
    let st = boot.status().expect("status");
    assert_eq!(st["result"], "waiting", "{}", boot.tail());
    assert_eq!(
        st["reason"],
        "registered, waiting for engine host deploy",
        "{}",
        boot.tail()
    );
}

/// The guest printed the marker `prefix` with exactly `rest`.
fn assert_marker(boot: &Boot, prefix: &str, rest: &str, what: &str) {
    assert!(
        boot.lines(prefix).any(|l| l == rest),
        "{what}: no {prefix}{rest}\n{}",
        boot.tail()
    );
}

fn assert_step(boot: &Boot, step: &str) {
    let done = completed_steps(boot);
    assert!(
        done.iter().any(|s| s == step),
        "step {step} not completed ({done:?})\n{}",
        boot.tail()
    );
}

/// (a) DHCP from QEMU's user-mode server on the bridge over the BOOTIF NIC; registration
/// reaches the simulator over the restricted network.
#[test]
fn dhcp_bridge_registers() {
    let s = engine("dhcp_bridge_registers");
    let (node, boot) = script_boot(&s, "dhcp", 40, |m| m.bootif(0).args("ip=dhcp"));
    assert_eq!(boot.exit_code(), Some(0), "{}", boot.tail());
    let br = assert_link(&boot, "ovirtmgmt", "bridge", "-");
    assert_eq!(br["oper"], "up", "{}", boot.tail());
    assert_eq!(
        br["mac"], node.vm.nics[0].mac,
        "the bridge takes the NIC's MAC"
    );
    assert_link(&boot, "eth0", "nic", "ovirtmgmt");
    assert_marker(
        &boot,
        "QH-ADDR ",
        "ovirtmgmt 10.0.2.15/24",
        "the DHCP lease on the bridge",
    );
    assert_registered(&node, &boot);
    boot.pass();
}

/// (b) `vlan=100:eth0`: the VLAN is created on eth0 and enslaved to the bridge. Tagged frames
/// cannot reach user-mode networking's DHCP, so the address is static and the engine is out
/// of reach: the binary stops after network_up, within its bound.
#[test]
fn vlan_under_the_bridge() {
    let s = engine("vlan_under_the_bridge");
    let (_, boot) = script_boot(&s, "vlan", 4, |m| {
        m.args("vlan=100:eth0 ip=10.0.2.15::10.0.2.2:255.255.255.0:node1::none")
    });
    assert_ne!(
        boot.exit_code(),
        Some(0),
        "the engine is unreachable over the VLAN"
    );
    assert_link(&boot, "eth0.100", "vlan", "ovirtmgmt");
    assert_marker(
        &boot,
        "QH-VLAN ",
        "name=eth0.100 id=100 parent=eth0",
        "the VLAN's id and parent",
    );
    assert_link(&boot, "eth0", "nic", "-");
    assert_link(&boot, "ovirtmgmt", "bridge", "-");
    assert_marker(
        &boot,
        "QH-ADDR ",
        "ovirtmgmt 10.0.2.15/24",
        "the static address on the bridge",
    );
    assert_eq!(
        s.count("register"),
        0,
        "nothing should reach the engine over the VLAN"
    );
    boot.pass();
}

/// (c) `bond=bond0:eth0,eth1:mode=1` over two NICs: an active-backup bond under the bridge.
/// Its active slave is eth0, whose user-mode network answers DHCP, so the node registers too.
#[test]
fn bond_under_the_bridge() {
    let s = engine("bond_under_the_bridge");
    let (node, boot) = script_boot(&s, "bond", 40, |m| {
        m.nic("52:54:00:12:34:57")
            .args("bond=bond0:eth0,eth1:mode=1 ip=dhcp")
    });
    assert_link(&boot, "bond0", "bond", "ovirtmgmt");
    let facts = qemu::fields(boot.line("QH-BOND ").expect("bond facts"));
    assert_eq!(facts["mode"], "active-backup", "{}", boot.tail());
    assert_eq!(facts["slaves"], "eth0,eth1", "{}", boot.tail());
    for nic in ["eth0", "eth1"] {
        assert_link(&boot, nic, "nic", "bond0");
    }
    assert_eq!(boot.exit_code(), Some(0), "{}", boot.tail());
    assert_registered(&node, &boot);
    boot.pass();
}
