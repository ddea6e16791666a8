//! PID-1 mode: the binary as `/init` of a minimal initramfs (`rdinit=/init`, or `init=`).
//!
//! It mounts the API filesystems, lets the image load its kernel modules (the image's
//! `/etc/ovirt-node-reg/pre-init`, if any: the binary knows no module names), runs the flow
//! within its deadline, then hands over: `switch_root` to `root=` (the initramfs stage: the
//! real root's `ovirt-node-reg.service` finishes), else `exec` of `init=`, else — with no
//! real root at all — the whole flow and then power off (`ovirt.reg.poweroff`) or stay up.
//! Process 1 must never exit (the kernel would panic): every error ends in a reason on the
//! console and the emergency shell (when the image has one and `rd.shell=0` is not given) or
//! a machine that stays up for inspection.

use anyhow::{anyhow, bail, ensure, Context, Result};
use log::{error, info, warn};
use rustix::mount::{MountFlags, UnmountFlags};
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::flow::{self, Run, Stage};
use crate::paths::{self, Root, BIN_SH, PRE_INIT, SBIN_INIT, SYSROOT};

/// Longer than any module load; a hook that hangs must not hang the boot.
const PRE_INIT_LIMIT: Duration = Duration::from_secs(60);
/// How long to wait for the `root=` device to appear (dracut's `rd.timeout` default is
/// unbounded; a boot must not be).
const ROOT_WAIT: Duration = Duration::from_secs(30);
/// Mounted over the initramfs' root, moved into the real root at the switch.
const API_MOUNTS: [&str; 4] = [paths::DEV, paths::PROC, paths::SYS, paths::RUN];

/// What the kernel command line says about the hand-over (the kernel's and dracut's own
/// arguments; the flow reads ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// `root=`: `/dev/…` or `LABEL=…`.
    pub root: Option<String>,
    pub fstype: Option<String>,
    pub flags: Option<String>,
    /// `rw` (the kernel's default is `ro`; the last of the two wins).
    pub rw: bool,
    /// `init=`: what to run next (in the real root, or here without one).
    pub init: Option<String>,
    /// The emergency shell is allowed (`rd.shell=0` forbids it).
    pub shell: bool,
    /// `ovirt.reg.poweroff`.
    pub poweroff: bool,
}

/// What process 1 does once the flow has run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    SwitchRoot,
    ExecInit(String),
    PowerOff,
    StayUp,
}

impl Handover {
    pub fn parse(cmdline: &str) -> Handover {
        let mut h = Handover {
            root: None,
            fstype: None,
            flags: None,
            rw: false,
            init: None,
            shell: true,
            poweroff: false,
        };
        for arg in crate::cmdline::split(cmdline) {
            let value = arg.value.clone().filter(|v| !v.is_empty());
            match arg.name.as_str() {
                "root" => h.root = value,
                "rootfstype" => h.fstype = value,
                "rootflags" => h.flags = value,
                "init" => h.init = value,
                "rw" => h.rw = true,
                "ro" => h.rw = false,
                "rd.shell" => h.shell = truthy(arg.value.as_deref()),
                "ovirt.reg.poweroff" => h.poweroff = truthy(arg.value.as_deref()),
                _ => {}
            }
        }
        h
    }

    /// Which stage runs here: with a real root to come, only the initramfs stage (the boot
    /// goes on; the system unit finishes); without one, the whole flow.
    pub fn stage(&self) -> Stage {
        if self.root.is_some() {
            Stage::Initramfs
        } else {
            Stage::System
        }
    }

    pub fn next(&self) -> Next {
        match (&self.root, &self.init) {
            (Some(_), _) => Next::SwitchRoot,
            (None, Some(init)) => Next::ExecInit(init.clone()),
            (None, None) if self.poweroff => Next::PowerOff,
            (None, None) => Next::StayUp,
        }
    }
}

/// A flag as the kernel command line gives it: bare, or =1/yes/true/on.
fn truthy(value: Option<&str>) -> bool {
    value.is_none_or(|v| matches!(v, "1" | "y" | "yes" | "true" | "on"))
}

/// Process 1: never returns.
pub fn run() -> ! {
    let started = Instant::now();
    if let Err(e) = mount_api() {
        // Without /proc there is no command line: no poweroff switch, no shell choice.
        fatal(&Handover::parse(""), e);
    }
    console_stdio();
    // Now that /dev is there: the console and the kernel log.
    crate::logging::init(false, true);
    let text = fs::read_to_string(paths::PROC_CMDLINE).unwrap_or_default();
    let handover = Handover::parse(&text);
    info!(
        "init: process 1 at {:.3} s uptime",
        crate::logging::uptime()
    );
    pre_init();
    let root = Root::new(Path::new("/"));
    let stage = handover.stage();
    let st = flow::start(
        &root,
        Path::new(paths::PROC_CMDLINE),
        false,
        Run::Boot(stage),
    );
    crate::console::err_line(&st.banner());
    report(started);
    reap();
    let e = match handover.next() {
        Next::SwitchRoot => switch_root(&handover).unwrap_err(),
        Next::ExecInit(init) => {
            anyhow!(Command::new(&init).exec()).context(format!("running init={init}"))
        }
        Next::PowerOff => power_off(),
        Next::StayUp => {
            info!("init: no root= and no init= to hand over to; the machine stays up (ovirt.reg.poweroff powers it off)");
            stay_up(&handover)
        }
    };
    fatal(&handover, e)
}

/// The end of every path that cannot go on: the reason on the console, then power off
/// (when asked) or the shell, else stay up. Never a kernel panic.
fn fatal(handover: &Handover, e: anyhow::Error) -> ! {
    error!("init: {e:#}");
    let reason = format!("{e:#}");
    crate::console::err_line(&format!(
        "ovirt-node-reg: init: FATAL: {}",
        crate::escape::controls(&reason)
    ));
    if handover.poweroff {
        let e = power_off();
        error!("init: {e:#}");
    }
    stay_up(handover)
}

fn mount_api() -> Result<()> {
    let nosuid = MountFlags::NOSUID;
    let table: [(&str, &str, MountFlags, &str); 4] = [
        (
            paths::PROC,
            "proc",
            nosuid | MountFlags::NODEV | MountFlags::NOEXEC,
            "",
        ),
        (
            paths::SYS,
            "sysfs",
            nosuid | MountFlags::NODEV | MountFlags::NOEXEC,
            "",
        ),
        (paths::DEV, "devtmpfs", nosuid, "mode=0755"),
        (paths::RUN, "tmpfs", nosuid | MountFlags::NODEV, "mode=0755"),
    ];
    for (point, fstype, flags, data) in table {
        fs::create_dir_all(point).with_context(|| format!("creating {point}"))?;
        if is_mount_point(Path::new(point)) {
            continue;
        }
        let data = CString::new(data).expect("no NUL in a literal");
        rustix::mount::mount(fstype, point, fstype, flags, data.as_c_str())
            .with_context(|| format!("mounting {fstype} on {point}"))?;
    }
    Ok(())
}

/// A directory on another device than its parent is a mount point (bind mounts of the same
/// filesystem are not, but none of ours are). Unlike the store's check (mountinfo), this
/// works before /proc is mounted, which is when process 1 first needs it.
fn is_mount_point(path: &Path) -> bool {
    let parent = path.parent().unwrap_or(Path::new("/"));
    match (fs::metadata(path), fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

/// The kernel opens /dev/console for process 1 only when the initramfs has the node; with
/// devtmpfs mounted we can give it stdio now if it had none.
fn console_stdio() {
    if rustix::io::fcntl_getfd(rustix::stdio::stderr()).is_ok() {
        return;
    }
    let Ok(console) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(paths::DEV_CONSOLE)
    else {
        return;
    };
    for fd in 0..3 {
        // SAFETY: duplicating onto the standard descriptors, which are closed.
        let _ = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&console), fd) };
    }
}

/// Run the image's module loader, if it has one, within [`PRE_INIT_LIMIT`].
fn pre_init() {
    let executable = fs::metadata(PRE_INIT)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    if !executable {
        return;
    }
    let started = Instant::now();
    let result = Command::new(PRE_INIT).spawn().and_then(|mut child| {
        let _watchdog = crate::worker::kill_after(child.id(), PRE_INIT_LIMIT, PRE_INIT);
        child.wait()
    });
    match result {
        Ok(s) if s.success() => info!(
            "init: {PRE_INIT} done in {:.3} s",
            started.elapsed().as_secs_f64()
        ),
        Ok(s) => warn!("init: {PRE_INIT} ended with {s}; going on"),
        Err(e) => warn!("init: cannot run {PRE_INIT}: {e}; going on"),
    }
}

/// What the benchmark reads: time from the kernel's start and the peak memory.
fn report(started: Instant) {
    let own = fs::read_to_string(paths::PROC_SELF_STATUS)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    // SAFETY: getrusage writes into the struct we own.
    let children = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u.ru_maxrss
    };
    info!(
        "init: finished at {:.3} s uptime ({:.3} s in init); peak RSS {own} (workers {children} kB)",
        crate::logging::uptime(),
        started.elapsed().as_secs_f64()
    );
}

/// Collect every child that has ended (orphans are ours to reap), without blocking.
fn reap() {
    for _ in 0..1024 {
        match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
            Ok(Some(_)) => continue,
            _ => return,
        }
    }
}

fn switch_root(handover: &Handover) -> Result<std::convert::Infallible> {
    let spec = handover.root.as_deref().unwrap_or_default();
    let dev = wait_for_root(spec)?;
    fs::create_dir_all(SYSROOT).with_context(|| format!("creating {SYSROOT}"))?;
    let fstype = handover.fstype.as_deref().unwrap_or("ext4");
    let flags = if handover.rw {
        MountFlags::empty()
    } else {
        MountFlags::RDONLY
    };
    let data = CString::new(handover.flags.clone().unwrap_or_default())
        .map_err(|_| anyhow!("rootflags= holds a NUL byte"))?;
    rustix::mount::mount(&dev, SYSROOT, fstype, flags, data.as_c_str()).with_context(|| {
        format!(
            "mounting root={spec} ({}, {fstype}) on {SYSROOT}",
            dev.display()
        )
    })?;
    let init = handover.init.as_deref().unwrap_or(SBIN_INIT);
    ensure!(
        Path::new(SYSROOT)
            .join(init.trim_start_matches('/'))
            .exists(),
        "root={spec} has no {init} (init=)"
    );
    for point in API_MOUNTS {
        let target = Path::new(SYSROOT).join(&point[1..]);
        fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
        rustix::mount::mount_move(point, &target)
            .with_context(|| format!("moving {point} into the real root"))?;
    }
    free_initramfs();
    std::env::set_current_dir(SYSROOT).context("entering the real root")?;
    rustix::mount::mount_move(".", "/").context("moving the real root onto /")?;
    rustix::process::chroot(".").context("chroot into the real root")?;
    std::env::set_current_dir("/").context("entering /")?;
    info!("init: switching root to {spec}; running {init}");
    Err(anyhow!(Command::new(init).exec()).context(format!("running {init} in the real root")))
}

/// The device of `root=`: `/dev/…` or `LABEL=…` (ext2/3/4), waited for within
/// [`ROOT_WAIT`] as the disk driver may still be probing.
fn wait_for_root(spec: &str) -> Result<PathBuf> {
    let until = Instant::now() + ROOT_WAIT;
    loop {
        let found = match spec.strip_prefix("LABEL=") {
            Some(label) => crate::store::find_labelled(&Root::new(Path::new("/")), label)?,
            None if spec.starts_with("/dev/") => Some(PathBuf::from(spec)).filter(|p| p.exists()),
            None => bail!("root={spec}: expected /dev/NAME or LABEL=NAME"),
        };
        if let Some(dev) = found {
            return Ok(dev);
        }
        if Instant::now() >= until {
            bail!(
                "root={spec}: no such device after {} s",
                ROOT_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Delete the initramfs' files before the switch, as switch_root does: they live in RAM.
/// Only on a RAM filesystem, never crossing into another mount.
fn free_initramfs() {
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let on_ram = rustix::fs::statfs("/")
        .map(|s| matches!(s.f_type, RAMFS_MAGIC | TMPFS_MAGIC))
        .unwrap_or(false);
    if !on_ram {
        return;
    }
    let (Ok(root_dev), Ok(entries)) = (fs::metadata("/").map(|m| m.dev()), fs::read_dir("/"))
    else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let same_fs = fs::symlink_metadata(&path)
            .map(|m| m.dev() == root_dev)
            .unwrap_or(false);
        if !same_fs || path == Path::new(SYSROOT) || is_mount_point(&path) {
            continue;
        }
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        if let Err(e) = removed {
            warn!("init: freeing {}: {e}", path.display());
        }
    }
}

/// Sync, unmount the store and power off. Returns only if the kernel refused.
fn power_off() -> anyhow::Error {
    info!("init: powering off (ovirt.reg.poweroff)");
    rustix::fs::sync();
    let config = Path::new(paths::CONFIG_MOUNT);
    if is_mount_point(config) {
        if let Err(e) = rustix::mount::unmount(config, UnmountFlags::empty()) {
            warn!("init: unmounting {}: {e}; detaching it", config.display());
            let _ = rustix::mount::unmount(config, UnmountFlags::DETACH);
        }
    }
    rustix::fs::sync();
    match rustix::system::reboot(rustix::system::RebootCommand::PowerOff) {
        Ok(()) => anyhow!("the kernel did not power off"),
        Err(e) => anyhow!(e).context("powering off"),
    }
}

/// The emergency shell once (when there is one and it is allowed), then wait forever,
/// reaping orphans: process 1 may not exit.
fn stay_up(handover: &Handover) -> ! {
    if handover.shell && Path::new(BIN_SH).exists() {
        crate::console::err_line(&format!(
            "ovirt-node-reg: init: starting the emergency shell {BIN_SH} (rd.shell=0 disables it)"
        ));
        match Command::new(BIN_SH).status() {
            Ok(s) => {
                crate::console::err_line(&format!("ovirt-node-reg: init: the shell ended ({s})"))
            }
            Err(e) => crate::console::err_line(&format!(
                "ovirt-node-reg: init: cannot start {BIN_SH}: {e}"
            )),
        }
    }
    crate::console::err_line("ovirt-node-reg: init: staying up for inspection");
    // Deliberately unbounded: the only way out for process 1 is a reboot.
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_secs(3600)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_means_initramfs_stage_and_switch_root() {
        let h = Handover::parse("console=ttyS0 root=/dev/vdb rootfstype=ext4 rw quiet");
        assert_eq!(h.root.as_deref(), Some("/dev/vdb"));
        assert_eq!(h.fstype.as_deref(), Some("ext4"));
        assert!(h.rw);
        assert_eq!(h.stage(), Stage::Initramfs);
        assert_eq!(h.next(), Next::SwitchRoot);
    }

    #[test]
    fn no_root_runs_everything_then_init_or_poweroff_or_stays_up() {
        let h = Handover::parse("console=ttyS0 init=/bin/sh");
        assert_eq!(h.stage(), Stage::System);
        assert_eq!(h.next(), Next::ExecInit("/bin/sh".into()));
        assert_eq!(Handover::parse("ovirt.reg.poweroff").next(), Next::PowerOff);
        assert_eq!(Handover::parse("ovirt.reg.poweroff=0").next(), Next::StayUp);
        assert_eq!(Handover::parse("").next(), Next::StayUp);
    }

    #[test]
    fn last_of_ro_rw_wins_and_shell_can_be_forbidden() {
        let h = Handover::parse("rw ro rd.shell=0 root=LABEL=rootfs");
        assert!(!h.rw);
        assert!(!h.shell);
        assert!(Handover::parse("rd.shell").shell);
        assert_eq!(h.root.as_deref(), Some("LABEL=rootfs"));
    }

    #[test]
    fn empty_values_are_absent() {
        let h = Handover::parse("root= init=");
        assert_eq!(h.root, None);
        assert_eq!(h.init, None);
    }

    #[test]
    fn a_bad_root_spec_names_the_argument() {
        let e = wait_for_root("UUID=1234").unwrap_err().to_string();
        assert!(e.contains("root=UUID=1234") && e.contains("LABEL="), "{e}");
    }
}
