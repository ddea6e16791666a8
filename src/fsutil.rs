//! The one crash-safe way to write a file, and the one way to write beneath a root.
//!
//! Crash safety: a reader (or the next boot after a power cut) sees either the old content or
//! the new content, never a torn file: write a temporary file in the same directory, fsync
//! it, set its owner and mode, rename it over the target, then fsync the directory so the
//! rename itself is durable.
//!
//! Containment: every write of the root parent goes through [`Beneath`], rooted at the
//! `--root` tree or at the config store (a root of its own, since a CONFIG disk is untrusted
//! input). A path is walked from the root directory one name at a time with
//! `openat(O_DIRECTORY | O_NOFOLLOW)`, creating missing directories with `mkdirat` on the way,
//! and the operation then acts on the opened directory (`*at` calls, `fchown`/`fchmod` on a
//! descriptor). A symlink anywhere on the way is an error naming it, never followed, and `..`
//! is refused, never clamped: nothing can be written, chowned or chmod-ed outside the root.
//! An existing directory is first opened with one `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` (Linux 5.6 and later), which refuses the same symlinks and ways out in
//! the kernel; the walk is what runs when that fails: on older kernels (EL8's 4.18), to create
//! missing directories, and to name the symlink it met. A boot opens a few hundred parent
//! directories, so one call instead of one per name is most of its file syscalls
//! (docs/ARCHITECTURE.md, "Beneath opens a directory in one call").
//!
//! A symlink as the last name is refused too (a write would replace someone's link, a chmod
//! would follow it), except by [`Beneath::write_replacing_link`]: that one replaces the link
//! itself by an atomic rename, never opening what it points to (`/etc/resolv.conf`).

use anyhow::{anyhow, bail, ensure, Context, Result};
use rustix::fs::{AtFlags, Dir, FileType, Gid, Mode, OFlags, RenameFlags, ResolveFlags, Uid};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::fault;

/// Deepest tree [`Beneath::remove`] descends into: deeper ones are refused, never overflow
/// the stack.
const MAX_TREE_DEPTH: u32 = 64;

/// Read a file that may be absent: `Ok(None)` when it does not exist. For files that may be
/// symlinks by design (`/proc`, `/sys`) and reads whose result is never written back.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A directory under which paths are taken as written: never through a symlink, never above
/// it. Paths given to it are relative to it; a leading `/` is allowed (in-root paths).
/// Nothing is kept open between calls, so the directory (the store) can still be unmounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beneath {
    dir: PathBuf,
}

/// What the caller was doing when a walk met a symlink: says so in the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

impl Beneath {
    pub fn new(dir: impl Into<PathBuf>) -> Beneath {
        Beneath { dir: dir.into() }
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The host path of `path` below the root, for messages (`..` left out, as it is refused).
    pub fn host(&self, path: &Path) -> PathBuf {
        let mut out = self.dir.clone();
        out.extend(path.components().filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        }));
        out
    }

    /// The entry at `path`, a final symlink not followed (`symlink_metadata`); `None` when it
    /// or one of its parents is missing.
    pub fn metadata(&self, path: &Path) -> Result<Option<fs::Metadata>> {
        let (dirs, name) = split(path)?;
        let Some(dir) = self.walk(&dirs, None, Access::Read)? else {
            return Ok(None);
        };
        let host = self.host(path);
        match openat(&dir, name, OFlags::PATH | OFlags::NOFOLLOW) {
            Ok(fd) => File::from(fd)
                .metadata()
                .map(Some)
                .with_context(|| format!("inspecting {}", host.display())),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io_error(e, "inspecting", &host)),
        }
    }

    /// The content of the regular file `path`, at most `max` bytes; `None` when it is missing.
    pub fn read(&self, path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
        let (dirs, name) = split(path)?;
        let Some(dir) = self.walk(&dirs, None, Access::Read)? else {
            return Ok(None);
        };
        let host = self.host(path);
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
        let mut file = match openat(&dir, name, flags) {
            Ok(fd) => File::from(fd),
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(refusal(&dir, name, &host, e, Access::Read)),
        };
        let meta = file
            .metadata()
            .with_context(|| format!("inspecting {}", host.display()))?;
        ensure!(meta.is_file(), "{}: not a regular file", host.display());
        let mut data = Vec::new();
        Read::by_ref(&mut file)
            .take(max.saturating_add(1))
            .read_to_end(&mut data)
            .with_context(|| format!("reading {}", host.display()))?;
        ensure!(
            data.len() as u64 <= max,
            "{}: larger than {max} bytes",
            host.display()
        );
        Ok(Some(data))
    }

    /// [`Beneath::read`] as text (invalid UTF-8 replaced).
    pub fn read_text(&self, path: &Path, max: u64) -> Result<Option<String>> {
        Ok(self
            .read(path, max)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Where the symlink `path` points.
    pub fn read_link(&self, path: &Path) -> Result<PathBuf> {
        let (dir, name, host) = self.parent(path, Access::Read)?;
        let target = rustix::fs::readlinkat(&dir, name, Vec::new())
            .map_err(|e| io_error(e, "reading link", &host))?;
        Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
    }

    /// The names in the directory `path`, sorted (`.` and `..` left out).
    pub fn list(&self, path: &Path) -> Result<Vec<OsString>> {
        let host = self.host(path);
        let dir = self
            .walk(&names(path)?, None, Access::Read)?
            .ok_or_else(|| anyhow!("{}: no such directory", host.display()))?;
        list_fd(&dir, &host)
    }

    /// Atomically replace `path` with `data`, created with exactly `mode`. Missing parent
    /// directories are created (0755).
    pub fn write_atomic(&self, path: &Path, data: &[u8], mode: u32) -> Result<()> {
        self.write(path, data, mode, How::default())
    }

    /// [`Beneath::write_atomic`], the file owned by `uid:gid` before it gets its name.
    pub fn write_owned(
        &self,
        path: &Path,
        data: &[u8],
        mode: u32,
        owner: (u32, u32),
    ) -> Result<()> {
        let how = How {
            owner: Some(owner),
            ..How::default()
        };
        self.write(path, data, mode, how)
    }

    /// [`Beneath::write_atomic`] (owned by `owner` when given) without its fsyncs: the
    /// content is not durable yet. Only for a staged copy that a store transaction makes
    /// durable, with all the others, by one [`Beneath::sync_fs`] before it gets its real name.
    pub fn write_unsynced(
        &self,
        path: &Path,
        data: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<()> {
        let how = How {
            owner,
            unsynced: true,
            ..How::default()
        };
        self.write(path, data, mode, how)
    }

    /// [`Beneath::write_atomic`] where a symlink at `path` is replaced by the file rather than
    /// refused. Only for a file we own outright while we run (`/etc/resolv.conf`, often a
    /// link to a resolver's stub): the rename replaces the link itself and never opens, let
    /// alone writes, what it points to.
    pub fn write_replacing_link(&self, path: &Path, data: &[u8], mode: u32) -> Result<()> {
        let how = How {
            over_link: true,
            ..How::default()
        };
        self.write(path, data, mode, how)
    }

    /// Create every missing directory of `path` with exactly `mode` (`mkdir -p`).
    pub fn create_dirs(&self, path: &Path, mode: u32) -> Result<()> {
        self.walk(&names(path)?, Some(mode), Access::Write)
            .map(drop)
    }

    /// Create the directory `path`, which must not exist, with exactly `mode`; its parent
    /// must exist.
    pub fn create_dir(&self, path: &Path, mode: u32) -> Result<()> {
        let (dir, name, host) = self.parent(path, Access::Write)?;
        rustix::fs::mkdirat(&dir, name, raw_mode(mode))
            .map_err(|e| io_error(e, "creating", &host))?;
        let made = open_dir_at(&dir, name).map_err(|e| io_error(e, "opening", &host))?;
        rustix::fs::fchmod(&made, raw_mode(mode))
            .map_err(|e| io_error(e, "setting the mode of", &host))
    }

    /// Create the empty file `path`, which must not exist, with exactly `mode`.
    pub fn create_file(&self, path: &Path, mode: u32) -> Result<()> {
        let (dir, name, host) = self.parent(path, Access::Write)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = rustix::fs::openat(&dir, name, flags | OFlags::CLOEXEC, raw_mode(mode))
            .map_err(|e| io_error(e, "creating", &host))?;
        rustix::fs::fchmod(&fd, raw_mode(mode))
            .map_err(|e| io_error(e, "setting the mode of", &host))
    }

    /// Create the symlink `path` pointing to `target`; the parent must exist.
    pub fn symlink(&self, target: &Path, path: &Path) -> Result<()> {
        let (dir, name, host) = self.parent(path, Access::Write)?;
        rustix::fs::symlinkat(target, &dir, name)
            .map_err(|e| io_error(e, "creating the symlink", &host))
    }

    /// Give `path` itself to `uid:gid`; a symlink there is changed, never what it points to.
    pub fn set_owner(&self, path: &Path, uid: u32, gid: u32) -> Result<()> {
        let (dir, name, host) = self.parent(path, Access::Write)?;
        let (uid, gid) = ids(uid, gid)?;
        rustix::fs::chownat(&dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_error(e, "setting the owner of", &host))
    }

    /// Set exactly `mode` on the file or directory `path`; a symlink there is refused (a
    /// chmod would follow it).
    pub fn set_mode(&self, path: &Path, mode: u32) -> Result<()> {
        let (dir, name, host) = self.parent(path, Access::Write)?;
        let kind = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map(|st| FileType::from_raw_mode(st.st_mode))
            .map_err(|e| io_error(e, "inspecting", &host))?;
        match kind {
            FileType::Symlink => return Err(link_error(&host, Access::Write)),
            FileType::RegularFile | FileType::Directory => {}
            _ => bail!("{}: not a regular file or directory", host.display()),
        }
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd =
            openat(&dir, name, flags).map_err(|e| refusal(&dir, name, &host, e, Access::Write))?;
        rustix::fs::fchmod(&fd, raw_mode(mode))
            .map_err(|e| io_error(e, "setting the mode of", &host))
    }

    /// Rename `from` to `to` (replacing a file or symlink there); both parents must exist.
    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.rename_with(from, to, RenameFlags::empty())
    }

    /// Swap `a` and `b`, both of which must exist (`RENAME_EXCHANGE`).
    pub fn exchange(&self, a: &Path, b: &Path) -> Result<()> {
        self.rename_with(a, b, RenameFlags::EXCHANGE)
    }

    /// Remove `path`: a file or symlink, or a directory with everything in it (symlinks in
    /// it removed, never followed). A missing `path` is fine.
    pub fn remove(&self, path: &Path) -> Result<()> {
        let (dirs, name) = split(path)?;
        let Some(dir) = self.walk(&dirs, None, Access::Write)? else {
            return Ok(());
        };
        remove_at(&dir, name, &self.host(path), 0)
    }

    /// fsync the directory `path` so that renames and unlinks in it survive a power cut.
    pub fn sync_dir(&self, path: &Path) -> Result<()> {
        let host = self.host(path);
        let dir = self
            .walk(&names(path)?, None, Access::Write)?
            .ok_or_else(|| anyhow!("{}: no such directory", host.display()))?;
        rustix::fs::fsync(&dir).map_err(|e| io_error(e, "syncing directory", &host))
    }

    /// Make everything written on the filesystem holding the root durable (`syncfs`): one
    /// journal commit for many files, where an fsync each would cost one each.
    pub fn sync_fs(&self) -> Result<()> {
        let dir = self.open_root()?;
        rustix::fs::syncfs(&dir).map_err(|e| io_error(e, "syncing the filesystem of", &self.dir))
    }

    fn write(&self, path: &Path, data: &[u8], mode: u32, how: How) -> Result<()> {
        let (dirs, name) = split(path)?;
        let host = self.host(path);
        let dir = self
            .walk(&dirs, Some(0o755), Access::Write)?
            .context("creating the parent directories")?;
        check_replaceable(&dir, name, &host, how.over_link)?;
        let tmp = temp_name(name);
        let tmp_host = host.with_file_name(&tmp);
        let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
        let result = write_temp(&dir, &tmp, data, mode, how)
            .with_context(|| format!("writing {}", tmp_host.display()))
            .and_then(|()| {
                fault::point("atomic.before_rename");
                rustix::fs::renameat(&dir, &tmp, &dir, name)
                    .map_err(|e| io_error(e, "renaming over", &host))
            });
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
        }
        result?;
        fault::point("atomic.after_rename");
        if how.unsynced {
            return Ok(());
        }
        rustix::fs::fsync(&dir).map_err(|e| io_error(e, "syncing the directory of", &host))
    }

    fn rename_with(&self, from: &Path, to: &Path, flags: RenameFlags) -> Result<()> {
        let (from_dir, from_name, from_host) = self.parent(from, Access::Write)?;
        let (to_dir, to_name, to_host) = self.parent(to, Access::Write)?;
        rustix::fs::renameat_with(&from_dir, from_name, &to_dir, to_name, flags)
            .with_context(|| format!("moving {} to {}", from_host.display(), to_host.display()))
    }

    /// The opened parent directory of `path` (which must exist), the last name, the host path.
    fn parent<'p>(&self, path: &'p Path, access: Access) -> Result<(OwnedFd, &'p OsStr, PathBuf)> {
        let (dirs, name) = split(path)?;
        let host = self.host(path);
        let dir = self
            .walk(&dirs, None, access)?
            .ok_or_else(|| anyhow!("{}: its directory does not exist", host.display()))?;
        Ok((dir, name, host))
    }

    /// The root directory itself, resolved as the operator gave it (symlinks in its own path
    /// are followed: only what is below it is taken as written).
    fn open_root(&self) -> Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        rustix::fs::openat(rustix::fs::CWD, &self.dir, flags, Mode::empty())
            .map_err(|e| io_error(e, "opening", &self.dir))
    }

    /// Open the directory `names` below the root without following any symlink. A missing
    /// directory is created with `create` as its mode, or else the answer is `None`.
    fn walk(
        &self,
        names: &[&OsStr],
        create: Option<u32>,
        access: Access,
    ) -> Result<Option<OwnedFd>> {
        let mut fd = self.open_root()?;
        if let Some(dir) = open_beneath(&fd, names) {
            return Ok(Some(dir));
        }
        let mut host = self.dir.clone();
        for name in names {
            host.push(name);
            fd = match open_dir_at(&fd, name) {
                Ok(next) => next,
                Err(Errno::NOENT) => match create {
                    Some(mode) => make_dir_at(&fd, name, mode, &host)?,
                    None => return Ok(None),
                },
                Err(e) => return Err(refusal(&fd, name, &host, e, access)),
            };
        }
        Ok(Some(fd))
    }
}

/// The names of `path`; `..` is refused (taken beneath a root, it would climb out or be
/// silently clamped, and either hides a mistake).
fn names(path: &Path) -> Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                bail!("{}: `..` is not allowed in this path", path.display())
            }
        }
    }
    Ok(out)
}

/// The parent names and the last name of `path`.
fn split(path: &Path) -> Result<(Vec<&OsStr>, &OsStr)> {
    let mut dirs = names(path)?;
    let name = dirs
        .pop()
        .ok_or_else(|| anyhow!("{:?}: names no file", path))?;
    Ok((dirs, name))
}

/// How a directory below a root is opened, by the walk and by the one-call open alike: as a
/// directory, never through a symlink.
const DIR_NOFOLLOW: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW);

/// Set once `openat2` is found missing (ENOSYS: a kernel before 5.6; EPERM: the seccomp
/// filter of an older container runtime): the walk alone is used from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// The existing directory `names` below `dir` in one `openat2` that follows no symlink and
/// cannot leave `dir`; `None` on any failure, and the caller walks name by name (which gives
/// the error, or creates what is missing).
fn open_beneath(dir: &OwnedFd, names: &[&OsStr]) -> Option<OwnedFd> {
    if names.is_empty() || NO_OPENAT2.load(Ordering::Relaxed) {
        return None;
    }
    let rel: PathBuf = names.iter().collect();
    let flags = DIR_NOFOLLOW | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(dir, &rel, flags, Mode::empty(), resolve) {
        Ok(fd) => Some(fd),
        Err(Errno::NOSYS | Errno::PERM) => {
            NO_OPENAT2.store(true, Ordering::Relaxed);
            None
        }
        Err(_) => None,
    }
}

fn openat(dir: &OwnedFd, name: &OsStr, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(dir, name, flags | OFlags::CLOEXEC, Mode::empty())
}

fn open_dir_at(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    openat(dir, name, DIR_NOFOLLOW)
}

/// Create a directory met missing on a walk, with exactly `mode` (mkdir's is narrowed by the
/// umask), durably in its parent; then open it.
fn make_dir_at(dir: &OwnedFd, name: &OsStr, mode: u32, host: &Path) -> Result<OwnedFd> {
    let created = match rustix::fs::mkdirat(dir, name, raw_mode(mode)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false, // made meanwhile: open it as it is
        Err(e) => return Err(io_error(e, "creating", host)),
    };
    let fd = open_dir_at(dir, name).map_err(|e| refusal(dir, name, host, e, Access::Write))?;
    if created {
        rustix::fs::fchmod(&fd, raw_mode(mode))
            .map_err(|e| io_error(e, "setting the mode of", host))?;
        rustix::fs::fsync(dir).map_err(|e| io_error(e, "syncing the directory of", host))?;
    }
    Ok(fd)
}

/// Why opening `name` failed: a symlink is named as such, anything else as the OS says.
fn refusal(dir: &OwnedFd, name: &OsStr, host: &Path, err: Errno, access: Access) -> anyhow::Error {
    let is_link = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
    if is_link {
        link_error(host, access)
    } else {
        io_error(err, "opening", host)
    }
}

fn link_error(host: &Path, access: Access) -> anyhow::Error {
    let what = match access {
        Access::Read => "follow it",
        Access::Write => "write through it",
    };
    anyhow!("{}: is a symbolic link; refusing to {what}", host.display())
}

fn io_error(err: Errno, doing: &str, host: &Path) -> anyhow::Error {
    anyhow::Error::new(std::io::Error::from(err)).context(format!("{doing} {}", host.display()))
}

/// A file may be written at `name` unless a directory is there, or a symlink that is not to
/// be replaced.
fn check_replaceable(dir: &OwnedFd, name: &OsStr, host: &Path, over_link: bool) -> Result<()> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::Symlink if !over_link => Err(link_error(host, Access::Write)),
            FileType::Directory => bail!("{}: is a directory", host.display()),
            _ => Ok(()),
        },
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(io_error(e, "inspecting", host)),
    }
}

/// How [`Beneath::write`] writes a file.
#[derive(Clone, Copy, Default)]
struct How {
    /// Given to this owner before the file gets its name.
    owner: Option<(u32, u32)>,
    /// A symlink at the path is replaced rather than refused.
    over_link: bool,
    /// No fsync of the file nor of its directory: the caller syncs.
    unsynced: bool,
}

fn write_temp(dir: &OwnedFd, tmp: &OsStr, data: &[u8], mode: u32, how: How) -> Result<()> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
    let fd = rustix::fs::openat(dir, tmp, flags | OFlags::CLOEXEC, raw_mode(mode & 0o777))
        .context("creating")?;
    let mut f = File::from(fd);
    f.write_all(data).context("writing")?;
    fault::point("atomic.tmp_written");
    if let Some((uid, gid)) = how.owner {
        let (uid, gid) = ids(uid, gid)?;
        rustix::fs::fchown(&f, Some(uid), Some(gid)).context("setting the owner")?;
    }
    // The umask may have narrowed the mode given to open(), and chown clears set-id bits.
    rustix::fs::fchmod(&f, raw_mode(mode)).context("setting the mode")?;
    if how.unsynced {
        return Ok(());
    }
    f.sync_all().context("syncing")
}

fn list_fd(dir: &OwnedFd, host: &Path) -> Result<Vec<OsString>> {
    let listing = |e| io_error(e, "listing", host);
    let mut names = Vec::new();
    for entry in Dir::read_from(dir).map_err(listing)? {
        let name = entry.map_err(listing)?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(&name).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

fn remove_at(dir: &OwnedFd, name: &OsStr, host: &Path, depth: u32) -> Result<()> {
    let kind = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => FileType::from_raw_mode(st.st_mode),
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io_error(e, "inspecting", host)),
    };
    if kind != FileType::Directory {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty())
            .map_err(|e| io_error(e, "removing", host));
    }
    ensure!(
        depth < MAX_TREE_DEPTH,
        "{}: directory tree deeper than {MAX_TREE_DEPTH}",
        host.display()
    );
    let sub = open_dir_at(dir, name).map_err(|e| refusal(dir, name, host, e, Access::Write))?;
    for child in list_fd(&sub, host)? {
        remove_at(&sub, &child, &host.join(&child), depth + 1)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(|e| io_error(e, "removing", host))
}

/// -1 means "leave unchanged" to chown(2): never a real owner.
fn ids(uid: u32, gid: u32) -> Result<(Uid, Gid)> {
    ensure!(
        uid != u32::MAX && gid != u32::MAX,
        "{uid}:{gid} is not a valid owner"
    );
    Ok((Uid::from_raw(uid), Gid::from_raw(gid)))
}

fn raw_mode(mode: u32) -> Mode {
    Mode::from_raw_mode(mode & 0o7777)
}

/// `.name.ovirt-node-reg.tmp` beside the target: same directory, so the rename is atomic.
fn temp_name(name: &OsStr) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(".ovirt-node-reg.tmp");
    tmp
}

#[cfg(test)]
mod tests;
