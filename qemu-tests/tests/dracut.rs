//! The real packaging path: a dracut initramfs with the 95ovirt-node-reg module
//! (`image/mkinitrd-dracut.sh`, shell-init and systemd flavours) and a tiny real root
//! (`image/mkroot-min.sh`), booted in QEMU against the engine simulator on loopback
//! (`restrict=on`, `guestfwd` only). The pre-pivot hook runs `boot --stage initramfs`
//! (register, submit the CSRs), dracut switches root, and the root's `/sbin/init` runs
//! `boot --stage system` (the certificates), prints `QH-` markers and powers off. The
//! engine auto-approves this host. About 15-25 s per boot under TCG, plus one image build
//! (cached in target/qemu-cache).

use std::time::Duration;

use qemu_tests::qemu::Flavour;
use qemu_tests::scenario::Scenario;
use qemu_tests::SimConfig;

fn dracut_boot(flavour: Flavour, uuid: &str) {
    let name = format!("dracut-{}", flavour.name());
    let config = SimConfig {
        auto_approve: vec![uuid.into()],
        ..SimConfig::default()
    };
    let s = Scenario::with(&name.replace('-', "_"), config);
    let mut node = s
        .machine(&name)
        .uuid(uuid)
        .dracut(flavour)
        // dracut about 25 s, two stages bounded by ovirt.reg.timeout each: a failure is told
        // by the markers, not by the kill.
        .vm_timeout(Duration::from_secs(180))
        .timeout(45)
        .args("ip=dhcp")
        .build();
    let boot = node.boot();
    node.assert_done(&boot);
    assert_eq!(
        s.count("register"),
        1,
        "one register, from the initramfs stage"
    );
    node.assert_registered_once(&boot);
    node.assert_certs(&boot);
    assert!(
        node.disk().read("/etc/vdsm/vdsm.id").is_some(),
        "vdsm.id on the store\n{}",
        boot.tail()
    );
    node.assert_clean_disk(&boot);
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
