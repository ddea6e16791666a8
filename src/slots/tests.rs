use super::*;
use std::io::Write;

const MIB: u64 = 1 << 20;

fn env_block(body: &str) -> Vec<u8> {
    let mut b = grubenv::HEADER.to_vec();
    b.extend_from_slice(body.as_bytes());
    b.resize(grubenv::SIZE, b'#');
    b
}

/// A small ISO-looking file: a primary volume descriptor saying `mib` MiB, version `v`.
fn fake_iso(path: &Path, mib: u32, v: &str, fill: u8) {
    let mut data = vec![fill; (mib as u64 * MIB) as usize];
    let p = &mut data[iso::PVD_OFFSET as usize..][..iso::PVD_SIZE];
    p.fill(b' ');
    p[0] = 1;
    p[1..6].copy_from_slice(b"CD001");
    p[6] = 1;
    p[80..84].copy_from_slice(&(mib * 512).to_le_bytes());
    p[128..130].copy_from_slice(&2048u16.to_le_bytes());
    let app = format!("ovirt-node {v}");
    p[574..574 + app.len()].copy_from_slice(app.as_bytes());
    fs::write(path, data).unwrap();
}

fn esp_image() -> Vec<u8> {
    let mut esp = vec![0u8; 64 * 1024];
    esp[8192..8192 + grubenv::SIZE].copy_from_slice(&env_block(""));
    esp
}

fn boot_files(root: &Path) {
    let dir = root.join(paths::BOOT_FILES_DIR.trim_start_matches('/'));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(ESP_IMAGE), esp_image()).unwrap();
    let mut core = vec![0u8; 512 * 40];
    core[510..512].copy_from_slice(&0x0820u16.to_le_bytes());
    fs::write(dir.join(CORE_IMAGE), core).unwrap();
    let mut boot = vec![0x11u8; 512];
    boot[510..].copy_from_slice(&[0x55, 0xAA]);
    fs::write(dir.join(BOOT_IMAGE), boot).unwrap();
}

fn sparse(path: &Path, bytes: u64) {
    File::create(path).unwrap().set_len(bytes).unwrap();
}

const CMDLINE: &str = "BOOT_IMAGE=/isolinux/vmlinuz root=live:CDLABEL=OVIRT-NODE rd.live.image \
    console=tty0 console=ttyS0,115200 management_server=10.0.2.100:8443 \
    ovirt.reg.ca_pin=sha256:00ff ovirt.reg.token_file=/etc/ovirt-node-reg/token \
    ovirt.reg.token=abc rhevm_admin_password=$1$x hostname=\"a b\" ip=dhcp qh.vdsm_wait=30 ovirt.reg.poweroff";

#[test]
fn boot_args_keep_our_settings_and_consoles_never_tokens() {
    let (keep, skipped) = boot_args(CMDLINE);
    assert_eq!(
        keep,
        [
            "console=tty0",
            "console=ttyS0,115200",
            "management_server=10.0.2.100:8443",
            "ovirt.reg.ca_pin=sha256:00ff",
            "ip=dhcp",
            "ovirt.reg.poweroff"
        ]
    );
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].starts_with("hostname:"), "{skipped:?}");
}

#[test]
fn the_running_slot_is_the_last_slot_argument() {
    assert_eq!(running_slot("a ovirt.slot=A b"), Some(Slot::A));
    assert_eq!(running_slot("ovirt.slot=A ovirt.slot=B"), Some(Slot::B));
    assert_eq!(running_slot("ovirt.slot=C"), None);
    assert_eq!(running_slot(""), None);
}

#[test]
fn install_lays_out_the_disk_and_copies_image_and_store() {
    let t = tempfile::tempdir().unwrap();
    let root = Root::new(t.path());
    boot_files(t.path());
    let iso = t.path().join("node.iso");
    fake_iso(&iso, 2, "1.0", 0x5A);
    let disk = t.path().join("disk.img");
    sparse(&disk, 160 * MIB);
    let store = t.path().join("store");
    fs::create_dir_all(store.join("ovirt-node-reg")).unwrap();
    fs::write(store.join("ovirt-node-reg/state.json"), "{}").unwrap();
    let o = InstallOptions {
        disk: disk.clone(),
        image: Some(iso.clone()),
        slot_mib: 8,
        force: false,
        store_dir: Some(store),
        cmdline: CMDLINE.into(),
    };
    let msg = install(&root, &o).unwrap();
    assert!(msg.contains("version 1.0"), "{msg}");

    // sfdisk reads back what we wrote: names, types, places
    let out = Command::new("sfdisk")
        .arg("--json")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parts = json["partitiontable"]["partitions"].as_array().unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, gpt::NAMES);
    assert_eq!(parts[2]["start"], 135168);
    assert_eq!(parts[1]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    let verify = Command::new("sfdisk")
        .arg("--verify")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let f = File::open(&disk).unwrap();
    let at = |lba: u64, len: usize| {
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, lba * 512).unwrap();
        b
    };
    // slot A holds the image
    assert_eq!(at(135168, 2 * MIB as usize), fs::read(&iso).unwrap());
    // the environment block on the ESP
    let env = Env::parse(&at(4096 + 16, grubenv::SIZE)).unwrap();
    assert_eq!(env.get(DEFAULT), Some("A"));
    assert_eq!(env.get("version_A"), Some("1.0"));
    assert_eq!(env.get(TRIAL), None);
    let args = env.get(ARGS).unwrap();
    assert!(args.contains("management_server=10.0.2.100:8443"), "{args}");
    assert!(!args.contains("token"), "{args}");
    // the MBR's boot code points at the BIOS boot partition
    assert_eq!(at(0, 512)[0x5c..0x64], 2048u64.to_le_bytes());
    assert_eq!(at(2048, 512)[0x1f4..0x1fc], 2049u64.to_le_bytes());
    // the config store: ext4 labelled CONFIG, with the store's files
    let config = parts[4]["start"].as_u64().unwrap();
    let sb = at(config + 2, 1024);
    assert_eq!(sb[0x38..0x3a], [0x53, 0xEF]);
    assert_eq!(&sb[0x78..0x7e], b"CONFIG");
    let part = t.path().join("config.img");
    let size = parts[4]["size"].as_u64().unwrap() * 512;
    let mut out = File::create(&part).unwrap();
    out.write_all(&at(config, size as usize)).unwrap();
    let cat = Command::new("debugfs")
        .args(["-R", "cat /ovirt-node-reg/state.json"])
        .arg(&part)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "{}");

    // a second install onto the same disk is refused without --force
    let e = install(&root, &o).unwrap_err().to_string();
    assert!(e.contains("not blank"), "{e}");
}

#[test]
fn install_refuses_what_does_not_fit_or_is_no_image() {
    let t = tempfile::tempdir().unwrap();
    let root = Root::new(t.path());
    boot_files(t.path());
    let disk = t.path().join("disk.img");
    sparse(&disk, 160 * MIB);
    let iso = t.path().join("node.iso");
    fake_iso(&iso, 9, "1.0", 0);
    let mut o = InstallOptions {
        disk: disk.clone(),
        image: Some(iso.clone()),
        slot_mib: 8,
        force: false,
        store_dir: None,
        cmdline: String::new(),
    };
    let e = install(&root, &o).unwrap_err().to_string();
    assert!(e.contains("do not fit a 8 MiB slot"), "{e}");
    fs::write(&iso, vec![0u8; 40000]).unwrap();
    let e = format!("{:#}", install(&root, &o).unwrap_err());
    assert!(e.contains("not an ISO 9660 image"), "{e}");
    o.slot_mib = 100;
    fake_iso(&iso, 1, "1.0", 0);
    let e = install(&root, &o).unwrap_err().to_string();
    assert!(e.contains("needs at least"), "{e}");
    // nothing was written
    assert!(fs::read(&disk).unwrap().iter().all(|&b| b == 0));
}

/// An installed machine as sysfs and /dev show it: ESP, slots A and B as files.
fn installed(t: &Path, default: &str) -> Root {
    for (name, part, bytes) in [
        ("vda2", ESP_PART, 64 * 1024),
        ("vda3", SLOT_A_PART, 4 * MIB),
        ("vda4", SLOT_B_PART, 4 * MIB),
    ] {
        let sys = t.join("sys/class/block").join(name);
        fs::create_dir_all(&sys).unwrap();
        fs::write(
            sys.join("uevent"),
            format!("MAJOR=254\nDEVNAME={name}\nDEVTYPE=partition\nPARTNAME={part}\n"),
        )
        .unwrap();
        fs::create_dir_all(t.join("dev")).unwrap();
        sparse(&t.join("dev").join(name), bytes);
    }
    let mut esp = esp_image();
    let env =
        format!("slot_default={default}\ntrial_left=\nversion_A=1.0\novirt_args=console=ttyS0\n");
    esp[8192..8192 + grubenv::SIZE].copy_from_slice(&env_block(&env));
    fs::write(t.join("dev/vda2"), esp).unwrap();
    Root::new(t)
}

fn env_of(t: &Path) -> Env {
    let esp = fs::read(t.join("dev/vda2")).unwrap();
    Env::parse(&esp[8192..8192 + grubenv::SIZE]).unwrap()
}

fn sha256_hex(path: &Path) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, &fs::read(path).unwrap()).as_ref())
}

#[test]
fn upgrade_writes_the_other_slot_and_marks_one_trial_then_done_confirms_it() {
    let t = tempfile::tempdir().unwrap();
    let root = installed(t.path(), "A");
    let iso = t.path().join("new.iso");
    fake_iso(&iso, 2, "2.0", 7);
    let mut o = UpgradeOptions {
        image: iso.clone(),
        sha256: Some("00".repeat(32)),
        cmdline: "ovirt.slot=A".into(),
    };
    let e = upgrade(&root, &o).unwrap_err().to_string();
    assert!(
        e.contains("expected 0000") && e.contains("slot A stays the default"),
        "{e}"
    );
    let env = env_of(t.path());
    assert_eq!((env.get(TRIAL), env.get("version_B")), (None, None));

    o.sha256 = Some(sha256_hex(&iso).to_uppercase());
    let msg = upgrade(&root, &o).unwrap();
    assert!(msg.contains("slot B holds"), "{msg}");
    let env = env_of(t.path());
    assert_eq!(env.get(TRIAL), Some("B"));
    assert_eq!(env.get(TRIAL_LEFT), Some("1"));
    assert_eq!(env.get("version_B"), Some("2.0"));
    assert_eq!(env.get(ARGS), Some("console=ttyS0"), "kept");
    let slot_b = fs::read(t.path().join("dev/vda4")).unwrap();
    assert_eq!(slot_b[..2 * MIB as usize], fs::read(&iso).unwrap()[..]);
    let esp = fs::read(t.path().join("dev/vda2")).unwrap();
    assert!(esp[8192..]
        .starts_with(b"# GRUB Environment Block\nslot_default=A\nslot_trial=B\ntrial_left=1\n"));
    assert_eq!(esp.len(), 64 * 1024, "size kept");

    // still before the trial boot, `done` on A changes nothing
    after_done(&root, "ovirt.slot=A");
    assert_eq!(env_of(t.path()).get(TRIAL), Some("B"));
    // GRUB spent the trial and booted B; B reaches done
    set_env(t.path(), TRIAL_LEFT, "0");
    let st = status(&root, "ovirt.slot=B").unwrap().unwrap();
    assert_eq!(
        (st.running, st.default, st.trial),
        (Some(Slot::B), Some(Slot::A), Some(Slot::B))
    );
    after_done(&root, "ovirt.slot=B");
    let env = env_of(t.path());
    assert_eq!(
        (env.get(DEFAULT), env.get(TRIAL), env.get(FAILED)),
        (Some("B"), None, None)
    );
    let text = status(&root, "ovirt.slot=B").unwrap().unwrap().to_text();
    assert_eq!(text, "slot A: 1.0\nslot B: 2.0 (running, default)\n");
}

fn set_env(t: &Path, k: &str, v: &str) {
    let mut env = env_of(t);
    env.set(k, v).unwrap();
    let mut esp = fs::read(t.join("dev/vda2")).unwrap();
    esp[8192..8192 + grubenv::SIZE].copy_from_slice(&env.render().unwrap());
    fs::write(t.join("dev/vda2"), esp).unwrap();
}

#[test]
fn a_trial_that_never_reached_done_is_reported_once_at_the_next_done() {
    let t = tempfile::tempdir().unwrap();
    let root = installed(t.path(), "A");
    let iso = t.path().join("broken.iso");
    fake_iso(&iso, 1, "2.0-broken", 1);
    let o = UpgradeOptions {
        image: iso,
        sha256: None,
        cmdline: "ovirt.slot=A".into(),
    };
    upgrade(&root, &o).unwrap();
    set_env(t.path(), TRIAL_LEFT, "0"); // GRUB booted B once; it failed; GRUB is back on A
    after_done(&root, "ovirt.slot=A");
    let env = env_of(t.path());
    assert_eq!(
        (env.get(DEFAULT), env.get(TRIAL), env.get(FAILED)),
        (Some("A"), None, Some("B"))
    );
    let text = status(&root, "ovirt.slot=A").unwrap().unwrap().to_text();
    assert_eq!(
        text,
        "slot A: 1.0 (running, default)\nslot B: 2.0-broken (its trial boot failed)\n"
    );
}

#[test]
fn upgrade_refuses_when_not_installed_or_running_on_trial() {
    let t = tempfile::tempdir().unwrap();
    let o = UpgradeOptions {
        image: t.path().join("x.iso"),
        sha256: None,
        cmdline: "ovirt.slot=B".into(),
    };
    let e = upgrade(&Root::new(t.path()), &o).unwrap_err().to_string();
    assert!(e.contains("not installed"), "{e}");
    let root = installed(t.path(), "A");
    set_env(t.path(), TRIAL, "B");
    let e = upgrade(&root, &o).unwrap_err().to_string();
    assert!(e.contains("runs on trial"), "{e}");
    let e = upgrade(
        &root,
        &UpgradeOptions {
            cmdline: String::new(),
            ..o.clone()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not from a slot"), "{e}");
    let e = upgrade(
        &root,
        &UpgradeOptions {
            sha256: Some("xyz".into()),
            ..o
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("64 hexadecimal digits"), "{e}");
}

/// The fuzz targets' properties on their seeds and on bounded pseudo-random mutations of them
/// (`build-support/fuzz.sh` explores further).
#[test]
fn fuzz_properties_hold_on_seeds_and_mutations() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (target, run) in [
        ("grubenv", crate::fuzzing::grubenv as fn(&[u8])),
        ("iso_pvd", crate::fuzzing::iso_pvd),
    ] {
        let seed = fs::read(dir.join(target).join("typical")).unwrap();
        run(&seed);
        for _ in 0..3000 {
            let mut m = seed.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % m.len() as u64) as usize;
                m[at] = match next() % 4 {
                    0 => b'\n',
                    1 => b'=',
                    2 => b'#',
                    _ => next() as u8,
                };
            }
            let cut = (next() % (m.len() as u64 + 1)) as usize;
            run(&m);
            run(&m[..cut]);
        }
    }
}

#[test]
fn fat_bytes_reads_the_boot_sector_and_refuses_other_data() {
    let mut boot = [0u8; 512];
    assert_eq!(fat_bytes(&boot), None, "no signature");
    boot[510] = 0x55;
    boot[511] = 0xAA;
    boot[11..13].copy_from_slice(&512u16.to_le_bytes());
    assert_eq!(fat_bytes(&boot), None, "no sector count");
    boot[19..21].copy_from_slice(&16384u16.to_le_bytes());
    assert_eq!(fat_bytes(&boot), Some(8 * MIB));
    boot[19..21].copy_from_slice(&0u16.to_le_bytes());
    boot[32..36].copy_from_slice(&131072u32.to_le_bytes());
    assert_eq!(fat_bytes(&boot), Some(64 * MIB), "the 32-bit count");
    boot[11..13].copy_from_slice(&500u16.to_le_bytes());
    assert_eq!(fat_bytes(&boot), None, "not a sector size");
}
