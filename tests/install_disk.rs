//! `install` and `upgrade` with the real boot loader files (image/mkboot.sh) and real node
//! ISOs (xorriso), read back by the tools that own the formats: sfdisk for the GPT, mtools and
//! grub-editenv for the ESP and GRUB's environment block, debugfs for the config store
//! (docs/install-upgrade.md). `install` writes a disk image file as any user; `upgrade` needs
//! block devices for the partitions of an installed disk, so it runs on loop devices (root).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ovirt-node-reg");
const MIB: u64 = 1 << 20;
const CMDLINE: &str =
    "BOOT_IMAGE=/isolinux/vmlinuz root=live:CDLABEL=OVIRT-NODE console=ttyS0,115200 \
    management_server=10.0.2.100:8443 ovirt.reg.token_file=/etc/ovirt-node-reg/token ip=dhcp";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A host tool's output; a missing tool fails naming the package that has it.
fn tool(name: &str, package: &str, args: &[&str]) -> Output {
    let out = Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("{name}: {e}: install the package {package} (build-support/setup.sh)")
    });
    assert!(
        out.status.success(),
        "{name} {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A root tree holding GRUB's files as the node image ships them.
fn root_with_boot_files(t: &Path) -> PathBuf {
    let root = t.join("root");
    let boot = root.join("usr/lib/ovirt-node-reg/boot");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/image/mkboot.sh");
    tool(
        "bash",
        "grub-common grub-pc-bin grub-efi-amd64-bin mtools",
        &[script, p(&boot)],
    );
    root
}

/// A small node ISO of `version`: the files GRUB's entries name, and some bulk.
fn node_iso(t: &Path, version: &str) -> PathBuf {
    let dir = t.join(format!("iso-{version}"));
    fs::create_dir_all(dir.join("isolinux")).unwrap();
    fs::create_dir_all(dir.join("LiveOS")).unwrap();
    fs::write(dir.join("isolinux/vmlinuz"), format!("kernel {version}")).unwrap();
    fs::write(dir.join("isolinux/initrd.img"), format!("initrd {version}")).unwrap();
    fs::write(dir.join("LiveOS/squashfs.img"), vec![7u8; MIB as usize]).unwrap();
    let iso = t.join(format!("node-{version}.iso"));
    let app = format!("ovirt-node {version}");
    tool(
        "xorriso",
        "xorriso",
        &[
            "-as",
            "mkisofs",
            "-quiet",
            "-V",
            "OVIRT-NODE",
            "-A",
            &app,
            "-r",
            "-o",
            p(&iso),
            p(&dir),
        ],
    );
    iso
}

fn node(root: &Path, cmdline: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--root", p(root), "--cmdline", p(cmdline)])
        .args(args)
        .output()
        .unwrap()
}

/// Bytes `len` at `at` of `file`.
fn read_at(file: &Path, at: u64, len: u64) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    fs::File::open(file)
        .unwrap()
        .read_exact_at(&mut b, at)
        .unwrap();
    b
}

/// The partitions sfdisk reads: (name, start sector, sectors).
fn partitions(disk: &Path) -> Vec<(String, u64, u64)> {
    let out = tool("sfdisk", "fdisk", &["--json", p(disk)]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap().to_string(),
                q["start"].as_u64().unwrap(),
                q["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// GRUB's own reading of the ESP's environment block (`grub-editenv list`), from a copy of
/// the partition `esp` (start, sectors) of `disk`.
fn grubenv_of(t: &Path, disk: &Path, esp: (u64, u64)) -> String {
    let part = t.join("esp.part");
    fs::write(&part, read_at(disk, esp.0 * 512, esp.1 * 512)).unwrap();
    let env = t.join("grubenv");
    let _ = fs::remove_file(&env);
    tool(
        "mcopy",
        "mtools",
        &["-n", "-i", p(&part), "::/grub/grubenv", p(&env)],
    );
    text(&tool("grub-editenv", "grub-common", &[p(&env), "list"]).stdout)
}

/// Install a node ISO to a blank 160 MiB disk image file.
fn install(t: &Path, root: &Path, iso: &Path) -> (PathBuf, Vec<(String, u64, u64)>) {
    let disk = t.join("disk.img");
    fs::File::create(&disk).unwrap().set_len(160 * MIB).unwrap();
    let cmdline = t.join("cmdline");
    fs::write(&cmdline, CMDLINE).unwrap();
    let out = node(
        root,
        &cmdline,
        &[
            "install",
            "--disk",
            p(&disk),
            "--image",
            p(iso),
            "--slot-size",
            "8",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(version 1.0-test)"),
        "{}",
        text(&out.stdout)
    );
    let parts = partitions(&disk);
    (disk, parts)
}

#[test]
fn install_writes_a_disk_that_sfdisk_mtools_and_grub_editenv_read() {
    let t = tempfile::tempdir().unwrap();
    let root = root_with_boot_files(t.path());
    let iso = node_iso(t.path(), "1.0-test");
    let (disk, parts) = install(t.path(), &root, &iso);
    let names: Vec<&str> = parts.iter().map(|q| q.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "ovirt-node-bios",
            "ovirt-node-esp",
            "ovirt-node-a",
            "ovirt-node-b",
            "ovirt-node-config"
        ]
    );
    let verify = Command::new("sfdisk")
        .args(["--verify", p(&disk)])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify.stdout));

    // Slot A is the ISO byte for byte; slot B is empty.
    let iso_bytes = fs::read(&iso).unwrap();
    let slot_a = read_at(&disk, parts[2].1 * 512, iso_bytes.len() as u64);
    assert!(slot_a == iso_bytes, "slot A differs from the ISO");

    // GRUB reads the block the binary wrote: slot A boots with this boot's settings.
    let env = grubenv_of(t.path(), &disk, (parts[1].1, parts[1].2));
    for want in [
        "slot_default=A\n",
        "version_A=1.0-test\n",
        "ovirt_args=console=ttyS0,115200 management_server=10.0.2.100:8443 ip=dhcp\n",
    ] {
        assert!(env.contains(want), "{want:?} missing from:\n{env}");
    }
    assert!(!env.contains("token"), "{env}");
    // The ESP holds GRUB for UEFI and the one grub.cfg.
    let esp = t.path().join("esp.part");
    let dir = tool("mdir", "mtools", &["-b", "-i", p(&esp), "::/EFI/BOOT"]);
    assert!(
        text(&dir.stdout).contains("BOOTX64.EFI"),
        "{}",
        text(&dir.stdout)
    );

    // The BIOS boot partition starts with GRUB's core image (its first sector's signature
    // is patched to point at the partition, so compare a later sector).
    let core = fs::read(root.join("usr/lib/ovirt-node-reg/boot/core.img")).unwrap();
    let on_disk = read_at(&disk, parts[0].1 * 512 + 512, 512);
    assert!(on_disk == core[512..1024], "core.img's second sector");

    // An empty config store (this root has none): ext4 labelled CONFIG, clean.
    let config = t.path().join("config.part");
    fs::write(&config, read_at(&disk, parts[4].1 * 512, parts[4].2 * 512)).unwrap();
    let label = tool("e2label", "e2fsprogs", &[p(&config)]);
    assert_eq!(text(&label.stdout).trim(), "CONFIG");
    tool("e2fsck", "e2fsprogs", &["-fn", p(&config)]);
}

#[test]
fn install_refuses_a_disk_that_is_not_blank_and_names_it() {
    let t = tempfile::tempdir().unwrap();
    let root = root_with_boot_files(t.path());
    let iso = node_iso(t.path(), "1.0-test");
    let (disk, _) = install(t.path(), &root, &iso);
    let cmdline = t.path().join("cmdline");
    let out = node(
        &root,
        &cmdline,
        &["install", "--disk", p(&disk), "--image", p(&iso)],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}: not blank", disk.display())) && err.contains("--force"),
        "{err}"
    );
}

#[cfg(feature = "privileged")]
mod privileged {
    use super::*;

    /// Loop devices over the partitions of a disk image; detached when dropped.
    struct Loops(Vec<String>);

    impl Drop for Loops {
        fn drop(&mut self) {
            for dev in &self.0 {
                let _ = Command::new("losetup").args(["-d", dev]).status();
            }
        }
    }

    /// The partitions of `disk` as the kernel would show them to a root tree: a loop device
    /// over each one (the kernel of a test machine may not scan a loop device's partitions),
    /// and in `root`'s sysfs its `uevent` with the GPT name, `PARTNAME=` (the machine's own
    /// disks stay out of the test).
    fn attach(root: &Path, disk: &Path, parts: &[(String, u64, u64)]) -> Loops {
        let mut loops = Loops(Vec::new());
        for (name, start, sectors) in parts {
            let out = tool(
                "losetup",
                "mount",
                &[
                    "--find",
                    "--show",
                    "--offset",
                    &(start * 512).to_string(),
                    "--sizelimit",
                    &(sectors * 512).to_string(),
                    p(disk),
                ],
            );
            let dev = text(&out.stdout).trim().to_string();
            loops.0.push(dev.clone());
            let dev_name = dev.trim_start_matches("/dev/");
            let sys = root.join("sys/class/block").join(dev_name);
            fs::create_dir_all(&sys).unwrap();
            fs::write(
                sys.join("uevent"),
                format!("DEVTYPE=partition\nDEVNAME={dev_name}\nPARTNAME={name}\n"),
            )
            .unwrap();
            fs::create_dir_all(root.join("dev")).unwrap();
            std::os::unix::fs::symlink(&dev, root.join("dev").join(dev_name)).unwrap();
        }
        loops
    }

    fn sha256(path: &Path) -> String {
        let out = tool("sha256sum", "coreutils", &[p(path)]);
        text(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    #[test]
    fn upgrade_writes_the_other_slot_and_marks_one_trial() {
        assert!(
            rustix::process::geteuid().is_root(),
            "the privileged tier runs as root (loop devices)"
        );
        let t = tempfile::tempdir().unwrap();
        let root = root_with_boot_files(t.path());
        let iso = node_iso(t.path(), "1.0-test");
        let new = node_iso(t.path(), "2.0-test");
        let (disk, parts) = install(t.path(), &root, &iso);
        let loops = attach(&root, &disk, &parts);
        let cmdline = t.path().join("cmdline");
        fs::write(&cmdline, format!("{CMDLINE} ovirt.slot=A")).unwrap();

        // A wrong digest: exit 1, nothing marked, slot A stays the default.
        let wrong = "0".repeat(64);
        let out = node(
            &root,
            &cmdline,
            &["upgrade", "--image", p(&new), "--sha256", &wrong],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("slot B is not marked for boot"),
            "{}",
            text(&out.stderr)
        );
        let env = grubenv_of(t.path(), &disk, (parts[1].1, parts[1].2));
        assert!(!env.contains("slot_trial=B"), "{env}");

        let out = node(
            &root,
            &cmdline,
            &["upgrade", "--image", p(&new), "--sha256", &sha256(&new)],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        // `status` shows both slots: A runs and is the default, B waits for its trial boot.
        let out = node(&root, &cmdline, &["status"]);
        let shown = text(&out.stdout);
        assert!(
            shown.contains("slot A: 1.0-test (running, default)\nslot B: 2.0-test (trial pending)"),
            "{shown}{}",
            text(&out.stderr)
        );
        drop(loops);
        let env = grubenv_of(t.path(), &disk, (parts[1].1, parts[1].2));
        for want in [
            "slot_default=A\n",
            "slot_trial=B\n",
            "trial_left=1\n",
            "version_B=2.0-test\n",
        ] {
            assert!(env.contains(want), "{want:?} missing from:\n{env}");
        }
        let new_bytes = fs::read(&new).unwrap();
        let slot_b = read_at(&disk, parts[3].1 * 512, new_bytes.len() as u64);
        assert!(slot_b == new_bytes, "slot B differs from the new ISO");
    }
}
