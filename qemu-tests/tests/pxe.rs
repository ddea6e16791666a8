//! PXE boots (qemu-harness.md §6): the firmware's iPXE ROM does DHCP and loads the tree made by
//! `image/mkpxe.sh` from QEMU's own TFTP server (user-mode networking, `restrict=on`, the
//! engine only through `guestfwd` to 10.0.2.100); the tree's initramfs is the minimal PID-1
//! image, its enrolment token a second initramfs (0600). Two NICs, the second one the boot NIC
//! (`bootindex=1`, the only one with the TFTP server): BOOTIF, added by pxelinux (IPAPPEND 2)
//! or by the iPXE script (`${netX/mac}`), must make the node build its bridge on that NIC.
//! Each scenario prints the PXE boot's time to `step registered: done`.

use std::time::{Duration, UNIX_EPOCH};

use qemu_tests::qemu::{self, Boot, Disk, Nic, Vm};
use qemu_tests::{Handle, SimConfig, Simulator};

const KEYFILES: &str = "/etc/NetworkManager/system-connections";

/// What the installed host must have on its store (ovirt-protocol.md §5.4, src/install.rs).
const CERT_FILES: &[&str] = &[
    "/etc/pki/vdsm/keys/vdsmkey.pem",
    "/etc/pki/vdsm/certs/vdsmcert.pem",
    "/etc/pki/vdsm/certs/cacert.pem",
    "/etc/pki/libvirt/clientcert.pem",
    "/etc/pki/libvirt/private/clientkey.pem",
];

const BOOT_MAC: &str = "52:54:00:12:34:57";

/// One PXE boot of a new machine with a token overlay against a v2 simulator.
struct Run {
    sim: Handle,
    disk: Disk,
    vm: Vm,
    boot: Boot,
    token: String,
}

fn pxe_first_boot(name: &str, uuid: &str, bootfile: &str, append: &str) -> Run {
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
    let tree = qemu::pxe_tree(
        name,
        sim.port(),
        &sim.ca_sha256(),
        Some(&token),
        &format!(
            "ovirt.reg.timeout=60 ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 \
             ovirt.reg.approval_timeout=30 rd.shell=0 {append}"
        ),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let token_img = tree.join("token.img");
    let mode = std::fs::metadata(&token_img)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .expect("token.img");
    assert_eq!(mode, 0o600, "the token overlay is 0600");
    let disk = Disk::new(name).expect("config disk");
    let mut vm = Vm::pxe(name, sim.port(), &disk, &tree, bootfile);
    vm.uuid = uuid.into();
    // The boot NIC is the second one: the firmware would take the first by default.
    vm.nics.push(Nic {
        mac: BOOT_MAC.into(),
    });
    vm.pxe.as_mut().expect("pxe").nic = 1;
    let boot = qemu::boot(&vm).unwrap_or_else(|e| panic!("{e:#}"));
    Run {
        sim,
        disk,
        vm,
        boot,
        token,
    }
}

/// Registered, approved by the token, certificates on the config disk, the bridge over the
/// boot NIC (eth1, its MAC); prints the time to `registered`.
fn assert_enrolled_on_boot_nic(r: &Run, what: &str) {
    let boot = &r.boot;
    eprintln!(
        "[qemu] {}: {:.2} s QEMU start to exit; banner: {}",
        r.vm.name,
        boot.elapsed.as_secs_f64(),
        boot.banner().unwrap_or("-")
    );
    assert!(boot.completed(), "no banner and poweroff\n{}", boot.tail());
    assert!(
        boot.banner()
            .is_some_and(|b| b.starts_with("ovirt-node-reg: ok, step done")),
        "{}",
        boot.tail()
    );
    assert!(!boot.log.contains(&r.token), "the token is never logged");
    let host = r
        .sim
        .host(&r.vm.uuid)
        .unwrap_or_else(|| panic!("the simulator knows no host {}\n{}", r.vm.uuid, boot.tail()));
    assert_eq!(host.registrations, 1, "{host:?}");
    assert_eq!(
        host.status,
        qemu_tests::hosts::HostStatus::Approved,
        "{host:?}"
    );
    assert_eq!(host.reg.address, "10.0.2.15", "{host:?}");
    let st: serde_json::Value = serde_json::from_str(
        &r.disk
            .read("/ovirt-node-reg/status.json")
            .unwrap_or_else(|| panic!("no status.json\n{}", boot.tail())),
    )
    .expect("status.json");
    assert_eq!(st["result"], "ok", "{st}");
    assert_eq!(st["step"], "done", "{st}");
    for f in CERT_FILES {
        let data = r
            .disk
            .read(f)
            .unwrap_or_else(|| panic!("{f} missing on the store\n{}", boot.tail()));
        assert!(data.contains("-----BEGIN "), "{f}: {data}");
    }
    assert_eq!(
        r.disk
            .read("/etc/pki/vdsm/certs/cacert.pem")
            .unwrap()
            .trim(),
        r.sim.ca_pem().trim()
    );
    // BOOTIF named the second NIC: the bridge is built over eth1 and takes its MAC.
    let kf = r
        .disk
        .read(&format!("{KEYFILES}/ovirtmgmt.nmconnection"))
        .unwrap_or_else(|| panic!("no ovirtmgmt keyfile\n{}", boot.tail()));
    assert!(
        kf.contains(&format!("cloned-mac-address={}", BOOT_MAC.to_uppercase())),
        "the bridge has the boot NIC's MAC: {kf}"
    );
    let names = r.disk.ls(KEYFILES).expect("keyfiles");
    assert!(
        names.iter().any(|n| n.contains("eth1")) && !names.iter().any(|n| n.contains("eth0")),
        "the port is eth1, the boot NIC: {names:?}"
    );
    assert!(
        boot.containing("over eth1").next().is_some(),
        "network up over eth1\n{}",
        boot.tail()
    );
    r.disk
        .fsck()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", boot.tail()));
    // The time to `registered`: on the guest's clock (kernel start), and from QEMU's start
    // (firmware, DHCP, TFTP included) to the simulator's answer to `register`.
    let guest = boot.step_done_at("registered").expect("step registered");
    let qemu_start_ms = boot.started.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let register_ms = r
        .sim
        .requests()
        .iter()
        .find(|e| e.command() == Some("register") && e.status == Some(200))
        .map(|e| e.unix_ms)
        .expect("a register answered 200");
    eprintln!(
        "[qemu] PXE {what}: registered at {:.2} s after QEMU start ({guest:.2} s guest \
         uptime); done at {:.2} s uptime; QEMU {:.2} s in all",
        register_ms.saturating_sub(qemu_start_ms) as f64 / 1000.0,
        boot.step_done_at("done").unwrap_or(f64::NAN),
        boot.elapsed.as_secs_f64()
    );
}

/// (a) pxelinux: the second NIC boots, pxelinux adds `BOOTIF=01-<its MAC>` (IPAPPEND 2); the
/// token overlay (token.img) enrols the node.
#[test]
fn pxelinux_token_overlay_bootif() {
    let r = pxe_first_boot(
        "pxe-pxelinux",
        "4c4c4544-0042-3510-8052-b4c04f4e5301",
        "pxelinux.0",
        "ip=dhcp",
    );
    assert_enrolled_on_boot_nic(&r, "pxelinux");
    r.boot.pass();
}

/// (b) The iPXE script straight from TFTP: BOOTIF from `${netX/mac:hexhyp}` of the NIC iPXE
/// booted from. No `ip=`: BOOTIF alone makes the binary bring the network up (DHCP on the
/// bridge over that NIC).
#[test]
fn ipxe_script_bootif() {
    let r = pxe_first_boot(
        "pxe-ipxe",
        "4c4c4544-0042-3510-8052-b4c04f4e5302",
        "boot.ipxe",
        "",
    );
    assert_enrolled_on_boot_nic(&r, "iPXE");
    r.boot.pass();
}
