//! The images a boot uses, each built by its `image/` script and cached in
//! `target/qemu-cache` under the SHA-256 of its inputs (an unchanged image is not built
//! again; concurrent test processes never boot each other's): the kernel as `vmlinux`, the
//! minimal initramfs ([`Image::Pid1`], [`Image::ScriptInit`] with [`INIT`]), the dracut
//! initramfs and its test root, and the PXE tree.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use super::host::{host, need, run_ok, static_binary, target_dir, tempfile_dir, workspace, Host};
use super::{BASE_APPEND, GUEST_ENGINE_ADDR};

/// Modules the guest loads (`mkinitrd-min.sh --modules`, which adds their `modules.dep`
/// closure): virtio, the bridge, VLANs and bonds, ext4 and crc32c for the config disk (docs/qemu-harness.md §2).
/// `bonding` comes first, as in mkinitrd-min.sh's default: its `bond0` makes the kernel handle
/// a link event just before the NIC appears, so the NIC's link stays up instead of waiting up
/// to a second for the kernel's next one (docs/qemu-harness.md §9).
pub const MODULES: &[&str] = &[
    "bonding",
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "bridge",
    "8021q",
    "crc32c_generic",
    "ext4",
];

/// A machine's own console script ([`crate::scenario::Machine::console`]): when the image has
/// one, `/init` runs it instead of `ovirt-node-reg boot` (its exit code is `QH-EXIT`'s).
pub const CONSOLE_SCRIPT: &str = "/etc/qh-console";

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
if [ -x /etc/qh-console ]; then /etc/qh-console; else /usr/sbin/ovirt-node-reg --kmsg boot; fi
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
    # The kernel passes a carrier change on to the operational state in rounds, at most one a
    # second (docs/qemu-harness.md §9.6): a link with carrier gets that long to show it. Until
    # then a NIC may still say "down" and a new bridge "unknown" (loopback always says that).
    i=0
    while [ "$i" -lt 15 ] && [ "$k" != loopback ] && [ "$(cat "$d/carrier" 2>/dev/null)" = 1 ] && [ "$(cat "$d/operstate")" != up ]; do
        sleep 0.1
        i=$((i + 1))
    done
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

/// Which initramfs a boot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// The binary is `/init` (PID-1 mode); powers off by itself (`ovirt.reg.poweroff`).
    Pid1,
    /// busybox sh is `/init` ([`INIT`]); prints links, addresses, status and clock markers.
    ScriptInit,
    /// `image/mkinitrd-dracut.sh --flavour shell|systemd`: the 95ovirt-node-reg module runs
    /// `boot --stage initramfs` in pre-pivot, then switch_root to [`Vm::root_disk`](super::Vm::root_disk) (made by
    /// [`root_disk`]), whose `/sbin/init` runs `boot --stage system`, prints `QH-` markers
    /// and powers off.
    Dracut(Flavour),
    /// A node ISO (`image/mkiso.sh`, made by [`iso_image`](super::iso_image)) booted from the CD-ROM (`-cdrom
    /// ISO -boot d`, no `-kernel`): SeaBIOS, isolinux, the kernel with the dracut initramfs
    /// (95ovirt-node-reg + dmsquash-live), the live squashfs root whose busybox init runs
    /// `boot --stage system`, then the stand-in vdsm on port 54321, prints `QH-` markers and
    /// powers off (`ovirt.reg.poweroff` in the ISO's kernel args). The kernel arguments are the
    /// ISO's: [`Vm::append`](super::Vm::append) is not used.
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

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// The kernel's inner ELF `vmlinux` (docs/qemu-harness.md §4: the bzImage is xz; PVH boot of the ELF skips
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
    let _lock = build_lock(&out)?;
    if out.is_file() {
        return Ok(out);
    }
    let work = tempfile_dir(&dir, &key[..12])?;
    let result = (|| -> Result<()> {
        let mut cmd = image_script();
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
        run_script(&mut cmd, "image/mkinitrd-min.sh").map(drop)
    })();
    let _ = fs::remove_dir_all(&work);
    result?;
    Ok(out)
}

/// Every regular file under `dir`, sorted (for cache keys).
pub(super) fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
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
pub(super) fn build_cached(out: &Path, cmd: &mut Command, what: &str) -> Result<()> {
    if out.is_file() {
        return Ok(());
    }
    let _lock = build_lock(out)?;
    if out.is_file() {
        return Ok(());
    }
    run_script(cmd, what)?;
    ensure!(out.is_file(), "{what} wrote no {}", out.display());
    Ok(())
}

/// An exclusive lock on `<out>.lock`, held while `out` is built: test binaries run at once
/// (build-support/test-all.sh) and two of them needing the same image build it once. The kernel
/// drops the lock when the file is closed, also when a test process dies.
pub(super) fn build_lock(out: &Path) -> Result<fs::File> {
    let mut name = out.as_os_str().to_owned();
    name.push(".lock");
    let file = lock_file(Path::new(&name))?;
    file.lock()
        .with_context(|| format!("locking {}", Path::new(&name).display()))?;
    Ok(file)
}

/// A lock file shared by the test processes (created when missing, never truncated), to
/// `lock` or `try_lock`: the image builds here and the VM slots (qemu::run).
pub(super) fn lock_file(path: &Path) -> Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// The enrolment token as the image scripts take it: a new 0600 file in `dir`.
pub(super) fn token_file(dir: &Path, token: &str) -> Result<PathBuf> {
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

/// A command that runs an image/ script (add the script and its arguments): at nice 10, so
/// the QEMU guests of other test processes, whose boot timeouts run in real time, come first
/// on a busy machine (build-support/test-all.sh runs the QEMU test files at once).
pub(super) fn image_script() -> Command {
    image_script_at(10)
}

/// [`image_script`] at `nice`: 0 for the parts the run's longest chain of boots waits for
/// (the node ISO's, docs/qemu-harness.md §9 item 15).
pub(super) fn image_script_at(nice: u8) -> Command {
    let mut cmd = Command::new("nice");
    cmd.args(["-n", &nice.to_string(), "bash"]);
    cmd
}

/// Runs one of the image/ scripts (dates fixed for reproducible output): an error carries
/// its output; on success its summary line is printed with the time it took, and its output
/// returned.
pub(super) fn run_script(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    let (started, at) = (Instant::now(), std::time::SystemTime::now());
    let o = run_ok(cmd.env("SOURCE_DATE_EPOCH", "0"), what)?;
    super::run::record_time(super::run::BUILD_TIMES, what, started.elapsed(), at);
    eprintln!(
        "[qemu] {} ({:.1} s)",
        String::from_utf8_lossy(&o.stdout).trim(),
        started.elapsed().as_secs_f64()
    );
    Ok(o)
}

/// The SHA-256 (hex) of the files and strings that make an image.
pub(super) fn inputs_key(files: &[PathBuf], strings: &[&str]) -> Result<String> {
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

/// The NIC drivers of the harness's dracut images (`mkinitrd-dracut.sh --net-drivers`): the
/// guests have virtio NICs only, and every other NIC driver made the ISO's initramfs 30 MB
/// instead of 16 MB, which the boot loader reads and the kernel unpacks in every boot
/// (docs/qemu-harness.md §9).
pub(super) const NET_DRIVERS: &str = "virtio_net";

/// `image/mkinitrd-dracut.sh` for `flavour`, cached by the hash of the script, the dracut
/// module, the binary and the kernel version (a build takes 15-25 s).
fn dracut_initramfs(host: &Host, flavour: Flavour) -> Result<PathBuf> {
    need("dracut", "dracut")?;
    let bin = static_binary()?;
    let ws = workspace();
    let script = ws.join("image/mkinitrd-dracut.sh");
    let mut files = vec![script.clone(), bin.clone()];
    files.extend(files_under(&ws.join("dracut"))?);
    let key = inputs_key(&files, &[&host.kver, flavour.name(), NET_DRIVERS])?;
    let dir = target_dir().join("qemu-cache");
    fs::create_dir_all(&dir)?;
    let out = dir.join(format!("dracut-{}-{}.img", flavour.name(), &key[..24]));
    let mut cmd = image_script();
    cmd.arg(&script)
        .arg(&bin)
        .arg(&out)
        .args(["--flavour", flavour.name(), "--kver", &host.kver])
        .args(["--net-drivers", NET_DRIVERS]);
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
    let mut cmd = image_script();
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
/// `BASE_APPEND ovirt.reg.poweroff <append>` (pxelinux adds BOOTIF with
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
        let mut cmd = image_script();
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
                "{BASE_APPEND} ovirt.reg.poweroff {}",
                append.trim()
            ));
        if let Some(token) = token {
            cmd.arg("--token-file").arg(token_file(&work, token)?);
        }
        run_script(&mut cmd, "image/mkpxe.sh").map(drop)
    })();
    let _ = fs::remove_dir_all(&work);
    result?;
    Ok(out)
}
