//! The real packaging path: a dracut initramfs with the 95ovirt-node-reg module
//! (`image/mkinitrd-dracut.sh`, shell-init and systemd flavours) and a tiny real root
//! (`image/mkroot-min.sh`), booted in QEMU against the engine simulator on loopback
//! (`restrict=on`, `guestfwd` only). The pre-pivot hook runs `boot --stage initramfs`
//! (register, submit the CSRs), dracut switches root, and the root's `/sbin/init` runs
//! `boot --stage system` (the certificates), prints `QH-` markers and powers off. The
//! engine auto-approves this host. About 15-25 s per boot under TCG, plus one image build
//! (cached in target/qemu-cache).

use std::time::Instant;

use qemu_tests::qemu::{self, Disk, Flavour, Vm};
use qemu_tests::{SimConfig, Simulator};

fn dracut_boot(flavour: Flavour, uuid: &str) {
    let started = Instant::now();
    let name = format!("dracut-{}", flavour.name());
    let sim = Simulator::start(SimConfig {
        auto_approve: vec![uuid.into()],
        ..SimConfig::default()
    })
    .expect("simulator starts");
    sim.set_retry_after(1);
    let disk = Disk::new(&name).expect("config disk");
    let mut vm = Vm::dracut(&name, sim.port(), &disk, flavour).unwrap_or_else(|e| panic!("{e:#}"));
    vm.uuid = uuid.into();
    // dracut about 25 s, two stages bounded by ovirt.reg.timeout each: a failure is told
    // by the markers, not by the kill.
    vm.timeout = std::time::Duration::from_secs(180);
    vm.append = format!(
        "management_server={}:{} ovirt.reg.ca_pin=sha256:{} ovirt.reg.timeout=45 \
         ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 ovirt.reg.approval_timeout=30 ip=dhcp",
        qemu::GUEST_ENGINE_ADDR,
        sim.port(),
        sim.ca_sha256()
    );
    let boot = qemu::boot(&vm).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "[qemu] test dracut_{}: 1 boot, QEMU {:.2} s; test {:.1} s (with the image build)",
        flavour.name(),
        boot.elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    boot.assert_system_stage_done("the test root");
    let regs = sim
        .requests()
        .iter()
        .filter(|e| e.command() == Some("register"))
        .count();
    assert_eq!(regs, 1, "one register, from the initramfs stage");
    let host = sim.host(uuid).expect("host registered");
    assert_eq!(host.registrations, 1);
    for f in [
        "/etc/pki/vdsm/certs/vdsmcert.pem",
        "/etc/pki/vdsm/keys/vdsmkey.pem",
        "/etc/vdsm/vdsm.id",
    ] {
        assert!(disk.read(f).is_some(), "{f} on the store\n{}", boot.tail());
    }
    disk.fsck()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", boot.tail()));
    boot.pass();
}

/// Shell-init dracut (network-legacy): pre-pivot runs with the network up.
#[test]
fn dracut_shell_init_registers_then_root_enrols() {
    dracut_boot(Flavour::Shell, "4c4c4544-0042-3510-8052-b4c04f4e5301");
}

/// systemd dracut (systemd-networkd): the module's drop-in orders pre-pivot after
/// network-online.target.
#[test]
fn dracut_systemd_registers_then_root_enrols() {
    dracut_boot(Flavour::Systemd, "4c4c4544-0042-3510-8052-b4c04f4e5302");
}
