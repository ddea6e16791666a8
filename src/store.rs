//! The persistent config store (`/config`), with oVirt Node's persist semantics
//! (docs/ovirt-protocol.md §2.10).
//!
//! The store is a directory — normally the ext4 filesystem labelled `CONFIG`, mounted on
//! `/config` — holding a copy of every persisted path at the same place below it, plus the list
//! `files` naming them, one absolute path per line. A persisted file or directory is
//! bind-mounted from the store over its live path, so what the system reads and writes there
//! is the stored copy; a symlink is stored as a symlink and re-created, not mounted.
//!
//! Nothing escapes the root or the store: the store is a root of its own (a CONFIG disk is
//! untrusted input), and every path is taken beneath the `--root` tree and beneath the store
//! as written, through `fsutil::Beneath`. A symlink among the parents of a persisted path, on
//! either side, is refused with an error naming it (persist the real path instead); so is a
//! `..`. Only the last name may be a symlink, which is then stored as one. Bind mounts are
//! made on the host paths just checked. A files list line
//! that is `/`, relative, holds `..` or a NUL byte is refused with a warning naming it, and
//! the other entries are still restored. Only `ovirt.reg.store=` itself, the operator's own
//! setting, is resolved through symlinks inside the root (`/dev/disk/by-label/…`).
//!
//! Crash safety: every copy (file, symlink or directory tree, with its owner and mode) is
//! built beside its target — files with `Beneath::write_atomic` — and swapped in with one
//! `rename` (`RENAME_EXCHANGE` for directories); the steps are ordered so that a path is
//! listed only while its stored copy is complete:
//! persist = copy, mount, list; unpersist = unmount, copy back, unlist, delete.
//! A crash leaves at worst an unlisted copy in the store, which restore ignores and the next
//! persist or unpersist of that path adopts.
//!
//! A host without a store (`mode`: `ovirt.reg.store=none`, or found so: no store and a
//! persistent root that is not an oVirt Node) writes files in place, through the same
//! atomic write, and mounts nothing; its state files live in `/var/lib/ovirt-node-reg`.

mod batch;
mod mode;

pub use batch::Batch;
pub use mode::{needs_store, root_fs_type, Mode, NO_STORE};

use anyhow::{anyhow, bail, ensure, Context, Result};
use log::{debug, info, warn};
use std::collections::VecDeque;
use std::ffi::{CStr, OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::fault;
use crate::fsutil::Beneath;
use crate::paths::{
    Root, CONFIG_LABEL, CONFIG_MOUNT, DEV, IN_PLACE_STATE_PARENT, MOUNTINFO, STORE_FILES_LIST,
    STORE_STATE_DIR, SYS_CLASS_BLOCK,
};

/// Symlinks followed while resolving one path before giving up (the kernel's ELOOP limit).
const MAX_LINKS: u32 = 40;
/// Deepest directory tree we copy or compare: deeper trees are refused, never overflow the stack.
const MAX_DEPTH: u32 = 64;
/// Stacked mounts we take off one path before giving up.
const MAX_LAYERS: u32 = 16;
/// Largest file we persist: the store is a few MB, and a file is read whole into memory.
const MAX_FILE: u64 = 64 << 20;
/// Largest files list and state file we read (a CONFIG disk may carry anything).
const MAX_STATE: u64 = 1 << 20;
/// Name suffix of the entry built beside a directory or symlink before it is swapped in.
const STAGING_SUFFIX: &str = ".ovirt-node-reg.new";

/// An opened (found and mounted) config store, or the in-place writer of a host without one.
#[derive(Debug)]
pub struct Store {
    root: Root,
    mode: Mode,
    /// Host path of the store directory (e.g. `<root>/config`; `<root>/var/lib` in place).
    dir: PathBuf,
    /// Every write goes beneath one of these two: the `--root` tree and the store.
    live: Beneath,
    kept: Beneath,
}

/// What [`Store::persist`] did to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persisted {
    /// The path was not listed; it is now stored, mounted and listed.
    Added,
    /// The path was listed; its stored copy was replaced with the live content.
    Updated,
    /// The stored copy already matched the live content (a missing mount is put back).
    Unchanged,
}

/// What can be persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
}

/// An entry beneath one of the two roots: the live tree or the store.
#[derive(Clone, Copy)]
struct At<'a> {
    fs: &'a Beneath,
    rel: &'a Path,
}

impl At<'_> {
    fn host(&self) -> PathBuf {
        self.fs.host(self.rel)
    }

    fn meta(&self) -> Result<Option<fs::Metadata>> {
        self.fs.metadata(self.rel)
    }

    /// The kind of entry here (a final symlink not followed); `None` when absent.
    fn kind(&self) -> Result<Option<Kind>> {
        match self.meta()? {
            Some(m) => Kind::of(&m).map(Some).ok_or_else(|| {
                anyhow!(
                    "{} is not a regular file, directory or symlink",
                    self.host().display()
                )
            }),
            None => Ok(None),
        }
    }
}

impl Kind {
    fn of(meta: &fs::Metadata) -> Option<Kind> {
        let t = meta.file_type();
        if t.is_symlink() {
            Some(Kind::Symlink)
        } else if t.is_dir() {
            Some(Kind::Dir)
        } else if t.is_file() {
            Some(Kind::File)
        } else {
            None
        }
    }
}

/// One persistable path, checked and resolved.
#[derive(Debug)]
struct Target {
    /// Absolute in-root path as written (`.` and repeated `/` dropped): what the files list
    /// names.
    path: PathBuf,
    /// The same path without the leading `/`: where the copy lives below the store.
    rel: PathBuf,
    /// Host path of the live entry.
    live: PathBuf,
    /// Host path of the stored copy.
    stored: PathBuf,
}

impl Store {
    /// Find the store (`ovirt.reg.store=` directory or block device, else the filesystem
    /// labelled `CONFIG`), mounting it at `/config` when needed. `none`, or no store found on
    /// a root that may go without one ([`needs_store`]), writes files in place.
    pub fn open(root: &Root, configured: Option<&str>) -> Result<Store> {
        let store = match configured.map(str::trim).filter(|s| !s.is_empty()) {
            Some(NO_STORE) => Store::in_place(root)
                .context("ovirt.reg.store=none: this root cannot go without its config store")?,
            Some(spec) => Store::config(
                root,
                open_configured(root, spec)
                    .with_context(|| format!("opening config store ovirt.reg.store={spec}"))?,
            ),
            None => match find_by_label(root)? {
                Some(dir) => Store::config(root, dir),
                None => Store::in_place(root).map_err(|why| no_store(root, why))?,
            },
        };
        // The usual case stays quiet; a host without a store says so on the console.
        match store.mode {
            Mode::Config => debug!("{}", store.describe()),
            Mode::InPlace => info!("{}", store.describe()),
        }
        Ok(store)
    }

    fn config(root: &Root, dir: PathBuf) -> Store {
        Store {
            root: root.clone(),
            mode: Mode::Config,
            live: root.fs(),
            kept: Beneath::new(&dir),
            dir,
        }
    }

    /// No store: refused where [`needs_store`] says why.
    fn in_place(root: &Root) -> Result<Store> {
        if let Some(why) = needs_store(root)? {
            bail!("{why}");
        }
        // /var/lib is on every installed host; a test root may lack it.
        root.fs()
            .create_dirs(Path::new(IN_PLACE_STATE_PARENT), 0o755)?;
        let dir = root.join(IN_PLACE_STATE_PARENT);
        Ok(Store {
            root: root.clone(),
            mode: Mode::InPlace,
            live: root.fs(),
            kept: Beneath::new(&dir),
            dir,
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// One line for the console: which mode this run chose, and where things go.
    pub fn describe(&self) -> String {
        match self.mode {
            Mode::Config => format!("config store at {}", self.dir.display()),
            Mode::InPlace => format!(
                "no config store (ovirt.reg.store=none): the root file system {} is persistent \
                 ({}); files are written in place, state in {}/{STORE_STATE_DIR}",
                self.root.dir().display(),
                root_fs_type(&self.root).unwrap_or_else(|e| format!("{e:#}")),
                IN_PLACE_STATE_PARENT
            ),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Persist an absolute in-root path: copy it into the store, bind-mount the copy over it
    /// (symlinks: stored only) and list it. Refusals change nothing. A batch of one: several
    /// paths persisted together go through [`Store::batch`].
    pub fn persist(&self, path: &Path) -> Result<Persisted> {
        let mut batch = self.batch();
        let outcome = batch.persist(path)?;
        batch.commit()?;
        Ok(outcome)
    }

    /// Write a file and persist it. Use this, not `write_atomic`, for a file that may be
    /// persisted already: nothing can be renamed over its bind mount. An existing file keeps
    /// its owner; when content and mode are already right nothing is written. A batch of one.
    pub fn write_persisted(&self, path: &Path, data: &[u8], mode: u32) -> Result<Persisted> {
        let mut batch = self.batch();
        let outcome = batch.write(path, data, mode)?;
        batch.commit()?;
        Ok(outcome)
    }

    /// Unpersist: take the bind mount off, copy the stored content back to the live path,
    /// unlist it and delete the stored copy.
    pub fn unpersist(&self, path: &Path) -> Result<()> {
        self.ensure_store("unpersist")?;
        let t = self.target(path)?;
        let all = self.list()?;
        if let Some(outer) = listed_ancestor(&t, &all) {
            bail!(
                "{} is inside the persisted directory {}; unpersist that instead",
                t.path.display(),
                outer.display()
            );
        }
        let listed = all.contains(&t.path);
        // An unlisted copy is what an interrupted persist or unpersist leaves: finish the job.
        ensure!(
            listed || self.kept_of(&t).kind()?.is_some(),
            "{} is not persisted (not listed in {})",
            t.path.display(),
            self.dir.join(STORE_FILES_LIST).display()
        );
        self.take_back(&t)?;
        if listed {
            self.update_list(&[t.path.as_path()], false)?;
            fault::point("store.unlisted");
        }
        remove_any(self.kept_of(&t))?;
        sync_parent(self.kept_of(&t))?;
        info!("unpersisted {}", t.path.display());
        Ok(())
    }

    /// oVirt's `unmount_config`: take a persisted path's bind mount off and put the stored
    /// content back into the live path, so that it can be replaced (nothing can be renamed
    /// over a mount point). It stays listed; persist it again once it is rewritten.
    pub fn unmount(&self, path: &Path) -> Result<()> {
        self.ensure_store("unmount")?;
        let t = self.target(path)?;
        ensure!(
            self.list()?.contains(&t.path),
            "{} is not persisted",
            t.path.display()
        );
        self.take_back(&t)
    }

    /// Before the initramfs hands over to the real root: take our bind mounts off the live
    /// paths (the copies stay live in the initramfs) and unmount the store if it is a mount of
    /// its own, so `switch_root` leaves no filesystem of ours behind and the real root's run
    /// mounts the store afresh.
    pub fn release(&self) -> Result<()> {
        if self.mode == Mode::InPlace {
            return Ok(());
        }
        for path in self.list()? {
            match self.target(&path).and_then(|t| self.unmount_ours(&t)) {
                Ok(_) => {}
                Err(e) => warn!("releasing {}: {e:#}", path.display()),
            }
        }
        if is_mount_point(&self.dir)? {
            rustix::fs::sync();
            rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::empty())
                .with_context(|| format!("unmounting the config store {}", self.dir.display()))?;
            info!("unmounted the config store {}", self.dir.display());
        }
        Ok(())
    }

    /// Restore at boot: put every listed path in place. A bad entry is skipped with a
    /// warning; the others still get restored. Returns the paths now in place.
    pub fn restore(&self) -> Result<Vec<PathBuf>> {
        if self.mode == Mode::InPlace {
            return Ok(Vec::new());
        }
        let mut done = Vec::new();
        for path in self.list()? {
            match self.restore_one(&path) {
                Ok(()) => done.push(path),
                Err(e) => warn!("not restoring {}: {e:#}", path.display()),
            }
        }
        info!("restored {} persisted paths", done.len());
        Ok(done)
    }

    /// The paths listed in the store, sorted and unique. Lines that are not plain absolute
    /// paths are refused with a warning naming them (and kept in the file).
    pub fn list(&self) -> Result<Vec<PathBuf>> {
        if self.mode == Mode::InPlace {
            return Ok(Vec::new());
        }
        let file = self.dir.join(STORE_FILES_LIST);
        let Some(bytes) = self.kept.read(Path::new(STORE_FILES_LIST), MAX_STATE)? else {
            return Ok(Vec::new());
        };
        let mut out: Vec<PathBuf> = list_lines(&bytes)
            .filter_map(|line| match parse_list_line(line) {
                Ok(p) => Some(p),
                Err(why) => {
                    warn!(
                        "{}: refusing the line {:?}: {why}",
                        file.display(),
                        String::from_utf8_lossy(line)
                    );
                    None
                }
            })
            .collect();
        sort_unique(&mut out);
        Ok(out)
    }

    /// Our own state files inside the store (not bind-mounted, not in the files list),
    /// e.g. `rel = "ovirt-node-reg/state.json"`.
    /// Like every write into the store, beneath it and through no symlink.
    pub fn write_state(&self, rel: &str, data: &[u8], mode: u32) -> Result<()> {
        self.kept.write_atomic(state_path(rel)?, data, mode)
    }

    /// [`Store::write_state`] without its fsyncs: replaced atomically, but a power cut may
    /// leave the previous copy. Only for a note whose loss costs nothing (the status copy
    /// while the flow runs; the checkpoint is what the next boot trusts). Each fsync is a
    /// journal commit and a disk flush, milliseconds each on a node's disk
    /// (docs/ARCHITECTURE.md, decisions).
    pub fn write_state_unsynced(&self, rel: &str, data: &[u8], mode: u32) -> Result<()> {
        self.kept.write_unsynced(state_path(rel)?, data, mode, None)
    }

    /// A state file (at most 1 MiB), `None` when absent; a symlink is refused, not followed.
    pub fn read_state(&self, rel: &str) -> Result<Option<String>> {
        self.kept.read_text(state_path(rel)?, MAX_STATE)
    }

    /// A directory for state files, created when missing, with exactly `mode`.
    pub fn make_state_dir(&self, rel: &str, mode: u32) -> Result<()> {
        let p = state_path(rel)?;
        self.kept.create_dirs(p, mode)?;
        self.kept.set_mode(p, mode)
    }

    /// Remove a state file or directory (gone already is fine), durably.
    pub fn remove_state(&self, rel: &str) -> Result<()> {
        let p = state_path(rel)?;
        self.kept.remove(p)?;
        sync_parent(At {
            fs: &self.kept,
            rel: p,
        })
    }

    /// In place, persisting is only checking that the path is there.
    fn keep_in_place(&self, path: &Path) -> Result<Persisted> {
        let rel = in_place_rel(path)?;
        ensure!(
            self.live.metadata(&rel)?.is_some(),
            "cannot persist {}: no such file or directory",
            path.display()
        );
        debug!("{}: kept in place (no config store)", path.display());
        Ok(Persisted::Unchanged)
    }

    /// In place: the same crash-safe write (owner kept), nothing mounted or listed.
    fn write_in_place(&self, path: &Path, data: &[u8], mode: u32) -> Result<Persisted> {
        let rel = in_place_rel(path)?;
        let live = At {
            fs: &self.live,
            rel: &rel,
        };
        let current = match live.meta()? {
            Some(m) if !m.is_file() => bail!("{}: not a regular file", path.display()),
            m => m,
        };
        let Some(meta) = current else {
            stage_and_swap(live, |staged| {
                put_file(staged, data, mode, None, Durable::Now)
            })?;
            return Ok(Persisted::Added);
        };
        let same = meta.mode() & 0o7777 == mode & 0o7777
            && self.live.read(&rel, MAX_FILE)?.as_deref() == Some(data);
        if same {
            return Ok(Persisted::Unchanged);
        }
        let owner = Some((meta.uid(), meta.gid()));
        stage_and_swap(live, |staged| {
            put_file(staged, data, mode, owner, Durable::Now)
        })?;
        Ok(Persisted::Updated)
    }

    fn ensure_store(&self, what: &str) -> Result<()> {
        ensure!(
            self.mode == Mode::Config,
            "cannot {what}: this host has no config store (files are written in place)"
        );
        Ok(())
    }

    fn live_of<'a>(&'a self, t: &'a Target) -> At<'a> {
        At {
            fs: &self.live,
            rel: &t.rel,
        }
    }

    fn kept_of<'a>(&'a self, t: &'a Target) -> At<'a> {
        At {
            fs: &self.kept,
            rel: &t.rel,
        }
    }

    /// Check and resolve a path given to persist / unpersist / restore.
    fn target(&self, path: &Path) -> Result<Target> {
        ensure!(
            path.is_absolute(),
            "{}: not an absolute path",
            path.display()
        );
        // The files list has one path per line.
        ensure!(
            !path.as_os_str().as_bytes().contains(&b'\n'),
            "{path:?}: a path with a newline cannot be listed"
        );
        let resolved = plain(path).ok_or_else(|| {
            anyhow!(
                "{}: `..` is not allowed; give the path without it",
                path.display()
            )
        })?;
        ensure!(
            !ends_in_white_space(&resolved),
            "{path:?}: a path ending in white space cannot be listed (lines are trimmed)"
        );
        // "/" and "/etc" style paths: oVirt refuses them, a bind mount there would hide the system.
        ensure!(
            resolved.components().count() > 2,
            "refusing to persist the top-level path {}",
            resolved.display()
        );
        let store = self.in_root_dir();
        ensure!(
            !resolved.starts_with(&store) && !store.starts_with(&resolved),
            "{} is the config store {} or overlaps it",
            resolved.display(),
            store.display()
        );
        let rel = resolved
            .strip_prefix("/")
            .context("resolved path is not absolute")?
            .to_path_buf();
        ensure!(
            !rel.starts_with(STORE_STATE_DIR),
            "{} would collide with our own state in the store",
            resolved.display()
        );
        // Taken as written on both sides: a symlink among the parents is refused here.
        self.live.metadata(&rel)?;
        self.kept.metadata(&rel)?;
        Ok(Target {
            live: self.live.host(&rel),
            stored: self.kept.host(&rel),
            rel,
            path: resolved,
        })
    }

    /// The store directory as an in-root path (e.g. `/config`).
    fn in_root_dir(&self) -> PathBuf {
        match self.dir.strip_prefix(self.root.dir()) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => PathBuf::from(CONFIG_MOUNT),
        }
    }

    /// Persisted paths do not nest, except that a path inside a persisted, mounted directory
    /// is already stored through it: true in that case.
    fn covered(&self, t: &Target, listed: &[PathBuf]) -> Result<bool> {
        if let Some(inner) = listed
            .iter()
            .find(|p| p.starts_with(&t.path) && **p != t.path)
        {
            bail!(
                "{} contains the persisted path {}; unpersist that first",
                t.path.display(),
                inner.display()
            );
        }
        let Some(outer) = listed_ancestor(t, listed) else {
            return Ok(false);
        };
        let o = self.target(outer)?;
        ensure!(
            same_inode(self.live_of(&o), self.kept_of(&o)),
            "{} is inside the persisted directory {}, which is not mounted (restore it first)",
            t.path.display(),
            outer.display()
        );
        info!(
            "{} is already stored through the persisted directory {}",
            t.path.display(),
            outer.display()
        );
        Ok(true)
    }

    /// Create the store directories above a stored copy with the owner and mode of the live
    /// directories they mirror, so that a private live directory stays private in the store.
    /// Not synced: the batch that stages the copy syncs them with it, before any rename.
    fn make_store_parents(&self, t: &Target) -> Result<()> {
        let mut rel = PathBuf::new();
        for part in t.rel.parent().into_iter().flat_map(Path::components) {
            rel.push(part);
            if self.kept.metadata(&rel)?.is_some() {
                continue;
            }
            self.kept.create_dir(&rel, 0o700)?;
            match self.live.metadata(&rel)? {
                Some(live) if live.is_dir() => {
                    self.kept.set_owner(&rel, live.uid(), live.gid())?;
                    self.kept.set_mode(&rel, live.mode())?;
                }
                _ => self.kept.set_mode(&rel, 0o755)?,
            }
        }
        Ok(())
    }

    /// Bind-mount the stored copy over the live path, unless that very copy is mounted there
    /// already. A stale mount (one pinning a copy that was since replaced) is taken off
    /// first, so mounts never stack and the live path always shows the current copy.
    fn mount_stored(&self, t: &Target) -> Result<()> {
        if same_inode(self.live_of(t), self.kept_of(t)) {
            return Ok(());
        }
        if self.unmount_ours(t)? {
            fault::point("store.unmounted");
        }
        rustix::mount::mount_bind(&t.stored, &t.live).with_context(|| {
            format!(
                "bind-mounting {} on {}",
                t.stored.display(),
                t.live.display()
            )
        })?;
        fault::point("store.mounted");
        Ok(())
    }

    /// Take off every bind mount from this store stacked on the live path; true if any.
    fn unmount_ours(&self, t: &Target) -> Result<bool> {
        let dev = dev_of(&self.dir)?;
        let staged = staging_path(&t.rel);
        for layer in 0..MAX_LAYERS {
            match top_mount_at(&t.live)? {
                // The mount's root is the stored copy's path in the store filesystem; after the
                // copy is replaced it is the old copy: deleted, or renamed to the staging name.
                Some(m)
                    if m.dev == dev && (m.root.ends_with(&t.rel) || m.root.ends_with(&staged)) =>
                {
                    rustix::mount::unmount(&t.live, rustix::mount::UnmountFlags::empty())
                        .with_context(|| format!("unmounting {}", t.live.display()))?;
                }
                _ => return Ok(layer > 0),
            }
        }
        bail!(
            "{}: more than {MAX_LAYERS} mounts stacked",
            t.live.display()
        )
    }

    /// oVirt's `unmount_config`: take our mounts off the live path, then make the live entry
    /// a copy of the stored one.
    fn take_back(&self, t: &Target) -> Result<()> {
        if self.unmount_ours(t)? {
            fault::point("store.unmounted");
        }
        let (live, kept) = (self.live_of(t), self.kept_of(t));
        let Some(kind) = kept.kind()? else {
            warn!(
                "stored copy of {} is missing; leaving the live one as it is",
                t.path.display()
            );
            return Ok(());
        };
        check_same_kind(t, live, kind)?;
        if same_tree(kept, live, 0)? {
            return Ok(());
        }
        make_parents(live)?;
        copy_entry(kept, live)
            .with_context(|| format!("copying the stored {} back", t.path.display()))?;
        fault::point("store.copied_back");
        Ok(())
    }

    fn restore_one(&self, path: &Path) -> Result<()> {
        let t = self.target(path)?;
        let (live, kept) = (self.live_of(&t), self.kept_of(&t));
        let kind = kept
            .kind()?
            .ok_or_else(|| anyhow!("its stored copy {} is missing", t.stored.display()))?;
        check_same_kind(&t, live, kind)?;
        match kind {
            Kind::Symlink => {
                if !same_tree(kept, live, 0)? {
                    make_parents(live)?;
                    copy_entry(kept, live)?;
                }
                Ok(())
            }
            Kind::File | Kind::Dir => {
                create_missing(live, kind)?;
                self.mount_stored(&t)
            }
        }
    }

    /// Rewrite the files list with `paths` added or removed, in one atomic write. Other
    /// lines, even ones we cannot parse, are kept as they are: oVirt's own tools may have
    /// written them.
    fn update_list(&self, paths: &[&Path], add: bool) -> Result<()> {
        let file = Path::new(STORE_FILES_LIST);
        let old = self.kept.read(file, MAX_STATE)?.unwrap_or_default();
        let mut lines: Vec<&[u8]> = list_lines(&old)
            .filter(|l| {
                parse_list_line(l)
                    .ok()
                    .is_none_or(|p| !paths.contains(&p.as_path()))
            })
            .collect();
        if add {
            lines.extend(paths.iter().map(|p| p.as_os_str().as_bytes()));
        }
        lines.sort_unstable();
        lines.dedup();
        let mut text = Vec::new();
        for line in lines {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        self.kept.write_atomic(file, &text, 0o644)
    }
}

/// A state file's path: relative, under our state directory, plain names only.
fn state_path(rel: &str) -> Result<&Path> {
    let p = Path::new(rel);
    let plain = p.components().all(|c| matches!(c, Component::Normal(_)));
    ensure!(
        plain && p.starts_with(STORE_STATE_DIR) && p != Path::new(STORE_STATE_DIR),
        "{rel:?}: our state files are relative paths under {STORE_STATE_DIR}/ in the store"
    );
    Ok(p)
}

/// `ovirt.reg.store=`: a block device is mounted on /config; anything else is a directory store.
fn open_configured(root: &Root, spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    ensure!(
        path.is_absolute(),
        "must be an absolute path (a directory or a block device)"
    );
    let host = root.join(path);
    // Follow symlinks: /dev/disk/by-label/... names are links to the device node.
    let meta = match fs::metadata(&host) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", host.display())),
    };
    match meta {
        Some(m) if m.file_type().is_block_device() => {
            mount_device(root, &host)?;
            Ok(root.join(CONFIG_MOUNT))
        }
        Some(m) if m.is_dir() => open_directory(root, path),
        Some(_) => bail!(
            "{} is neither a directory nor a block device",
            host.display()
        ),
        // Fail closed: a mistyped directory must not become a store that may not survive a
        // reboot, nor a device that has not appeared yet a directory.
        None => bail!("{} does not exist", host.display()),
    }
}

/// A directory store: nothing to mount.
fn open_directory(root: &Root, path: &Path) -> Result<PathBuf> {
    let resolved = resolve(root, path, true)?;
    ensure!(
        resolved != Path::new("/"),
        "the root directory cannot be the store"
    );
    Ok(root.join(&resolved))
}

/// No store configured: use whatever is mounted on /config (dracut may have mounted it),
/// else find the filesystem labelled CONFIG and mount it there; `None` when there is neither.
fn find_by_label(root: &Root) -> Result<Option<PathBuf>> {
    let point = root.join(CONFIG_MOUNT);
    // The store found by label is mounted on /config in the root, never through a link there.
    if let Some(m) = root.fs().metadata(Path::new(CONFIG_MOUNT))? {
        ensure!(
            !m.file_type().is_symlink(),
            "{}: is a symbolic link; refusing to use it as the config store",
            point.display()
        );
    }
    if is_mount_point(&point)? {
        info!(
            "{} is already mounted; using it as the config store",
            point.display()
        );
        return Ok(Some(point));
    }
    let Some(dev) = find_labelled(root, CONFIG_LABEL)? else {
        return Ok(None);
    };
    mount_device(root, &dev)?;
    Ok(Some(point))
}

/// No store found, and this root may not go without one: the error says both.
fn no_store(root: &Root, why: anyhow::Error) -> anyhow::Error {
    anyhow!(
        "no config store: nothing is mounted on {} and no ext2/3/4 filesystem labelled {CONFIG_LABEL} \
         was found among the block devices in {} (or set ovirt.reg.store=), and {why:#}",
        root.join(CONFIG_MOUNT).display(),
        root.join(SYS_CLASS_BLOCK).display()
    )
}

/// An absolute in-root path written in place: plain names only (`..` refused).
fn in_place_rel(path: &Path) -> Result<PathBuf> {
    ensure!(
        path.is_absolute(),
        "{}: not an absolute path",
        path.display()
    );
    let plain = plain(path).ok_or_else(|| {
        anyhow!(
            "{}: `..` is not allowed; give the path without it",
            path.display()
        )
    })?;
    let rel = plain.strip_prefix("/").unwrap_or(&plain).to_path_buf();
    ensure!(
        rel.components().next().is_some(),
        "refusing to write the root directory itself"
    );
    Ok(rel)
}

/// Mount the store device (ext4) on <root>/config unless something is mounted there already.
fn mount_device(root: &Root, dev: &Path) -> Result<()> {
    let point = root.join(CONFIG_MOUNT);
    if is_mount_point(&point)? {
        info!(
            "{} is already mounted; not mounting {} on it",
            point.display(),
            dev.display()
        );
        return Ok(());
    }
    root.fs().create_dirs(Path::new(CONFIG_MOUNT), 0o755)?;
    // The real node (/dev/vdb, not a /dev/disk/by-label link), as mount tools should show it.
    let dev = fs::canonicalize(dev).with_context(|| format!("resolving {}", dev.display()))?;
    rustix::mount::mount(
        &dev,
        &point,
        "ext4",
        rustix::mount::MountFlags::empty(),
        None::<&CStr>,
    )
    .with_context(|| format!("mounting {} on {} (ext4)", dev.display(), point.display()))?;
    info!(
        "mounted the config store {} on {}",
        dev.display(),
        point.display()
    );
    Ok(())
}

/// The first block device (in name order) holding an ext2/3/4 filesystem labelled `label`.
pub(crate) fn find_labelled(root: &Root, label: &str) -> Result<Option<PathBuf>> {
    let sys = root.join(SYS_CLASS_BLOCK);
    let mut names: Vec<OsString> = match fs::read_dir(&sys) {
        Ok(dir) => dir.filter_map(|e| e.ok()).map(|e| e.file_name()).collect(),
        Err(e) => {
            debug!("cannot list {}: {e}", sys.display());
            Vec::new()
        }
    };
    names.sort();
    let found: Vec<PathBuf> = names
        .iter()
        .filter(|n| worth_probing(&sys, n))
        .map(|n| dev_node(root, n))
        .filter(|d| has_label(d, label))
        .collect();
    if found.len() > 1 {
        warn!("several filesystems are labelled {label}: {found:?}; using the first");
    }
    Ok(found.into_iter().next())
}

/// Skip devices that cannot hold the store, before opening them: floppies (opening a
/// floppy drive without a disk can stall for seconds) and empty devices (unused loop
/// devices, CD drives without media), as sysfs reports a size of 0 for those.
fn worth_probing(sys: &Path, name: &OsStr) -> bool {
    if name.as_bytes().starts_with(b"fd") {
        return false;
    }
    match fs::read_to_string(sys.join(name).join("size")) {
        Ok(size) => size.trim() != "0",
        Err(_) => true,
    }
}

/// `/dev/<name>`; sysfs writes `/` in device names as `!` (e.g. `cciss!c0d0`).
fn dev_node(root: &Root, name: &OsStr) -> PathBuf {
    let name: Vec<u8> = name
        .as_bytes()
        .iter()
        .map(|&b| if b == b'!' { b'/' } else { b })
        .collect();
    root.join(DEV).join(OsStr::from_bytes(&name))
}

fn has_label(dev: &Path, label: &str) -> bool {
    let is_block = fs::metadata(dev)
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false);
    match is_block.then(|| read_ext_label(dev)) {
        Some(Ok(Some(found))) => found == label,
        Some(Err(e)) => {
            debug!("cannot read a superblock from {}: {e}", dev.display());
            false
        }
        _ => false,
    }
}

/// The volume name of an ext2/3/4 filesystem, or `None` when `dev` holds none. The
/// superblock starts at byte 1024: magic 0xEF53 at 0x38, a 16-byte NUL-padded name at 0x78.
fn read_ext_label(dev: &Path) -> io::Result<Option<String>> {
    let mut sb = [0u8; 0x88];
    File::open(dev)?.read_exact_at(&mut sb, 1024)?;
    if u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xEF53 {
        return Ok(None);
    }
    let name = &sb[0x78..0x88];
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(Some(String::from_utf8_lossy(&name[..len]).into_owned()))
}

/// Resolve an absolute in-root path as the running system would see it (only for
/// `ovirt.reg.store=`, the operator's own setting): symlinks in the
/// parents are followed, absolute link targets staying inside the root; the last component
/// is followed only with `follow_last`. A `..` climbing above the root is an error rather
/// than clamped: such a link was meant for another tree, and following it would escape.
fn resolve(root: &Root, path: &Path, follow_last: bool) -> Result<PathBuf> {
    let mut todo = parts(path);
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            ensure!(
                done.pop().is_some(),
                "{} escapes the root {}",
                path.display(),
                root.dir().display()
            );
            continue;
        }
        let host = root.join(joined(&done).join(&part));
        let follow = follow_last || !todo.is_empty();
        match fs::symlink_metadata(&host) {
            Ok(m) if follow && m.file_type().is_symlink() => {
                links += 1;
                ensure!(
                    links <= MAX_LINKS,
                    "{}: too many levels of symbolic links",
                    path.display()
                );
                let target = fs::read_link(&host)
                    .with_context(|| format!("reading link {}", host.display()))?;
                if target.is_absolute() {
                    done.clear();
                }
                let mut next = parts(&target);
                next.extend(todo.drain(..));
                todo = next;
            }
            _ => done.push(part),
        }
    }
    Ok(joined(&done))
}

/// The names and `..`s of a path, `.` and `/` dropped.
fn parts(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn joined(parts: &[OsString]) -> PathBuf {
    let mut out = PathBuf::from("/");
    out.extend(parts);
    out
}

/// The listed path that is a proper ancestor of the target, if any.
fn listed_ancestor<'a>(t: &Target, listed: &'a [PathBuf]) -> Option<&'a PathBuf> {
    listed
        .iter()
        .find(|p| t.path.starts_with(p) && **p != t.path)
}

pub(crate) fn list_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
}

/// A files list line as an absolute path (`.` and repeated `/` dropped). A CONFIG disk is
/// untrusted input: `/`, a relative path, `..` and NUL are refused, with the reason.
pub(crate) fn parse_list_line(line: &[u8]) -> Result<PathBuf, &'static str> {
    if line.contains(&0) {
        return Err("it holds a NUL byte");
    }
    let path = Path::new(OsStr::from_bytes(line));
    if !path.is_absolute() {
        return Err("not an absolute path");
    }
    let path = plain(path).ok_or("`..` is not allowed")?;
    if path == Path::new("/") {
        return Err("the root directory cannot be persisted");
    }
    if ends_in_white_space(&path) {
        return Err("it ends in white space (`/a /.`), which a line cannot keep");
    }
    Ok(path)
}

/// Lines of the files list are trimmed when read: such a path cannot be listed.
fn ends_in_white_space(path: &Path) -> bool {
    path.as_os_str()
        .as_bytes()
        .last()
        .is_some_and(u8::is_ascii_whitespace)
}

/// An absolute path with `.` and repeated `/` dropped; `None` when it holds `..`, which is
/// refused rather than resolved (below a root it would climb out or be clamped).
fn plain(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => return None,
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// Byte order, as `LC_ALL=C sort -u`; it also puts every directory before what is inside it.
fn sort_unique(paths: &mut Vec<PathBuf>) {
    paths.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    paths.dedup();
}

/// The live entry must be what the store holds: a bind mount needs a file on a file and a
/// directory on a directory, and we never delete a live directory to make room for a symlink.
fn check_same_kind(t: &Target, live: At, stored: Kind) -> Result<()> {
    match live.kind()? {
        Some(live) if live != stored => {
            bail!(
                "{} is a {live:?} but its stored copy is a {stored:?}",
                t.path.display()
            )
        }
        _ => Ok(()),
    }
}

/// oVirt's restore creates a missing target (parents, then an empty file or directory) so
/// that there is something to mount over. What it looks like hardly matters: the mount hides it.
fn create_missing(live: At, kind: Kind) -> Result<()> {
    if live.meta()?.is_some() {
        return Ok(());
    }
    make_parents(live)?;
    match kind {
        Kind::Dir => live.fs.create_dir(live.rel, 0o700),
        _ => live.fs.create_file(live.rel, 0o600),
    }
}

fn make_parents(at: At) -> Result<()> {
    match at.rel.parent() {
        Some(p) if !p.as_os_str().is_empty() => at.fs.create_dirs(p, 0o755),
        _ => Ok(()),
    }
}

/// When a copy becomes durable: as each file is written, or by one sync of the whole store
/// once a batch has staged all its copies ([`Batch::commit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durable {
    Now,
    Later,
}

/// Make `dst` a copy of `src` (file, symlink or directory tree, with owner and mode),
/// replacing what was there in one atomic step.
fn copy_entry(src: At, dst: At) -> Result<()> {
    let meta = src
        .meta()?
        .ok_or_else(|| anyhow!("{}: no such file or directory", src.host().display()))?;
    stage_and_swap(dst, |staged| build(src, staged, &meta, 0, Durable::Now))
}

/// Build the new entry beside `dst` with `make` ([`Durable::Now`]), complete with owner and
/// mode, then swap it in with one rename: `dst` is never seen half-written, nor with the
/// wrong owner.
fn stage_and_swap(dst: At, make: impl FnOnce(At) -> Result<()>) -> Result<()> {
    let staged = stage(dst, make)?;
    swap_in(
        At {
            fs: dst.fs,
            rel: &staged,
        },
        dst,
    )?;
    sync_parent(dst)
}

/// Build the new entry for `dst` with `make` at the staging path beside it, and return that
/// path. What an interrupted run left there goes first.
fn stage(dst: At, make: impl FnOnce(At) -> Result<()>) -> Result<PathBuf> {
    let staged_rel = staging_path(dst.rel);
    let staged = At {
        fs: dst.fs,
        rel: &staged_rel,
    };
    remove_any(staged)?;
    if let Err(e) = make(staged) {
        let _ = remove_any(staged);
        return Err(e);
    }
    fault::point("store.staged");
    Ok(staged_rel)
}

/// Create `dst`, which does not exist, as a copy of `src`.
fn build(src: At, dst: At, meta: &fs::Metadata, depth: u32, durable: Durable) -> Result<()> {
    ensure!(
        depth <= MAX_DEPTH,
        "{}: directory tree deeper than {MAX_DEPTH}",
        src.host().display()
    );
    match Kind::of(meta) {
        Some(Kind::File) => {
            let data = src
                .fs
                .read(src.rel, MAX_FILE)?
                .ok_or_else(|| anyhow!("{}: vanished while copied", src.host().display()))?;
            let owner = Some((meta.uid(), meta.gid()));
            put_file(dst, &data, meta.mode(), owner, durable)
        }
        Some(Kind::Symlink) => {
            dst.fs.symlink(&src.fs.read_link(src.rel)?, dst.rel)?;
            dst.fs.set_owner(dst.rel, meta.uid(), meta.gid())
        }
        Some(Kind::Dir) => {
            // Private while it is filled in; the real mode is set once it is complete.
            dst.fs.create_dir(dst.rel, 0o700)?;
            for name in entries(src)? {
                let (from, to) = (src.rel.join(&name), dst.rel.join(&name));
                let from = At {
                    fs: src.fs,
                    rel: &from,
                };
                let m = from
                    .meta()?
                    .ok_or_else(|| anyhow!("{}: vanished while copied", from.host().display()))?;
                build(
                    from,
                    At {
                        fs: dst.fs,
                        rel: &to,
                    },
                    &m,
                    depth + 1,
                    durable,
                )?;
            }
            dst.fs.set_owner(dst.rel, meta.uid(), meta.gid())?;
            dst.fs.set_mode(dst.rel, meta.mode())?;
            match durable {
                Durable::Now => dst.fs.sync_dir(dst.rel),
                Durable::Later => Ok(()),
            }
        }
        None => bail!(
            "{}: not a regular file, directory or symlink",
            src.host().display()
        ),
    }
}

/// Write a file with `mode` and `owner`, both set before it gets its name, so a secret is
/// never readable by others nor shown with the wrong owner.
fn put_file(
    dst: At,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
    durable: Durable,
) -> Result<()> {
    match (durable, owner) {
        (Durable::Later, owner) => dst.fs.write_unsynced(dst.rel, data, mode, owner),
        (Durable::Now, Some(owner)) => dst.fs.write_owned(dst.rel, data, mode, owner),
        (Durable::Now, None) => dst.fs.write_atomic(dst.rel, data, mode),
    }
}

/// Move the staged entry to `dst` atomically. rename(2) replaces a file or symlink, but not
/// a directory: then exchange the two and delete the old one, now at the staged path.
/// The caller syncs the rename.
fn swap_in(staged: At, dst: At) -> Result<()> {
    let dst_kind = dst.kind()?;
    if dst_kind.is_some() && (dst_kind == Some(Kind::Dir) || staged.kind()? == Some(Kind::Dir)) {
        dst.fs.exchange(staged.rel, dst.rel)?;
        fault::point("store.swapped");
        remove_any(staged)?;
    } else {
        dst.fs.rename(staged.rel, dst.rel)?;
    }
    Ok(())
}

/// `.name.ovirt-node-reg.new` beside `path`.
fn staging_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}{STAGING_SUFFIX}"))
}

/// True when `b` holds what persisting `a` would store: same kind, owner, mode and content,
/// recursively. A missing `b` is simply different.
fn same_tree(a: At, b: At, depth: u32) -> Result<bool> {
    ensure!(
        depth <= MAX_DEPTH,
        "{}: directory tree deeper than {MAX_DEPTH}",
        a.host().display()
    );
    let ma = a
        .meta()?
        .ok_or_else(|| anyhow!("{}: no such file or directory", a.host().display()))?;
    let Some(mb) = b.meta()? else {
        return Ok(false);
    };
    if ma.dev() == mb.dev() && ma.ino() == mb.ino() {
        return Ok(true); // b is mounted on a, or the other way round
    }
    let (Some(ka), Some(kb)) = (Kind::of(&ma), Kind::of(&mb)) else {
        return Ok(false);
    };
    let same_mode = ka == Kind::Symlink || ma.mode() & 0o7777 == mb.mode() & 0o7777;
    if ka != kb || !same_mode || ma.uid() != mb.uid() || ma.gid() != mb.gid() {
        return Ok(false);
    }
    match ka {
        Kind::File => Ok(ma.len() == mb.len()
            && ma.len() <= MAX_FILE
            && a.fs.read(a.rel, MAX_FILE)? == b.fs.read(b.rel, MAX_FILE)?),
        Kind::Symlink => Ok(a.fs.read_link(a.rel)? == b.fs.read_link(b.rel)?),
        Kind::Dir => {
            let names = entries(a)?;
            if names != entries(b)? {
                return Ok(false);
            }
            for name in &names {
                let (ca, cb) = (a.rel.join(name), b.rel.join(name));
                let (ca, cb) = (At { fs: a.fs, rel: &ca }, At { fs: b.fs, rel: &cb });
                if !same_tree(ca, cb, depth + 1)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
}

/// The sorted names in a directory that we copy: files, directories and symlinks.
/// Sockets, fifos and devices are skipped: they cannot be copied meaningfully.
fn entries(dir: At) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for name in dir.fs.list(dir.rel)? {
        let child = dir.rel.join(&name);
        let child = At {
            fs: dir.fs,
            rel: &child,
        };
        match child.meta()?.as_ref().and_then(Kind::of) {
            Some(_) => names.push(name),
            None => debug!("not copying special file {}", child.host().display()),
        }
    }
    Ok(names)
}

fn same_inode(a: At, b: At) -> bool {
    match (a.meta(), b.meta()) {
        (Ok(Some(ma)), Ok(Some(mb))) => ma.dev() == mb.dev() && ma.ino() == mb.ino(),
        _ => false,
    }
}

fn remove_any(at: At) -> Result<()> {
    at.fs.remove(at.rel)
}

/// fsync the directory holding `at`, when it exists.
fn sync_parent(at: At) -> Result<()> {
    let parent = at.rel.parent().unwrap_or(Path::new(""));
    let exists =
        parent.as_os_str().is_empty() || at.fs.metadata(parent)?.is_some_and(|m| m.is_dir());
    if exists {
        at.fs.sync_dir(parent)?;
    }
    Ok(())
}

/// The filesystem (major, minor) holding `path`, as /proc/self/mountinfo names it.
fn dev_of(path: &Path) -> Result<(u32, u32)> {
    let dev = fs::metadata(path)
        .with_context(|| format!("inspecting {}", path.display()))?
        .dev();
    Ok((rustix::fs::major(dev), rustix::fs::minor(dev)))
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, PartialEq)]
struct MountEntry {
    id: u32,
    parent: u32,
    dev: (u32, u32),
    /// The mounted directory or file inside its filesystem, `//deleted` suffix dropped.
    root: PathBuf,
    point: PathBuf,
}

/// The mounts of this process. Their mount points are host paths, so this is the real
/// /proc even when `--root` is elsewhere: the mounts we make are host mounts too.
fn mounts() -> Result<Vec<MountEntry>> {
    // /proc reports a size of 0, so `fs::read` would probe with reads of 32, 64, … bytes:
    // ten syscalls for a node's mount table, and a boot reads it some twenty times.
    let mut text = Vec::with_capacity(64 * 1024);
    File::open(MOUNTINFO)
        .and_then(|mut f| io::Read::read_to_end(&mut f, &mut text))
        .with_context(|| format!("reading {MOUNTINFO}"))?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(parse_mount_line)
        .collect())
}

fn parse_mount_line(line: &[u8]) -> Option<MountEntry> {
    let mut fields = line.split(|&b| b == b' ');
    let mut number = || {
        std::str::from_utf8(fields.next()?)
            .ok()?
            .parse::<u32>()
            .ok()
    };
    let (id, parent) = (number()?, number()?);
    let (major, minor) = std::str::from_utf8(fields.next()?).ok()?.split_once(':')?;
    let dev = (major.parse().ok()?, minor.parse().ok()?);
    let root = unescape(fields.next()?);
    let root = root.strip_suffix(b"//deleted").unwrap_or(&root).to_vec();
    let point = unescape(fields.next()?);
    Some(MountEntry {
        id,
        parent,
        dev,
        root: PathBuf::from(OsString::from_vec(root)),
        point: PathBuf::from(OsString::from_vec(point)),
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let code = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match code.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

fn is_mount_point(path: &Path) -> Result<bool> {
    let Ok(canon) = fs::canonicalize(path) else {
        return Ok(false);
    };
    Ok(mounts()?.iter().any(|m| m.point == canon))
}

/// The topmost mount on `path`. Mounts stacked on one point form a chain, each the parent of
/// the next, so the top one is the one that is nobody's parent.
fn top_mount_at(path: &Path) -> Result<Option<MountEntry>> {
    let Ok(canon) = fs::canonicalize(path) else {
        return Ok(None);
    };
    let mut here: Vec<MountEntry> = mounts()?.into_iter().filter(|m| m.point == canon).collect();
    let top = here
        .iter()
        .position(|m| !here.iter().any(|o| o.parent == m.id));
    Ok(top.map(|i| here.swap_remove(i)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    /// Set in the child that runs a mount test inside its own mount namespace.
    #[cfg(feature = "privileged")]
    const IN_NS: &str = "OVIRT_NODE_REG_STORE_TEST_IN_NS";

    /// Tests that mount run in a private mount namespace, so that nothing leaks into the
    /// machine: the test binary re-executes itself under `unshare` for just that test. Only
    /// root can, so they belong to the privileged tier (`cargo test --features privileged`).
    macro_rules! mount_test {
        ($name:ident, $body:block) => {
            #[cfg(feature = "privileged")]
            #[test]
            fn $name() {
                in_mount_ns(concat!("store::tests::", stringify!($name)), || $body)
            }
        };
    }

    #[cfg(feature = "privileged")]
    fn in_mount_ns(name: &str, body: impl FnOnce()) {
        if std::env::var_os(IN_NS).is_some() {
            return body();
        }
        assert!(
            rustix::process::geteuid().is_root(),
            "{name} mounts: it needs root (the privileged tier, `cargo test --features privileged`)"
        );
        let exe = std::env::current_exe().unwrap();
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private"])
            .arg(exe)
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(IN_NS, "1")
            .output()
            .expect("running `unshare` (util-linux) failed: it is needed for the mount tests, and they run as root");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // "1 passed" also proves the filter matched: a wrong name would run nothing and pass.
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{name} in a mount namespace:\n{stdout}\n{stderr}"
        );
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: Root,
        store: Store,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        fs::create_dir(root.join(CONFIG_MOUNT)).unwrap();
        let store = Store::open(&root, Some("/config")).unwrap();
        Fixture {
            _tmp: tmp,
            root,
            store,
        }
    }

    impl Fixture {
        fn live(&self, path: &str) -> PathBuf {
            self.root.join(path)
        }
        fn stored(&self, path: &str) -> PathBuf {
            self.store.dir().join(path.trim_start_matches('/'))
        }
        fn write(&self, path: &str, data: &str, mode: u32) -> PathBuf {
            let p = self.live(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, data).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            p
        }
        fn files(&self) -> String {
            fs::read_to_string(self.store.dir().join(STORE_FILES_LIST)).unwrap_or_default()
        }
    }

    #[cfg(feature = "privileged")]
    fn text(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    /// Host paths on the same inode: one is mounted on the other.
    #[cfg(feature = "privileged")]
    fn same_inode(a: &Path, b: &Path) -> bool {
        let (ma, mb) = (
            fs::symlink_metadata(a).unwrap(),
            fs::symlink_metadata(b).unwrap(),
        );
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    /// How many mounts sit on `path` (stacked mounts count separately).
    #[cfg(feature = "privileged")]
    fn mounts_on(path: &Path) -> usize {
        let canon = fs::canonicalize(path).unwrap();
        mounts()
            .unwrap()
            .iter()
            .filter(|m| m.point == canon)
            .count()
    }

    /// Every entry under `dir` with its kind, mode, owner and content: equal snapshots mean
    /// nothing was changed.
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(p) = todo.pop() {
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.is_dir() {
                todo.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if m.is_file() {
                format!("{:?}", fs::read(&p).unwrap())
            } else {
                format!("{:?}", m.file_type())
            };
            let key = p.strip_prefix(dir).unwrap().to_path_buf();
            out.insert(
                key,
                format!("{:o} {}:{} {what}", m.mode(), m.uid(), m.gid()),
            );
        }
        out
    }

    /// mkfs.ext4 lives in /usr/sbin, which a user's PATH often lacks.
    fn mkfs_ext4() -> Command {
        let sbin = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        Command::new(sbin.unwrap_or("mkfs.ext4"))
    }

    #[test]
    fn reads_the_ext_label_of_a_real_image() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("img");
        fs::write(&img, vec![0u8; 4 << 20]).unwrap();
        let st = mkfs_ext4()
            .args(["-q", "-F", "-L", CONFIG_LABEL])
            .arg(&img)
            .status()
            .expect("mkfs.ext4 (e2fsprogs) is needed for this test");
        assert!(st.success());
        assert_eq!(read_ext_label(&img).unwrap().as_deref(), Some(CONFIG_LABEL));
        let zeros = d.path().join("zeros");
        fs::write(&zeros, vec![0u8; 4096]).unwrap();
        assert_eq!(read_ext_label(&zeros).unwrap(), None);
        fs::write(&zeros, b"short").unwrap();
        assert!(read_ext_label(&zeros).is_err());
    }

    #[test]
    fn label_scan_skips_non_devices_and_names_what_it_looked_for() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        // A regular file with the label is not a block device: never mounted.
        fs::create_dir_all(root.join("/sys/class/block/vdz")).unwrap();
        fs::create_dir_all(root.join("/dev")).unwrap();
        let st = mkfs_ext4()
            .args(["-q", "-F", "-L", CONFIG_LABEL])
            .arg(root.join("/dev/vdz"))
            .arg("4M")
            .status()
            .expect("mkfs.ext4 (e2fsprogs) is needed for this test");
        assert!(st.success());
        assert_eq!(find_labelled(&root, CONFIG_LABEL).unwrap(), None);
        // A node (a persistent test root would otherwise go without a store).
        fs::create_dir_all(root.join("/etc")).unwrap();
        fs::write(root.join("/etc/os-release"), "ID=ovirt-node\n").unwrap();
        let err = format!("{:#}", Store::open(&root, None).unwrap_err());
        assert!(
            err.contains("labelled CONFIG")
                && err.contains("sys/class/block")
                && err.contains("oVirt Node"),
            "{err}"
        );
        assert!(
            !root.join(CONFIG_MOUNT).exists(),
            "nothing created on failure"
        );
    }

    #[test]
    fn parses_mountinfo_lines() {
        let line = b"63 43 254:0 /tmp/r/config/etc/a\\040b//deleted /tmp/r/etc/a\\040b rw - ext4 /dev/vda rw";
        let m = parse_mount_line(line).unwrap();
        assert_eq!(
            m,
            MountEntry {
                id: 63,
                parent: 43,
                dev: (254, 0),
                root: PathBuf::from("/tmp/r/config/etc/a b"),
                point: PathBuf::from("/tmp/r/etc/a b"),
            }
        );
        assert!(parse_mount_line(b"").is_none());
        assert!(parse_mount_line(b"x y 1:2 / /").is_none());
        assert!(parse_mount_line(b"1 2 nodev / /").is_none());
        assert_eq!(unescape(b"a\\134b\\9\\"), b"a\\b\\9\\".to_vec());
    }

    #[test]
    fn files_list_skips_garbage_and_keeps_it_when_rewritten() {
        let f = fixture();
        let list = f.store.dir().join(STORE_FILES_LIST);
        fs::write(
            &list,
            b"/etc/b\nrelative/x\n\n  /etc//a/.  \n\xff\x00bad\n/etc/b\n/\n/etc/../shadow\n",
        )
        .unwrap();
        assert_eq!(
            f.store.list().unwrap(),
            vec![PathBuf::from("/etc/a"), PathBuf::from("/etc/b")]
        );
        for (line, why) in [
            (&b"relative/x"[..], "not an absolute path"),
            (b"/", "the root directory"),
            (b"/etc/../shadow", "`..` is not allowed"),
            (b"/etc/\x00bad", "NUL"),
        ] {
            assert!(parse_list_line(line).unwrap_err().contains(why), "{line:?}");
        }
        f.store.update_list(&[Path::new("/etc/a")], false).unwrap();
        f.store.update_list(&[Path::new("/etc/c")], true).unwrap();
        assert_eq!(
            fs::read(&list).unwrap(),
            b"/\n/etc/../shadow\n/etc/b\n/etc/c\nrelative/x\n\xff\x00bad\n".to_vec()
        );
        // Several at once, in one write: each once, in byte order.
        let (d, e) = (Path::new("/etc/d"), Path::new("/etc/e"));
        f.store
            .update_list(&[e, d, Path::new("/etc/c")], true)
            .unwrap();
        f.store
            .update_list(&[Path::new("/etc/b"), d], false)
            .unwrap();
        assert_eq!(
            fs::read(&list).unwrap(),
            b"/\n/etc/../shadow\n/etc/c\n/etc/e\nrelative/x\n\xff\x00bad\n".to_vec()
        );
    }

    mount_test!(symlinked_parents_are_refused_on_either_side, {
        let f = fixture();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), "keep").unwrap();
        f.write("/usr/etc/pki/x", "x", 0o644);
        std::os::unix::fs::symlink("usr/etc", f.live("/etc")).unwrap();
        f.write("/var/y", "y", 0o644);
        f.write("/srv/good", "good", 0o644);
        std::os::unix::fs::symlink(outside.path(), f.stored("/var")).unwrap();
        let before = (snapshot(f.root.dir()), snapshot(outside.path()));
        let err = format!(
            "{:#}",
            f.store.persist(Path::new("/etc/pki/x")).unwrap_err()
        );
        let named = format!("{}: is a symbolic link", f.live("/etc").display());
        assert!(err.contains(&named), "{err}");
        let err = format!("{:#}", f.store.persist(Path::new("/var/y")).unwrap_err());
        let named = format!("{}: is a symbolic link", f.stored("/var").display());
        assert!(err.contains(&named), "{err}");
        assert_eq!(
            (snapshot(f.root.dir()), snapshot(outside.path())),
            before,
            "a refusal changed something"
        );
        // The real path persists; a listed path under the planted link is skipped at restore.
        f.store.persist(Path::new("/usr/etc/pki/x")).unwrap();
        f.store.persist(Path::new("/srv/good")).unwrap();
        f.store.update_list(&[Path::new("/var/y")], true).unwrap();
        assert_eq!(
            f.store.restore().unwrap(),
            vec![PathBuf::from("/srv/good"), PathBuf::from("/usr/etc/pki/x")]
        );
        assert_eq!(
            snapshot(outside.path()),
            before.1,
            "nothing written outside"
        );
    });

    /// `ovirt.reg.store=` (the operator's setting) is the one path resolved through links.
    #[test]
    fn files_list_paths_read_back_as_themselves() {
        // Found by the fuzz target `files_list`: `/etc/x /.` named `/etc/x `, which written
        // back as a line (trimmed when read) is `/etc/x`, another path.
        assert!(parse_list_line(b"/etc/x /.").is_err());
        assert!(parse_list_line(b"/etc/x\x0c/").is_err());
        assert_eq!(
            parse_list_line(b"/etc/a b/./c"),
            Ok(PathBuf::from("/etc/a b/c"))
        );
        crate::fuzzing::files_list(b"/etc/x /.\n/etc/x\x0c/\n/etc/ok\n");
    }

    #[test]
    fn resolves_parent_links_inside_the_root() {
        let f = fixture();
        fs::create_dir_all(f.live("/usr/etc/pki")).unwrap();
        std::os::unix::fs::symlink("/usr/etc", f.live("/etc")).unwrap();
        std::os::unix::fs::symlink("../../../..", f.live("/usr/etc/up")).unwrap();
        std::os::unix::fs::symlink("loop", f.live("/usr/loop")).unwrap();
        let r = |p: &str| resolve(&f.root, Path::new(p), false);
        assert_eq!(r("/etc/pki/x").unwrap(), PathBuf::from("/usr/etc/pki/x"));
        assert_eq!(r("/etc/pki/../y").unwrap(), PathBuf::from("/usr/etc/y"));
        assert_eq!(
            r("/etc").unwrap(),
            PathBuf::from("/etc"),
            "the last link is kept"
        );
        assert!(format!("{:#}", r("/etc/up/x").unwrap_err()).contains("escapes the root"));
        assert!(format!("{:#}", r("/../x").unwrap_err()).contains("escapes the root"));
        assert!(format!("{:#}", r("/usr/loop/x").unwrap_err()).contains("too many levels"));
    }

    #[test]
    fn state_files_stay_in_the_state_dir() {
        let f = fixture();
        f.store
            .write_state("ovirt-node-reg/state.json", b"{}", 0o600)
            .unwrap();
        assert_eq!(
            f.store
                .read_state("ovirt-node-reg/state.json")
                .unwrap()
                .as_deref(),
            Some("{}")
        );
        assert_eq!(mode(&f.stored("/ovirt-node-reg/state.json")), 0o600);
        assert_eq!(
            f.store.read_state("ovirt-node-reg/none.json").unwrap(),
            None
        );
        for bad in [
            "files",
            "/ovirt-node-reg/x",
            "ovirt-node-reg/../files",
            "etc/passwd",
            "ovirt-node-reg",
            "",
        ] {
            assert!(
                f.store.write_state(bad, b"x", 0o600).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(f.files().is_empty(), "state files are not listed");
    }

    #[test]
    fn state_files_never_go_through_a_link_nor_grow_unbounded() {
        let f = fixture();
        f.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644);
        std::os::unix::fs::symlink("../etc", f.stored("/ovirt-node-reg")).unwrap();
        let before = snapshot(&f.live("/etc"));
        let named = format!(
            "{}: is a symbolic link",
            f.stored("/ovirt-node-reg").display()
        );
        for e in [
            f.store
                .write_state("ovirt-node-reg/state.json", b"{}", 0o600)
                .unwrap_err(),
            f.store.read_state("ovirt-node-reg/passwd").unwrap_err(),
            f.store
                .make_state_dir("ovirt-node-reg/pending", 0o700)
                .unwrap_err(),
            f.store.remove_state("ovirt-node-reg/passwd").unwrap_err(),
        ] {
            assert!(format!("{e:#}").contains(&named), "{e:#}");
        }
        assert_eq!(
            snapshot(&f.live("/etc")),
            before,
            "nothing changed at the target"
        );
        fs::remove_file(f.stored("/ovirt-node-reg")).unwrap();
        // A pending directory: made private, and its files removed with it.
        f.store
            .make_state_dir("ovirt-node-reg/pending", 0o700)
            .unwrap();
        f.store
            .write_state("ovirt-node-reg/pending/k", b"k", 0o600)
            .unwrap();
        assert_eq!(mode(&f.stored("/ovirt-node-reg/pending")), 0o700);
        f.store.remove_state("ovirt-node-reg/pending").unwrap();
        assert!(!f.stored("/ovirt-node-reg/pending").exists());
        // A state file from a hostile disk: bounded, and refused when bigger.
        fs::write(f.stored("/ovirt-node-reg/state.json"), vec![b' '; 2 << 20]).unwrap();
        let e = f.store.read_state("ovirt-node-reg/state.json").unwrap_err();
        assert!(format!("{e:#}").contains("larger than"), "{e:#}");
    }

    #[test]
    fn configured_store_must_be_a_directory_or_device() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        fs::create_dir_all(root.join("/var/lib/store")).unwrap();
        std::os::unix::fs::symlink("lib/store", root.join("/var/store")).unwrap();
        let s = Store::open(&root, Some(" /var/store ")).unwrap();
        assert_eq!(
            s.dir(),
            root.join("/var/lib/store"),
            "links resolved inside the root"
        );
        fs::write(root.join("/plain"), "x").unwrap();
        for (bad, why) in [
            ("relative", "absolute"),
            ("/plain", "neither a directory nor a block device"),
            ("/dev/vdq", "does not exist"),
            ("/srv/typo", "does not exist"),
            ("/", "root directory"),
        ] {
            let err = format!("{:#}", Store::open(&root, Some(bad)).unwrap_err());
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(
            !root.join("/dev").exists() && !root.join("/srv").exists(),
            "nothing created"
        );
    }

    mount_test!(refusals_change_nothing, {
        let f = fixture();
        f.write("/etc/ok.conf", "ok", 0o644);
        f.store.persist(Path::new("/etc/ok.conf")).unwrap();
        fs::create_dir_all(f.live("/var/lib/a")).unwrap();
        std::os::unix::fs::symlink("../../../../..", f.live("/var/lib/a/up")).unwrap();
        std::os::unix::fs::symlink("/config", f.live("/var/cfg")).unwrap();
        std::os::unix::net::UnixListener::bind(f.live("/var/lib/a/sock")).unwrap();
        f.write("/ovirt-node-reg/state.json", "x", 0o644);
        let before = (snapshot(f.root.dir()), mounts().unwrap().len());
        for (path, why) in [
            ("etc/ok.conf", "not an absolute path"),
            ("/", "top-level"),
            ("/etc", "top-level"),
            ("/etc/x/..", "`..` is not allowed"),
            ("/etc/missing.conf", "no such file"),
            // Symlinked parents are refused, never followed: in the root or out of it.
            (
                "/var/lib/a/up/etc/passwd",
                "var/lib/a/up: is a symbolic link",
            ),
            ("/config/files", "config store"),
            ("/var/cfg/etc/ok.conf", "var/cfg: is a symbolic link"),
            (
                "/var/lib/a/sock",
                "not a regular file, directory or symlink",
            ),
            ("/etc/a\nb", "newline"),
            ("/etc/trailing ", "white space"),
            ("/ovirt-node-reg/state.json", "own state"),
        ] {
            let err = format!("{:#}", f.store.persist(Path::new(path)).unwrap_err());
            assert!(err.contains(why), "{path:?}: {err}");
        }
        let err = format!(
            "{:#}",
            f.store.unpersist(Path::new("/etc/never.conf")).unwrap_err()
        );
        assert!(err.contains("not persisted"), "{err}");
        assert!(f.store.unpersist(Path::new("/")).is_err());
        assert_eq!(
            (snapshot(f.root.dir()), mounts().unwrap().len()),
            before,
            "a refusal changed something"
        );
    });

    mount_test!(persist_keeps_mode_and_owner_and_twice_is_a_no_op, {
        let f = fixture();
        let live = f.write("/etc/pki/vdsm/keys/vdsmkey.pem", "secret", 0o600);
        fs::set_permissions(live.parent().unwrap(), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&live, Some(36), Some(36)).unwrap();
        let p = Path::new("/etc/pki/vdsm/keys/vdsmkey.pem");
        assert_eq!(f.store.persist(p).unwrap(), Persisted::Added);
        let stored = f.stored("/etc/pki/vdsm/keys/vdsmkey.pem");
        assert_eq!(text(&stored), "secret");
        assert_eq!(mode(&stored), 0o600);
        assert_eq!(fs::metadata(&stored).unwrap().uid(), 36);
        assert_eq!(
            mode(stored.parent().unwrap()),
            0o700,
            "a private directory stays private in the store"
        );
        assert!(
            same_inode(&live, &stored),
            "the stored copy is mounted over the live file"
        );
        assert_eq!(f.files(), "/etc/pki/vdsm/keys/vdsmkey.pem\n");
        let before = snapshot(f.store.dir());
        assert_eq!(f.store.persist(p).unwrap(), Persisted::Unchanged);
        assert_eq!(snapshot(f.store.dir()), before);
        assert_eq!(mounts_on(&live), 1);
        // Written through the mount: the change is in the store already.
        fs::write(&live, "edited").unwrap();
        assert_eq!(f.store.persist(p).unwrap(), Persisted::Unchanged);
        assert_eq!(text(&stored), "edited");
    });

    mount_test!(write_persisted_replaces_a_mounted_file, {
        let f = fixture();
        let live = f.write("/etc/default/ovirt", "A=1\n", 0o644);
        std::os::unix::fs::chown(&live, Some(36), Some(36)).unwrap();
        let p = Path::new("/etc/default/ovirt");
        assert_eq!(f.store.persist(p).unwrap(), Persisted::Added);
        assert!(
            fs::rename(f.write("/etc/default/tmp", "x", 0o644), &live).is_err(),
            "a mount point cannot be renamed over"
        );
        assert_eq!(
            f.store.write_persisted(p, b"A=2\n", 0o640).unwrap(),
            Persisted::Updated
        );
        let stored = f.stored("/etc/default/ovirt");
        assert_eq!(
            (text(&live), text(&stored)),
            ("A=2\n".into(), "A=2\n".into())
        );
        assert_eq!(
            (mode(&stored), fs::metadata(&stored).unwrap().uid()),
            (0o640, 36)
        );
        assert!(same_inode(&live, &stored));
        assert_eq!(mounts_on(&live), 1, "mounts do not stack");
        let before = snapshot(f.store.dir());
        assert_eq!(
            f.store.write_persisted(p, b"A=2\n", 0o640).unwrap(),
            Persisted::Unchanged
        );
        assert_eq!(snapshot(f.store.dir()), before);
        // A new file is written and persisted in one go.
        let q = Path::new("/etc/vdsm/vdsm.conf");
        assert_eq!(
            f.store.write_persisted(q, b"[vars]\n", 0o644).unwrap(),
            Persisted::Added
        );
        assert!(same_inode(
            &f.live("/etc/vdsm/vdsm.conf"),
            &f.stored("/etc/vdsm/vdsm.conf")
        ));
    });

    mount_test!(a_batch_persists_together_or_not_at_all, {
        let f = fixture();
        let (a, c) = (Path::new("/etc/a.conf"), Path::new("/etc/b/c.conf"));
        f.write("/etc/a.conf", "a", 0o644);
        f.store.persist(a).unwrap();
        f.write("/etc/b/c.conf", "c", 0o600);
        {
            let mut batch = f.store.batch();
            assert_eq!(batch.write(a, b"A2", 0o644).unwrap(), Persisted::Updated);
            assert_eq!(batch.persist(c).unwrap(), Persisted::Added);
            for again in ["/etc/a.conf", "/etc/b"] {
                let e = batch.persist(Path::new(again)).unwrap_err();
                assert!(
                    format!("{e:#}").contains("already in this store transaction"),
                    "{e:#}"
                );
            }
            // Dropped, not committed: the store keeps the old copy, stages nothing.
        }
        assert_eq!(f.files(), "/etc/a.conf\n");
        assert_eq!(text(&f.stored("/etc/a.conf")), "a");
        assert!(!f.stored("/etc/b/c.conf").exists());
        assert!(!f.stored("/etc/.a.conf.ovirt-node-reg.new").exists());
        assert!(!f.stored("/etc/b/.c.conf.ovirt-node-reg.new").exists());
        assert_eq!(
            text(&f.live("/etc/a.conf")),
            "A2",
            "written live, not mounted over"
        );
        let mut batch = f.store.batch();
        assert_eq!(batch.write(a, b"A3", 0o644).unwrap(), Persisted::Updated);
        assert_eq!(batch.persist(c).unwrap(), Persisted::Added);
        batch.commit().unwrap();
        assert_eq!(f.files(), "/etc/a.conf\n/etc/b/c.conf\n");
        for p in ["/etc/a.conf", "/etc/b/c.conf"] {
            assert!(same_inode(&f.live(p), &f.stored(p)), "{p} mounted");
            assert_eq!(mounts_on(&f.live(p)), 1, "{p}");
        }
        assert_eq!(text(&f.stored("/etc/a.conf")), "A3");
        assert_eq!(mode(&f.stored("/etc/b/c.conf")), 0o600);
        // Nothing new: nothing written.
        let before = snapshot(f.store.dir());
        let mut batch = f.store.batch();
        assert_eq!(batch.write(a, b"A3", 0o644).unwrap(), Persisted::Unchanged);
        assert_eq!(batch.persist(c).unwrap(), Persisted::Unchanged);
        batch.commit().unwrap();
        assert_eq!(snapshot(f.store.dir()), before);
    });

    mount_test!(update_after_unmount_and_stale_mounts_are_replaced, {
        let f = fixture();
        let live = f.write("/etc/vdsm/vdsm.conf", "one", 0o644);
        let p = Path::new("/etc/vdsm/vdsm.conf");
        let stored = f.stored("/etc/vdsm/vdsm.conf");
        f.store.persist(p).unwrap();
        // oVirt's edit cycle: unmount (stored content put back), rewrite, persist again.
        f.store.unmount(p).unwrap();
        assert_eq!(mounts_on(&live), 0);
        assert_eq!(text(&live), "one");
        f.root.fs().write_atomic(p, b"two", 0o644).unwrap();
        assert_eq!(f.store.persist(p).unwrap(), Persisted::Updated);
        assert_eq!((text(&live), text(&stored)), ("two".into(), "two".into()));
        assert_eq!(mounts_on(&live), 1);
        // The stored copy replaced behind the mount's back: the mount pins the old file.
        Beneath::new(f.store.dir())
            .write_atomic(p, b"three", 0o644)
            .unwrap();
        assert_eq!(text(&live), "two");
        assert_eq!(f.store.restore().unwrap(), vec![p.to_path_buf()]);
        assert_eq!(text(&live), "three", "restore replaced the stale mount");
        assert_eq!(mounts_on(&live), 1, "and did not stack a second one");
    });

    mount_test!(unpersist_puts_the_content_back_and_forgets_it, {
        let f = fixture();
        let live = f.write("/etc/ssh/sshd_config", "Port 22\n", 0o600);
        f.write("/etc/keep.conf", "keep", 0o644);
        let p = Path::new("/etc/ssh/sshd_config");
        f.store.persist(p).unwrap();
        f.store.persist(Path::new("/etc/keep.conf")).unwrap();
        fs::write(&live, "Port 2222\n").unwrap(); // through the mount: into the store
        f.store.unpersist(p).unwrap();
        assert_eq!(mounts_on(&live), 0);
        assert_eq!(text(&live), "Port 2222\n");
        assert_eq!(mode(&live), 0o600);
        assert!(!f.stored("/etc/ssh/sshd_config").exists());
        assert_eq!(f.files(), "/etc/keep.conf\n");
        assert!(format!("{:#}", f.store.unpersist(p).unwrap_err()).contains("not persisted"));
    });

    mount_test!(directories_and_symlinks_persist_and_restore, {
        let f = fixture();
        f.write("/etc/iscsi/a", "A", 0o600);
        f.write("/etc/iscsi/nodes/b", "B", 0o644);
        std::os::unix::fs::symlink("a", f.live("/etc/iscsi/link")).unwrap();
        std::os::unix::fs::symlink("/etc/iscsi/a", f.live("/etc/alias")).unwrap();
        let (dir, link) = (Path::new("/etc/iscsi"), Path::new("/etc/alias"));
        assert_eq!(f.store.persist(dir).unwrap(), Persisted::Added);
        assert_eq!(f.store.persist(link).unwrap(), Persisted::Added);
        assert!(same_inode(&f.live("/etc/iscsi"), &f.stored("/etc/iscsi")));
        assert_eq!(
            fs::read_link(f.stored("/etc/alias")).unwrap(),
            PathBuf::from("/etc/iscsi/a")
        );
        assert_eq!(
            fs::read_link(f.stored("/etc/iscsi/link")).unwrap(),
            PathBuf::from("a")
        );
        assert_eq!(mode(&f.stored("/etc/iscsi/a")), 0o600);
        // Inside a persisted directory: already stored. Around a persisted path: refused.
        assert_eq!(
            f.store.persist(Path::new("/etc/iscsi/a")).unwrap(),
            Persisted::Unchanged
        );
        f.write("/var/x/y", "y", 0o644);
        f.store.persist(Path::new("/var/x/y")).unwrap();
        assert!(
            format!("{:#}", f.store.persist(Path::new("/var/x")).unwrap_err())
                .contains("contains the persisted")
        );
        assert!(f.store.unpersist(Path::new("/etc/iscsi/a")).is_err());
        // A reboot: no mounts, the live tree gone.
        rustix::mount::unmount(f.live("/etc/iscsi"), rustix::mount::UnmountFlags::empty()).unwrap();
        rustix::mount::unmount(f.live("/var/x/y"), rustix::mount::UnmountFlags::empty()).unwrap();
        fs::remove_dir_all(f.live("/etc")).unwrap();
        let restored = f.store.restore().unwrap();
        assert_eq!(
            restored,
            vec![
                PathBuf::from("/etc/alias"),
                dir.to_path_buf(),
                PathBuf::from("/var/x/y")
            ]
        );
        assert_eq!(text(&f.live("/etc/iscsi/nodes/b")), "B");
        assert_eq!(
            fs::read_link(f.live("/etc/alias")).unwrap(),
            PathBuf::from("/etc/iscsi/a"),
            "re-created"
        );
        assert_eq!(f.store.restore().unwrap(), restored);
        assert_eq!(
            mounts_on(&f.live("/etc/iscsi")),
            1,
            "restoring twice does not stack mounts"
        );
        // Update a directory: unmount, change, persist (swapped in whole).
        f.store.unmount(dir).unwrap();
        f.write("/etc/iscsi/c", "C", 0o644);
        fs::remove_file(f.live("/etc/iscsi/a")).unwrap();
        assert_eq!(f.store.persist(dir).unwrap(), Persisted::Updated);
        assert!(f.stored("/etc/iscsi/c").exists() && !f.stored("/etc/iscsi/a").exists());
        assert!(same_inode(&f.live("/etc/iscsi"), &f.stored("/etc/iscsi")));
        assert!(
            !f.stored("/etc/.iscsi.ovirt-node-reg.new").exists(),
            "no staging left behind"
        );
        f.store.unpersist(dir).unwrap();
        f.store.unpersist(link).unwrap();
        assert_eq!(mounts_on(&f.live("/etc/iscsi")), 0);
        assert_eq!(text(&f.live("/etc/iscsi/nodes/b")), "B");
        assert!(!f.stored("/etc/iscsi").exists() && !f.stored("/etc/alias").exists());
        assert_eq!(f.files(), "/var/x/y\n");
    });

    mount_test!(restore_skips_bad_entries_and_creates_missing_targets, {
        let f = fixture();
        f.write("/etc/good", "good", 0o644);
        f.store.persist(Path::new("/etc/good")).unwrap();
        rustix::mount::unmount(f.live("/etc/good"), rustix::mount::UnmountFlags::empty()).unwrap();
        fs::remove_dir_all(f.live("/etc")).unwrap();
        fs::write(f.stored("/etc/dir-on-live"), "file").unwrap();
        fs::create_dir_all(f.live("/var/dir-on-live")).unwrap();
        fs::create_dir_all(f.stored("/var")).unwrap();
        fs::write(f.stored("/var/dir-on-live"), "file").unwrap();
        let garbage = "/etc/good\n/etc/missing\nnot/absolute\n/\n/etc\n/config/files\n/var/dir-on-live\n/../../x/y\n";
        fs::write(f.store.dir().join(STORE_FILES_LIST), garbage).unwrap();
        assert_eq!(f.store.restore().unwrap(), vec![PathBuf::from("/etc/good")]);
        assert_eq!(text(&f.live("/etc/good")), "good");
        assert!(
            f.live("/var/dir-on-live").is_dir(),
            "a live directory is left alone"
        );
        assert!(!f.live("/etc/missing").exists() && !f.root.join("/x").exists());
    });
}
