//! The static binary booted in QEMU (qemu_tests::qemu, docs/qemu-harness.md Recipe A)
//! under the busybox `/init` of [`qemu::Image::ScriptInit`], which prints the links, bonds,
//! VLANs and addresses the binary made (tests/pid1.rs boots the binary as PID 1), against
//! the engine simulator, started here on loopback. The guest reaches only the
//! simulator's port (user-mode networking, `restrict=on`, `guestfwd` to 10.0.2.100). Each test
//! is one boot of about 3 s under TCG; the console log of a failed boot stays in
//! `target/qemu-artifacts/`. A missing qemu-system-x86, linux-image-amd64, busybox-static or
//! socat fails the test with the package's name (build-support/setup.sh installs them).

use qemu_tests::qemu::{self, Boot};
use qemu_tests::scenario::{Machine, Node, Scenario};

/// A stock engine (protocol v1): the flow ends at "registered, waiting for engine host
/// deploy", which is all a boot needs to prove the network, the clock and the trust.
fn engine(test: &str) -> Scenario {
    Scenario::start(test, 1)
}

/// A machine of the busybox-`/init` image; `timeout` bounds the binary in the guest.
fn machine<'s>(s: &'s Scenario, name: &str, timeout: u32) -> Machine<'s> {
    s.machine(name).script().timeout(timeout)
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
    let mut node = machine(&s, "dhcp", 40).bootif(0).args("ip=dhcp").build();
    let boot = node.boot();
    assert_eq!(boot.exit_code(), Some(0), "{}", boot.tail());
    assert_step(&boot, "network_up");
    let br = boot.link("ovirtmgmt").expect("bridge ovirtmgmt");
    assert_eq!(br["kind"], "bridge", "{}", boot.tail());
    assert_eq!(br["oper"], "up", "{}", boot.tail());
    assert_eq!(
        br["mac"], node.vm.nics[0].mac,
        "the bridge takes the NIC's MAC"
    );
    assert_eq!(boot.link("eth0").expect("eth0")["master"], "ovirtmgmt");
    assert!(
        boot.lines("QH-ADDR ")
            .any(|l| l == "ovirtmgmt 10.0.2.15/24"),
        "the DHCP lease on the bridge\n{}",
        boot.tail()
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
    let mut node = machine(&s, "vlan", 4)
        .args("vlan=100:eth0 ip=10.0.2.15::10.0.2.2:255.255.255.0:node1::none")
        .build();
    let boot = node.boot();
    assert_step(&boot, "network_up");
    assert_ne!(
        boot.exit_code(),
        Some(0),
        "the engine is unreachable over the VLAN"
    );
    let vlan = boot
        .link("eth0.100")
        .unwrap_or_else(|| panic!("no eth0.100\n{}", boot.tail()));
    assert_eq!(vlan["kind"], "vlan");
    assert_eq!(vlan["master"], "ovirtmgmt", "{}", boot.tail());
    assert!(
        boot.lines("QH-VLAN ")
            .any(|l| l == "name=eth0.100 id=100 parent=eth0"),
        "the VLAN's id and parent\n{}",
        boot.tail()
    );
    assert_eq!(boot.link("eth0").expect("eth0")["master"], "-");
    assert_eq!(boot.link("ovirtmgmt").expect("bridge")["kind"], "bridge");
    assert!(
        boot.lines("QH-ADDR ")
            .any(|l| l == "ovirtmgmt 10.0.2.15/24"),
        "{}",
        boot.tail()
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
    let mut node = machine(&s, "bond", 40)
        .nic("52:54:00:12:34:57")
        .args("bond=bond0:eth0,eth1:mode=1 ip=dhcp")
        .build();
    let boot = node.boot();
    assert_step(&boot, "network_up");
    let bond = boot
        .link("bond0")
        .unwrap_or_else(|| panic!("no bond0\n{}", boot.tail()));
    assert_eq!(bond["kind"], "bond");
    assert_eq!(bond["master"], "ovirtmgmt", "{}", boot.tail());
    let facts = qemu::fields(boot.line("QH-BOND ").expect("bond facts"));
    assert_eq!(facts["mode"], "active-backup", "{}", boot.tail());
    assert_eq!(facts["slaves"], "eth0,eth1", "{}", boot.tail());
    for nic in ["eth0", "eth1"] {
        assert_eq!(
            boot.link(nic).expect("nic")["master"],
            "bond0",
            "{}",
            boot.tail()
        );
    }
    assert_eq!(boot.exit_code(), Some(0), "{}", boot.tail());
    assert_registered(&node, &boot);
    boot.pass();
}
