//! What one boot is ([`Vm`]: image, NICs, disks, firmware, timeouts) and its QEMU command
//! line: TCG, user-mode networking with `restrict=on` and one `guestfwd` per NIC to the
//! simulator (docs/qemu-harness.md §7), the serial console in a file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use super::disk::Disk;
use super::host::{target_dir, Host};
use super::images::{initramfs_file, root_disk, vmlinux, Extra, Flavour, Image};
use super::GUEST_ENGINE_ADDR;

/// The guest's NIC on the user-mode network `n<index>`.
#[derive(Debug, Clone)]
pub struct Nic {
    pub mac: String,
}

/// A network boot (docs/qemu-harness.md §6): no `-kernel`/`-initrd`/`-append`; the NIC's iPXE option ROM does
/// DHCP and fetches `bootfile` from QEMU's own TFTP server rooted at `tree` (a tree made by
/// [`pxe_tree`](super::pxe_tree), whose pxelinux config or iPXE script carries the kernel command line).
#[derive(Debug, Clone)]
pub struct Pxe {
    pub tree: PathBuf,
    /// `pxelinux.0` or `boot.ipxe`.
    pub bootfile: String,
    /// Index in [`Vm::nics`] of the NIC that boots: `bootindex=1` and the only netdev with
    /// the TFTP server, so the NIC the firmware booted from is known (BOOTIF must name it).
    pub nic: usize,
}

/// One boot to run.
#[derive(Debug, Clone)]
pub struct Vm {
    /// Names the console log (`target/qemu-artifacts/<name>.serial.log`).
    pub name: String,
    /// Kernel command line after the harness's [`super::BASE_APPEND`].
    pub append: String,
    pub nics: Vec<Nic>,
    /// Host port of the simulator; the guest reaches it at `10.0.2.100:<port>`.
    pub engine_port: u16,
    /// QEMU `-rtc base=` (e.g. `2001-01-01`).
    pub rtc_base: Option<String>,
    /// SMBIOS system UUID: the host id the binary registers with.
    pub uuid: String,
    pub timeout: Duration,
    pub image: Image,
    /// Files added to the initramfs.
    pub extras: Vec<Extra>,
    /// The config disk (`/dev/vda` in the guest), written in place: boot the same [`Disk`]
    /// again for the same machine's next boot.
    pub disk: Option<PathBuf>,
    /// The real root for [`Image::Dracut`] (the next virtio disk), one copy per machine.
    pub root_disk: Option<PathBuf>,
    /// Boot from the network instead of `-kernel`/`-initrd` ([`Vm::pxe`]); `append`,
    /// `image` and `extras` are then the tree's business, not the harness's.
    pub pxe: Option<Pxe>,
    /// The CD-ROM of [`Image::Iso`].
    pub iso: Option<PathBuf>,
    /// `hostfwd=tcp:127.0.0.1:<port>-:54321`: the engine reaches the guest's vdsm port at
    /// `127.0.0.1:<port>` (loopback only).
    pub vdsm_port: Option<u16>,
    /// UEFI firmware (Debian's OVMF, q35) instead of SeaBIOS: the ISO boots through GRUB.
    pub uefi: bool,
    /// A DNS server on host loopback at this port, reached by the guest at
    /// `10.0.2.100:53` over TCP only (`guestfwd` forwards nothing else): engine discovery.
    pub dns_port: Option<u16>,
    /// More virtio disks after [`Vm::disk`] and [`Vm::root_disk`]: a file and the disk's
    /// serial (`/sys/block/vdX/serial` in the guest).
    pub drives: Vec<(PathBuf, Option<String>)>,
    /// Takes a free QEMU slot before the boots of other scenarios that wait for one: for the
    /// longest chain of boots in the suite, so that it does not start last (run.rs).
    pub first_in_line: bool,
}

impl Vm {
    /// A boot of the busybox-`/init` image ([`Image::ScriptInit`]).
    pub fn new(name: &str, engine_port: u16) -> Vm {
        Vm {
            name: name.into(),
            append: String::new(),
            nics: vec![Nic {
                mac: "52:54:00:12:34:56".into(),
            }],
            engine_port,
            rtc_base: None,
            uuid: "4c4c4544-0042-3510-8052-b4c04f4e5131".into(),
            timeout: Duration::from_secs(90),
            image: Image::ScriptInit,
            extras: Vec::new(),
            disk: None,
            root_disk: None,
            pxe: None,
            iso: None,
            vdsm_port: None,
            uefi: false,
            dns_port: None,
            drives: Vec::new(),
            first_in_line: false,
        }
    }

    /// A boot of the node ISO `iso` (see [`iso_image`](super::iso_image)) with `disk` as the config store and
    /// the guest's vdsm port forwarded from a free loopback port ([`Vm::vdsm_port`]).
    pub fn iso(name: &str, engine_port: u16, disk: &Disk, iso: &Path) -> Result<Vm> {
        Ok(Vm {
            image: Image::Iso,
            disk: Some(disk.path.clone()),
            iso: Some(iso.to_path_buf()),
            vdsm_port: Some(free_port()?),
            timeout: Duration::from_secs(240),
            ..Vm::new(name, engine_port)
        })
    }

    /// A dracut boot with `disk` as the config store and a fresh copy of the test root
    /// (`root=LABEL=ROOT`, see [`root_disk`]).
    pub fn dracut(name: &str, engine_port: u16, disk: &Disk, flavour: Flavour) -> Result<Vm> {
        Ok(Vm {
            image: Image::Dracut(flavour),
            disk: Some(disk.path.clone()),
            root_disk: Some(root_disk(name)?),
            timeout: Duration::from_secs(150),
            ..Vm::new(name, engine_port)
        })
    }

    /// A boot of the PID-1 image with `disk` as its config store.
    pub fn pid1(name: &str, engine_port: u16, disk: &Disk) -> Vm {
        Vm {
            image: Image::Pid1,
            disk: Some(disk.path.clone()),
            ..Vm::new(name, engine_port)
        }
    }

    /// A PXE boot of `tree` ([`pxe_tree`](super::pxe_tree)) with `disk` as the config store: the firmware
    /// loads `bootfile` (`pxelinux.0` or `boot.ipxe`) over TFTP from the first NIC; the tree's
    /// initramfs is the PID-1 image, which powers off when done. Push more [`Vm::nics`] and
    /// set [`Pxe::nic`] to boot from another one.
    pub fn pxe(name: &str, engine_port: u16, disk: &Disk, tree: &Path, bootfile: &str) -> Vm {
        Vm {
            image: Image::Pid1,
            disk: Some(disk.path.clone()),
            // iPXE's DHCP and link wait cost about 8 s more than a direct kernel boot.
            timeout: Duration::from_secs(150),
            pxe: Some(Pxe {
                tree: tree.to_path_buf(),
                bootfile: bootfile.into(),
                nic: 0,
            }),
            ..Vm::new(name, engine_port)
        }
    }

    /// Adds a file to the initramfs.
    pub fn extra(&mut self, dst: &str, data: &[u8], mode: u32) -> &mut Vm {
        self.extras.push(Extra {
            dst: dst.into(),
            data: data.to_vec(),
            mode,
        });
        self
    }
}

/// The guest CPU: QEMU's default model plus RDRAND, which real x86 servers have (TCG
/// implements it). The guest kernel trusts it (`CONFIG_RANDOM_TRUST_CPU`) and has its random
/// number generator seeded at boot; without it the first `getrandom()` (the first TLS
/// handshake) waited about 1 s in every boot (docs/qemu-harness.md §8).
pub const CPU: &str = "qemu64,+rdrand";
/// Debian's OVMF (package `ovmf`): the firmware and the template of its variable store.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Every test disk is a throwaway file: QEMU writes it with `pwrite` and never has it
/// flushed to the host's disk (`cache=unsafe`: the guest's flushes are ignored). What the
/// guest wrote is in the file for the test to read either way, also when QEMU is killed; only
/// a host crash would lose it. The guest's `fsync`s (the store, `install`, `upgrade`) cost host
/// disk flushes otherwise (docs/qemu-harness.md §9).
const DRIVE: &str = "format=raw,cache=unsafe";

/// The vdsm port the ISO root's stand-in vdsm serves (vdsm's `management_port`).
pub const VDSM_PORT: u16 = 54321;

/// A loopback port that was free a moment ago (for `hostfwd`).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The virtio NIC's option ROM, which does the network boot (docs/qemu-harness.md §6).
fn need_pxe_rom() -> Result<()> {
    let roms = [
        "/usr/share/qemu/pxe-virtio.rom",
        "/usr/share/qemu/efi-virtio.rom",
        "/usr/lib/ipxe/qemu/pxe-virtio.rom",
        "/usr/lib/ipxe/qemu/efi-virtio.rom",
    ];
    ensure!(
        roms.iter().any(|r| Path::new(r).is_file()),
        "no virtio iPXE ROM ({}): the PXE boot tests need the Debian package ipxe-qemu \
         (it comes with qemu-system-x86; build-support/setup.sh installs it)",
        roms.join(", ")
    );
    Ok(())
}

impl Vm {
    /// The QEMU command line of this boot, its console going to `log_path`; builds the images
    /// it boots (cached) on the way.
    pub(super) fn command(&self, host: &Host, log_path: &Path) -> Result<Command> {
        let direct = self.kernel_and_initrd(host)?;
        let accel = std::env::var("QH_ACCEL").unwrap_or_else(|_| super::TCG_ACCEL.into());
        let append = self.kernel_args();
        let mut cmd = Command::new(&host.qemu);
        // The ISO's live root is a tmpfs overlay and its initramfs 17 MB (50 MB unpacked): 768 MB.
        let mem = if self.image == Image::Iso {
            "768"
        } else {
            "512"
        };
        cmd.args(["-machine", super::MACHINE])
            .args(["-accel", &accel, "-cpu", CPU])
            .args(["-m", mem, "-smp", "1", "-nodefaults"])
            .args(["-display", "none", "-no-reboot"])
            .arg("-monitor")
            .arg(match std::env::var("QH_MONITOR_DIR") {
                Ok(d) => format!("unix:{d}/{}.sock,server,nowait", self.name),
                Err(_) => "none".into(),
            })
            .arg("-serial")
            .arg(format!("file:{}", log_path.display()));
        if self.uefi {
            self.uefi_args(&mut cmd)?;
        }
        cmd.args(["-uuid", &self.uuid]);
        match &direct {
            Some((kernel, initrd)) => {
                cmd.arg("-kernel")
                    .arg(kernel)
                    .arg("-initrd")
                    .arg(initrd)
                    .arg("-append")
                    .arg(&append);
            }
            // An installed node (`ovirt-node-reg install`) boots from its disk, Vm::disk.
            None if self.image == Image::Iso => match &self.iso {
                Some(iso) => {
                    cmd.arg("-cdrom").arg(iso).args(["-boot", "d"]);
                }
                None => {
                    cmd.args(["-boot", "c"]);
                }
            },
            None => {
                cmd.args(["-boot", "n"]);
            }
        }
        if let Some(base) = &self.rtc_base {
            cmd.arg("-rtc").arg(format!("base={base}"));
        }
        let disk_boot = direct.is_none() && self.image == Image::Iso && self.iso.is_none();
        for (i, disk) in self.disk.iter().chain(&self.root_disk).enumerate() {
            if disk_boot && i == 0 {
                // The installed disk boots, never an extra disk: an upgrade's image is a
                // hybrid ISO that the firmware would boot as readily.
                cmd.arg("-drive")
                    .arg(format!("file={},if=none,id=d0,{DRIVE}", disk.display()))
                    .arg("-device")
                    .arg("virtio-blk-pci,drive=d0,bootindex=0");
            } else {
                cmd.arg("-drive")
                    .arg(format!("file={},if=virtio,{DRIVE}", disk.display()));
            }
        }
        for (i, (file, serial)) in self.drives.iter().enumerate() {
            cmd.arg("-drive")
                .arg(format!("file={},if=none,id=x{i},{DRIVE}", file.display()))
                .arg("-device")
                .arg(match serial {
                    Some(s) => format!("virtio-blk-pci,drive=x{i},serial={s}"),
                    None => format!("virtio-blk-pci,drive=x{i}"),
                });
        }
        self.nic_args(&mut cmd, host)?;
        Ok(cmd)
    }

    /// `-kernel` and `-initrd` of a direct kernel boot; `None` for a network or CD-ROM boot.
    fn kernel_and_initrd(&self, host: &Host) -> Result<Option<(PathBuf, PathBuf)>> {
        Ok(match &self.pxe {
            None if self.image == Image::Iso => None,
            None => Some((
                vmlinux(&host.kver)?,
                initramfs_file(host, self.image, &self.extras)?,
            )),
            Some(pxe) => {
                ensure!(
                    self.image == Image::Pid1
                        && self.extras.is_empty()
                        && self.append.trim().is_empty(),
                    "{}: a PXE boot takes its image and kernel arguments from the tree",
                    self.name
                );
                ensure!(
                    pxe.nic < self.nics.len(),
                    "{}: no NIC {} to boot from",
                    self.name,
                    pxe.nic
                );
                ensure!(
                    pxe.tree.join(&pxe.bootfile).is_file(),
                    "{}: no {} in {}",
                    self.name,
                    pxe.bootfile,
                    pxe.tree.display()
                );
                need_pxe_rom()?;
                None
            }
        })
    }

    /// The `-append` of a direct kernel boot: the harness's defaults, then [`Vm::append`].
    fn kernel_args(&self) -> String {
        let mut append = format!("{} {}", super::BASE_APPEND, self.append.trim());
        match self.image {
            Image::Pid1 => append.push_str(" ovirt.reg.poweroff"),
            // The root's /sbin/init powers off; a boot that never gets there powers off too.
            // rd.timeout counts in real time: under TCG on a busy machine (the QEMU test files
            // run at once) the systemd initramfs has taken 45 s to get as far as waiting for
            // the root disk, so give it 90 s (the boot's own bound is longer, Vm::timeout).
            Image::Dracut(flavour) => {
                append.push_str(" root=LABEL=ROOT rootfstype=ext4 rw rd.shell=0 rd.timeout=90");
                append.push_str(" rd.emergency=poweroff");
                if flavour == Flavour::Systemd {
                    append.push_str(" systemd.journald.forward_to_console=1");
                }
            }
            Image::ScriptInit | Image::Iso => {}
        }
        append
    }

    /// UEFI firmware: OVMF (on the harness's q35, [`super::MACHINE`]).
    fn uefi_args(&self, cmd: &mut Command) -> Result<()> {
        // OVMF's code read-only, its variable store a per-machine copy (the firmware writes it).
        let code = Path::new(OVMF_CODE);
        ensure!(
            code.is_file() && Path::new(OVMF_VARS).is_file(),
            "{OVMF_CODE} missing: UEFI boots need the Debian package ovmf \
             (build-support/setup.sh installs it)"
        );
        let vars = target_dir()
            .join("qemu-disks")
            .join(format!("{}.ovmf-vars.fd", self.name));
        fs::create_dir_all(vars.parent().expect("a directory"))?;
        fs::copy(OVMF_VARS, &vars).with_context(|| format!("copying {OVMF_VARS}"))?;
        cmd.arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,readonly=on,file={}",
                code.display()
            ))
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
        Ok(())
    }

    /// One user-mode network and virtio NIC per [`Vm::nics`].
    fn nic_args(&self, cmd: &mut Command, host: &Host) -> Result<()> {
        for (i, nic) in self.nics.iter().enumerate() {
            let boots = self.pxe.as_ref().filter(|p| p.nic == i);
            // QEMU's TFTP server and DHCP boot file (they work with restrict=on) on the boot NIC
            // only. The tree path goes inside a comma-separated option: QEMU would split on ','.
            let tftp = match boots {
                Some(p) => {
                    let tree = p.tree.display().to_string();
                    ensure!(
                        !tree.contains(',') && !p.bootfile.contains(','),
                        "{tree}: no ',' in a TFTP path"
                    );
                    format!(",tftp={tree},bootfile={}", p.bootfile)
                }
                None => String::new(),
            };
            // One argument, spaces and all (docs/qemu-harness.md §8.5); restrict=on: only the guestfwd port.
            // The relay sends at once both ways (no delayed-ACK waits, see guest-relay.rs).
            // The engine's check of the vdsm port comes in from loopback only, to the first NIC.
            let fwd = match self.vdsm_port {
                Some(p) if i == 0 => format!(",hostfwd=tcp:127.0.0.1:{p}-:{VDSM_PORT}"),
                _ => String::new(),
            };
            let dns = match self.dns_port {
                Some(d) => format!(
                    ",guestfwd=tcp:{GUEST_ENGINE_ADDR}:53-cmd:{relay} 127.0.0.1:{d}",
                    relay = host.relay.display()
                ),
                None => String::new(),
            };
            cmd.arg("-netdev").arg(format!(
                "user,id=n{i},restrict=on{tftp},guestfwd=tcp:{GUEST_ENGINE_ADDR}:{p}-cmd:{relay} 127.0.0.1:{p}{dns}{fwd}",
                p = self.engine_port,
                relay = host.relay.display()
            ));
            // The boot NIC comes first in the firmware's boot order, whatever its PCI slot.
            let bootindex = if boots.is_some() { ",bootindex=1" } else { "" };
            cmd.arg("-device").arg(format!(
                "virtio-net-pci,netdev=n{i},mac={}{bootindex}",
                nic.mac
            ));
        }
        Ok(())
    }
}
