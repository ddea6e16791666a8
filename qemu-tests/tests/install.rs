//! Installing the node to a local disk and upgrading it (`ovirt-node-reg install|upgrade`,
//! docs/install-upgrade.md). The live ISO registers the node and installs it to a blank disk
//! (`qh.install=`: the live root's test hook runs `install`); the disk then boots on its own
//! (SeaBIOS or OVMF → GRUB from the disk → slot A) to `done` without registering again (the
//! config store was copied). An upgrade is a command the node runs (`upgrade --sha256 HEX
//! --image DEV`, on a disk with the serial `qh-command`, standing in for the engine's
//! command) with the new ISO on a second disk: the next boot tries the new slot once and,
//! when it reaches `done`, keeps it; a broken image (its binary exits 1) is tried once and
//! the boot after it is back on the old slot, which says so.

use std::path::{Path, PathBuf};

use qemu_tests::qemu::{self, host::target_dir, Boot, LiveRoot};
use qemu_tests::scenario::{Node, Scenario};

const MIB: u64 = 1 << 20;

fn disk_file(name: &str, bytes: u64) -> PathBuf {
    let dir = target_dir().join("qemu-disks");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    std::fs::File::create(&path)
        .unwrap()
        .set_len(bytes)
        .unwrap();
    path
}

/// The slots as the live root's init printed them (`status`: `slot A: 1.0 (running, default)`).
fn slot_line(boot: &Boot, slot: &str) -> String {
    let prefix = format!("slot {slot}: ");
    boot.line(&prefix)
        .map(|rest| format!("{prefix}{rest}"))
        .unwrap_or_else(|| panic!("no `{prefix}` line\n{}", boot.tail()))
}

/// Boot the installed disk alone (no CD, no config disk): what the machine does from now on.
fn boot_disk(
    node: &mut Node,
    installed: &Path,
    name: &str,
    extra: Vec<(PathBuf, Option<String>)>,
) -> Boot {
    node.vm.iso = None;
    node.vm.disk = Some(installed.to_path_buf());
    node.vm.drives = extra;
    node.vm.vdsm_port = None;
    node.vm.name = name.into();
    let boot = node.run().unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        boot.completed(),
        "{name}: did not run to its end\n{}",
        boot.tail()
    );
    boot
}

/// The live ISO enrols the node and installs it to a blank disk; the disk boots to `done`
/// with no second registration, slot A running. `extra` are the disks that first disk boot
/// also gets (an upgrade's image and command: one boot less per scenario under TCG).
fn install_and_boot<'s>(
    s: &'s Scenario,
    name: &str,
    uuid: &str,
    uefi: bool,
    extra: Vec<(PathBuf, Option<String>)>,
) -> (Node<'s>, PathBuf, Boot) {
    let machine = s
        .machine(name)
        .uuid(uuid)
        .iso(LiveRoot::Busybox)
        .token()
        .args("qh.install=qh-target qh.slot_size=256");
    let mut node = if uefi { machine.uefi() } else { machine }.build();
    let installed = disk_file(&format!("{name}.installed.img"), 768 * MIB);
    node.vm.drives = vec![(installed.clone(), Some("qh-target".into()))];
    // The BIOS scenario's five boots, one after the other, are the suite's longest chain: when
    // they queued behind other files' boots they ran last, alone on one core, for 2 min.
    node.vm.first_in_line = !uefi;
    let live = node.boot();
    node.assert_done(&live);
    assert!(
        live.line("QH-INSTALL rc=0").is_some(),
        "install\n{}",
        live.tail()
    );
    assert_eq!(s.count("register"), 1, "one register\n{}", live.tail());
    live.pass();

    let mark = s.mark();
    let first = boot_disk(&mut node, &installed, &format!("{name}-disk"), extra);
    first.assert_system_stage_done("slot A");
    assert!(
        first.containing("ovirt.slot=A").next().is_some(),
        "GRUB booted slot A\n{}",
        first.tail()
    );
    assert!(
        slot_line(&first, "A").contains("(running, default)"),
        "{}",
        first.tail()
    );
    s.assert_no_enrolment_since(mark, &first);
    (node, installed, first)
}

/// The disks that make a boot run `upgrade` to `iso` after `done` (the engine's command,
/// docs/protocol-v2.md §9): the image and the one-line command.
fn upgrade_drives(name: &str, iso: &Path) -> Vec<(PathBuf, Option<String>)> {
    let sha = sha256_hex(iso);
    let command = disk_file(&format!("{name}.command.img"), 512);
    std::fs::write(&command, format!("upgrade --sha256 {sha}\n")).unwrap();
    vec![
        (iso.to_path_buf(), Some("qh-image".to_string())),
        (command, Some("qh-command".to_string())),
    ]
}

/// The boot ran the upgrade: the other slot, `slot`, is written and marked for one trial.
fn assert_upgraded(boot: &Boot, slot: &str) {
    assert!(
        boot.line("QH-UPGRADE rc=0").is_some(),
        "upgrade\n{}",
        boot.tail()
    );
    assert!(
        slot_line(boot, slot).contains("trial pending"),
        "{}",
        boot.tail()
    );
}

fn sha256_hex(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn install_bios_then_upgrade_keeps_new_slot_and_broken_image_falls_back() {
    let s = Scenario::start(
        "install_bios_then_upgrade_keeps_new_slot_and_broken_image_falls_back",
        2,
    );
    let name = "inst-bios";
    let append = "console=ttyS0";

    // A newer image, upgraded to by the first boot of the installed disk: slot B, tried
    // once, then kept.
    let new = qemu::iso_image_with(
        &format!("{name}-v2"),
        LiveRoot::Busybox,
        append,
        None,
        Some("2.0-test"),
        None,
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let (mut node, installed, first) = install_and_boot(
        &s,
        name,
        "4c4c4544-0042-3510-8052-b4c04f4e5501",
        false,
        upgrade_drives(&format!("{name}-upgrade"), &new),
    );
    assert_upgraded(&first, "B");
    first.pass();

    // A broken image (its binary exits 1), upgraded to by the trial boot once it kept B:
    // slot A, tried once, then B again, which says so.
    let script = target_dir()
        .join("qemu-disks")
        .join("broken-ovirt-node-reg");
    std::fs::write(&script, "#!/bin/sh\necho broken image >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let broken = qemu::iso_image_with(
        &format!("{name}-broken"),
        LiveRoot::Busybox,
        append,
        None,
        Some("3.0-broken"),
        Some(&script),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let mark = s.mark();
    let trial = boot_disk(
        &mut node,
        &installed,
        &format!("{name}-trial"),
        upgrade_drives(&format!("{name}-upgrade-broken"), &broken),
    );
    trial.assert_system_stage_done("slot B");
    assert!(
        trial.containing("ovirt.slot=B").next().is_some(),
        "GRUB booted slot B\n{}",
        trial.tail()
    );
    assert!(
        trial
            .containing("slot B (version 2.0-test) reached done")
            .next()
            .is_some(),
        "{}",
        trial.tail()
    );
    assert!(
        slot_line(&trial, "B").starts_with("slot B: 2.0-test (running, default)"),
        "{}",
        trial.tail()
    );
    s.assert_no_enrolment_since(mark, &trial);
    assert_upgraded(&trial, "A");
    trial.pass();

    let failed = boot_disk(
        &mut node,
        &installed,
        &format!("{name}-broken-trial"),
        Vec::new(),
    );
    assert!(
        failed.containing("ovirt.slot=A").next().is_some(),
        "GRUB tried slot A\n{}",
        failed.tail()
    );
    assert_eq!(
        failed.exit_code(),
        Some(1),
        "the broken binary\n{}",
        failed.tail()
    );
    failed.pass();
    let mark = s.mark();
    let back = boot_disk(
        &mut node,
        &installed,
        &format!("{name}-fallback"),
        Vec::new(),
    );
    back.assert_system_stage_done("slot B again");
    assert!(
        back.containing("ovirt.slot=B").next().is_some(),
        "GRUB is back on slot B\n{}",
        back.tail()
    );
    assert!(
        back.containing("did not reach done; fell back to slot B (version 2.0-test)")
            .next()
            .is_some(),
        "{}",
        back.tail()
    );
    assert!(
        slot_line(&back, "A").contains("its trial boot failed"),
        "{}",
        back.tail()
    );
    assert!(
        slot_line(&back, "B").contains("(running, default)"),
        "{}",
        back.tail()
    );
    s.assert_no_enrolment_since(mark, &back);
    back.pass();
}

#[test]
fn install_uefi_boots_from_disk() {
    let s = Scenario::start("install_uefi_boots_from_disk", 2);
    let (_, _, first) = install_and_boot(
        &s,
        "inst-uefi",
        "4c4c4544-0042-3510-8052-b4c04f4e5502",
        true,
        Vec::new(),
    );
    first.pass();
}
