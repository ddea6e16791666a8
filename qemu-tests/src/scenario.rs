//! The set-up every QEMU boot test repeats, in one place: a [`Scenario`] is one test's
//! simulator (and the timing summary it prints at the end), a [`Machine`] says what differs
//! between boots (the image, the token, the NICs, the kernel arguments that matter), and
//! [`Machine::build`] makes the rest (config disk, token, image, PXE tree or ISO, [`Vm`]) into
//! a [`Node`] that boots and carries the assertions the scenarios share.
//!
//! ```no_run
//! use qemu_tests::scenario::Scenario;
//! let s = Scenario::start("token_first_boot_enrols", 2);
//! let mut node = s.machine("pid1-token").uuid("4c4c4544-0042-3510-8052-b4c04f4e5201")
//!     .token().args("ip=dhcp").build();
//! let boot = node.boot();
//! node.assert_done(&boot);
//! node.assert_registered_once(&boot);
//! node.assert_certs(&boot);
//! boot.pass();
//! ```
//!
//! The kernel command line is built here, so a test names only what it is about: the engine
//! (`management_server` at the guestfwd address, the CA pin), the binary's bounds
//! (`ovirt.reg.timeout`, retries, approval), the token file and `BOOTIF`, then the test's own
//! [`Machine::args`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Result;

use crate::hosts::Host;
use crate::qemu::{self, Boot, Disk, Flavour, Image, LiveRoot, Nic, Vm, GUEST_ENGINE_ADDR};
use crate::{Handle, SimConfig, Simulator};

/// Where a direct-kernel boot's initramfs holds the enrolment token (0600).
pub const TOKEN_FILE: &str = "/etc/ovirt-node-reg/token";

/// The persisted NetworkManager keyfiles on the store.
pub const KEYFILES: &str = "/etc/NetworkManager/system-connections";

/// What the installed host must have on its store (docs/ovirt-protocol.md §5.4, src/install.rs).
pub const CERT_FILES: &[&str] = &[
    "/etc/pki/vdsm/keys/vdsmkey.pem",
    "/etc/pki/vdsm/certs/vdsmcert.pem",
    "/etc/pki/vdsm/certs/cacert.pem",
    "/etc/pki/vdsm/libvirt-spice/server-cert.pem",
    "/etc/pki/libvirt/clientcert.pem",
    "/etc/pki/libvirt/private/clientkey.pem",
    "/etc/pki/CA/cacert.pem",
    "/etc/pki/vdsm/libvirt-migrate/server-cert.pem",
];

/// Lifetime of the tokens made for a machine: longer than any boot test, storms included.
const TOKEN_TTL: Duration = Duration::from_secs(900);

/// One test's engine: the simulator, and the boots to sum up when the test ends.
pub struct Scenario {
    pub sim: Handle,
    test: String,
    started: Instant,
    boots: Mutex<Vec<(String, f64)>>,
}

impl Scenario {
    /// A simulator answering `get-version` with `protocol_version` (1: a stock engine, whose
    /// flow ends "registered, waiting for engine host deploy"; 2: v2 enrolment). `test` names
    /// the summary line.
    pub fn start(test: &str, protocol_version: i32) -> Scenario {
        Scenario::with(
            test,
            SimConfig {
                protocol_version,
                ..SimConfig::default()
            },
        )
    }

    /// A simulator with `config` (auto-approval, a rate limit, …).
    pub fn with(test: &str, config: SimConfig) -> Scenario {
        let sim = Simulator::start(config).expect("simulator starts");
        // A pending node asks again after a second, not the engine's default 5.
        sim.set_retry_after(1);
        Scenario {
            sim,
            test: test.into(),
            started: Instant::now(),
            boots: Mutex::new(Vec::new()),
        }
    }

    /// A new machine `name` (its console log, disk and images are named after it): by default
    /// the PID-1 image, one NIC, the harness's SMBIOS UUID, no token, `ovirt.reg.timeout=60`.
    pub fn machine(&self, name: &str) -> Machine<'_> {
        let vm = Vm::new(name, self.sim.port());
        Machine {
            scenario: self,
            name: name.into(),
            uuid: vm.uuid,
            kind: Kind::Pid1,
            token: false,
            pin: None,
            timeout: 60,
            retry_cap: 2,
            approval_timeout: 30,
            args: String::new(),
            nics: vm.nics.into_iter().map(|n| n.mac).collect(),
            bootif: None,
            boot_nic: 0,
            rtc_base: None,
            vm_timeout: None,
            dns_port: None,
            extras: Vec::new(),
        }
    }

    /// Engine requests with this host-register `command`.
    pub fn count(&self, command: &str) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|e| e.command() == Some(command))
            .count()
    }

    /// The last event so far: [`Scenario::requests_since`] this mark sees only what came later.
    pub fn mark(&self) -> u64 {
        self.sim.events().last().map_or(0, |e| e.seq)
    }

    /// Each engine request after `mark`, by its `command` (or its path when it has none).
    pub fn requests_since(&self, mark: u64) -> Vec<String> {
        self.sim
            .events_since(mark)
            .iter()
            .filter(|e| e.is_request())
            .map(|e| {
                e.command()
                    .map(String::from)
                    .or_else(|| e.path.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The engine saw no registration or enrolment after `mark` (a reboot of an enrolled
    /// machine works from its checkpoints).
    pub fn assert_no_enrolment_since(&self, mark: u64, boot: &Boot) {
        let later = self.requests_since(mark);
        for c in ["register", "submit-csr", "get-certificates"] {
            assert!(
                !later.iter().any(|x| x == c),
                "{} sent {c}: {later:?}\n{}",
                boot.name,
                boot.tail()
            );
        }
    }

    fn record(&self, boot: &Boot) {
        eprintln!("{}", boot.report());
        self.boots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((boot.name.clone(), boot.elapsed.as_secs_f64()));
    }
}

impl Drop for Scenario {
    /// The test's boots and their QEMU time, and the test's own time (image builds included).
    fn drop(&mut self) {
        let boots = self.boots.lock().unwrap_or_else(|e| e.into_inner());
        let total: f64 = boots.iter().map(|b| b.1).sum();
        let each: Vec<String> = boots.iter().map(|(n, t)| format!("{n} {t:.2} s")).collect();
        eprintln!(
            "[qemu] test {}: {} boot(s), QEMU {total:.2} s ({}); test {:.1} s",
            self.test,
            boots.len(),
            each.join(", "),
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// How a machine boots.
#[derive(Debug, Clone)]
pub enum Kind {
    /// busybox sh as `/init` ([`qemu::INIT`]), which prints the links, addresses and status
    /// it sees; the store is its tmpfs on `/config`, no config disk.
    Script,
    /// The binary as PID 1 of the minimal initramfs, booted with `-kernel`.
    Pid1,
    /// The dracut initramfs of `flavour` and the tiny test root.
    Dracut(Flavour),
    /// PXE: `bootfile` (`pxelinux.0` or `boot.ipxe`) from `tree`, or from a tree made for
    /// this machine (its token in the tree's overlay).
    Pxe {
        bootfile: String,
        tree: Option<PathBuf>,
    },
    /// The node ISO with `root` on the CD-ROM, on UEFI or SeaBIOS; the engine checks the
    /// node's vdsm port while the guest waits.
    Iso { root: LiveRoot, uefi: bool },
}

/// What differs between machines; [`Machine::build`] makes the rest.
#[derive(Debug, Clone)]
pub struct Machine<'s> {
    scenario: &'s Scenario,
    name: String,
    uuid: String,
    kind: Kind,
    token: bool,
    pin: Option<String>,
    timeout: u32,
    retry_cap: u32,
    approval_timeout: u32,
    args: String,
    nics: Vec<String>,
    bootif: Option<usize>,
    boot_nic: usize,
    rtc_base: Option<String>,
    vm_timeout: Option<Duration>,
    dns_port: Option<u16>,
    extras: Vec<(String, Vec<u8>, u32)>,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scenario({}, {})", self.test, self.sim.base_url())
    }
}

impl<'s> Machine<'s> {
    /// busybox `/init` ([`Kind::Script`]).
    pub fn script(mut self) -> Self {
        self.kind = Kind::Script;
        self
    }

    /// busybox `/init` running `script` (a shell script) instead of `ovirt-node-reg boot`:
    /// what an operator, or the engine over SSH, types on the console.
    pub fn console(mut self, script: &str) -> Self {
        self.kind = Kind::Script;
        self.file(qemu::CONSOLE_SCRIPT, script.as_bytes(), 0o755)
    }

    /// The dracut initramfs of `flavour` and the test root ([`Kind::Dracut`]).
    pub fn dracut(mut self, flavour: Flavour) -> Self {
        self.kind = Kind::Dracut(flavour);
        self
    }

    /// A PXE boot of a tree made for this machine ([`Kind::Pxe`]).
    pub fn pxe(mut self, bootfile: &str) -> Self {
        self.kind = Kind::Pxe {
            bootfile: bootfile.into(),
            tree: None,
        };
        self
    }

    /// A PXE boot of `tree`, shared with other machines ([`Machine::pxe_tree`]).
    pub fn pxe_from(mut self, tree: &std::path::Path, bootfile: &str) -> Self {
        self.kind = Kind::Pxe {
            bootfile: bootfile.into(),
            tree: Some(tree.to_path_buf()),
        };
        self
    }

    /// The node ISO with `root`, on SeaBIOS ([`Kind::Iso`]).
    pub fn iso(mut self, root: LiveRoot) -> Self {
        self.kind = Kind::Iso { root, uefi: false };
        self
    }

    /// UEFI firmware for an ISO boot.
    pub fn uefi(mut self) -> Self {
        match &mut self.kind {
            Kind::Iso { uefi, .. } => *uefi = true,
            other => panic!("UEFI is for ISO boots, not {other:?}"),
        }
        self
    }

    /// The SMBIOS system UUID: the host id the node registers with.
    pub fn uuid(mut self, uuid: &str) -> Self {
        self.uuid = uuid.into();
        self
    }

    /// A single-use enrolment token for this host, made on the simulator when the machine is
    /// built and handed over the image's way (a 0600 file, never the command line).
    pub fn token(mut self) -> Self {
        self.token = true;
        self
    }

    /// Pins `sha256:<hex>` instead of the simulator's CA.
    pub fn pin(mut self, hex: &str) -> Self {
        self.pin = Some(hex.into());
        self
    }

    /// `ovirt.reg.timeout`: the binary's bound in the guest.
    pub fn timeout(mut self, secs: u32) -> Self {
        self.timeout = secs;
        self
    }

    /// `ovirt.reg.retry_cap` (default 2 s).
    pub fn retry_cap(mut self, secs: u32) -> Self {
        self.retry_cap = secs;
        self
    }

    /// `ovirt.reg.approval_timeout` (default 30 s).
    pub fn approval_timeout(mut self, secs: u32) -> Self {
        self.approval_timeout = secs;
        self
    }

    /// Kernel arguments of this test, after the common ones (the last occurrence of a key
    /// wins, docs/qemu-harness.md §3).
    pub fn args(mut self, args: &str) -> Self {
        self.args.push(' ');
        self.args.push_str(args.trim());
        self
    }

    /// Another NIC, `eth<N>` in the guest.
    pub fn nic(mut self, mac: &str) -> Self {
        self.nics.push(mac.into());
        self
    }

    /// The first NIC's MAC.
    pub fn mac(mut self, mac: &str) -> Self {
        self.nics[0] = mac.into();
        self
    }

    /// `BOOTIF=01-<MAC>` of NIC `nic`, as a PXE firmware passes it.
    pub fn bootif(mut self, nic: usize) -> Self {
        self.bootif = Some(nic);
        self
    }

    /// The NIC a PXE boot boots from (`bootindex=1`, the only one with TFTP).
    pub fn boot_nic(mut self, nic: usize) -> Self {
        self.boot_nic = nic;
        self
    }

    /// QEMU's `-rtc base=` (e.g. `2001-01-01`).
    pub fn rtc(mut self, base: &str) -> Self {
        self.rtc_base = Some(base.into());
        self
    }

    /// When the harness kills QEMU (default: the image's, see [`Vm`]'s constructors).
    pub fn vm_timeout(mut self, timeout: Duration) -> Self {
        self.vm_timeout = Some(timeout);
        self
    }

    /// A DNS server on host loopback `port`, which the guest reaches at `10.0.2.100:53` over
    /// TCP only (engine discovery by DNS SRV).
    pub fn dns(mut self, port: u16) -> Self {
        self.dns_port = Some(port);
        self
    }

    /// A file added to the PID-1 or busybox `/init` initramfs (e.g. `/etc/hosts`).
    pub fn file(mut self, dst: &str, data: &[u8], mode: u32) -> Self {
        self.extras.push((dst.into(), data.to_vec(), mode));
        self
    }

    /// `management_server` at the guestfwd address and the CA pin.
    fn engine_args(&self) -> String {
        let sim = &self.scenario.sim;
        let pin = self.pin.clone().unwrap_or_else(|| sim.ca_sha256());
        format!(
            "management_server={GUEST_ENGINE_ADDR}:{} ovirt.reg.ca_pin=sha256:{pin}",
            sim.port()
        )
    }

    /// The binary's bounds, `BOOTIF` and the test's own arguments: everything but the
    /// engine, which a PXE tree carries in its own way.
    fn flow_args(&self) -> String {
        let mut args = format!(
            "ovirt.reg.timeout={} ovirt.reg.retry_base=1 ovirt.reg.retry_cap={} \
             ovirt.reg.approval_timeout={}",
            self.timeout, self.retry_cap, self.approval_timeout
        );
        // Where the binary is PID 1 it would start an emergency shell on a failure.
        if matches!(self.kind, Kind::Pid1 | Kind::Pxe { .. }) {
            args.push_str(" rd.shell=0");
        }
        if let Some(i) = self.bootif {
            args.push_str(&format!(" BOOTIF=01-{}", self.nics[i].replace(':', "-")));
        }
        args.push_str(&self.args);
        args
    }

    /// The kernel command line of a direct or CD-ROM boot.
    fn kernel_args(&self) -> String {
        let (engine, flow) = (self.engine_args(), self.flow_args());
        match self.kind {
            // The store is /init's tmpfs.
            Kind::Script => format!("{engine} ovirt.reg.store=/config {flow}"),
            Kind::Pid1 if self.token => {
                format!("{engine} ovirt.reg.token_file={TOKEN_FILE} {flow}")
            }
            // The ISO's boot entry has no harness defaults: no menu, power off at the end,
            // give the engine 60 s to check vdsm, a failed dracut powers off; rd.timeout counts
            // in real time, which a busy machine stretches under TCG (qemu::Vm::kernel_args).
            Kind::Iso { .. } => format!(
                "quiet panic=-1 no_timer_check {} rd.shell=0 rd.timeout=90 rd.emergency=poweroff \
                 ovirt.reg.poweroff qh.vdsm_wait=60 {engine} {flow}",
                qemu::TCG_APPEND
            ),
            _ => format!("{engine} {flow}"),
        }
    }

    /// The PXE tree of this machine (`image/mkpxe.sh`): the engine, the pin, the token and
    /// the kernel arguments of this machine; [`Machine::pxe_from`] boots it.
    pub fn pxe_tree(&self, token: Option<&str>) -> Result<PathBuf> {
        assert!(self.pin.is_none(), "a PXE tree pins the simulator's CA");
        let sim = &self.scenario.sim;
        qemu::pxe_tree(
            &self.name,
            sim.port(),
            &sim.ca_sha256(),
            token,
            &self.flow_args(),
        )
    }

    /// Makes the token, the config disk, the image and the [`Vm`]. Panics on a harness error
    /// (a missing tool names its package).
    pub fn build(self) -> Node<'s> {
        self.try_build().unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn try_build(self) -> Result<Node<'s>> {
        let sim = &self.scenario.sim;
        let token = match self.token {
            true => Some(sim.create_token(TOKEN_TTL, Some(&self.uuid))?.token),
            false => None,
        };
        let disk = match self.kind {
            Kind::Script => None,
            _ => Some(Disk::new(&self.name)?),
        };
        let mut vm = self.vm(disk.as_ref(), token.as_deref())?;
        vm.uuid = self.uuid.clone();
        vm.nics = self
            .nics
            .iter()
            .map(|mac| Nic { mac: mac.clone() })
            .collect();
        vm.rtc_base = self.rtc_base.clone();
        vm.dns_port = self.dns_port;
        for (dst, data, mode) in &self.extras {
            anyhow::ensure!(
                matches!(self.kind, Kind::Pid1 | Kind::Script),
                "{}: files are added to the PID-1 and busybox /init images only",
                self.name
            );
            vm.extra(dst, data, *mode);
        }
        if let Some(t) = self.vm_timeout {
            vm.timeout = t;
        }
        Ok(Node {
            scenario: self.scenario,
            vm,
            disk,
            token,
            vdsm_check: None,
        })
    }

    fn vm(&self, disk: Option<&Disk>, token: Option<&str>) -> Result<Vm> {
        let port = self.scenario.sim.port();
        let name = self.name.as_str();
        let no_token = |what: &str| {
            anyhow::ensure!(token.is_none(), "{name}: no way to hand a token to {what}");
            Ok(())
        };
        let disk = || disk.expect("a config disk");
        let vm = match &self.kind {
            Kind::Script => {
                no_token("the busybox /init")?;
                let mut vm = Vm::new(name, port);
                vm.append = self.kernel_args();
                vm
            }
            Kind::Pid1 => {
                let mut vm = Vm::pid1(name, port, disk());
                if let Some(token) = token {
                    vm.extra(TOKEN_FILE, format!("{token}\n").as_bytes(), 0o600);
                }
                vm.append = self.kernel_args();
                vm
            }
            Kind::Dracut(flavour) => {
                no_token("the dracut image")?;
                let mut vm = Vm::dracut(name, port, disk(), *flavour)?;
                vm.append = self.kernel_args();
                vm
            }
            Kind::Pxe { bootfile, tree } => {
                let tree = match tree {
                    Some(tree) => {
                        no_token("a shared PXE tree")?;
                        tree.clone()
                    }
                    None => self.pxe_tree(token)?,
                };
                let mut vm = Vm::pxe(name, port, disk(), &tree, bootfile);
                vm.pxe.as_mut().expect("a PXE boot").nic = self.boot_nic;
                vm
            }
            Kind::Iso { root, uefi } => {
                let iso = qemu::iso_image(name, *root, &self.kernel_args(), token)?;
                let mut vm = Vm::iso(name, port, disk(), &iso)?;
                vm.uefi = *uefi;
                vm
            }
        };
        Ok(vm)
    }
}

/// A built machine: boot it (again) and judge its boots.
#[derive(Debug)]
pub struct Node<'s> {
    pub scenario: &'s Scenario,
    pub vm: Vm,
    /// The config disk; `None` for [`Kind::Script`].
    pub disk: Option<Disk>,
    /// The token handed to the node, if any.
    pub token: Option<String>,
    /// The engine's mTLS check of the node's vdsm port during the last ISO boot.
    pub vdsm_check: Option<Result<(), String>>,
}

impl Node<'_> {
    pub fn disk(&self) -> &Disk {
        self.disk.as_ref().expect("a machine with a config disk")
    }

    /// Boots without judging (for boots run in parallel threads): the harness's error, e.g.
    /// the timeout, is the `Err`.
    pub fn run(&self) -> Result<Boot> {
        let boot = qemu::boot(&self.vm)?;
        self.scenario.record(&boot);
        Ok(boot)
    }

    /// Boots; the boot must run to its end (PID 1's banner and poweroff, or `QH-DONE`). An ISO
    /// boot runs the engine's check of the node's vdsm port once the guest's stand-in vdsm
    /// listens (through the hostfwd), while the guest waits (`qh.vdsm_wait`).
    pub fn boot(&mut self) -> Boot {
        let boot = match self.vm.vdsm_port {
            Some(port) => self.boot_checking_vdsm(port),
            None => self.run(),
        }
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_ran_to_end(boot)
    }

    /// The same machine again (the same disk, CD or tree), its console log named `name`.
    pub fn reboot(&mut self, name: &str) -> Boot {
        self.vm.name = name.into();
        if self.vm.vdsm_port.is_some() {
            self.vm.vdsm_port = Some(qemu::free_port().expect("a free port"));
        }
        self.boot()
    }

    /// [`Node::boot`], calling `f` once as soon as a console line contains `marker`: for what
    /// must be timed from the guest's own start, not from the test's (a boot may first wait
    /// for a free QEMU slot while other test processes boot theirs).
    pub fn boot_at(&mut self, marker: &str, f: &mut dyn FnMut()) -> Boot {
        let boot = qemu::boot_with(&self.vm, Some((marker, f))).unwrap_or_else(|e| panic!("{e:#}"));
        self.scenario.record(&boot);
        assert_ran_to_end(boot)
    }

    fn boot_checking_vdsm(&mut self, port: u16) -> Result<Boot> {
        let sim = &self.scenario.sim;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut checked = None;
        let mut check = || checked = Some(sim.check_vdsm(&self.vm.uuid, Some(addr)));
        let boot = qemu::boot_with(&self.vm, Some(("QH-VDSM listening", &mut check)));
        self.vdsm_check = checked;
        let boot = boot?;
        self.scenario.record(&boot);
        Ok(boot)
    }

    /// `ovirt-node-reg/status.json` on the config disk.
    pub fn status(&self, boot: &Boot) -> serde_json::Value {
        let text = self
            .disk()
            .read("/ovirt-node-reg/status.json")
            .unwrap_or_else(|| {
                panic!(
                    "no ovirt-node-reg/status.json on the store\n{}",
                    boot.tail()
                )
            });
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("status.json: {e}: {text}"))
    }

    /// The binary's final console line.
    pub fn banner<'b>(&self, boot: &'b Boot) -> &'b str {
        boot.banner()
            .unwrap_or_else(|| panic!("no banner\n{}", boot.tail()))
    }

    /// The flow reached `done`: through a real root (dracut, ISO) the root's `boot --stage
    /// system` did; with the binary as PID 1 its banner and the status on the disk say `ok`
    /// at `done`. A token never reaches the console.
    pub fn assert_done(&self, boot: &Boot) {
        match self.vm.image {
            Image::Dracut(_) => boot.assert_system_stage_done("the test root"),
            Image::Iso => boot.assert_system_stage_done("the ISO's live root"),
            Image::Pid1 => {
                assert!(
                    self.banner(boot)
                        .starts_with("ovirt-node-reg: ok, step done"),
                    "{}",
                    boot.tail()
                );
                let st = self.status(boot);
                assert_eq!(st["result"], "ok", "{st}\n{}", boot.tail());
                assert_eq!(st["step"], "done", "{st}");
            }
            Image::ScriptInit => panic!("the busybox /init prints its own status"),
        }
        if let Some(token) = &self.token {
            assert!(
                !boot.log.contains(token.as_str()),
                "the token is never logged"
            );
        }
    }

    /// The simulator knows this host (by its SMBIOS UUID, in any case), registered once.
    pub fn assert_registered_once(&self, boot: &Boot) -> Host {
        let uuid = &self.vm.uuid;
        let sim = &self.scenario.sim;
        let host = sim
            .host(uuid)
            .or_else(|| {
                sim.hosts()
                    .into_iter()
                    .find(|h| h.reg.unique_id.eq_ignore_ascii_case(uuid))
            })
            .unwrap_or_else(|| panic!("the simulator knows no host {uuid}\n{}", boot.tail()));
        assert_eq!(host.registrations, 1, "registered once: {host:?}");
        host
    }

    /// The certificates and keys of [`CERT_FILES`] are on the store, and the CA is the
    /// engine's.
    pub fn assert_certs(&self, boot: &Boot) {
        let disk = self.disk();
        for f in CERT_FILES {
            let data = disk
                .read(f)
                .unwrap_or_else(|| panic!("{f} missing on the store\n{}", boot.tail()));
            assert!(data.contains("-----BEGIN "), "{f}: {data}");
        }
        assert_eq!(
            disk.read("/etc/pki/vdsm/certs/cacert.pem")
                .unwrap_or_default()
                .trim(),
            self.scenario.sim.ca_pem().trim(),
            "the engine CA"
        );
    }

    /// The guest unmounted the store cleanly and nothing is damaged (`e2fsck -fn`).
    pub fn assert_clean_disk(&self, boot: &Boot) {
        self.disk()
            .fsck()
            .unwrap_or_else(|e| panic!("{e:#}\n{}", boot.tail()));
    }

    /// The bridge's keyfile on the store: it takes the MAC of NIC `port` (`eth<N>`), and the
    /// port keyfile is that NIC's and no other's. Returns the bridge's keyfile.
    pub fn assert_bridge_over(&self, boot: &Boot, port: &str) -> String {
        let disk = self.disk();
        let names = disk.ls(KEYFILES).expect("keyfiles");
        let kf = disk
            .read(&format!("{KEYFILES}/ovirtmgmt.nmconnection"))
            .unwrap_or_else(|| panic!("no ovirtmgmt keyfile ({names:?})\n{}", boot.tail()));
        let index: usize = port
            .strip_prefix("eth")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{port}: not eth<N>"));
        let mac = self.vm.nics[index].mac.to_uppercase();
        assert!(
            kf.contains(&format!("cloned-mac-address={mac}")),
            "the bridge has {port}'s MAC: {kf}"
        );
        let others = (0..self.vm.nics.len()).filter(|i| *i != index);
        assert!(
            names.iter().any(|n| n.contains(port))
                && !others
                    .map(|i| format!("eth{i}"))
                    .any(|o| names.iter().any(|n| n.contains(&o))),
            "the port is {port}: {names:?}"
        );
        kf
    }

    /// Seconds from QEMU's start (firmware, DHCP, TFTP included) to the simulator's `200`
    /// answer to this host's `register` (the simulator sees every guest as the guestfwd's
    /// 10.0.2.100, so the host id in the query tells them apart).
    pub fn registered_after(&self, boot: &Boot) -> Option<f64> {
        let started = boot.started.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
        self.scenario
            .sim
            .requests()
            .iter()
            .filter(|e| e.command() == Some("register") && e.status == Some(200))
            .find(|e| {
                e.query
                    .iter()
                    .any(|(_, v)| v.eq_ignore_ascii_case(&self.vm.uuid))
            })
            .map(|e| e.unix_ms.saturating_sub(started) as f64 / 1000.0)
    }
}

/// The boot ran to its end (PID 1's banner and poweroff, or `QH-DONE`) without waiting for
/// the kernel's random number generator.
fn assert_ran_to_end(boot: Boot) -> Boot {
    assert!(
        boot.completed(),
        "{}: the boot did not run to its end\n{}",
        boot.name,
        boot.tail()
    );
    // Real servers seed the kernel's generator from RDRAND at boot; so must the guest
    // (qemu::CPU), or every boot hides a wait of about 1 s in its first TLS step.
    assert!(
        !boot.waited_for_entropy(),
        "{}: the binary waited for the kernel's random number generator\n{}",
        boot.name,
        boot.tail()
    );
    boot
}
