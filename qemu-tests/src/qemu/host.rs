//! The host side: the tools the boots need (found once; a missing one is an error naming its
//! Debian package), the guest kernel, the workspace's directories and the static binary.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{ensure, Context, Result};

/// What the host needs, found once.
#[derive(Debug, Clone)]
pub struct Host {
    pub qemu: PathBuf,
    pub kver: String,
    pub busybox: PathBuf,
    /// This crate's `guest-relay`, the command of every `guestfwd` (docs/qemu-harness.md §7).
    pub relay: PathBuf,
}

pub(super) fn which(name: &str) -> Option<PathBuf> {
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

pub(super) fn need(name: &str, package: &str) -> Result<PathBuf> {
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

/// `guest-relay`, built with the tests: cargo builds a package's binaries for its
/// integration tests, into the directory above the test executable's `deps/`.
fn guest_relay() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the test executable")?;
    let relay = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("guest-relay"))
        .context("the test executable has no parent directory")?;
    // It goes into a comma-separated QEMU option and a shell command line.
    ensure!(
        !relay.to_string_lossy().contains([',', ' ', '\t']),
        "{}: the QEMU tests need a target directory without ',' or blanks in its path",
        relay.display()
    );
    ensure!(
        relay.is_file(),
        "{}: missing: build it with cargo build -p qemu-tests --bin guest-relay (cargo test \
         builds it)",
        relay.display()
    );
    Ok(relay)
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
            let relay = guest_relay()?;
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
                relay,
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
            run_ok(
                cmd.arg(ws.join("build-support/build-static.sh"))
                    .current_dir(&ws),
                "build-support/build-static.sh",
            )?;
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

/// Runs a host tool without a stdin; the error names the command.
pub(super) fn run_tool(cmd: &mut Command) -> Result<std::process::Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    Ok(out)
}

/// [`run_tool`] that must succeed: the error names `what`, its exit status and its output.
pub(super) fn run_ok(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    let out = run_tool(cmd)?;
    ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// A private scratch directory (0700) under `dir`.
pub(super) fn tempfile_dir(dir: &Path, tag: &str) -> Result<PathBuf> {
    let work = dir.join(format!("work-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir(&work).with_context(|| format!("creating {}", work.display()))?;
    fs::set_permissions(&work, fs::Permissions::from_mode(0o700))?;
    Ok(work)
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
}
