//! The config disk: made with `mkfs.ext4`, read back on the host after QEMU exits (debugfs,
//! e2ls) and checked with `e2fsck -fn` (docs/qemu-harness.md §4).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Result};

use super::host::{host, run_ok, run_tool, target_dir};

/// A config disk: a 64 MB sparse ext4 image labelled `CONFIG`, one per machine (QEMU
/// write-locks images). Read it only after QEMU has exited.
#[derive(Debug, Clone)]
pub struct Disk {
    pub path: PathBuf,
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
        run_ok(cmd.arg(&path), &format!("mkfs.ext4 {}", path.display()))?;
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
        run_ok(
            Command::new("e2fsck").arg("-fn").arg(&self.path),
            &format!("e2fsck -fn {}", self.path.display()),
        )?;
        Ok(())
    }
}
