//! Whether this root has a config store or keeps its files in place (`ovirt.reg.store=none`):
//! an installed host's root file system survives a reboot, an oVirt Node's live root does not.

use anyhow::{Context, Result};

use crate::os_release;
use crate::paths::Root;

/// `ovirt.reg.store=none`: no config store, files are written in place.
pub const NO_STORE: &str = "none";

/// How the store keeps files across reboots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The config store: a persisted file is copied into it and bind-mounted over its path.
    Config,
    /// No config store: the root file system is persistent, files are written in place
    /// (atomically) and our state lives in `/var/lib/ovirt-node-reg`.
    InPlace,
}

// statfs(2) f_type of the file systems a live root is made of.
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;
const OVERLAYFS_MAGIC: i64 = 0x794c_7630;
const SQUASHFS_MAGIC: i64 = 0x7371_7368;
// And a few persistent ones, only to name them in messages.
const EXT_MAGIC: i64 = 0xef53;
const XFS_MAGIC: i64 = 0x5846_5342;
const BTRFS_MAGIC: i64 = 0x9123_683e;

/// The file system type under the root directory, by name where we know it.
pub fn root_fs_type(root: &Root) -> Result<String> {
    let st = rustix::fs::statfs(root.dir())
        .with_context(|| format!("statfs {}", root.dir().display()))?;
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64, a narrower type elsewhere
    let magic = st.f_type as i64;
    Ok(match magic {
        TMPFS_MAGIC => "tmpfs".into(),
        RAMFS_MAGIC => "ramfs".into(),
        OVERLAYFS_MAGIC => "overlay".into(),
        SQUASHFS_MAGIC => "squashfs".into(),
        EXT_MAGIC => "ext4".into(),
        XFS_MAGIC => "xfs".into(),
        BTRFS_MAGIC => "btrfs".into(),
        other => format!("type {other:#x}"),
    })
}

fn is_live_fs(fs_type: &str) -> bool {
    matches!(fs_type, "tmpfs" | "ramfs" | "overlay" | "squashfs")
}

/// Why this root must have a config store (a live root, or an oVirt Node), `None` when it
/// may keep its files in place.
pub fn needs_store(root: &Root) -> Result<Option<String>> {
    let fs_type = root_fs_type(root)?;
    if is_live_fs(&fs_type) {
        return Ok(Some(format!(
            "the root file system {} is {fs_type} (a live root): files written there are lost \
             at the next boot",
            root.dir().display()
        )));
    }
    if os_release::is_ovirt_node(root) {
        return Ok(Some(
            "this is an oVirt Node (os-release): its settings live in the config store".into(),
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_file_system_needs_a_store() {
        assert!(is_live_fs("overlay") && is_live_fs("tmpfs") && is_live_fs("squashfs"));
        assert!(!is_live_fs("ext4") && !is_live_fs("xfs"));
    }

    #[test]
    fn a_node_root_needs_a_store_whatever_its_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let live = is_live_fs(&root_fs_type(&root).unwrap());
        assert_eq!(needs_store(&root).unwrap().is_some(), live);
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/os-release"),
            "ID=ovirt-node-reg-live\n",
        )
        .unwrap();
        let why = needs_store(&root).unwrap().expect("a node needs its store");
        assert!(live || why.contains("oVirt Node"), "{why}");
    }
}
