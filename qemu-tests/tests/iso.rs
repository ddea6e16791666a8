//! The node ISO (`image/mkiso.sh`) booted from QEMU's CD-ROM (`-cdrom ISO -boot d`, no
//! `-kernel`): SeaBIOS → isolinux → the Debian kernel with the dracut initramfs (the
//! 95ovirt-node-reg module and dmsquash-live) → `root=live:CDLABEL=OVIRT-NODE` mounts the
//! ISO's LiveOS/squashfs.img → its busybox init runs `boot --stage system`, then the stand-in
//! vdsm (openssl s_server on 54321 with the installed certificates), and powers off
//! (`ovirt.reg.poweroff`). The registration settings are the ISO's boot-entry kernel args; the
//! enrolment token is in an initramfs overlay of the ISO (token.img, 0600), never on the
//! command line. The engine simulator on loopback is reached through `guestfwd` only
//! (`restrict=on`), and reaches the guest's vdsm port through `hostfwd` from 127.0.0.1 only.
//! The same with the systemd root (the real units). The same ISO on UEFI (OVMF, q35, the
//! CD-ROM on AHCI, GRUB's boot/grub/grub.cfg instead of isolinux) enrols in
//! tests/install.rs (`install_uefi_boots_from_disk`), whose installed disk then boots on UEFI
//! with no second enrolment: a UEFI scenario here repeated those two boots and cost 2 min of
//! the CI's QEMU time. About 30 s per busybox boot and 50-60 s per systemd boot under TCG
//! (110-150 s before QEMU's code cache was bounded: docs/qemu-harness.md §9 item 12), plus
//! the parts' first build (cached in target/qemu-cache).

use qemu_tests::qemu::{Boot, LiveRoot};
use qemu_tests::scenario::{Node, Scenario};

/// Enrolled, and the stand-in vdsm (started only after the registration) passed the
/// simulator's mTLS check of the node's vdsm port during the boot.
fn assert_enrolled(node: &Node, boot: &Boot) {
    node.assert_done(boot);
    node.assert_certs(boot);
    assert_eq!(
        node.vdsm_check.clone(),
        Some(Ok(())),
        "the engine's mTLS check of the node's vdsm port\n{}",
        boot.tail()
    );
    assert!(
        boot.line("QH-VDSM served rc=0").is_some(),
        "the stand-in vdsm served the check and exited cleanly\n{}",
        boot.tail()
    );
    node.assert_clean_disk(boot);
}

/// Whether a scenario reboots its machine after the first boot.
#[derive(PartialEq)]
enum Reboot {
    Yes,
    No,
}

/// A blank config disk and the ISO with an enrolment token: registered from the initramfs,
/// approved by the token, certificates on the disk, and vdsm answers the engine. With
/// [`Reboot::Yes`], the same machine rebooted: done again from the checkpoints and the
/// persisted certificates, vdsm answers again, and the engine sees no second register or CSR.
fn iso_scenario(test: &str, name: &str, uuid: &str, root: LiveRoot, reboot: Reboot) {
    let s = Scenario::start(test, 2);
    let mut node = s.machine(name).uuid(uuid).iso(root).token().build();
    let iso = node.vm.iso.as_ref().expect("an ISO boot");
    let iso_size = std::fs::metadata(iso).map(|m| m.len()).unwrap_or(0);

    let first = node.boot();
    assert_enrolled(&node, &first);
    assert_eq!(s.count("register"), 1, "one register\n{}", first.tail());
    assert_eq!(s.count("submit-csr"), 1, "one CSR submission");
    node.assert_registered_once(&first);
    first.pass();

    if reboot == Reboot::Yes {
        // The same machine (the same config disk and CD), rebooted.
        let mark = s.mark();
        let second = node.reboot(&format!("{name}-reboot"));
        assert_enrolled(&node, &second);
        s.assert_no_enrolment_since(mark, &second);
        node.assert_registered_once(&second);
        second.pass();
    }
    eprintln!("[qemu] {name} ({} root): ISO {iso_size} bytes", root.name());
}

/// The busybox live root: its init runs the units' commands in their order.
#[test]
fn iso_busybox_root_enrols_serves_vdsm_and_reboot_registers_nothing() {
    iso_scenario(
        "iso_busybox_root_enrols_serves_vdsm_and_reboot_registers_nothing",
        "iso-busybox",
        "4c4c4544-0042-3510-8052-b4c04f4e5401",
        LiveRoot::Busybox,
        Reboot::Yes,
    );
}

/// The Debian systemd live root: systemd runs dracut/ovirt-node-reg.service and the stand-in
/// image/live/vdsmd.service (Requires=/After= it), as on a real node. One boot: a reboot runs
/// the same initramfs stage and binary whatever the root's init (the busybox root reboots,
/// and the installed disks in tests/install.rs, BIOS and UEFI), and this root's boot is the
/// longest of the suite (50-60 s under TCG, most of it systemd's own start), so a second one
/// would add only time.
#[test]
fn iso_systemd_root_enrols_and_serves_vdsm() {
    iso_scenario(
        "iso_systemd_root_enrols_and_serves_vdsm",
        "iso-systemd",
        "4c4c4544-0042-3510-8052-b4c04f4e5402",
        LiveRoot::Systemd,
        Reboot::No,
    );
}
