//! Installing the node to a local disk, and upgrading it with two boot slots.
//!
//! The disk (docs/install-upgrade.md): a GPT with a BIOS boot partition (GRUB's core image),
//! the EFI system partition (GRUB for UEFI, `grub.cfg` and the environment block `grubenv`,
//! all in a FAT image built with the node image: image/mkboot.sh), slots A and B (each holds
//! a node ISO as it is: GRUB reads its kernel and initramfs, dracut's dmsquash-live mounts its
//! squashfs root, `root=live:PARTLABEL=…`) and the config store (ext4, label `CONFIG`).
//! GRUB's script chooses the slot from `grubenv`; we write `grubenv` and nothing else once
//! installed, so an upgrade is one write of the inactive slot and one of the 1024-byte block.
//!
//! Upgrade and rollback: `upgrade` writes the slot that is not running, checks its SHA-256
//! and marks it for one trial boot (`slot_trial`, `trial_left=1`); GRUB sets `trial_left=0`
//! before it boots the trial, so a trial that never reaches `done` is not booted twice: the
//! next boot takes `slot_default` again. Reaching `done` on the trial slot makes it the
//! default ([`after_done`]); reaching it on the old slot with a spent trial reports the
//! fallback.

pub(crate) mod bios;
pub(crate) mod gpt;
pub(crate) mod grubenv;
pub(crate) mod iso;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use log::{info, warn};
use serde::Serialize;

use crate::paths::{self, Root};
use grubenv::Env;

/// GPT partition names: how the slots are found again (the kernel's `PARTNAME=`) and what
/// the boot entries name (`root=live:PARTLABEL=`).
pub const BIOS_PART: &str = "ovirt-node-bios";
pub const ESP_PART: &str = "ovirt-node-esp";
pub const SLOT_A_PART: &str = "ovirt-node-a";
pub const SLOT_B_PART: &str = "ovirt-node-b";
pub const CONFIG_PART: &str = "ovirt-node-config";
/// The kernel argument GRUB adds: the slot this boot runs from.
pub const SLOT_ARG: &str = "ovirt.slot";

/// The boot loader's files, made with the image (image/mkboot.sh), in [`paths::BOOT_FILES_DIR`].
const ESP_IMAGE: &str = "esp.img";
const CORE_IMAGE: &str = "core.img";
const BOOT_IMAGE: &str = "boot.img";

// grubenv keys, read by image/mkboot.sh's grub.cfg. The first three decide the boot: they
// are written first, inside the block's first sector.
const DEFAULT: &str = "slot_default";
const TRIAL: &str = "slot_trial";
const TRIAL_LEFT: &str = "trial_left";
const FAILED: &str = "slot_failed";
const ARGS: &str = "ovirt_args";
const FIRST_KEYS: [&str; 4] = [DEFAULT, TRIAL, TRIAL_LEFT, FAILED];

/// How long mkfs may take on the config partition.
const MKFS_LIMIT: Duration = Duration::from_secs(300);
/// Copies go in pieces of this size.
const CHUNK: usize = 1 << 20;
/// How far into the EFI system partition the environment block is looked for.
const ESP_SCAN: u64 = 16 << 20;

/// One of the two boot slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    fn parse(text: &str) -> Option<Slot> {
        match text {
            "A" => Some(Slot::A),
            "B" => Some(Slot::B),
            _ => None,
        }
    }
    fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }
    fn version_key(self) -> &'static str {
        match self {
            Slot::A => "version_A",
            Slot::B => "version_B",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}

/// `install`'s choices.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The whole disk (or, in tests, a disk image file).
    pub disk: PathBuf,
    /// The node ISO; `None`: the medium this live system booted from.
    pub image: Option<PathBuf>,
    /// Size of each slot, MiB.
    pub slot_mib: u64,
    /// Overwrite a disk that is not blank.
    pub force: bool,
    /// The config store's directory, copied into the new `CONFIG` partition.
    pub store_dir: Option<PathBuf>,
    /// The kernel command line of this boot (the arguments the installed boot keeps).
    pub cmdline: String,
}

/// Lay out `o.disk`, put the image into slot A, GRUB for BIOS and UEFI, and the config store.
/// The partition table is written last: a disk whose install was cut short has none.
pub fn install(root: &Root, o: &InstallOptions) -> Result<String> {
    let boot_dir = root.join(paths::BOOT_FILES_DIR);
    let read_boot = |name: &str| {
        let p = boot_dir.join(name);
        fs::read(&p).with_context(|| format!("{}: the boot loader file is missing", p.display()))
    };
    let (mut esp, core, boot) = (
        read_boot(ESP_IMAGE)?,
        read_boot(CORE_IMAGE)?,
        read_boot(BOOT_IMAGE)?,
    );
    let image_path = match &o.image {
        Some(p) => p.clone(),
        None => live_medium(root)?,
    };
    let src = Source::open(&image_path)?;
    let disk = open_disk(root, &o.disk, o.force)?;
    let layout = gpt::plan(
        disk.bytes,
        gpt::Sizes {
            bios: 1,
            esp: 64,
            slot: o.slot_mib,
            config_min: 64,
        },
    )?;
    let part = |name: &str| &layout.parts[gpt::NAMES.iter().position(|n| *n == name).unwrap_or(0)];
    let (bios_p, esp_p, slot_p, config_p) = (
        part(BIOS_PART),
        part(ESP_PART),
        part(SLOT_A_PART),
        part(CONFIG_PART),
    );
    ensure!(
        src.len <= slot_p.bytes(),
        "{}: {} bytes do not fit a {} MiB slot (--slot-size)",
        src.path.display(),
        src.len,
        o.slot_mib
    );
    ensure!(
        esp.len() as u64 <= esp_p.bytes(),
        "{ESP_IMAGE} is larger than the EFI system partition"
    );
    let (args, skipped) = boot_args(&o.cmdline);
    for s in &skipped {
        warn!("install: {s}");
    }
    let mut env = Env::default();
    for (k, v) in [
        (DEFAULT, "A"),
        (TRIAL, ""),
        (TRIAL_LEFT, ""),
        (FAILED, ""),
        (Slot::A.version_key(), src.image.version.as_str()),
        (Slot::B.version_key(), ""),
        (ARGS, args.join(" ").as_str()),
    ] {
        env.set(k, v)?;
    }
    let at = grubenv::find(&esp).context(ESP_IMAGE)?;
    esp[at..at + grubenv::SIZE].copy_from_slice(&env.render()?);
    let (mbr, core) = bios::patch(&boot, &core, bios_p.first, bios_p.bytes())?;
    let tables = gpt::render(&layout, &mbr, &gpt::random_guids(layout.parts.len() + 1)?);

    info!("install: writing {} into slot A", src.path.display());
    let digest = copy(&src, &disk, slot_p.offset())?;
    verify(&disk, slot_p.offset(), src.len, &digest)?;
    disk.write(esp_p.offset(), &esp, "the EFI system partition")?;
    disk.write(bios_p.offset(), &core, "the BIOS boot partition")?;
    make_config(&disk, config_p, o.store_dir.as_deref())?;
    disk.write(
        tables.tail_offset,
        &tables.tail,
        "the backup partition table",
    )?;
    disk.write(0, &tables.head, "the partition table")?;
    disk.sync()?;
    disk.reread_partitions();
    Ok(format!(
        "installed {} (version {}) on {}: slot A, GRUB for BIOS and UEFI, the config store{}; boot from the disk",
        src.path.display(),
        src.image.version,
        o.disk.display(),
        if o.store_dir.is_some() { " (a copy of this one)" } else { " (empty)" }
    ))
}

/// `upgrade`'s choices.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    pub image: PathBuf,
    /// The SHA-256 the engine gave for the image, in hex.
    pub sha256: Option<String>,
    pub cmdline: String,
}

/// Write `o.image` into the slot that is not running and mark it for one trial boot.
pub fn upgrade(root: &Root, o: &UpgradeOptions) -> Result<String> {
    let want = o.sha256.as_deref().map(parse_sha256).transpose()?;
    let inst = Installed::find(root)?.ok_or_else(not_installed)?;
    let running = running_slot(&o.cmdline).ok_or_else(|| {
        anyhow::anyhow!("this boot is not from a slot ({SLOT_ARG}= is not on the kernel command line): boot the installed disk first")
    })?;
    let mut env = inst.env()?;
    if env.get(TRIAL) == Some(&running.to_string()) {
        bail!("slot {running} runs on trial: it must reach `done` (and become the default) before another upgrade");
    }
    let target = running.other();
    let src = Source::open(&o.image)?;
    let slot = inst.open_slot(target)?;
    ensure!(
        src.len <= slot.bytes,
        "{}: {} bytes do not fit slot {target} ({} bytes)",
        src.path.display(),
        src.len,
        slot.bytes
    );
    // The slot is about to hold neither its old image nor (yet) the new one.
    env.set(TRIAL, "")?;
    env.set(TRIAL_LEFT, "")?;
    env.set(target.version_key(), "")?;
    inst.write_env(&env)?;
    info!("upgrade: writing {} into slot {target}", src.path.display());
    let digest = copy(&src, &slot, 0)?;
    let got = hex(digest.as_ref());
    if let Some(want) = &want {
        ensure!(
            &got == want,
            "{}: SHA-256 {got}, expected {want}: slot {target} is not marked for boot; slot {running} stays the default",
            src.path.display()
        );
    } else {
        warn!("upgrade: no --sha256 given; the image's SHA-256 is {got}");
    }
    verify(&slot, 0, src.len, &digest)?;
    env.set(target.version_key(), &src.image.version)?;
    env.set(TRIAL, &target.to_string())?;
    env.set(TRIAL_LEFT, "1")?;
    inst.write_env(&env)?;
    Ok(format!(
        "slot {target} holds {} (version {}, sha256 {got}); the next boot tries it once and it becomes the default when that boot reaches `done`; otherwise slot {running} boots again",
        src.path.display(),
        src.image.version
    ))
}

/// At `done`: confirm a trial slot as the default, or report a trial that fell back. Never
/// fails the flow: problems are logged.
pub fn after_done(root: &Root, cmdline: &str) {
    let Some(running) = running_slot(cmdline) else {
        return;
    };
    if let Err(e) = confirm(root, running) {
        warn!("boot slots: {e:#}");
    }
}

fn confirm(root: &Root, running: Slot) -> Result<()> {
    let inst = Installed::find(root)?.ok_or_else(not_installed)?;
    let mut env = inst.env()?;
    let trial = env.get(TRIAL).and_then(Slot::parse);
    let version = |env: &Env, s: Slot| env.get(s.version_key()).unwrap_or("unknown").to_string();
    match trial {
        Some(t) if t == running => {
            env.set(DEFAULT, &running.to_string())?;
            env.set(TRIAL, "")?;
            env.set(TRIAL_LEFT, "")?;
            env.set(FAILED, "")?;
            inst.write_env(&env)?;
            info!(
                "boot slots: slot {running} (version {}) reached done: it is the default from now on",
                version(&env, running)
            );
        }
        Some(t) if env.get(TRIAL_LEFT) != Some("1") => {
            env.set(TRIAL, "")?;
            env.set(TRIAL_LEFT, "")?;
            env.set(FAILED, &t.to_string())?;
            inst.write_env(&env)?;
            warn!(
                "boot slots: the trial boot of slot {t} (version {}) did not reach done; fell back to slot {running} (version {})",
                version(&env, t),
                version(&env, running)
            );
        }
        _ => {}
    }
    Ok(())
}

/// What `status` shows of the slots.
#[derive(Debug, Clone, Serialize)]
pub struct SlotsStatus {
    pub running: Option<Slot>,
    pub default: Option<Slot>,
    pub trial: Option<Slot>,
    pub failed: Option<Slot>,
    pub version_a: Option<String>,
    pub version_b: Option<String>,
}

impl SlotsStatus {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for s in [Slot::A, Slot::B] {
            let v = if s == Slot::A {
                &self.version_a
            } else {
                &self.version_b
            };
            let mut notes = Vec::new();
            if self.running == Some(s) {
                notes.push("running");
            }
            if self.default == Some(s) {
                notes.push("default");
            }
            if self.trial == Some(s) {
                notes.push("trial pending");
            }
            if self.failed == Some(s) {
                notes.push("its trial boot failed");
            }
            out += &format!(
                "slot {s}: {}{}\n",
                v.as_deref().unwrap_or("(empty)"),
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join(", "))
                }
            );
        }
        out
    }
}

/// The slots of the installed disk, `None` when this machine has none.
pub fn status(root: &Root, cmdline: &str) -> Result<Option<SlotsStatus>> {
    let Some(inst) = Installed::find(root)? else {
        return Ok(None);
    };
    let env = inst.env()?;
    let slot = |k: &str| env.get(k).and_then(Slot::parse);
    Ok(Some(SlotsStatus {
        running: running_slot(cmdline),
        default: slot(DEFAULT),
        trial: slot(TRIAL),
        failed: slot(FAILED),
        version_a: env.get(Slot::A.version_key()).map(String::from),
        version_b: env.get(Slot::B.version_key()).map(String::from),
    }))
}

/// `ovirt.slot=` of this boot.
pub fn running_slot(cmdline: &str) -> Option<Slot> {
    crate::cmdline::split(cmdline)
        .into_iter()
        .rev()
        .find(|a| a.name == SLOT_ARG)
        .and_then(|a| a.value.as_deref().and_then(Slot::parse))
}

/// The kernel arguments of this boot that the installed boot keeps: our settings (never a
/// secret, a token or the token file, which lives in the live medium's initramfs) and
/// `console=`. Also the arguments left out because GRUB's environment cannot carry them.
pub(crate) fn boot_args(cmdline: &str) -> (Vec<String>, Vec<String>) {
    let (mut keep, mut skipped) = (Vec::new(), Vec::new());
    for a in crate::cmdline::split(cmdline) {
        let ours = match crate::config::lookup(&a.name) {
            Some(s) => !s.secret && s.token.is_none() && s.name != "ovirt.reg.token_file",
            None => a.name == "console",
        };
        if !ours {
            continue;
        }
        let text = match &a.value {
            Some(v) => format!("{}={v}", a.name),
            None => a.name.clone(),
        };
        let plain = text
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"\\$'".contains(&b));
        if plain {
            keep.push(text);
        } else {
            skipped.push(format!(
                "{}: left out of the installed boot's arguments (GRUB's environment cannot carry spaces, quotes, `$` or `\\`)",
                crate::escape::controls(&a.name)
            ));
        }
    }
    (keep, skipped)
}

fn not_installed() -> anyhow::Error {
    anyhow::anyhow!(
        "not installed: no partitions named {SLOT_A_PART}, {SLOT_B_PART} and {ESP_PART} (run `ovirt-node-reg install` first)"
    )
}

fn parse_sha256(text: &str) -> Result<String> {
    let t = text.to_ascii_lowercase();
    ensure!(
        t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()),
        "--sha256: expected 64 hexadecimal digits"
    );
    Ok(t)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The device the live system booted from (dracut's dmsquash-live links it).
fn live_medium(root: &Root) -> Result<PathBuf> {
    let link = root.join(paths::LIVE_DEV);
    fs::canonicalize(&link).with_context(|| {
        format!(
            "{}: not booted from a live medium; give --image node.iso",
            link.display()
        )
    })
}

/// The image being written: an ISO file, or the whole of an ISO file system on a device.
struct Source {
    path: PathBuf,
    file: File,
    len: u64,
    image: iso::Image,
}

impl Source {
    fn open(path: &Path) -> Result<Source> {
        let file = File::open(path)
            .with_context(|| format!("{}: cannot open the image", path.display()))?;
        let mut pvd = vec![0u8; iso::PVD_SIZE];
        file.read_exact_at(&mut pvd, iso::PVD_OFFSET)
            .with_context(|| format!("{}: not an ISO 9660 image (too short)", path.display()))?;
        let image = iso::parse_pvd(&pvd).with_context(|| path.display().to_string())?;
        let meta = file.metadata()?;
        // A file is copied whole (its SHA-256 is what `sha256sum` shows); a device only as
        // far as its file system goes.
        let len = if meta.is_file() {
            meta.len()
        } else {
            image.bytes
        };
        ensure!(
            len >= image.bytes,
            "{}: {len} bytes, but its file system says {}: a truncated image",
            path.display(),
            image.bytes
        );
        Ok(Source {
            path: path.to_path_buf(),
            file,
            len,
            image,
        })
    }
}

/// A disk, a partition or an image file being written.
struct Target {
    path: PathBuf,
    file: File,
    bytes: u64,
    block: bool,
}

impl Target {
    fn open(path: &Path) -> Result<Target> {
        Target::open_as(path, true)
    }

    fn open_as(path: &Path, write: bool) -> Result<Target> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        let block = file.metadata()?.file_type().is_block_device();
        let bytes = file.seek(SeekFrom::End(0))?;
        Ok(Target {
            path: path.to_path_buf(),
            file,
            bytes,
            block,
        })
    }

    fn write(&self, at: u64, data: &[u8], what: &str) -> Result<()> {
        self.file
            .write_all_at(data, at)
            .with_context(|| format!("{}: writing {what}", self.path.display()))
    }

    fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .with_context(|| format!("{}: flushing", self.path.display()))
    }

    /// Tell the kernel about the new partitions (BLKRRPART); the next boot sees them anyway.
    fn reread_partitions(&self) {
        if !self.block {
            return;
        }
        const BLKRRPART: libc::c_ulong = 0x125F;
        // SAFETY: BLKRRPART takes no argument; the descriptor is ours and open.
        let rc =
            unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&self.file), BLKRRPART as _) };
        if rc != 0 {
            warn!(
                "{}: the kernel did not re-read the partition table ({}); it will at the next boot",
                self.path.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}

/// The install target: a blank whole disk (or image file) nobody has mounted.
fn open_disk(root: &Root, path: &Path, force: bool) -> Result<Target> {
    let disk = Target::open(path)?;
    if disk.block {
        check_unused(root, path, &disk.file)?;
    }
    ensure!(
        disk.bytes.is_multiple_of(gpt::SECTOR),
        "{}: a size of {} bytes is not whole 512-byte sectors",
        path.display(),
        disk.bytes
    );
    let mut head = vec![0u8; CHUNK.min(disk.bytes as usize)];
    disk.file.read_exact_at(&mut head, 0)?;
    ensure!(
        force || head.iter().all(|&b| b == 0),
        "{}: not blank (a partition table or file system in its first MiB); give --force to overwrite it",
        path.display()
    );
    Ok(disk)
}

/// Refuse a disk that is, or has a partition, mounted, or that is the live medium, or whose
/// sectors are not 512 bytes.
fn check_unused(root: &Root, path: &Path, file: &File) -> Result<()> {
    let rdev = file.metadata()?.rdev();
    let id = format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let sys = root.join(paths::SYS_DEV_BLOCK).join(&id);
    let sector = fs::read_to_string(sys.join("queue/logical_block_size")).unwrap_or_default();
    ensure!(
        matches!(sector.trim(), "512" | ""),
        "{}: sectors of {} bytes; only 512-byte sectors are supported",
        path.display(),
        sector.trim()
    );
    ensure!(
        !sys.join("partition").exists(),
        "{}: a partition; give the whole disk",
        path.display()
    );
    let mut ours = vec![id];
    for e in fs::read_dir(&sys).into_iter().flatten().flatten() {
        if let Ok(dev) = fs::read_to_string(e.path().join("dev")) {
            if e.path().join("partition").exists() {
                ours.push(dev.trim().to_string());
            }
        }
    }
    let mounts = fs::read_to_string(root.join(paths::MOUNTINFO)).unwrap_or_default();
    for line in mounts.lines() {
        let mut f = line.split(' ');
        let (dev, point) = (f.nth(2).unwrap_or(""), f.nth(1).unwrap_or(""));
        ensure!(
            !ours.iter().any(|o| o == dev),
            "{}: in use (mounted on {point})",
            path.display()
        );
    }
    if let Ok(live) = fs::metadata(root.join(paths::LIVE_DEV)) {
        ensure!(
            live.rdev() != rdev,
            "{}: the medium this system booted from",
            path.display()
        );
    }
    Ok(())
}

/// Copy the image to `dst` at `at`, returning its SHA-256.
fn copy(src: &Source, dst: &Target, at: u64) -> Result<ring::digest::Digest> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < src.len {
        let n = CHUNK.min((src.len - done) as usize);
        src.file
            .read_exact_at(&mut buf[..n], done)
            .with_context(|| format!("{}: reading at byte {done}", src.path.display()))?;
        ctx.update(&buf[..n]);
        dst.write(at + done, &buf[..n], "the image")?;
        done += n as u64;
    }
    dst.sync()?;
    Ok(ctx.finish())
}

/// Read back what [`copy`] wrote: a disk that drops writes is found now, not at the next boot.
fn verify(dst: &Target, at: u64, len: u64, want: &ring::digest::Digest) -> Result<()> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < len {
        let n = CHUNK.min((len - done) as usize);
        dst.file.read_exact_at(&mut buf[..n], at + done)?;
        ctx.update(&buf[..n]);
        done += n as u64;
    }
    ensure!(
        ctx.finish().as_ref() == want.as_ref(),
        "{}: the image read back differs from what was written",
        dst.path.display()
    );
    Ok(())
}

/// The config store: ext4 labelled CONFIG in its partition, holding a copy of `store`.
fn make_config(disk: &Target, p: &gpt::Part, store: Option<&Path>) -> Result<()> {
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(["-F", "-q", "-L", paths::CONFIG_LABEL, "-E"])
        .arg(format!("offset={},nodiscard", p.offset()));
    if let Some(dir) = store {
        cmd.arg("-d").arg(dir);
    }
    cmd.arg(&disk.path).arg(format!("{}k", p.bytes() / 1024));
    run_tool(&mut cmd, "mkfs.ext4", MKFS_LIMIT)
}

/// The size of the FAT file system whose boot sector is `boot` (its BIOS parameter block:
/// bytes per sector, then the 16-bit or the 32-bit sector count); `None` if it is not one.
pub(crate) fn fat_bytes(boot: &[u8; 512]) -> Option<u64> {
    if boot[510..] != [0x55, 0xAA] {
        return None;
    }
    let sector = u64::from(u16::from_le_bytes([boot[11], boot[12]]));
    if !(512..=4096).contains(&sector) || !sector.is_power_of_two() {
        return None;
    }
    let small = u64::from(u16::from_le_bytes([boot[19], boot[20]]));
    let large = u64::from(u32::from_le_bytes([boot[32], boot[33], boot[34], boot[35]]));
    let sectors = if small != 0 { small } else { large };
    (sectors != 0).then_some(sectors * sector)
}

/// Run a tool the image provides, within `limit`; its failure names it and shows its output.
fn run_tool(cmd: &mut Command, name: &str, limit: Duration) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {name} (the node image must provide it)"))?;
    let started = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{name} did not finish within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let last = text.lines().last().unwrap_or("");
        bail!(
            "{name} failed ({}): {}",
            out.status,
            crate::escape::controls(last)
        );
    }
    Ok(())
}

/// The partitions of an installed disk, found by their GPT names.
struct Installed {
    esp: PathBuf,
    slots: [PathBuf; 2],
}

impl Installed {
    fn find(root: &Root) -> Result<Option<Installed>> {
        let sys = root.join(paths::SYS_CLASS_BLOCK);
        let mut found: [Vec<PathBuf>; 3] = Default::default();
        let mut names: Vec<_> = fs::read_dir(&sys)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let uevent = fs::read_to_string(sys.join(&name).join("uevent")).unwrap_or_default();
            let Some(part) = uevent.lines().find_map(|l| l.strip_prefix("PARTNAME=")) else {
                continue;
            };
            let dev = uevent
                .lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(|d| root.join(paths::DEV).join(d))
                .unwrap_or_else(|| root.join(paths::DEV).join(&name));
            if let Some(i) = [ESP_PART, SLOT_A_PART, SLOT_B_PART]
                .iter()
                .position(|n| *n == part)
            {
                found[i].push(dev);
            }
        }
        if found.iter().all(|f| f.is_empty()) {
            return Ok(None);
        }
        for (f, n) in found.iter().zip([ESP_PART, SLOT_A_PART, SLOT_B_PART]) {
            ensure!(
                f.len() == 1,
                "{} partitions named {n}, expected one",
                f.len()
            );
        }
        let [esp, a, b] = found.map(|mut f| f.remove(0));
        Ok(Some(Installed { esp, slots: [a, b] }))
    }

    fn open_slot(&self, s: Slot) -> Result<Target> {
        Target::open(&self.slots[s.index()])
    }

    /// The environment block: where on the ESP, and what it holds.
    fn locate_env(&self, write: bool) -> Result<(Target, u64, Env)> {
        let esp = Target::open_as(&self.esp, write)?;
        let mut boot = [0u8; 512];
        esp.file.read_exact_at(&mut boot, 0)?;
        // Only as far as the FAT file system goes (8 MiB of the 64 MiB partition, image/mkboot.sh):
        // under TCG one 16 MiB read stalled the guest (docs/qemu-harness.md §9).
        let scan = fat_bytes(&boot)
            .unwrap_or(ESP_SCAN)
            .min(ESP_SCAN)
            .min(esp.bytes);
        let mut buf = vec![0u8; scan as usize];
        for (i, piece) in buf.chunks_mut(CHUNK).enumerate() {
            esp.file.read_exact_at(piece, (i * CHUNK) as u64)?;
        }
        let at = grubenv::find(&buf).with_context(|| self.esp.display().to_string())?;
        let env = Env::parse(&buf[at..at + grubenv::SIZE])?;
        Ok((esp, at as u64, env))
    }

    fn env(&self) -> Result<Env> {
        Ok(self.locate_env(false)?.2)
    }

    /// One write of the whole block in its place, flushed; the boot keys first.
    fn write_env(&self, env: &Env) -> Result<()> {
        let (esp, at, _) = self.locate_env(true)?;
        let block = env.ordered(&FIRST_KEYS).render()?;
        esp.write(at, &block, "the GRUB environment block")?;
        esp.sync()
    }
}

#[cfg(test)]
mod tests;
