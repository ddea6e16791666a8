//! The binary as PID 1 of the minimal initramfs (`image/mkinitrd-min.sh`), booted in QEMU
//! (qemu_tests::qemu) with a config disk (ext4 labelled `CONFIG`) against the engine simulator
//! on loopback. The guest reaches only the simulator's port (user-mode networking,
//! `restrict=on`, `guestfwd` to 10.0.2.100); no `root=`, so the binary runs the whole flow and
//! powers off (`ovirt.reg.poweroff`, added by the harness). A boot is judged by the console
//! banner, the files on the disk after QEMU exits (debugfs, `e2fsck -fn`) and the simulator's
//! events. The console log of a failed boot stays in `target/qemu-artifacts/`. The set-up
//! (simulator, token, disk, kernel arguments) is qemu_tests::scenario's; the store is found by
//! its label, as on a real node.

use std::time::{SystemTime, UNIX_EPOCH};

use qemu_tests::qemu::Boot;
use qemu_tests::scenario::{Machine, Node, Scenario};
use qemu_tests::{FaultKind, FaultSpec};

/// Boots machine `name` of a stock engine's (protocol v1) test `s` with what `setup` adds and
/// `ovirt.reg.timeout=40` (unless `setup` says otherwise); the boot must end registered.
fn v1_boot<'s>(
    s: &'s Scenario,
    name: &str,
    uuid: &str,
    setup: impl FnOnce(Machine<'s>) -> Machine<'s>,
) -> (Node<'s>, Boot) {
    let mut node = setup(s.machine(name).uuid(uuid).timeout(40)).build();
    let boot = node.boot();
    assert_v1_registered(&node, &boot);
    (node, boot)
}

/// A stock engine registered the host: the run ends `waiting` for the engine's host deploy.
fn assert_v1_registered(node: &Node, boot: &Boot) {
    // The step named is the one waited at (the v1 branch of csr_submitted).
    let b = node.banner(boot);
    assert!(
        b.starts_with("ovirt-node-reg: waiting, step ")
            && b.ends_with(": registered, waiting for engine host deploy"),
        "{}",
        boot.tail()
    );
    assert_eq!(node.scenario.count("register"), 1, "{}", boot.tail());
    node.assert_registered_once(boot);
    let st = node.status(boot);
    assert_eq!(st["result"], "waiting", "{st}");
    node.assert_clean_disk(boot);
}

/// First boot of a new machine with an enrolment token (v2 engine): it must end done.
fn token_first_boot<'s>(s: &'s Scenario, name: &str, uuid: &str) -> (Node<'s>, Boot) {
    let mut node = s.machine(name).uuid(uuid).token().args("ip=dhcp").build();
    let boot = node.boot();
    node.assert_done(&boot);
    (node, boot)
}

/// (a) First boot with a token file (0600, in the initramfs): trusted, registered, approved by
/// the token, certificates and vdsm settings installed on the config disk, status `done`,
/// the disk clean.
#[test]
fn token_first_boot_enrols() {
    let s = Scenario::start("token_first_boot_enrols", 2);
    let uuid = "4c4c4544-0042-3510-8052-b4c04f4e5201";
    let (node, boot) = token_first_boot(&s, "pid1-token", uuid);
    assert_eq!(s.count("register"), 1);
    node.assert_registered_once(&boot);
    node.assert_certs(&boot);
    let disk = node.disk();
    let list = disk.read("/files").expect("files list");
    for f in [
        "/etc/pki/vdsm/certs/vdsmcert.pem",
        "/etc/vdsm/vdsm.id",
        "/etc/default/ovirt",
    ] {
        assert!(list.lines().any(|l| l == f), "{f} not in files: {list}");
    }
    assert_eq!(
        disk.read("/etc/vdsm/vdsm.id").expect("vdsm.id").trim(),
        uuid,
        "the SMBIOS UUID is the host id"
    );
    let state = disk.read("/ovirt-node-reg/state.json").expect("state.json");
    let token = node.token.as_deref().expect("a token");
    assert!(!state.contains(token), "no token in the checkpoints");
    assert!(
        disk.read("/etc/vdsm/vdsm.conf")
            .is_some_and(|c| c.contains("ssl")),
        "vdsm.conf"
    );
    node.assert_clean_disk(&boot);
    boot.pass();
}

/// (b) The same machine boots again from the same disk: done again from the checkpoints,
/// and the engine sees no second register or CSR.
#[test]
fn second_boot_sends_no_register() {
    let s = Scenario::start("second_boot_sends_no_register", 2);
    let uuid = "4c4c4544-0042-3510-8052-b4c04f4e5202";
    let (mut node, first) = token_first_boot(&s, "pid1-second", uuid);
    let mark = s.mark();
    let boot = node.reboot("pid1-second-2");
    node.assert_done(&boot);
    s.assert_no_enrolment_since(mark, &boot);
    assert_eq!(s.count("register"), 1);
    node.assert_registered_once(&boot);
    node.assert_clean_disk(&boot);
    first.pass();
    boot.pass();
}

/// (c) The engine refuses connections for the first seconds of the boot (down), then comes
/// up: the node retries within its policy and registers.
#[test]
fn engine_down_then_up() {
    let s = Scenario::start("engine_down_then_up", 1);
    let uuid = "4c4c4544-0042-3510-8052-b4c04f4e5203";
    let mut node = s
        .machine("pid1-down")
        .uuid(uuid)
        .timeout(60)
        .args("ip=dhcp")
        .build();
    // Down from the moment PID 1 starts (about 1.5 s before its first request) for 10 s,
    // however long the boot waited for a QEMU slot.
    let mut down = || {
        s.sim
            .set_fault(FaultSpec::new(FaultKind::Refuse { secs: 10 }))
    };
    let boot = node.boot_at("init: process 1 at", &mut down);
    assert_v1_registered(&node, &boot);
    // Through guestfwd a down engine is a connection that closes at once (slirp accepts,
    // the guest relay cannot connect), not a refusal: the node must retry it all the same.
    assert!(
        boot.containing("attempt 1 failed").next().is_some(),
        "the node met the down engine and retried\n{}",
        boot.tail()
    );
    boot.pass();
}

/// (d) A wrong CA pin: fatal at engine_trusted; the console names the step and both
/// fingerprints; the engine got nothing but the unauthenticated CA and clock fetches.
#[test]
fn wrong_ca_pin_fails_closed() {
    let s = Scenario::start("wrong_ca_pin_fails_closed", 2);
    let wrong = "ab".repeat(32);
    let mut node = s
        .machine("pid1-pin")
        .pin(&wrong)
        .timeout(30)
        .args("ip=dhcp")
        .build();
    let right = s.sim.ca_sha256();
    assert!(!node.vm.append.contains(&right));
    let boot = node.boot();
    assert!(
        node.banner(&boot)
            .starts_with("ovirt-node-reg: FAILED at step engine_trusted"),
        "{}",
        boot.tail()
    );
    let fatal = boot.log.to_lowercase();
    assert!(
        fatal.contains(&wrong) && fatal.contains(&right),
        "both fingerprints on the console\n{}",
        boot.tail()
    );
    let commands = s.requests_since(0);
    assert!(!commands.is_empty(), "the CA was fetched");
    for c in &commands {
        assert!(
            [
                "get-pki-trust",
                "get-version",
                "/ovirt-engine/services/pki-resource"
            ]
            .contains(&c.as_str()),
            "unexpected request {c} with a wrong pin: {commands:?}"
        );
    }
    assert!(s.sim.hosts().is_empty(), "nothing registered");
    assert_eq!(node.status(&boot)["result"], "failed");
    node.assert_clean_disk(&boot);
    boot.pass();
}

/// (e) The guest's clock starts in 2001 (`-rtc base=2001-01-01`). SNTP is out of reach, so the
/// binary takes the engine's `Date`, steps the clock by about 25 years, then verifies the
/// engine's certificate (issued now) and registers.
#[test]
fn clock_years_off_is_stepped() {
    let s = Scenario::start("clock_years_off_is_stepped", 1);
    let uuid = "4c4c4544-0042-3510-8052-b4c04f4e5205";
    let (_, boot) = v1_boot(&s, "pid1-clock", uuid, |m| {
        m.rtc("2001-01-01").args("ip=dhcp")
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let line = boot
        .containing("clock stepped from")
        .next()
        .unwrap_or_else(|| panic!("no clock step in the guest log\n{}", boot.tail()));
    let step: f64 = line
        .split_once("s) from")
        .and_then(|(a, _)| a.rsplit_once('('))
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no step size in {line:?}"));
    assert!(
        line.contains("from the Date header of engine"),
        "the engine's Date: {line}"
    );
    let expected = (now - 978_307_200) as f64;
    assert!(
        (step - expected).abs() < 300.0,
        "step {step} s, expected about {expected} s: {line}"
    );
    eprintln!(
        "[qemu] clock: stepped {step:.0} s ({:.2} years)",
        step / (365.25 * 86_400.0)
    );
    boot.pass();
}

/// (f) DHCP from QEMU's user-mode server, on the bridge over the BOOTIF NIC; the persisted
/// keyfiles say DHCP and carry the NIC's MAC.
#[test]
fn dhcp_with_bootif() {
    let s = Scenario::start("dhcp_with_bootif", 1);
    let uuid = "4c4c4544-0042-3510-8052-b4c04f4e5206";
    let (node, boot) = v1_boot(&s, "pid1-dhcp", uuid, |m| m.bootif(0).args("ip=dhcp"));
    let kf = node.assert_bridge_over(&boot, "eth0");
    assert!(kf.contains("method=auto"), "{kf}");
    let reg = node.assert_registered_once(&boot);
    assert_eq!(reg.reg.address, "10.0.2.15", "{reg:?}");
    boot.pass();
}

/// (g) A static dracut-style `ip=`: no DHCP at all, and the keyfile is manual.
#[test]
fn static_ip() {
    let s = Scenario::start("static_ip", 1);
    let uuid = "4c4c4544-0042-3510-8052-b4c04f4e5207";
    let (node, boot) = v1_boot(&s, "pid1-static", uuid, |m| {
        m.args("ip=10.0.2.15::10.0.2.2:255.255.255.0:node1:eth0:off")
    });
    let kf = node.assert_bridge_over(&boot, "eth0");
    assert!(kf.contains("method=manual"), "{kf}");
    assert!(kf.contains("10.0.2.15/24"), "{kf}");
    boot.pass();
}

/// (h) Two NICs, BOOTIF names the second: the bridge is built over eth1 and takes its MAC.
#[test]
fn bootif_picks_the_second_nic() {
    let s = Scenario::start("bootif_picks_the_second_nic", 1);
    let uuid = "4c4c4544-0042-3510-8052-b4c04f4e5208";
    let (node, boot) = v1_boot(&s, "pid1-bootif", uuid, |m| {
        m.nic("52:54:00:12:34:57").bootif(1).args("ip=dhcp")
    });
    node.assert_bridge_over(&boot, "eth1");
    boot.pass();
}
