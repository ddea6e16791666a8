//! A store transaction: the files one step writes, persisted together.
//!
//! Persisting a file alone costs several journal commits on the store (the copy, its
//! rename, the files list), and a boot persists some twenty files. A batch builds each new
//! stored copy beside the old one as the path is added, not yet durable; `commit` then makes
//! them all durable with one `syncfs`, renames each into place, syncs again, bind-mounts
//! them and rewrites the files list once, naming every new path.
//!
//! Crash safety is that of a single persist (see the store module): each stored copy is
//! replaced by one rename of a complete, synced copy, so it is old or new, never torn; the
//! files list is rewritten (atomically) only after every copy it will name is durable under
//! its real name, so it never names a missing or partial copy. A crash between the renames
//! leaves some files old and some new, each whole, with their paths listed or not as before,
//! which is what the next run's persist (or restore) expects from an interrupted one.

use anyhow::{anyhow, bail, Context, Result};
use log::info;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{
    build, put_file, remove_any, same_tree, stage, stage_and_swap, staging_path, swap_in, At,
    Durable, Kind, Mode, Persisted, Store, Target, MAX_FILE,
};
use crate::fault;
use crate::paths::Root;

/// Paths written or persisted together and committed at once: see [`Store::batch`].
/// Dropped without [`Batch::commit`], it persists nothing and removes the copies it staged.
#[derive(Debug)]
pub struct Batch<'s> {
    store: &'s Store,
    /// The files list when the batch first needed it; only this batch changes it meanwhile.
    listed: Option<Vec<PathBuf>>,
    items: Vec<Item>,
}

#[derive(Debug)]
struct Item {
    t: Target,
    kind: Kind,
    outcome: Persisted,
    /// Not listed yet: named in the files list on commit.
    added: bool,
    /// A new stored copy waits at the staging path beside the stored one.
    staged: bool,
    /// Inside a persisted, mounted directory: stored through it already, nothing to do.
    covered: bool,
}

impl Store {
    /// Begin a transaction: [`Batch::write`] and [`Batch::persist`] each path, then
    /// [`Batch::commit`]. On a host without a store each write is done at once, in place.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            listed: None,
            items: Vec::new(),
        }
    }
}

impl Batch<'_> {
    /// The root the batch writes in.
    pub fn root(&self) -> &Root {
        self.store.root()
    }

    /// [`Store::write_persisted`] within this batch: the live file is written now (an
    /// existing file keeps its owner; when content and mode are right nothing is written),
    /// and stored, mounted and listed on commit. Returns what the commit will have done.
    pub fn write(&mut self, path: &Path, data: &[u8], mode: u32) -> Result<Persisted> {
        let store = self.store;
        if store.mode == Mode::InPlace {
            return store.write_in_place(path, data, mode);
        }
        let t = store.target(path)?;
        self.check_new(&t)?;
        let live = store.live_of(&t);
        let current = match live.meta()? {
            Some(m) if !m.is_file() => bail!("{}: not a regular file", t.path.display()),
            m => m,
        };
        let unchanged = current
            .as_ref()
            .is_some_and(|m| m.mode() & 0o7777 == mode & 0o7777)
            && live
                .fs
                .read(live.rel, MAX_FILE)
                .is_ok_and(|old| old.as_deref() == Some(data));
        if !unchanged {
            // Nothing can be renamed over a bind mount: the new file goes under it.
            if store.unmount_ours(&t)? {
                fault::point("store.unmounted");
            }
            let owner = current.as_ref().map(|m| (m.uid(), m.gid()));
            stage_and_swap(live, |staged| {
                put_file(staged, data, mode, owner, Durable::Now)
            })?;
        }
        self.add(t)
    }

    /// [`Store::persist`] within this batch: the path is checked and its stored copy built
    /// now; stored, mounted and listed on commit. Returns what the commit will have done.
    pub fn persist(&mut self, path: &Path) -> Result<Persisted> {
        let store = self.store;
        if store.mode == Mode::InPlace {
            return store.keep_in_place(path);
        }
        let t = store.target(path)?;
        self.check_new(&t)?;
        self.add(t)
    }

    /// Make every path of the batch persisted: copies durable, in place, mounted, listed.
    pub fn commit(mut self) -> Result<()> {
        let store = self.store;
        if self.items.iter().any(|i| i.staged) {
            // The copies and the store directories made for them, durable before any rename.
            store.kept.sync_fs()?;
            fault::point("store.synced");
            for item in self.items.iter().filter(|i| i.staged) {
                let kept = store.kept_of(&item.t);
                let staged = staging_path(kept.rel);
                swap_in(
                    At {
                        fs: kept.fs,
                        rel: &staged,
                    },
                    kept,
                )
                .with_context(|| format!("storing {}", item.t.path.display()))?;
                fault::point("store.copied");
            }
            // The renames, durable before the files list names them (or the caller goes on).
            store.kept.sync_fs()?;
        }
        for item in self.items.iter().filter(|i| i.mounted()) {
            store.mount_stored(&item.t)?;
        }
        let new: Vec<&Path> = self
            .items
            .iter()
            .filter(|i| i.added)
            .map(|i| i.t.path.as_path())
            .collect();
        if !new.is_empty() {
            store.update_list(&new, true)?;
            fault::point("store.listed");
        }
        for item in self.items.drain(..).filter(|i| !i.covered) {
            info!("persist {}: {:?}", item.t.path.display(), item.outcome);
        }
        Ok(())
    }

    /// A path is in a batch once, and never inside or around another one of it: each item
    /// is checked against the files list as it was.
    fn check_new(&self, t: &Target) -> Result<()> {
        match self
            .items
            .iter()
            .find(|i| i.t.path.starts_with(&t.path) || t.path.starts_with(&i.t.path))
        {
            Some(other) => bail!(
                "{} is, or overlaps, {}, already in this store transaction",
                t.path.display(),
                other.t.path.display()
            ),
            None => Ok(()),
        }
    }

    /// Check a path and build its new stored copy at the staging path (not durable yet).
    fn add(&mut self, t: Target) -> Result<Persisted> {
        let store = self.store;
        let (live, kept) = (store.live_of(&t), store.kept_of(&t));
        let kind = live.kind()?.ok_or_else(|| {
            anyhow!(
                "cannot persist {}: no such file or directory",
                t.path.display()
            )
        })?;
        if self.listed.is_none() {
            self.listed = Some(store.list()?);
        }
        let listed = self.listed.as_deref().unwrap_or_default();
        let covered = store.covered(&t, listed)?;
        let added = !covered && !listed.contains(&t.path);
        let staged = !covered && !same_tree(live, kept, 0)?;
        if staged {
            store.make_store_parents(&t)?;
            let meta = live
                .meta()?
                .ok_or_else(|| anyhow!("{}: vanished while persisted", t.path.display()))?;
            stage(kept, |to| build(live, to, &meta, 0, Durable::Later))
                .with_context(|| format!("copying {} into the store", t.path.display()))?;
        }
        let outcome = match (added, staged) {
            (true, _) => Persisted::Added,
            (false, true) => Persisted::Updated,
            (false, false) => Persisted::Unchanged,
        };
        self.items.push(Item {
            t,
            kind,
            outcome,
            added,
            staged,
            covered,
        });
        Ok(outcome)
    }
}

impl Item {
    /// Files and directories are bind-mounted; symlinks are only stored.
    fn mounted(&self) -> bool {
        !self.covered && self.kind != Kind::Symlink
    }
}

impl Drop for Batch<'_> {
    /// Not committed (an error on the way): the staged copies go, the store stays as it was.
    fn drop(&mut self) {
        for item in self.items.iter().filter(|i| i.staged) {
            let kept = self.store.kept_of(&item.t);
            let staged = staging_path(kept.rel);
            let _ = remove_any(At {
                fs: kept.fs,
                rel: &staged,
            });
        }
    }
}
