//! The static binary booted in QEMU (qemu_tests::qemu, shared/docs/qemu-harness.md Recipe A)
//! under the busybox `/init` of [`qemu::Image::ScriptInit`], which prints the links, bonds,
//! VLANs and addresses the binary made (tests/pid1.rs boots the binary as PID 1), against
//! the engine simulator, started here on loopback. The guest reaches only the
//! simulator's port (user-mode networking, `restrict=on`, `guestfwd` to 10.0.2.100). Each test
//! is one boot of about 3 s under TCG; the console log of a failed boot stays in
//! `target/qemu-artifacts/`. A missing qemu-system-x86, linux-image-amd64, busybox-static or
//! socat fails the test with the package's name (build-support/setup.sh installs them).

use qemu_tests::qemu::{self, Boot, Nic, Vm};
use qemu_tests::{Handle, SimConfig, Simulator};

/// A stock engine (protocol v1): the flow ends at "registered, waiting for engine host
/// deploy", which is all a boot needs to prove the network, the clock and the trust.
fn engine() -> Handle {
    let cfg = SimConfig {
        protocol_version: 1,
        ..SimConfig::default()
    };
    Simulator::start(cfg).expect("simulator starts")
}

/// The command line every scenario shares; `timeout` bounds the binary in the guest.
fn base_args(sim: &Handle, timeout: u32) -> String {
    format!(
        "management_server={}:{} ovirt.reg.ca_pin=sha256:{} ovirt.reg.store=/config \
         ovirt.reg.timeout={timeout} ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2",
        qemu::GUEST_ENGINE_ADDR,
        sim.port(),
        sim.ca_sha256()
    )
}

fn run(vm: &Vm) -> Boot {
    let boot = qemu::boot(vm).unwrap_or_else(|e| panic!("{e:#}"));
    let at = |m: &str| boot.uptime_at(m).map_or("-".into(), |t| format!("{t:.2}"));
    eprintln!(
        "[qemu] {}: {:.2} s from QEMU start to exit; guest uptime at /init {} s, modules \
         loaded {} s, ovirt-node-reg done {} s",
        vm.name,
        boot.elapsed.as_secs_f64(),
        at("QH-INIT "),
        at("QH-MODULES "),
        at(qemu::EXIT_MARKER),
    );
    assert!(
        boot.completed(),
        "the guest's /init did not finish\n{}",
        boot.tail()
    );
    boot
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
fn assert_registered(sim: &Handle, vm: &Vm, boot: &Boot) {
    let regs: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|e| e.command() == Some("register"))
        .collect();
    assert_eq!(regs.len(), 1, "one register request\n{}", boot.tail());
    let host = sim
        .hosts()
        .into_iter()
        .find(|h| h.reg.unique_id.eq_ignore_ascii_case(&vm.uuid))
        .unwrap_or_else(|| panic!("the simulator knows no host {}\n{}", vm.uuid, boot.tail()));
    assert_eq!(host.registrations, 1);
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
    let sim = engine();
    let mut vm = Vm::new("dhcp", sim.port());
    vm.append = format!(
        "{} ip=dhcp BOOTIF=01-{}",
        base_args(&sim, 40),
        vm.nics[0].mac.replace(':', "-")
    );
    let boot = run(&vm);
    assert_eq!(boot.exit_code(), Some(0), "{}", boot.tail());
    assert_step(&boot, "network_up");
    let br = boot.link("ovirtmgmt").expect("bridge ovirtmgmt");
    assert_eq!(br["kind"], "bridge", "{}", boot.tail());
    assert_eq!(br["oper"], "up", "{}", boot.tail());
    assert_eq!(br["mac"], vm.nics[0].mac, "the bridge takes the NIC's MAC");
    assert_eq!(boot.link("eth0").expect("eth0")["master"], "ovirtmgmt");
    assert!(
        boot.lines("QH-ADDR ")
            .any(|l| l == "ovirtmgmt 10.0.2.15/24"),
        "the DHCP lease on the bridge\n{}",
        boot.tail()
    );
    assert_registered(&sim, &vm, &boot);
    boot.pass();
}

/// (b) `vlan=100:eth0`: the VLAN is created on eth0 and enslaved to the bridge. Tagged frames
/// cannot reach user-mode networking's DHCP, so the address is static and the engine is out
/// of reach: the binary stops after network_up, within its bound.
#[test]
fn vlan_under_the_bridge() {
    let sim = engine();
    let mut vm = Vm::new("vlan", sim.port());
    vm.append = format!(
        "{} vlan=100:eth0 ip=10.0.2.15::10.0.2.2:255.255.255.0:node1::none",
        base_args(&sim, 4)
    );
    let boot = run(&vm);
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
    assert!(
        sim.requests()
            .iter()
            .all(|e| e.command() != Some("register")),
        "nothing should reach the engine over the VLAN"
    );
    boot.pass();
}

/// (c) `bond=bond0:eth0,eth1:mode=1` over two NICs: an active-backup bond under the bridge.
/// Its active slave is eth0, whose user-mode network answers DHCP, so the node registers too.
#[test]
fn bond_under_the_bridge() {
    let sim = engine();
    let mut vm = Vm::new("bond", sim.port());
    vm.nics.push(Nic {
        mac: "52:54:00:12:34:57".into(),
    });
    vm.append = format!(
        "{} bond=bond0:eth0,eth1:mode=1 ip=dhcp",
        base_args(&sim, 40)
    );
    let boot = run(&vm);
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
    assert_registered(&sim, &vm, &boot);
    boot.pass();
}
