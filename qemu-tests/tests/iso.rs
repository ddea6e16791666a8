//! The node ISO (`image/mkiso.sh`) booted from QEMU's CD-ROM (`-cdrom ISO -boot d`, no
//! `-kernel`): SeaBIOS → isolinux → the Debian kernel with the dracut initramfs (the
//! 95ovirt-node-reg module and dmsquash-live) → `root=live:CDLABEL=OVIRT-NODE` mounts the
//! ISO's LiveOS/squashfs.img → its busybox init runs `boot --stage system`, then the stand-in
//! vdsm (openssl s_server on 54321 with the installed certificates), and powers off
//! (`ovirt.reg.poweroff`). The registration settings are the ISO's boot-entry kernel args; the
//! enrolment token is in an initramfs overlay of the ISO (token.img, 0600), never on the
//! command line. The engine simulator on loopback is reached through `guestfwd` only
//! (`restrict=on`), and reaches the guest's vdsm port through `hostfwd` from 127.0.0.1 only.
//! The same with the systemd root (the real units), and on UEFI (OVMF, GRUB instead of
//! isolinux). About 30 s per busybox boot and 70-90 s per systemd boot under TCG, plus the
//! parts' first build (cached in target/qemu-cache).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use qemu_tests::qemu::{self, Boot, Disk, LiveRoot, Vm};
use qemu_tests::{Handle, SimConfig, Simulator};

/// What the installed host must have on its store (ovirt-protocol.md §5.4, src/install.rs).
const CERT_FILES: &[&str] = &[
    "/etc/pki/vdsm/keys/vdsmkey.pem",
    "/etc/pki/vdsm/certs/vdsmcert.pem",
    "/etc/pki/vdsm/certs/cacert.pem",
    "/etc/pki/libvirt/clientcert.pem",
    "/etc/pki/CA/cacert.pem",
];

fn count(sim: &Handle, command: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|e| e.command() == Some(command))
        .count()
}

/// Boots `vm`; when the root's stand-in vdsm listens, the simulator runs its mTLS check of
/// the node's vdsm port (through the hostfwd) while the guest waits (`qh.vdsm_wait`).
fn boot_and_check(sim: &Handle, vm: &Vm) -> (Boot, Option<Result<(), String>>) {
    let port = vm.vdsm_port.expect("an ISO vm forwards the vdsm port");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut checked = None;
    let mut check = || checked = Some(sim.check_vdsm(&vm.uuid, Some(addr)));
    let boot = qemu::boot_with(vm, Some(("QH-VDSM listening", &mut check)))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let at = |m: &str| {
        boot.uptime_at(m)
            .map_or_else(|| "-".to_string(), |u| format!("{u:.1}"))
    };
    eprintln!(
        "[qemu] {}: {:.2} s QEMU start to exit; guest uptime at the live root {} s, vdsm \
         listening {} s, done {} s",
        vm.name,
        boot.elapsed.as_secs_f64(),
        at("QH-ROOT "),
        at("QH-VDSM listening "),
        at("QH-DONE ")
    );
    (boot, checked)
}

fn assert_enrolled(sim: &Handle, disk: &Disk, boot: &Boot, check: &Option<Result<(), String>>) {
    boot.assert_system_stage_done("the ISO's live root");
    for f in CERT_FILES {
        let data = disk
            .read(f)
            .unwrap_or_else(|| panic!("{f} missing on the store\n{}", boot.tail()));
        assert!(data.contains("-----BEGIN "), "{f}: {data}");
    }
    assert_eq!(
        disk.read("/etc/pki/vdsm/certs/cacert.pem").unwrap().trim(),
        sim.ca_pem().trim(),
        "the engine CA"
    );
    assert_eq!(
        check.clone(),
        Some(Ok(())),
        "the engine's mTLS check of the node's vdsm port\n{}",
        boot.tail()
    );
    assert!(
        boot.line("QH-VDSM served rc=0").is_some(),
        "the stand-in vdsm served the check and exited cleanly\n{}",
        boot.tail()
    );
    disk.fsck()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", boot.tail()));
}

/// A blank config disk and the ISO with an enrolment token: registered from the initramfs,
/// approved by the token, certificates on the disk, and the stand-in vdsm (started only after
/// the registration) passes the simulator's mTLS check. The same machine rebooted: done again
/// from the checkpoints and the persisted certificates, vdsm answers again, and the engine sees
/// no second register or CSR.
fn iso_scenario(root: LiveRoot, uefi: bool, name: &str, uuid: &str) {
    let started = Instant::now();
    let sim = Simulator::start(SimConfig {
        protocol_version: 2,
        ..SimConfig::default()
    })
    .expect("simulator starts");
    sim.set_retry_after(1);
    let token = sim
        .create_token(Duration::from_secs(600), Some(uuid))
        .expect("token")
        .token;
    // The boot entry's arguments: the registration settings plus test-only ones (no menu,
    // power off at the end, give the engine 60 s to check vdsm, a failed dracut powers off).
    let append = format!(
        "quiet panic=-1 rd.shell=0 rd.timeout=60 rd.emergency=poweroff ovirt.reg.poweroff \
         qh.vdsm_wait=60 management_server={}:{} ovirt.reg.ca_pin=sha256:{} \
         ovirt.reg.timeout=60 ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 \
         ovirt.reg.approval_timeout=30",
        qemu::GUEST_ENGINE_ADDR,
        sim.port(),
        sim.ca_sha256()
    );
    let iso =
        qemu::iso_image(name, root, &append, Some(&token)).unwrap_or_else(|e| panic!("{e:#}"));
    let iso_size = std::fs::metadata(&iso).map(|m| m.len()).unwrap_or(0);
    let disk = Disk::new(name).expect("config disk");
    let mut vm = Vm::iso(name, sim.port(), &disk, &iso).unwrap_or_else(|e| panic!("{e:#}"));
    vm.uuid = uuid.into();
    vm.uefi = uefi;

    let (first, check) = boot_and_check(&sim, &vm);
    assert!(
        !first.log.contains(&token),
        "the token is never on the console"
    );
    assert_enrolled(&sim, &disk, &first, &check);
    assert_eq!(count(&sim, "register"), 1, "one register\n{}", first.tail());
    assert_eq!(count(&sim, "submit-csr"), 1, "one CSR submission");
    let host = sim.host(uuid).expect("host registered");
    assert_eq!(host.registrations, 1);
    let t1 = first.elapsed.as_secs_f64();
    first.pass();

    // The same machine (the same config disk and CD), rebooted.
    vm.name = format!("{name}-reboot");
    vm.vdsm_port = Some(qemu::free_port().expect("a free port"));
    let seen = sim.requests().len();
    let (second, check) = boot_and_check(&sim, &vm);
    assert_enrolled(&sim, &disk, &second, &check);
    let again: Vec<String> = sim.requests()[seen..]
        .iter()
        .filter_map(|e| e.command().map(str::to_string))
        .collect();
    assert!(
        !again.iter().any(|c| c == "register" || c == "submit-csr"),
        "the reboot sent {again:?}\n{}",
        second.tail()
    );
    assert_eq!(sim.host(uuid).expect("host").registrations, 1);
    eprintln!(
        "[qemu] test {name} ({} root, {}): ISO {iso_size} bytes; boots {t1:.1} s + {:.1} s; test \
         {:.1} s (with the parts' build)",
        root.name(),
        if uefi { "UEFI" } else { "BIOS" },
        second.elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    second.pass();
}

/// The busybox live root: its init runs the units' commands in their order.
#[test]
fn iso_busybox_root_enrols_serves_vdsm_and_reboot_registers_nothing() {
    iso_scenario(
        LiveRoot::Busybox,
        false,
        "iso-busybox",
        "4c4c4544-0042-3510-8052-b4c04f4e5401",
    );
}

/// The Debian systemd live root: systemd runs dracut/ovirt-node-reg.service and the stand-in
/// image/live/vdsmd.service (Requires=/After= it), as on a real node.
#[test]
fn iso_systemd_root_enrols_serves_vdsm_and_reboot_registers_nothing() {
    iso_scenario(
        LiveRoot::Systemd,
        false,
        "iso-systemd",
        "4c4c4544-0042-3510-8052-b4c04f4e5402",
    );
}

/// The same ISO on UEFI (OVMF, q35, the CD-ROM on AHCI): GRUB's boot/grub/grub.cfg entry.
#[test]
fn iso_uefi_busybox_root_enrols_serves_vdsm_and_reboot_registers_nothing() {
    iso_scenario(
        LiveRoot::Busybox,
        true,
        "iso-uefi",
        "4c4c4544-0042-3510-8052-b4c04f4e5403",
    );
}
