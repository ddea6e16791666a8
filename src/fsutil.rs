//! The one crash-safe way to write a file.
//!
//! A reader (or the next boot after a power cut) sees either the old content or the new
//! content, never a torn file: write a temporary file in the same directory, fsync it, set
//! its mode, rename it over the target, then fsync the directory so the rename itself is
//! durable.

use anyhow::{Context, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fault;

/// Atomically replace `path` with `data`, created with `mode` (e.g. 0o644, 0o600).
/// Parent directories are created (0755) when missing.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = parent_of(path)?;
    fs::create_dir_all(&dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let tmp = temp_name(path);
    let result = write_temp(&tmp, data, mode).and_then(|()| {
        fault::point("atomic.before_rename");
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    fault::point("atomic.after_rename");
    sync_dir(&dir)
}

/// Same as [`write_atomic`] for text.
pub fn write_atomic_str(path: &Path, text: &str, mode: u32) -> Result<()> {
    write_atomic(path, text.as_bytes(), mode)
}

/// Read a file that may be absent: `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// fsync a directory so that renames and unlinks in it survive a power cut.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

fn write_temp(tmp: &Path, data: &[u8], mode: u32) -> Result<()> {
    let _ = fs::remove_file(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", tmp.display()))?;
    fault::point("atomic.tmp_written");
    // The umask may have narrowed the mode given to open(); set it exactly.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode of {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))
}

fn parent_of(path: &Path) -> Result<PathBuf> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.to_path_buf()),
        _ => Ok(PathBuf::from(".")),
    }
}

/// `.name.tmp` beside the target: same directory, so the rename is atomic.
fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.ovirt-node-reg.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_exact_mode_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/secret");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn read_optional_absent() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_optional(&d.path().join("nope")).unwrap().is_none());
    }
}
