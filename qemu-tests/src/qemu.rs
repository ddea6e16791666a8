//! The minimal direct-kernel QEMU harness (shared/docs/qemu-harness.md, Recipe A).
//!
//! One boot: the static `target/static/ovirt-node-reg` (built by
//! `build-support/build-static.sh`) and busybox-static in a hand-made cpio initramfs, the host's
//! Debian kernel as an uncompressed `vmlinux` booted through its PVH note, TCG (never KVM unless
//! `QH_ACCEL=kvm`), user-mode networking with `restrict=on` and a `guestfwd` per NIC from
//! `10.0.2.100:PORT` to the simulator on `127.0.0.1:PORT` (the guest reaches nothing else), the
//! serial console in a file, a hard timeout. QEMU exits 0 even after a kernel panic, so callers
//! judge a boot by the markers the guest's `/init` prints ([`Boot`]) and by the simulator's
//! events, never by QEMU's exit code.
//!
//! The guest's `/init` (busybox sh, [`INIT`]) mounts proc/sys/dev/run, a tmpfs on `/config`
//! (the store), loads the modules, runs `ovirt-node-reg --kmsg boot` (which reads the kernel
//! command line), prints `QH-EXIT rc=N`, `ovirt-node-reg status --json`, the links it sees and
//! the clock, then powers off.
//!
//! Missing host tools are errors that name the Debian package (`build-support/setup.sh`
//! installs them all): a boot test never skips.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

pub use crate::config::GUEST_ENGINE_ADDR;

/// Modules the guest loads, with everything they depend on (resolved from the kernel's
/// `modules.dep`). ext4 and crc32c for the config disk of later scenarios (doc §2).
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

/// The guest's PID 1 (busybox sh). The binary's PID-1 mode is a later issue.
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
while read -r m; do
    insmod "/lib/modules/$m" || echo "QH-MODULE-FAILED $m"
done < /etc/qh-modules
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

/// `modules.dep` closure of `wanted`, dependencies first (paths relative to /lib/modules/K).
pub fn module_load_order(kver: &str, wanted: &[&str]) -> Result<Vec<String>> {
    let base = PathBuf::from(format!("/lib/modules/{kver}"));
    let dep = fs::read_to_string(base.join("modules.dep"))
        .with_context(|| format!("reading {}/modules.dep", base.display()))?;
    let name_of = |path: &str| -> String {
        let file = path.rsplit('/').next().unwrap_or(path);
        file.split(".ko").next().unwrap_or(file).replace('-', "_")
    };
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in dep.lines() {
        let Some((m, rest)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            name_of(m),
            (
                m.to_string(),
                rest.split_whitespace().map(name_of).collect(),
            ),
        );
    }
    fn visit(
        n: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        if !seen.insert(n.to_string()) {
            return Ok(());
        }
        let (path, ds) = deps
            .get(n)
            .with_context(|| format!("module {n} is not in modules.dep (built in?)"))?;
        for d in ds {
            visit(d, deps, seen, order)?;
        }
        order.push(path.clone());
        Ok(())
    }
    let (mut seen, mut order) = (BTreeSet::new(), Vec::new());
    for w in wanted {
        visit(&w.replace('-', "_"), &deps, &mut seen, &mut order)?;
    }
    for p in &order {
        ensure!(
            p.ends_with(".ko"),
            "{p}: compressed modules are not supported (busybox insmod needs plain .ko)"
        );
    }
    Ok(order)
}

/// A newc cpio archive, written by hand (no cpio tool needed).
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize
        // check: owned by root, mtime 0 (reproducible).
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            u32::try_from(data.len()).expect("cpio member under 4 GiB"),
            0,
            0,
            0,
            0,
            u32::try_from(name.len() + 1).expect("short name"),
            0,
        ];
        let mut header = String::from("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.buf.extend_from_slice(header.as_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// A directory and its parents (names without a leading slash).
    pub fn dir(&mut self, name: &str) {
        let mut path = String::new();
        for part in name.split('/').filter(|p| !p.is_empty()) {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            if self.dirs.insert(path.clone()) {
                let p = path.clone();
                self.entry(&p, 0o040755, &[]);
            }
        }
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        if let Some((parent, _)) = name.rsplit_once('/') {
            self.dir(parent);
        }
        self.entry(name, 0o100000 | mode, data);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.buf
    }
}

/// The initramfs for `kver` with `bin` as `/usr/sbin/ovirt-node-reg` (uncompressed: the
/// kernel unpacks it faster than a gzip one under TCG).
pub fn initramfs(host: &Host, bin: &Path) -> Result<Vec<u8>> {
    let kver = &host.kver;
    let mut c = Cpio::default();
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "tmp",
    ] {
        c.dir(d);
    }
    c.file("init", 0o755, INIT.as_bytes());
    c.file("bin/busybox", 0o755, &fs::read(&host.busybox)?);
    c.file(
        "usr/sbin/ovirt-node-reg",
        0o755,
        &fs::read(bin).with_context(|| format!("reading {}", bin.display()))?,
    );
    let order = module_load_order(kver, MODULES)?;
    let base = PathBuf::from(format!("/lib/modules/{kver}"));
    for m in &order {
        let data = fs::read(base.join(m)).with_context(|| format!("reading module {m}"))?;
        c.file(&format!("lib/modules/{m}"), 0o644, &data);
    }
    let list: String = order.iter().map(|m| format!("{m}\n")).collect();
    c.file("etc/qh-modules", 0o644, list.as_bytes());
    Ok(c.finish())
}

/// The guest's NIC on the user-mode network `n<index>`.
#[derive(Debug, Clone)]
pub struct Nic {
    pub mac: String,
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
}

impl Vm {
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
        }
    }
}

/// A finished (or timed-out) boot.
#[derive(Debug)]
pub struct Boot {
    pub name: String,
    /// The serial console.
    pub log: String,
    pub log_path: PathBuf,
    /// QEMU start to QEMU exit (or to the kill).
    pub elapsed: Duration,
    pub timed_out: bool,
    /// QEMU's own stderr (not the guest's).
    pub qemu_stderr: String,
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

    /// `ovirt-node-reg`'s exit code, from `QH-EXIT rc=N`.
    pub fn exit_code(&self) -> Option<i32> {
        self.line(EXIT_MARKER)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// `ovirt-node-reg status --json` as printed by the guest.
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

    /// A boot that reached the end of `/init` (whatever the binary answered).
    pub fn completed(&self) -> bool {
        !self.timed_out && self.line(DONE_MARKER).is_some()
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

/// The initramfs of this process (built once), in `target/qemu-cache`.
fn initramfs_file(host: &Host) -> Result<PathBuf> {
    static FILE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FILE.get_or_init(|| {
        let make = || -> Result<PathBuf> {
            let bin = static_binary()?;
            let img = initramfs(host, &bin)?;
            let dir = target_dir().join("qemu-cache");
            fs::create_dir_all(&dir)?;
            // Named by content: concurrent test processes never boot each other's image.
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&img, &mut h);
            let out = dir.join(format!(
                "initramfs-{:016x}.cpio",
                std::hash::Hasher::finish(&h)
            ));
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
            if !out.is_file() {
                write_atomic(&out, &img)?;
            }
            Ok(out)
        };
        make().map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Boots `vm` and waits for QEMU to exit, killing it at `vm.timeout`. The console log goes to
/// `target/qemu-artifacts/<name>.serial.log` and stays there unless [`Boot::pass`] is called.
pub fn boot(vm: &Vm) -> Result<Boot> {
    let host = host()?;
    let kernel = vmlinux(&host.kver)?;
    let initrd = initramfs_file(&host)?;
    let arts = artifacts_dir();
    fs::create_dir_all(&arts)?;
    let log_path = arts.join(format!("{}.serial.log", vm.name));
    let _ = fs::remove_file(&log_path);
    let err_path = arts.join(format!("{}.qemu-stderr.log", vm.name));
    let accel = std::env::var("QH_ACCEL").unwrap_or_else(|_| "tcg".into());
    let mut cmd = Command::new(&host.qemu);
    cmd.args(["-accel", &accel, "-m", "512", "-smp", "1", "-nodefaults"])
        .args(["-display", "none", "-no-reboot", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", log_path.display()))
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(format!("console=ttyS0 panic=-1 quiet {}", vm.append.trim()))
        .args(["-uuid", &vm.uuid]);
    if let Some(base) = &vm.rtc_base {
        cmd.arg("-rtc").arg(format!("base={base}"));
    }
    for (i, nic) in vm.nics.iter().enumerate() {
        // One argument, spaces and all (doc §8.5); restrict=on: only the guestfwd port.
        cmd.arg("-netdev").arg(format!(
            "user,id=n{i},restrict=on,guestfwd=tcp:{GUEST_ENGINE_ADDR}:{p}-cmd:{socat} - TCP:127.0.0.1:{p}",
            p = vm.engine_port,
            socat = host.socat.display()
        ));
        cmd.arg("-device")
            .arg(format!("virtio-net-pci,netdev=n{i},mac={}", nic.mac));
    }
    let stderr = fs::File::create(&err_path)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let mut timed_out = false;
    loop {
        if child.try_wait()?.is_some() {
            break;
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
    let boot = Boot {
        name: vm.name.clone(),
        log,
        log_path,
        elapsed,
        timed_out,
        qemu_stderr,
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
    fn cpio_is_newc() {
        let mut c = Cpio::default();
        c.file("a/b", 0o644, b"xyz");
        let img = c.finish();
        assert!(img.starts_with(b"070701"));
        assert_eq!(img.len() % 4, 0);
        let s = String::from_utf8_lossy(&img);
        assert!(s.contains("a\0") && s.contains("a/b\0") && s.contains("xyz"));
        assert!(s.contains("TRAILER!!!\0"));
    }

    #[test]
    fn marker_fields() {
        let f = fields("name=eth0 kind=nic master=ovirtmgmt");
        assert_eq!(f["master"], "ovirtmgmt");
    }
}
