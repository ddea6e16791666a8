//! The binary as PID 1 of the minimal initramfs (`image/mkinitrd-min.sh`), booted in QEMU
//! (qemu_tests::qemu) with a config disk (ext4 labelled `CONFIG`) against the engine simulator
//! on loopback. The guest reaches only the simulator's port (user-mode networking,
//! `restrict=on`, `guestfwd` to 10.0.2.100); no `root=`, so the binary runs the whole flow and
//! powers off (`ovirt.reg.poweroff`, added by the harness). A boot is judged by the console
//! banner, the files on the disk after QEMU exits (debugfs, `e2fsck -fn`) and the simulator's
//! events. The console log of a failed boot stays in `target/qemu-artifacts/`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qemu_tests::qemu::{self, Boot, Disk, Nic, Vm};
use qemu_tests::{FaultKind, FaultSpec, Handle, SimConfig, Simulator};

const TOKEN_FILE: &str = "/etc/ovirt-node-reg/token";
const KEYFILES: &str = "/etc/NetworkManager/system-connections";

/// What the installed host must have on its store (ovirt-protocol.md §5.4, src/install.rs).
const CERT_FILES: &[&str] = &[
    "/etc/pki/vdsm/keys/vdsmkey.pem",
    "/etc/pki/vdsm/certs/vdsmcert.pem",
    "/etc/pki/vdsm/certs/cacert.pem",
    "/etc/pki/vdsm/libvirt-spice/server-cert.pem",
    "/etc/pki/libvirt/clientcert.pem",
    "/etc/pki/libvirt/private/clientkey.pem",
    "/etc/pki/CA/cacert.pem",
    "/etc/pki/vdsm/libvirt-migrate/server-cert.pem",
];

/// Wall time of this test's boots, printed at the end.
struct Timer {
    name: &'static str,
    boots: Vec<(String, f64)>,
    start: Instant,
}

impl Timer {
    fn new(name: &'static str) -> Timer {
        Timer {
            name,
            boots: Vec::new(),
            start: Instant::now(),
        }
    }

    /// Boots `vm`; the boot must run to the banner and the poweroff.
    fn run(&mut self, vm: &Vm) -> Boot {
        let boot = qemu::boot(vm).unwrap_or_else(|e| panic!("{e:#}"));
        self.boots
            .push((vm.name.clone(), boot.elapsed.as_secs_f64()));
        let finished = boot
            .containing("init: finished at ")
            .next()
            .and_then(|l| l.split("init: finished at ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("-")
            .to_string();
        eprintln!(
            "[qemu] {}: {:.2} s QEMU start to exit; init finished at {finished} s guest uptime; \
             banner: {}",
            vm.name,
            boot.elapsed.as_secs_f64(),
            boot.banner().unwrap_or("-")
        );
        assert!(
            boot.completed(),
            "no banner and poweroff from PID 1\n{}",
            boot.tail()
        );
        boot
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let total: f64 = self.boots.iter().map(|b| b.1).sum();
        let each: Vec<String> = self
            .boots
            .iter()
            .map(|(n, t)| format!("{n} {t:.2} s"))
            .collect();
        eprintln!(
            "[qemu] test {}: {} boot(s), QEMU {total:.2} s ({}); test {:.1} s",
            self.name,
            self.boots.len(),
            each.join(", "),
            self.start.elapsed().as_secs_f64()
        );
    }
}

fn engine(protocol_version: i32) -> Handle {
    let sim = Simulator::start(SimConfig {
        protocol_version,
        ..SimConfig::default()
    })
    .expect("simulator starts");
    sim.set_retry_after(1);
    sim
}

/// The command line every scenario shares; `timeout` bounds the binary in the guest. The
/// store is found by its label, as on a real node.
fn base_args(sim: &Handle, timeout: u32) -> String {
    format!(
        "management_server={}:{} ovirt.reg.ca_pin=sha256:{} ovirt.reg.timeout={timeout} \
         ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 ovirt.reg.approval_timeout=30 rd.shell=0",
        qemu::GUEST_ENGINE_ADDR,
        sim.port(),
        sim.ca_sha256()
    )
}

fn status(disk: &Disk, boot: &Boot) -> serde_json::Value {
    let text = disk.read("/ovirt-node-reg/status.json").unwrap_or_else(|| {
        panic!(
            "no ovirt-node-reg/status.json on the store\n{}",
            boot.tail()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("status.json: {e}: {text}"))
}

fn count(sim: &Handle, command: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|e| e.command() == Some(command))
        .count()
}

fn banner(boot: &Boot) -> &str {
    boot.banner()
        .unwrap_or_else(|| panic!("no banner\n{}", boot.tail()))
}

/// A stock engine registered the host: the run ends `waiting` for the engine's host deploy.
fn assert_v1_registered(sim: &Handle, vm: &Vm, disk: &Disk, boot: &Boot) {
    // The step named is the one waited at (the v1 branch of csr_submitted).
    let b = banner(boot);
    assert!(
        b.starts_with("ovirt-node-reg: waiting, step ")
            && b.ends_with(": registered, waiting for engine host deploy"),
        "{}",
        boot.tail()
    );
    assert_eq!(count(sim, "register"), 1, "{}", boot.tail());
    let host = sim
        .host(&vm.uuid)
        .or_else(|| {
            sim.hosts()
                .into_iter()
                .find(|h| h.reg.unique_id.eq_ignore_ascii_case(&vm.uuid))
        })
        .unwrap_or_else(|| panic!("the simulator knows no host {}\n{}", vm.uuid, boot.tail()));
    assert_eq!(host.registrations, 1);
    let st = status(disk, boot);
    assert_eq!(st["result"], "waiting", "{st}");
    disk.fsck()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", boot.tail()));
}

/// The persisted NetworkManager keyfile of the bridge.
fn bridge_keyfile(disk: &Disk, boot: &Boot) -> String {
    disk.read(&format!("{KEYFILES}/ovirtmgmt.nmconnection"))
        .unwrap_or_else(|| {
            panic!(
                "no ovirtmgmt keyfile on the store ({:?})\n{}",
                disk.ls(KEYFILES),
                boot.tail()
            )
        })
}

/// First boot of a new machine with an enrolment token: registers, is approved by the token,
/// gets its certificates.
fn token_first_boot(t: &mut Timer, name: &str, uuid: &str) -> (Handle, Disk, Vm, Boot, String) {
    let sim = engine(2);
    let disk = Disk::new(name).expect("config disk");
    let token = sim
        .create_token(Duration::from_secs(600), Some(uuid))
        .expect("token")
        .token;
    let mut vm = Vm::pid1(name, sim.port(), &disk);
    vm.uuid = uuid.into();
    vm.extra(TOKEN_FILE, format!("{token}\n").as_bytes(), 0o600);
    vm.append = format!(
        "{} ip=dhcp ovirt.reg.token_file={TOKEN_FILE}",
        base_args(&sim, 60)
    );
    let boot = t.run(&vm);
    (sim, disk, vm, boot, token)
}

/// (a) First boot with a token file (0600, in the initramfs): trusted, registered, approved by
/// the token, certificates and vdsm settings installed on the config disk, status `done`,
/// the disk clean.
#[test]
fn token_first_boot_enrols() {
    let mut t = Timer::new("token_first_boot_enrols");
    let uuid = "4c4c4544-0042-3510-8052-b4c04f4e5201";
    let (sim, disk, _vm, boot, token) = token_first_boot(&mut t, "pid1-token", uuid);
    assert!(
        banner(&boot).starts_with("ovirt-node-reg: ok, step done"),
        "{}",
        boot.tail()
    );
    assert!(!boot.log.contains(&token), "the token is never logged");
    assert_eq!(count(&sim, "register"), 1);
    let host = sim.host(uuid).expect("host known");
    assert_eq!(host.registrations, 1);
    let st = status(&disk, &boot);
    assert_eq!(st["result"], "ok", "{st}");
    assert_eq!(st["step"], "done", "{st}");
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
    assert!(!state.contains(&token), "no token in the checkpoints");
    assert!(
        disk.read("/etc/vdsm/vdsm.conf")
            .is_some_and(|c| c.contains("ssl")),
        "vdsm.conf"
    );
    disk.fsck()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", boot.tail()));
    boot.pass();
}

/// (b) The same machine boots again from the same disk: done again from the checkpoints,
/// and the engine sees no second register or CSR.
#[test]
fn second_boot_sends_no_register() {
    let mut t = Timer::new("second_boot_sends_no_register");
    let uuid = "4c4c4544-0042-3510-8052-b4c04f4e5202";
    let (sim, disk, mut vm, first, _) = token_first_boot(&mut t, "pid1-second", uuid);
    assert!(
        banner(&first).starts_with("ovirt-node-reg: ok, step done"),
        "{}",
        first.tail()
    );
    let seq = sim.events().last().map_or(0, |e| e.seq);
    vm.name = "pid1-second-2".into();
    let boot = t.run(&vm);
    assert!(
        banner(&boot).starts_with("ovirt-node-reg: ok, step done"),
        "{}",
        boot.tail()
    );
    let later: Vec<String> = sim
        .events_since(seq + 1)
        .iter()
        .filter(|e| e.is_request())
        .map(|e| {
            e.command()
                .map(String::from)
                .or_else(|| e.path.clone())
                .unwrap_or_default()
        })
        .collect();
    for c in ["register", "submit-csr", "get-certificates"] {
        assert!(
            !later.iter().any(|x| x == c),
            "second boot sent {c}: {later:?}"
        );
    }
    assert_eq!(count(&sim, "register"), 1);
    assert_eq!(sim.host(uuid).expect("host").registrations, 1);
    assert_eq!(status(&disk, &boot)["step"], "done");
    disk.fsck()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", boot.tail()));
    first.pass();
    boot.pass();
}

/// (c) The engine refuses connections for the first seconds of the boot (down), then comes
/// up: the node retries within its policy and registers.
#[test]
fn engine_down_then_up() {
    let mut t = Timer::new("engine_down_then_up");
    let sim = engine(1);
    let disk = Disk::new("pid1-down").expect("disk");
    let mut vm = Vm::pid1("pid1-down", sim.port(), &disk);
    vm.uuid = "4c4c4544-0042-3510-8052-b4c04f4e5203".into();
    vm.append = format!("{} ip=dhcp", base_args(&sim, 60));
    // The binary starts about 2 s after QEMU: it meets a refusing engine for about 8 s.
    sim.set_fault(FaultSpec::new(FaultKind::Refuse { secs: 10 }));
    let boot = t.run(&vm);
    assert_v1_registered(&sim, &vm, &disk, &boot);
    // Through guestfwd a down engine is a connection that closes at once (slirp accepts,
    // socat cannot connect), not a refusal: the node must retry it all the same.
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
    let mut t = Timer::new("wrong_ca_pin_fails_closed");
    let sim = engine(2);
    let disk = Disk::new("pid1-pin").expect("disk");
    let mut vm = Vm::pid1("pid1-pin", sim.port(), &disk);
    let wrong = "ab".repeat(32);
    vm.append = format!(
        "{} ip=dhcp ovirt.reg.ca_pin=sha256:{wrong}",
        base_args(&sim, 30).replace(&format!("ovirt.reg.ca_pin=sha256:{} ", sim.ca_sha256()), "")
    );
    assert!(!vm.append.contains(&sim.ca_sha256()));
    let boot = t.run(&vm);
    let b = banner(&boot);
    assert!(
        b.starts_with("ovirt-node-reg: FAILED at step engine_trusted"),
        "{}",
        boot.tail()
    );
    let fatal = boot.log.to_lowercase();
    assert!(
        fatal.contains(&wrong) && fatal.contains(&sim.ca_sha256()),
        "both fingerprints on the console\n{}",
        boot.tail()
    );
    let commands: Vec<String> = sim
        .requests()
        .iter()
        .map(|e| {
            e.command()
                .map(String::from)
                .or_else(|| e.path.clone())
                .unwrap_or_default()
        })
        .collect();
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
    assert!(sim.hosts().is_empty(), "nothing registered");
    assert_eq!(status(&disk, &boot)["result"], "failed");
    disk.fsck()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", boot.tail()));
    boot.pass();
}

/// (e) The guest's clock starts in 2001 (`-rtc base=2001-01-01`). SNTP is out of reach, so the
/// binary takes the engine's `Date`, steps the clock by about 25 years, then verifies the
/// engine's certificate (issued now) and registers.
#[test]
fn clock_years_off_is_stepped() {
    let mut t = Timer::new("clock_years_off_is_stepped");
    let sim = engine(1);
    let disk = Disk::new("pid1-clock").expect("disk");
    let mut vm = Vm::pid1("pid1-clock", sim.port(), &disk);
    vm.rtc_base = Some("2001-01-01".into());
    vm.uuid = "4c4c4544-0042-3510-8052-b4c04f4e5205".into();
    vm.append = format!("{} ip=dhcp", base_args(&sim, 40));
    let boot = t.run(&vm);
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
    assert_v1_registered(&sim, &vm, &disk, &boot);
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
    let mut t = Timer::new("dhcp_with_bootif");
    let sim = engine(1);
    let disk = Disk::new("pid1-dhcp").expect("disk");
    let mut vm = Vm::pid1("pid1-dhcp", sim.port(), &disk);
    vm.uuid = "4c4c4544-0042-3510-8052-b4c04f4e5206".into();
    vm.append = format!(
        "{} ip=dhcp BOOTIF=01-{}",
        base_args(&sim, 40),
        vm.nics[0].mac.replace(':', "-")
    );
    let boot = t.run(&vm);
    assert_v1_registered(&sim, &vm, &disk, &boot);
    let kf = bridge_keyfile(&disk, &boot);
    assert!(kf.contains("method=auto"), "{kf}");
    assert!(
        kf.contains(&format!(
            "cloned-mac-address={}",
            vm.nics[0].mac.to_uppercase()
        )),
        "{kf}"
    );
    let reg = sim.host(&vm.uuid).expect("host");
    assert_eq!(reg.reg.address, "10.0.2.15", "{reg:?}");
    boot.pass();
}

/// (g) A static dracut-style `ip=`: no DHCP at all, and the keyfile is manual.
#[test]
fn static_ip() {
    let mut t = Timer::new("static_ip");
    let sim = engine(1);
    let disk = Disk::new("pid1-static").expect("disk");
    let mut vm = Vm::pid1("pid1-static", sim.port(), &disk);
    vm.uuid = "4c4c4544-0042-3510-8052-b4c04f4e5207".into();
    vm.append = format!(
        "{} ip=10.0.2.15::10.0.2.2:255.255.255.0:node1:eth0:off",
        base_args(&sim, 40)
    );
    let boot = t.run(&vm);
    assert_v1_registered(&sim, &vm, &disk, &boot);
    let kf = bridge_keyfile(&disk, &boot);
    assert!(kf.contains("method=manual"), "{kf}");
    assert!(kf.contains("10.0.2.15/24"), "{kf}");
    boot.pass();
}

/// (h) Two NICs, BOOTIF names the second: the bridge is built over eth1 and takes its MAC.
#[test]
fn bootif_picks_the_second_nic() {
    let mut t = Timer::new("bootif_picks_the_second_nic");
    let sim = engine(1);
    let disk = Disk::new("pid1-bootif").expect("disk");
    let mut vm = Vm::pid1("pid1-bootif", sim.port(), &disk);
    vm.uuid = "4c4c4544-0042-3510-8052-b4c04f4e5208".into();
    vm.nics.push(Nic {
        mac: "52:54:00:12:34:57".into(),
    });
    vm.append = format!(
        "{} ip=dhcp BOOTIF=01-52-54-00-12-34-57",
        base_args(&sim, 40)
    );
    let boot = t.run(&vm);
    assert_v1_registered(&sim, &vm, &disk, &boot);
    let kf = bridge_keyfile(&disk, &boot);
    assert!(
        kf.contains("cloned-mac-address=52:54:00:12:34:57"),
        "the bridge has the second NIC's MAC: {kf}"
    );
    let names = disk.ls(KEYFILES).expect("keyfiles");
    assert!(
        names.iter().any(|n| n.contains("eth1")) && !names.iter().any(|n| n.contains("eth0")),
        "the port is eth1: {names:?}"
    );
    boot.pass();
}
