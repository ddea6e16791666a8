//! The persistent config store (`/config`), with oVirt Node's persist semantics.
//! (Being written: see the store issue step.)

use anyhow::Result;
use std::path::{Path, PathBuf};

use crate::paths::Root;

/// An opened (found and mounted) config store.
#[derive(Debug)]
pub struct Store {
    root: Root,
    /// Host path of the store directory (e.g. `<root>/config`).
    dir: PathBuf,
}

impl Store {
    /// Find the store (`ovirt.reg.store=` directory or block device, else the filesystem
    /// labelled `CONFIG`), mounting it at `/config` when needed.
    pub fn open(root: &Root, configured: Option<&str>) -> Result<Store> {
        let _ = configured;
        Ok(Store { root: root.clone(), dir: root.join(crate::paths::CONFIG_MOUNT) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn root(&self) -> &Root {
        &self.root
    }
}
