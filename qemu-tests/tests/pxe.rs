//! PXE boots (docs/qemu-harness.md §6): the firmware's iPXE ROM does DHCP and loads the tree made by
//! `image/mkpxe.sh` from QEMU's own TFTP server (user-mode networking, `restrict=on`, the
//! engine only through `guestfwd` to 10.0.2.100); the tree's initramfs is the minimal PID-1
//! image, its enrolment token a second initramfs (0600). Two NICs, the second one the boot NIC
//! (`bootindex=1`, the only one with the TFTP server): BOOTIF, added by pxelinux (IPAPPEND 2)
//! or by the iPXE script (`${netX/mac}`), must make the node build its bridge on that NIC.
//! Each scenario prints the PXE boot's time to `step registered: done`.

use std::os::unix::fs::PermissionsExt;

use qemu_tests::hosts::HostStatus;
use qemu_tests::scenario::Scenario;

/// A new machine with a token overlay boots `bootfile` from its second NIC against a v2
/// simulator: registered, approved by the token, certificates on the config disk, the bridge
/// over the boot NIC (eth1, its MAC); prints the time to `registered`.
fn pxe_first_boot(test: &str, name: &str, uuid: &str, bootfile: &str, args: &str) {
    let s = Scenario::start(test, 2);
    let mut node = s
        .machine(name)
        .uuid(uuid)
        .pxe(bootfile)
        .token()
        // The boot NIC is the second one: the firmware would take the first by default.
        .nic("52:54:00:12:34:57")
        .boot_nic(1)
        .args(args)
        .build();
    let tree = &node.vm.pxe.as_ref().expect("a PXE boot").tree;
    let mode = std::fs::metadata(tree.join("token.img"))
        .map(|m| m.permissions().mode() & 0o777)
        .expect("token.img");
    assert_eq!(mode, 0o600, "the token overlay is 0600");
    let boot = node.boot();
    node.assert_done(&boot);
    let host = node.assert_registered_once(&boot);
    assert_eq!(host.status, HostStatus::Approved, "{host:?}");
    assert_eq!(host.reg.address, "10.0.2.15", "{host:?}");
    node.assert_certs(&boot);
    // BOOTIF named the second NIC: the bridge is built over eth1 and takes its MAC.
    node.assert_bridge_over(&boot, "eth1");
    assert!(
        boot.containing("over eth1").next().is_some(),
        "network up over eth1\n{}",
        boot.tail()
    );
    node.assert_clean_disk(&boot);
    // The time to `registered`: on the guest's clock (kernel start), and from QEMU's start
    // (firmware, DHCP, TFTP included) to the simulator's answer to `register`.
    let guest = boot.step_done_at("registered").expect("step registered");
    let registered = node
        .registered_after(&boot)
        .expect("a register answered 200");
    eprintln!(
        "[qemu] PXE {bootfile}: registered at {registered:.2} s after QEMU start ({guest:.2} s \
         guest uptime); done at {:.2} s uptime; QEMU {:.2} s in all",
        boot.step_done_at("done").unwrap_or(f64::NAN),
        boot.elapsed.as_secs_f64()
    );
    boot.pass();
}

/// (a) pxelinux: the second NIC boots, pxelinux adds `BOOTIF=01-<its MAC>` (IPAPPEND 2); the
/// token overlay (token.img) enrols the node.
#[test]
fn pxelinux_token_overlay_bootif() {
    pxe_first_boot(
        "pxelinux_token_overlay_bootif",
        "pxe-pxelinux",
        "4c4c4544-0042-3510-8052-b4c04f4e5301",
        "pxelinux.0",
        "ip=dhcp",
    );
}

/// (b) The iPXE script straight from TFTP: BOOTIF from `${netX/mac:hexhyp}` of the NIC iPXE
/// booted from. No `ip=`: BOOTIF alone makes the binary bring the network up (DHCP on the
/// bridge over that NIC).
#[test]
fn ipxe_script_bootif() {
    pxe_first_boot(
        "ipxe_script_bootif",
        "pxe-ipxe",
        "4c4c4544-0042-3510-8052-b4c04f4e5302",
        "boot.ipxe",
        "",
    );
}
