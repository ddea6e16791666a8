//! The minimal direct-kernel QEMU harness (shared/docs/qemu-harness.md, Recipe A).
//!
//! One boot: an initramfs made by `image/mkinitrd-min.sh` (the only builder; cached by the hash
//! of its inputs in `target/qemu-cache`) from the static `target/static/ovirt-node-reg` (built by
//! `build-support/build-static.sh`, or `QH_BIN`), busybox-static and the Debian kernel's
//! modules; that kernel as an uncompressed `vmlinux` booted through its PVH note; TCG (never KVM
//! unless `QH_ACCEL=kvm`); user-mode networking with `restrict=on` and a `guestfwd` per NIC from
//! `10.0.2.100:PORT` to the simulator on `127.0.0.1:PORT` (the guest reaches nothing else); an
//! optional config disk ([`Disk`], ext4 labelled `CONFIG`); the serial console in a file; a hard
//! timeout after which the harness kills QEMU itself. At most [`MAX_VMS`] boots run at once.
//! QEMU exits 0 even after a kernel panic, so callers judge a boot by what the guest printed
//! ([`Boot`]), the disk and the simulator's events, never by QEMU's exit code.
//!
//! Two images ([`Image`]):
//! * [`Image::Pid1`]: the binary itself is `/init` (its PID-1 mode); the harness adds
//!   `ovirt.reg.poweroff` so it powers off when done; the store is the config disk.
//! * [`Image::ScriptInit`]: busybox sh is `/init` ([`INIT`]): it mounts proc/sys/dev/run, a tmpfs
//!   on `/config` (the store), runs the image's pre-init (the modules), runs
//!   `ovirt-node-reg --kmsg boot`, prints `QH-EXIT rc=N`, `ovirt-node-reg status --json`, the
//!   links it sees and the clock, then powers off. The VLAN and bond tests read those links.
//!
//! Two more boot paths: [`Image::Dracut`] (the dracut initramfs and a tiny ext4 root) and
//! [`Image::Iso`] (the node ISO from `image/mkiso.sh` on the CD-ROM, `-cdrom ISO -boot d`, no
//! `-kernel`, with [`Vm::vdsm_port`]: `hostfwd` from 127.0.0.1 only to the guest's vdsm port;
//! [`boot_with`] runs the engine's check while the guest waits).
//!
//! Missing host tools are errors that name the Debian package (`build-support/setup.sh`
//! installs them all): a boot test never skips.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, ensure, Context, Result};

pub use crate::config::GUEST_ENGINE_ADDR;

/// Modules the guest loads (`mkinitrd-min.sh --modules`, which adds their `modules.dep`
/// closure): virtio, the bridge, VLANs and bonds, ext4 and crc32c for the config disk (doc §2).
pub const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "bridge",
    "8021q",
    "bonding",
    "crc32c_generic",
    "ext4",
];

/// Where the guest's `/init` puts what it learnt; the test reads these back from the log.
pub const EXIT_MARKER: &str = "QH-EXIT rc=";
pub const DONE_MARKER: &str = "QH-DONE";

/// QEMU boots at once, at most (the machine has 2 cores; doc §4: one VM per core).
pub const MAX_VMS: usize = 2;

/// The busybox sh `/init` of [`Image::ScriptInit`].
pub const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /run /tmp /config
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /config
echo "QH-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
# bonding is loaded plainly, so the kernel makes an empty balance-rr bond0 as on a real
# node: the binary must give it the mode bond= asks for.
/etc/ovirt-node-reg/pre-init || echo "QH-MODULE-FAILED"
echo "QH-MODULES uptime=$(cut -d' ' -f1 /proc/uptime)"
ip link set lo up
echo "QH-CLOCK-BEFORE $(date -u +%s)"
/usr/sbin/ovirt-node-reg --kmsg boot
echo "QH-EXIT rc=$? uptime=$(cut -d' ' -f1 /proc/uptime)"
echo "QH-CLOCK-AFTER $(date -u +%s)"
echo "QH-STATUS-BEGIN"
/usr/sbin/ovirt-node-reg status --json
echo "QH-STATUS-END"
for d in /sys/class/net/*; do
    [ -d "$d" ] || continue
    n=${d##*/}
    k=other
    [ -e "$d/device" ] && k=nic
    [ -d "$d/bridge" ] && k=bridge
    [ -d "$d/bonding" ] && k=bond
    [ "$n" = lo ] && k=loopback
    grep -q "^$n " /proc/net/vlan/config 2>/dev/null && k=vlan
    m=-
    [ -L "$d/master" ] && m=$(basename "$(readlink "$d/master")")
    echo "QH-LINK name=$n kind=$k master=$m oper=$(cat "$d/operstate") flags=$(cat "$d/flags") mac=$(cat "$d/address")"
    if [ "$k" = bond ]; then
        echo "QH-BOND name=$n mode=$(cut -d' ' -f1 "$d/bonding/mode") slaves=$(cat "$d/bonding/slaves" | tr ' ' ,) active=$(cat "$d/bonding/active_slave")"
    fi
done
sed -n '3,$p' /proc/net/vlan/config 2>/dev/null | while read -r n _ id _ parent; do
    echo "QH-VLAN name=$n id=$id parent=$parent"
done
ip -4 addr | sed -n 's/^ *inet \([0-9./]*\).* \([^ ]*\)$/QH-ADDR \2 \1/p'
ip link
echo "QH-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
"#;

/// What the host needs, found once.
#[derive(Debug, Clone)]
pub struct Host {
    pub qemu: PathBuf,
    pub kver: String,
    pub busybox: PathBuf,
    pub socat: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn need(name: &str, package: &str) -> Result<PathBuf> {
    which(name).with_context(|| {
        format!(
            "{name} not found: the QEMU boot tests need the Debian package {package} \
             (apt-get install {package}; build-support/setup.sh installs it)"
        )
    })
}

/// The newest kernel that has both `/lib/modules/K` and a readable `/boot/vmlinuz-K`.
pub fn kernel_version() -> Result<String> {
    let missing = "no guest kernel: the QEMU boot tests need the Debian package linux-image-amd64 \
                   (INITRD=No apt-get install linux-image-amd64; build-support/setup.sh installs it)";
    let mut found: Vec<String> = fs::read_dir("/lib/modules")
        .context(missing)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|k| {
            Path::new("/lib/modules")
                .join(k)
                .join("modules.dep")
                .is_file()
                && fs::File::open(format!("/boot/vmlinuz-{k}")).is_ok()
        })
        .collect();
    found.sort_by_key(|k| version_key(k));
    found.pop().context(missing)
}

/// `sort -V` enough for kernel versions: numbers compare as numbers.
fn version_key(v: &str) -> Vec<(u64, String)> {
    v.split(['.', '-', '+', '~'])
        .map(|p| {
            let digits: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
            (digits.parse().unwrap_or(0), p[digits.len()..].to_string())
        })
        .collect()
}

/// Finds the tools (once per process). The error names the package to install.
pub fn host() -> Result<Host> {
    static HOST: OnceLock<Result<Host, String>> = OnceLock::new();
    HOST.get_or_init(|| {
        let find = || -> Result<Host> {
            let qemu = need("qemu-system-x86_64", "qemu-system-x86")?;
            let kver = kernel_version()?;
            let busybox = PathBuf::from("/bin/busybox");
            ensure!(
                busybox.is_file() && is_static_elf(&busybox).unwrap_or(false),
                "/bin/busybox is missing or not static: the QEMU boot tests need the Debian \
                 package busybox-static (build-support/setup.sh installs it)"
            );
            let socat = need("socat", "socat")?;
            need("xz", "xz-utils")?;
            need("cpio", "cpio")?;
            need("depmod", "kmod")?;
            need("mkfs.ext4", "e2fsprogs")?;
            need("debugfs", "e2fsprogs")?;
            need("e2fsck", "e2fsprogs")?;
            need("e2ls", "e2tools")?;
            Ok(Host {
                qemu,
                kver,
                busybox,
                socat,
            })
        };
        find().map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// An ELF without a PT_INTERP program header (static or static-pie).
pub fn is_static_elf(path: &Path) -> Result<bool> {
    let b = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        b.len() > 64 && &b[..4] == b"\x7fELF" && b[4] == 2,
        "{}: not a 64-bit ELF",
        path.display()
    );
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        ensure!(o + 4 <= b.len(), "{}: truncated ELF", path.display());
        if u32::from_le_bytes(b[o..o + 4].try_into()?) == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The workspace root (this crate's parent).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("qemu-tests sits in the workspace")
        .to_path_buf()
}

/// `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// Console logs of boots that failed (a passing boot removes its log).
pub fn artifacts_dir() -> PathBuf {
    target_dir().join("qemu-artifacts")
}

/// The shipped static binary: `QH_BIN` if set, else `build-support/build-static.sh` is run
/// (once per process; cargo makes it a no-op when nothing changed) so a boot never tests a
/// stale binary.
pub fn static_binary() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let build = || -> Result<PathBuf> {
            if let Some(p) = std::env::var_os("QH_BIN") {
                return Ok(PathBuf::from(p));
            }
            let ws = workspace();
            let mut cmd = Command::new("bash");
            // What cargo sets for this test (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, …) would look
            // like a changed environment to build scripts that track it (ring does), and the
            // static build would start over each time it alternates with the shell's.
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy().into_owned();
                let set_by_cargo = k == "CARGO"
                    || k == "OUT_DIR"
                    || [
                        "CARGO_PKG_",
                        "CARGO_MANIFEST_",
                        "CARGO_CRATE_",
                        "CARGO_BIN_",
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                        "CARGO_RUSTC_CURRENT_DIR",
                    ]
                    .iter()
                    .any(|p| k.starts_with(p));
                if set_by_cargo {
                    cmd.env_remove(&k);
                }
            }
            let out = cmd
                .arg(ws.join("build-support/build-static.sh"))
                .current_dir(&ws)
                .stdin(Stdio::null())
                .output()
                .context("running build-support/build-static.sh")?;
            ensure!(
                out.status.success(),
                "build-support/build-static.sh failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(ws.join("target/static/ovirt-node-reg"))
        };
        let bin = build().map_err(|e| format!("{e:#}"))?;
        match is_static_elf(&bin) {
            Ok(true) => Ok(bin),
            Ok(false) => Err(format!("{}: not a static binary", bin.display())),
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// The kernel's inner ELF `vmlinux` (doc §4: the bzImage is xz; PVH boot of the ELF skips
/// about 2 s of decompression under TCG), cached per kernel version in `target/qemu-cache`.
pub fn vmlinux(kver: &str) -> Result<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = target_dir().join("qemu-cache");
    fs::create_dir_all(&dir)?;
    let out = dir.join(format!("vmlinux-{kver}"));
    let src = PathBuf::from(format!("/boot/vmlinuz-{kver}"));
    let newer = |a: &Path, b: &Path| -> bool {
        match (
            fs::metadata(a).and_then(|m| m.modified()),
            fs::metadata(b).and_then(|m| m.modified()),
        ) {
            (Ok(a), Ok(b)) => a >= b,
            _ => false,
        }
    };
    if out.is_file() && newer(&out, &src) {
        return Ok(out);
    }
    let bz = fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
    let magic = b"\xfd7zXZ\x00";
    let at = bz
        .windows(magic.len())
        .position(|w| w == magic)
        .with_context(|| {
            format!(
                "{}: no xz payload (CONFIG_KERNEL_XZ expected)",
                src.display()
            )
        })?;
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("running xz (apt-get install xz-utils)")?;
    let mut stdin = child.stdin.take().expect("piped");
    let payload = bz[at..].to_vec();
    let feeder = std::thread::spawn(move || {
        // xz stops reading after the stream; the rest of the bzImage is trailing data.
        let _ = stdin.write_all(&payload);
    });
    let output = child.wait_with_output()?;
    let _ = feeder.join();
    let elf = output.stdout;
    ensure!(
        elf.len() > 1 << 20 && elf.starts_with(b"\x7fELF"),
        "{}: the xz payload is not an ELF vmlinux ({} bytes, xz {})",
        src.display(),
        elf.len(),
        output.status
    );
    write_atomic(&out, &elf)?;
    Ok(out)
}

/// The guest's NIC on the user-mode network `n<index>`.
#[derive(Debug, Clone)]
pub struct Nic {
    pub mac: String,
}

/// A network boot (doc §6): no `-kernel`/`-initrd`/`-append`; the NIC's iPXE option ROM does
/// DHCP and fetches `bootfile` from QEMU's own TFTP server rooted at `tree` (a tree made by
/// [`pxe_tree`], whose pxelinux config or iPXE script carries the kernel command line).
#[derive(Debug, Clone)]
pub struct Pxe {
    pub tree: PathBuf,
    /// `pxelinux.0` or `boot.ipxe`.
    pub bootfile: String,
    /// Index in [`Vm::nics`] of the NIC that boots: `bootindex=1` and the only netdev with
    /// the TFTP server, so the NIC the firmware booted from is known (BOOTIF must name it).
    pub nic: usize,
}

/// Which initramfs a boot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// The binary is `/init` (PID-1 mode); powers off by itself (`ovirt.reg.poweroff`).
    Pid1,
    /// busybox sh is `/init` ([`INIT`]); prints links, addresses, status and clock markers.
    ScriptInit,
    /// `image/mkinitrd-dracut.sh --flavour shell|systemd`: the 95ovirt-node-reg module runs
    /// `boot --stage initramfs` in pre-pivot, then switch_root to [`Vm::root_disk`] (made by
    /// [`root_disk`]), whose `/sbin/init` runs `boot --stage system`, prints `QH-` markers
    /// and powers off.
    Dracut(Flavour),
    /// A node ISO (`image/mkiso.sh`, made by [`iso_image`]) booted from the CD-ROM (`-cdrom
    /// ISO -boot d`, no `-kernel`): SeaBIOS, isolinux, the kernel with the dracut initramfs
    /// (95ovirt-node-reg + dmsquash-live), the live squashfs root whose busybox init runs
    /// `boot --stage system`, then the stand-in vdsm on port 54321, prints `QH-` markers and
    /// powers off (`ovirt.reg.poweroff` in the ISO's kernel args). The kernel arguments are the
    /// ISO's: [`Vm::append`] is not used.
    Iso,
}

/// The dracut image's init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Shell,
    Systemd,
}

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Shell => "shell",
            Flavour::Systemd => "systemd",
        }
    }
}

/// A file added to the initramfs (`mkinitrd-min.sh --extra`), e.g. a token file.
#[derive(Clone)]
pub struct Extra {
    pub dst: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

impl std::fmt::Debug for Extra {
    // The data may be a token: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Extra({} {:o}, {} bytes)",
            self.dst,
            self.mode,
            self.data.len()
        )
    }
}

/// One boot to run.
#[derive(Debug, Clone)]
pub struct Vm {
    /// Names the console log (`target/qemu-artifacts/<name>.serial.log`).
    pub name: String,
    /// Kernel command line after the harness's `console=ttyS0 panic=-1 quiet`.
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
        }
    }

    /// A boot of the node ISO `iso` (see [`iso_image`]) with `disk` as the config store and
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

    /// A PXE boot of `tree` ([`pxe_tree`]) with `disk` as the config store: the firmware
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

/// A config disk: a 64 MB sparse ext4 image labelled `CONFIG`, one per machine (QEMU
/// write-locks images). Read it only after QEMU has exited.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
}

fn run_tool(cmd: &mut Command) -> Result<std::process::Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    Ok(out)
}

impl Disk {
    /// An empty store for machine `name` (`target/qemu-disks/<name>.img`, made anew).
    pub fn new(name: &str) -> Result<Disk> {
        Disk::make(name, None)
    }

    /// A store holding the tree `seed` (`mke2fs -d`).
    pub fn seeded(name: &str, seed: &Path) -> Result<Disk> {
        Disk::make(name, Some(seed))
    }

    fn make(name: &str, seed: Option<&Path>) -> Result<Disk> {
        host()?;
        let dir = target_dir().join("qemu-disks");
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.img"));
        let _ = fs::remove_file(&path);
        fs::File::create(&path)?.set_len(64 << 20)?;
        let mut cmd = Command::new("mkfs.ext4");
        cmd.args(["-q", "-F", "-L", "CONFIG"]);
        if let Some(seed) = seed {
            cmd.arg("-d").arg(seed);
        }
        let out = run_tool(cmd.arg(&path))?;
        ensure!(
            out.status.success(),
            "mkfs.ext4 {}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Disk { path })
    }

    /// A file of the store (`debugfs -R 'cat PATH'`); `None` when it does not exist.
    pub fn cat(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let path = format!("/{}", path.trim_start_matches('/'));
        let out = run_tool(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("cat \"{path}\""))
                .arg(&self.path),
        )?;
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("not found by ext2_lookup") {
            return Ok(None);
        }
        ensure!(
            out.status.success() && !err.contains(&format!("{path}:")),
            "debugfs cat {path} on {}: {err}",
            self.path.display()
        );
        Ok(Some(out.stdout))
    }

    /// [`Disk::cat`] as text.
    pub fn read(&self, path: &str) -> Option<String> {
        self.cat(path)
            .unwrap_or_else(|e| panic!("{e:#}"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Names in a directory of the store (`e2ls -a`), sorted, without `.`/`..`.
    pub fn ls(&self, dir: &str) -> Result<Vec<String>> {
        let out = run_tool(Command::new("e2ls").arg("-a").arg(format!(
            "{}:/{}",
            self.path.display(),
            dir.trim_start_matches('/')
        )))?;
        ensure!(
            out.status.success(),
            "e2ls {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|n| *n != "." && *n != "..")
            .map(String::from)
            .collect();
        names.sort();
        Ok(names)
    }

    /// `e2fsck -fn`: the guest unmounted the store cleanly and nothing is damaged.
    pub fn fsck(&self) -> Result<()> {
        let out = run_tool(Command::new("e2fsck").arg("-fn").arg(&self.path))?;
        ensure!(
            out.status.success(),
            "e2fsck -fn {} ({}):\n{}{}",
            self.path.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

/// A finished (or timed-out) boot.
#[derive(Debug)]
pub struct Boot {
    pub name: String,
    /// The serial console.
    pub log: String,
    pub log_path: PathBuf,
    /// When QEMU started (wall clock: the simulator's events carry `unix_ms`).
    pub started: SystemTime,
    /// QEMU start to QEMU exit (or to the kill).
    pub elapsed: Duration,
    pub timed_out: bool,
    /// QEMU's own stderr (not the guest's).
    pub qemu_stderr: String,
    pub image: Image,
}

impl Boot {
    /// Lines starting with `prefix`, the prefix cut off.
    pub fn lines<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.log
            .lines()
            .filter_map(move |l| l.trim_end_matches('\r').strip_prefix(prefix))
    }

    pub fn line<'a>(&'a self, prefix: &'a str) -> Option<&'a str> {
        self.lines(prefix).next()
    }

    /// Console lines that contain `needle` (the binary prefixes its lines with the uptime).
    pub fn containing<'a>(&'a self, needle: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.log
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(move |l| l.contains(needle))
    }

    /// The binary's final line (`ovirt-node-reg: ok, step done…`, `ovirt-node-reg: FAILED at
    /// step …`), from `ovirt-node-reg: ` on; the last one if there are several.
    pub fn banner(&self) -> Option<&str> {
        self.log
            .lines()
            .rev()
            .filter_map(|l| {
                let at = l.find("ovirt-node-reg: ")?;
                let b = l[at..].trim_end_matches('\r');
                let rest = &b["ovirt-node-reg: ".len()..];
                [
                    "ok, step ",
                    "waiting, step ",
                    "disabled, step ",
                    "FAILED at step ",
                ]
                .iter()
                .any(|p| rest.starts_with(p))
                .then_some(b)
            })
            .next()
    }

    /// `ovirt-node-reg`'s exit code, from `QH-EXIT rc=N` ([`Image::ScriptInit`]).
    pub fn exit_code(&self) -> Option<i32> {
        self.line(EXIT_MARKER)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// `ovirt-node-reg status --json` as printed by the guest ([`Image::ScriptInit`]).
    pub fn status(&self) -> Option<serde_json::Value> {
        let start = self.log.find("QH-STATUS-BEGIN")? + "QH-STATUS-BEGIN".len();
        let end = self.log[start..].find("QH-STATUS-END")? + start;
        serde_json::from_str(self.log[start..end].trim()).ok()
    }

    /// `QH-LINK` facts of `name`: kind, master, oper, flags, mac.
    pub fn link(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.lines("QH-LINK ")
            .map(fields)
            .find(|f| f.get("name").map(String::as_str) == Some(name))
    }

    /// Seconds since QEMU started at which the guest printed a marker, from its `uptime=`.
    pub fn uptime_at(&self, prefix: &str) -> Option<f64> {
        fields(self.line(prefix)?).get("uptime")?.parse().ok()
    }

    /// Guest uptime (seconds since the kernel started) at which the binary logged
    /// `step NAME: done` (its console lines start with `[   12.345]`).
    pub fn step_done_at(&self, step: &str) -> Option<f64> {
        let needle = format!("step {step}: done");
        let line = self.containing(&needle).next()?;
        let (_, rest) = line.split_once('[')?;
        rest.split_once(']')?.0.trim().parse().ok()
    }

    /// The kernel powered the machine off (`reboot: Power down`), as PID 1 asked.
    pub fn powered_off(&self) -> bool {
        self.log.contains("reboot: Power down")
    }

    /// A boot that ran to its end: [`INIT`] reached `QH-DONE`, or the PID-1 binary printed its
    /// banner and powered off (whatever the binary answered).
    pub fn completed(&self) -> bool {
        !self.timed_out
            && match self.image {
                Image::ScriptInit | Image::Dracut(_) | Image::Iso => {
                    self.line(DONE_MARKER).is_some()
                }
                Image::Pid1 => self.banner().is_some() && self.powered_off(),
            }
    }

    /// The log, for assertion messages (the tail: the whole file stays on disk).
    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        let from = lines.len().saturating_sub(80);
        format!(
            "--- {} (last {} lines; full log {}) ---\n{}\n--- qemu stderr ---\n{}",
            self.name,
            lines.len() - from,
            self.log_path.display(),
            lines[from..].join("\n"),
            self.qemu_stderr
        )
    }

    /// The test passed: its console log is not an artefact (unless `QH_KEEP_LOGS` is set).
    /// A boot through a real root (dracut, ISO): the root's init finished after the switch,
    /// `boot --stage system` exited 0 and the status is `ok` at `done`. `what` names the root
    /// in the messages; the console tail comes with every failure.
    pub fn assert_system_stage_done(&self, what: &str) {
        assert!(
            self.completed(),
            "{what}: its init did not finish\n{}",
            self.tail()
        );
        assert!(
            self.line("QH-ROOT stage=system").is_some(),
            "no switch_root into {what}\n{}",
            self.tail()
        );
        assert_eq!(
            self.exit_code(),
            Some(0),
            "boot --stage system\n{}",
            self.tail()
        );
        let st = self
            .status()
            .unwrap_or_else(|| panic!("no status JSON\n{}", self.tail()));
        assert_eq!(st["result"], "ok", "{st}\n{}", self.tail());
        assert_eq!(st["step"], "done", "{st}");
    }

    pub fn pass(self) {
        if std::env::var_os("QH_KEEP_LOGS").is_none() {
            let _ = fs::remove_file(&self.log_path);
        }
    }
}

/// `k=v k=v` words of a marker line.
pub fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The initramfs of `image` with `extras`, built by `image/mkinitrd-min.sh` and kept in
/// `target/qemu-cache` under the SHA-256 of everything that goes into it (script, binary,
/// busybox, kernel version, modules, `/init`, extras), so concurrent tests and test processes
/// never boot each other's image and an unchanged image is not built again.
pub fn initramfs_file(host: &Host, image: Image, extras: &[Extra]) -> Result<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Image::Dracut(flavour) = image {
        ensure!(extras.is_empty(), "the dracut image takes no extra files");
        return dracut_initramfs(host, flavour);
    }
    let bin = static_binary()?;
    let script = workspace().join("image/mkinitrd-min.sh");
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    let mut feed = |label: &str, data: &[u8]| {
        h.update(label.as_bytes());
        h.update(&(data.len() as u64).to_le_bytes());
        h.update(data);
    };
    feed(
        "script",
        &fs::read(&script).with_context(|| format!("reading {}", script.display()))?,
    );
    feed(
        "bin",
        &fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?,
    );
    feed("busybox", &fs::read(&host.busybox)?);
    feed("kver", host.kver.as_bytes());
    feed("modules", MODULES.join(" ").as_bytes());
    if image == Image::ScriptInit {
        feed("init", INIT.as_bytes());
    }
    for e in extras {
        feed("extra", format!("{} {:o}", e.dst, e.mode).as_bytes());
        feed("data", &e.data);
    }
    let key = hex(h.finish().as_ref());
    let dir = target_dir().join("qemu-cache");
    fs::create_dir_all(&dir)?;
    let out = dir.join(format!("initramfs-{}.img", &key[..24]));
    // Images of earlier builds (an hour old) go.
    for e in fs::read_dir(&dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(3600));
        if name.starts_with("initramfs-") && old && e.path() != out {
            let _ = fs::remove_file(e.path());
        }
    }
    if out.is_file() {
        return Ok(out);
    }
    let work = tempfile_dir(&dir, &key[..12])?;
    let result = (|| -> Result<()> {
        let mut cmd = Command::new("bash");
        cmd.arg(&script).arg(&bin).arg(&out).args([
            "--kver",
            &host.kver,
            "--modules",
            &MODULES.join(" "),
        ]);
        if image == Image::ScriptInit {
            let init = work.join("init");
            fs::write(&init, INIT)?;
            cmd.arg("--init").arg(&init);
        }
        for (i, e) in extras.iter().enumerate() {
            let src = work.join(format!("extra{i}"));
            fs::write(&src, &e.data)?;
            fs::set_permissions(&src, fs::Permissions::from_mode(0o600))?;
            cmd.arg("--extra")
                .arg(format!("{}:{}:{:o}", src.display(), e.dst, e.mode));
        }
        run_script(&mut cmd, "image/mkinitrd-min.sh")
    })();
    let _ = fs::remove_dir_all(&work);
    result?;
    Ok(out)
}

/// Every regular file under `dir`, sorted (for cache keys).
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Runs an image script into `out` unless `out` exists (cache hit); prints its summary line.
fn build_cached(out: &Path, cmd: &mut Command, what: &str) -> Result<()> {
    if out.is_file() {
        return Ok(());
    }
    run_script(cmd, what)?;
    ensure!(out.is_file(), "{what} wrote no {}", out.display());
    Ok(())
}

/// The enrolment token as the image scripts take it: a new 0600 file in `dir`.
fn token_file(dir: &Path, token: &str) -> Result<PathBuf> {
    let f = dir.join("token");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&f)
        .with_context(|| format!("creating {}", f.display()))?;
    writeln!(file, "{token}")?;
    Ok(f)
}

/// Runs one of the image/ scripts (dates fixed for reproducible output): an error carries
/// its output; on success its summary line is printed with the time it took.
fn run_script(cmd: &mut Command, what: &str) -> Result<()> {
    let started = Instant::now();
    let o = run_tool(cmd.env("SOURCE_DATE_EPOCH", "0"))?;
    ensure!(
        o.status.success(),
        "{what} failed ({}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!(
        "[qemu] {} ({:.1} s)",
        String::from_utf8_lossy(&o.stdout).trim(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The SHA-256 (hex) of the files and strings that make an image.
fn inputs_key(files: &[PathBuf], strings: &[&str]) -> Result<String> {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    for f in files {
        let data = fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        h.update(f.to_string_lossy().as_bytes());
        h.update(&(data.len() as u64).to_le_bytes());
        h.update(&data);
    }
    for s in strings {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    Ok(hex(h.finish().as_ref()))
}

/// `image/mkinitrd-dracut.sh` for `flavour`, cached by the hash of the script, the dracut
/// module, the binary and the kernel version (a build takes 15-25 s).
fn dracut_initramfs(host: &Host, flavour: Flavour) -> Result<PathBuf> {
    need("dracut", "dracut")?;
    let bin = static_binary()?;
    let ws = workspace();
    let script = ws.join("image/mkinitrd-dracut.sh");
    let mut files = vec![script.clone(), bin.clone()];
    files.extend(files_under(&ws.join("dracut"))?);
    let key = inputs_key(&files, &[&host.kver, flavour.name()])?;
    let dir = target_dir().join("qemu-cache");
    fs::create_dir_all(&dir)?;
    let out = dir.join(format!("dracut-{}-{}.img", flavour.name(), &key[..24]));
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg(&bin)
        .arg(&out)
        .args(["--flavour", flavour.name(), "--kver", &host.kver]);
    build_cached(&out, &mut cmd, "image/mkinitrd-dracut.sh")?;
    Ok(out)
}

/// A fresh copy of the test root (`image/mkroot-min.sh`, ext4 labelled `ROOT`, cached by
/// the hash of the script and the binary) for machine `name`: QEMU write-locks images.
pub fn root_disk(name: &str) -> Result<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let bin = static_binary()?;
    let script = workspace().join("image/mkroot-min.sh");
    let key = inputs_key(&[script.clone(), bin.clone()], &[])?;
    let dir = target_dir().join("qemu-cache");
    fs::create_dir_all(&dir)?;
    let cached = dir.join(format!("root-{}.img", &key[..24]));
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(&cached).arg(&bin);
    build_cached(&cached, &mut cmd, "image/mkroot-min.sh")?;
    let disks = target_dir().join("qemu-disks");
    fs::create_dir_all(&disks)?;
    let copy = disks.join(format!("{name}.root.img"));
    fs::copy(&cached, &copy).with_context(|| format!("copying to {}", copy.display()))?;
    Ok(copy)
}

/// The PXE tree of machine `name` (`image/mkpxe.sh`, in `target/qemu-pxe/<name>`, made anew):
/// the kernel the harness boots, the PID-1 initramfs ([`Image::Pid1`], no extras), the engine
/// at `10.0.2.100:engine_port` with CA pin `sha256:<pin_hex>`, an optional enrolment token
/// (its own 0600 initramfs overlay, never on the command line), and the kernel arguments
/// `console=ttyS0 panic=-1 quiet ovirt.reg.poweroff <append>` (pxelinux adds BOOTIF with
/// IPAPPEND 2, the iPXE script from `${netX/mac}`).
pub fn pxe_tree(
    name: &str,
    engine_port: u16,
    pin_hex: &str,
    token: Option<&str>,
    append: &str,
) -> Result<PathBuf> {
    let host = host()?;
    let initrd = initramfs_file(&host, Image::Pid1, &[])?;
    let root = target_dir().join("qemu-pxe");
    fs::create_dir_all(&root)?;
    let out = root.join(name);
    let _ = fs::remove_dir_all(&out);
    let work = tempfile_dir(&root, name)?;
    let result = (|| -> Result<()> {
        let mut cmd = Command::new("bash");
        cmd.arg(workspace().join("image/mkpxe.sh"))
            .arg(&out)
            .arg("--initrd")
            .arg(&initrd)
            .arg("--kernel")
            .arg(format!("/boot/vmlinuz-{}", host.kver))
            .arg("--engine")
            .arg(format!("{GUEST_ENGINE_ADDR}:{engine_port}"))
            .arg("--pin")
            .arg(format!("sha256:{pin_hex}"))
            .arg("--append")
            .arg(format!(
                "console=ttyS0 panic=-1 quiet ovirt.reg.poweroff {}",
                append.trim()
            ));
        if let Some(token) = token {
            cmd.arg("--token-file").arg(token_file(&work, token)?);
        }
        run_script(&mut cmd, "image/mkpxe.sh")
    })();
    let _ = fs::remove_dir_all(&work);
    result?;
    Ok(out)
}

/// Debian's OVMF (package `ovmf`): the firmware and the template of its variable store.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The vdsm port the ISO root's stand-in vdsm serves (vdsm's `management_port`).
pub const VDSM_PORT: u16 = 54321;

/// A loopback port that was free a moment ago (for `hostfwd`).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The ISO's live root (`image/mkroot-live.sh --root`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveRoot {
    /// busybox init with the units' order: 5 MB, about 5 s to build.
    Busybox,
    /// Debian minbase with systemd running the real units (mmdebstrap: downloads from the
    /// Debian mirror, about 2 min, 45 MB).
    Systemd,
}

impl LiveRoot {
    pub fn name(self) -> &'static str {
        match self {
            LiveRoot::Busybox => "busybox",
            LiveRoot::Systemd => "systemd",
        }
    }
}

/// The ISO's two big parts, built once and cached by the hash of their inputs: the dracut
/// initramfs with dmsquash-live (`image/mkinitrd-dracut.sh --live`, 30-60 s) and the live
/// root (`image/mkroot-live.sh`).
fn iso_parts(host: &Host, root: LiveRoot) -> Result<(PathBuf, PathBuf)> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    need("dracut", "dracut")?;
    ensure!(
        Path::new("/usr/lib/dracut/modules.d/90dmsquash-live").is_dir(),
        "dracut's dmsquash-live module is missing: the ISO tests need the Debian package \
         dracut-live (build-support/setup.sh installs it)"
    );
    need("dmsetup", "dmsetup")?;
    need("mksquashfs", "squashfs-tools")?;
    need("openssl", "openssl")?;
    let bin = static_binary()?;
    let ws = workspace();
    let dir = target_dir().join("qemu-cache");
    fs::create_dir_all(&dir)?;

    let script = ws.join("image/mkinitrd-dracut.sh");
    let mut files = vec![script.clone(), bin.clone()];
    files.extend(files_under(&ws.join("dracut"))?);
    let key = inputs_key(&files, &[&host.kver, "live"])?;
    let initrd = dir.join(format!("dracut-live-{}.img", &key[..24]));
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg(&bin)
        .arg(&initrd)
        .args(["--live", "--kver", &host.kver]);
    build_cached(&initrd, &mut cmd, "image/mkinitrd-dracut.sh --live")?;

    let script = ws.join("image/mkroot-live.sh");
    let openssl = which("openssl").context("openssl")?;
    let mut files = vec![
        script.clone(),
        bin.clone(),
        openssl,
        ws.join("dracut/ovirt-node-reg.service"),
    ];
    files.extend(files_under(&ws.join("image/live"))?);
    if root == LiveRoot::Systemd {
        need("mmdebstrap", "mmdebstrap")?;
    }
    let key = inputs_key(&files, &[root.name()])?;
    let rootfs = dir.join(format!("root-live-{}-{}.squashfs", root.name(), &key[..24]));
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg(&rootfs)
        .arg(&bin)
        .args(["--root", root.name()]);
    build_cached(&rootfs, &mut cmd, "image/mkroot-live.sh")?;
    Ok((initrd, rootfs))
}

/// The node ISO for machine `name` (`target/qemu-disks/<name>.iso`, mode 0600: it may hold a
/// token), made by `image/mkiso.sh` from the cached parts with `append` as the boot entry's
/// kernel arguments (no boot prompt) and, with `token`, the token in an initramfs overlay
/// (`ovirt.reg.token_file=/etc/ovirt-node-reg/token`), the root `root`. About 2 s once the
/// parts exist.
pub fn iso_image(name: &str, root: LiveRoot, append: &str, token: Option<&str>) -> Result<PathBuf> {
    let host = host()?;
    need("xorriso", "xorriso")?;
    need("grub-mkimage", "grub-common")?;
    need("mformat", "mtools")?;
    ensure!(
        Path::new("/usr/lib/grub/x86_64-efi").is_dir(),
        "/usr/lib/grub/x86_64-efi missing: the ISO tests need the Debian package \
         grub-efi-amd64-bin (build-support/setup.sh installs it)"
    );
    ensure!(
        Path::new("/usr/lib/ISOLINUX/isolinux.bin").is_file(),
        "/usr/lib/ISOLINUX/isolinux.bin missing: the ISO tests need the Debian package isolinux"
    );
    ensure!(
        Path::new("/usr/lib/syslinux/modules/bios/ldlinux.c32").is_file(),
        "ldlinux.c32 missing: the ISO tests need the Debian package syslinux-common"
    );
    let (initrd, rootfs) = iso_parts(&host, root)?;
    let bin = static_binary()?;
    let disks = target_dir().join("qemu-disks");
    fs::create_dir_all(&disks)?;
    let out = disks.join(format!("{name}.iso"));
    let _ = fs::remove_file(&out);
    let work = tempfile_dir(&disks, name)?;
    let result = (|| -> Result<()> {
        let mut cmd = Command::new("bash");
        cmd.arg(workspace().join("image/mkiso.sh"))
            .arg(&bin)
            .arg(&out)
            .arg("--append")
            .arg(append)
            .args(["--timeout", "0", "--kernel"])
            .arg(format!("/boot/vmlinuz-{}", host.kver))
            .arg("--initrd")
            .arg(&initrd)
            .arg("--rootfs")
            .arg(&rootfs);
        if let Some(token) = token {
            cmd.arg("--token-file").arg(token_file(&work, token)?);
        }
        run_script(&mut cmd, "image/mkiso.sh")?;
        fs::set_permissions(&out, fs::Permissions::from_mode(0o600))?;
        Ok(())
    })();
    let _ = fs::remove_dir_all(&work);
    result?;
    Ok(out)
}

/// The virtio NIC's option ROM, which does the network boot (doc §6).
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

/// A private scratch directory (0700) under `dir`.
fn tempfile_dir(dir: &Path, tag: &str) -> Result<PathBuf> {
    let work = dir.join(format!("work-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir(&work).with_context(|| format!("creating {}", work.display()))?;
    fs::set_permissions(&work, fs::Permissions::from_mode(0o700))?;
    Ok(work)
}

/// At most [`MAX_VMS`] QEMUs at once in this process.
struct Slot;

static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());
static TOTAL_MS: Mutex<u128> = Mutex::new(0);

impl Slot {
    fn take() -> Slot {
        let (m, cv) = &SLOTS;
        let mut n = m.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= MAX_VMS {
            n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (m, cv) = &SLOTS;
        *m.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        cv.notify_one();
    }
}

/// In the artefacts directory: `name<TAB>seconds` per boot, appended by every test process.
pub const BOOT_TIMES: &str = "boot-times.tsv";

/// QEMU wall time of every boot of this test process so far.
pub fn total_qemu_time() -> Duration {
    Duration::from_millis(*TOTAL_MS.lock().unwrap_or_else(|e| e.into_inner()) as u64)
}

/// Boots `vm` and waits for QEMU to exit, killing it at `vm.timeout`. The console log goes to
/// `target/qemu-artifacts/<name>.serial.log` and stays there unless [`Boot::pass`] is called.
pub fn boot(vm: &Vm) -> Result<Boot> {
    boot_with(vm, None)
}

/// [`boot`], calling `on_marker.1` once, while the guest runs, as soon as a console line
/// starts with `on_marker.0` (e.g. the ISO root's `QH-VDSM listening`: the engine checks the
/// node's vdsm port while the guest waits for it).
pub fn boot_with(vm: &Vm, mut on_marker: Option<(&str, &mut dyn FnMut())>) -> Result<Boot> {
    let host = host()?;
    let direct = match &vm.pxe {
        None if vm.image == Image::Iso => None,
        None => Some((
            vmlinux(&host.kver)?,
            initramfs_file(&host, vm.image, &vm.extras)?,
        )),
        Some(pxe) => {
            ensure!(
                vm.image == Image::Pid1 && vm.extras.is_empty() && vm.append.trim().is_empty(),
                "{}: a PXE boot takes its image and kernel arguments from the tree",
                vm.name
            );
            ensure!(
                pxe.nic < vm.nics.len(),
                "{}: no NIC {} to boot from",
                vm.name,
                pxe.nic
            );
            ensure!(
                pxe.tree.join(&pxe.bootfile).is_file(),
                "{}: no {} in {}",
                vm.name,
                pxe.bootfile,
                pxe.tree.display()
            );
            need_pxe_rom()?;
            None
        }
    };
    let arts = artifacts_dir();
    fs::create_dir_all(&arts)?;
    let log_path = arts.join(format!("{}.serial.log", vm.name));
    let _ = fs::remove_file(&log_path);
    let err_path = arts.join(format!("{}.qemu-stderr.log", vm.name));
    let accel = std::env::var("QH_ACCEL").unwrap_or_else(|_| "tcg".into());
    let mut append = format!("console=ttyS0 panic=-1 quiet {}", vm.append.trim());
    match vm.image {
        Image::Pid1 => append.push_str(" ovirt.reg.poweroff"),
        // The root's /sbin/init powers off; a boot that never gets there powers off too.
        Image::Dracut(flavour) => {
            append.push_str(" root=LABEL=ROOT rootfstype=ext4 rw rd.shell=0 rd.timeout=30");
            append.push_str(" rd.emergency=poweroff");
            if flavour == Flavour::Systemd {
                append.push_str(" systemd.journald.forward_to_console=1");
            }
        }
        Image::ScriptInit | Image::Iso => {}
    }
    let mut cmd = Command::new(&host.qemu);
    // The ISO's live root is a tmpfs overlay and its initramfs is 30 MB: 768 MB.
    let mem = if vm.image == Image::Iso { "768" } else { "512" };
    cmd.args(["-accel", &accel, "-m", mem, "-smp", "1", "-nodefaults"])
        .args(["-display", "none", "-no-reboot", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", log_path.display()));
    if vm.uefi {
        // OVMF's code read-only, its variable store a per-machine copy (the firmware writes it).
        let code = Path::new(OVMF_CODE);
        ensure!(
            code.is_file() && Path::new(OVMF_VARS).is_file(),
            "{OVMF_CODE} missing: UEFI boots need the Debian package ovmf \
             (build-support/setup.sh installs it)"
        );
        let vars = target_dir()
            .join("qemu-disks")
            .join(format!("{}.ovmf-vars.fd", vm.name));
        fs::create_dir_all(vars.parent().expect("a directory"))?;
        fs::copy(OVMF_VARS, &vars).with_context(|| format!("copying {OVMF_VARS}"))?;
        cmd.args(["-machine", "q35"])
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,readonly=on,file={}",
                code.display()
            ))
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    cmd.args(["-uuid", &vm.uuid]);
    match &direct {
        Some((kernel, initrd)) => {
            cmd.arg("-kernel")
                .arg(kernel)
                .arg("-initrd")
                .arg(initrd)
                .arg("-append")
                .arg(&append);
        }
        None if vm.image == Image::Iso => {
            let iso = vm.iso.as_ref().context("an ISO boot without Vm::iso")?;
            cmd.arg("-cdrom").arg(iso).args(["-boot", "d"]);
        }
        None => {
            cmd.args(["-boot", "n"]);
        }
    }
    if let Some(base) = &vm.rtc_base {
        cmd.arg("-rtc").arg(format!("base={base}"));
    }
    for disk in vm.disk.iter().chain(&vm.root_disk) {
        cmd.arg("-drive")
            .arg(format!("file={},if=virtio,format=raw", disk.display()));
    }
    for (i, nic) in vm.nics.iter().enumerate() {
        let boots = vm.pxe.as_ref().filter(|p| p.nic == i);
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
        // One argument, spaces and all (doc §8.5); restrict=on: only the guestfwd port.
        // socat's stderr is the guest's connection too: its "Connection refused" while the
        // engine is down would reach the guest as data, so it logs to /dev/null.
        // The engine's check of the vdsm port comes in from loopback only, to the first NIC.
        let fwd = match vm.vdsm_port {
            Some(p) if i == 0 => format!(",hostfwd=tcp:127.0.0.1:{p}-:{VDSM_PORT}"),
            _ => String::new(),
        };
        cmd.arg("-netdev").arg(format!(
            "user,id=n{i},restrict=on{tftp},guestfwd=tcp:{GUEST_ENGINE_ADDR}:{p}-cmd:{socat} -lf /dev/null - TCP:127.0.0.1:{p}{fwd}",
            p = vm.engine_port,
            socat = host.socat.display()
        ));
        // The boot NIC comes first in the firmware's boot order, whatever its PCI slot.
        let bootindex = if boots.is_some() { ",bootindex=1" } else { "" };
        cmd.arg("-device").arg(format!(
            "virtio-net-pci,netdev=n{i},mac={}{bootindex}",
            nic.mac
        ));
    }
    let stderr = fs::File::create(&err_path)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let slot = Slot::take();
    let start = Instant::now();
    let started = SystemTime::now();
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let mut timed_out = false;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if let Some((marker, f)) = &mut on_marker {
            let seen = fs::read(&log_path).is_ok_and(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .any(|l| l.trim_end_matches('\r').starts_with(*marker))
            });
            if seen {
                f();
                on_marker = None;
            }
        }
        if start.elapsed() >= vm.timeout {
            timed_out = true;
            // QEMU itself, not a wrapper: the serial file is written as the guest prints.
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed();
    drop(slot);
    *TOTAL_MS.lock().unwrap_or_else(|e| e.into_inner()) += elapsed.as_millis();
    let log = String::from_utf8_lossy(&fs::read(&log_path).unwrap_or_default()).into_owned();
    let qemu_stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&err_path);
    if !qemu_stderr.trim().is_empty() {
        // Keep QEMU's complaints with the console log.
        let _ = fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .and_then(|mut f| write!(f, "\n--- qemu stderr ---\n{qemu_stderr}"));
    }
    // One line per boot for the test command's total (build-support/test-all.sh).
    let _ = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(arts.join(BOOT_TIMES))
        .and_then(|mut f| writeln!(f, "{}\t{:.2}", vm.name, elapsed.as_secs_f64()));
    eprintln!(
        "[qemu] boot {}: {:.2} s QEMU wall time{}",
        vm.name,
        elapsed.as_secs_f64(),
        if timed_out {
            " (killed at the timeout)"
        } else {
            ""
        }
    );
    let boot = Boot {
        name: vm.name.clone(),
        log,
        log_path,
        started,
        elapsed,
        timed_out,
        qemu_stderr,
        image: vm.image,
    };
    if timed_out {
        bail!(
            "{}: no poweroff within {:?}\n{}",
            vm.name,
            vm.timeout,
            boot.tail()
        );
    }
    Ok(boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let mut v = ["6.1.0-9-amd64", "6.1.0-56-amd64", "6.1.0-10-amd64"];
        v.sort_by_key(|k| version_key(k));
        assert_eq!(v.last(), Some(&"6.1.0-56-amd64"));
    }

    #[test]
    fn marker_fields() {
        let f = fields("name=eth0 kind=nic master=ovirtmgmt");
        assert_eq!(f["master"], "ovirtmgmt");
    }

    #[test]
    fn banner_is_found_after_an_uptime_prefix() {
        let b = Boot {
            name: "x".into(),
            log: "[    3.100] ovirt-node-reg: step network_up\r\n[    4.200] ovirt-node-reg: ok, step done\r\nreboot: Power down\n".into(),
            log_path: PathBuf::new(),
            started: SystemTime::UNIX_EPOCH,
            elapsed: Duration::ZERO,
            timed_out: false,
            qemu_stderr: String::new(),
            image: Image::Pid1,
        };
        assert_eq!(b.banner(), Some("ovirt-node-reg: ok, step done"));
        assert!(b.completed());
    }
}
