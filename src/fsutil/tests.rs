use super::*;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

/// A root `r/` and, beside it, a directory `outside/` with one file: what a planted link
/// points to. Nothing may ever change there.
struct Fixture {
    _tmp: tempfile::TempDir,
    fs: Beneath,
    outside: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&root).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(outside.join("file"), "outside").unwrap();
    fs::set_permissions(outside.join("file"), fs::Permissions::from_mode(0o644)).unwrap();
    Fixture {
        _tmp: tmp,
        fs: Beneath::new(root),
        outside,
    }
}

impl Fixture {
    fn host(&self, p: &str) -> PathBuf {
        self.fs.host(Path::new(p))
    }

    /// Names, modes, owners and contents under `outside/`.
    fn outside_state(&self) -> Vec<String> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.outside).unwrap() {
            let p = entry.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            out.push(format!(
                "{} {:o} {}:{} {:?}",
                p.display(),
                m.mode(),
                m.uid(),
                m.gid(),
                fs::read(&p).ok()
            ));
        }
        let m = fs::metadata(&self.outside).unwrap();
        out.push(format!("dir {:o} {}:{}", m.mode(), m.uid(), m.gid()));
        out.sort();
        out
    }
}

/// The owner the tests give files: vdsm:kvm (36:107) in the privileged tier, where only root
/// may give it; our own ids otherwise, so the same calls run for any user.
fn owner() -> (u32, u32) {
    if !cfg!(feature = "privileged") {
        let (uid, gid) = (rustix::process::geteuid(), rustix::process::getegid());
        return (uid.as_raw(), gid.as_raw());
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "giving files to vdsm:kvm needs root (the privileged tier, `cargo test --features privileged`)"
    );
    (36, 107)
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn err(r: Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", r.unwrap_err())
}

#[test]
fn writes_with_exact_mode_and_owner_and_replaces() {
    let f = fixture();
    let p = Path::new("/a/b/secret");
    f.fs.write_atomic(p, b"one", 0o600).unwrap();
    let (uid, gid) = owner();
    f.fs.write_owned(p, b"two", 0o4750, (uid, gid)).unwrap();
    let host = f.host("a/b/secret");
    assert_eq!(fs::read(&host).unwrap(), b"two");
    let m = fs::metadata(&host).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.gid()),
        (0o4750, uid, gid),
        "set-id bit kept after chown"
    );
    assert_eq!(mode(&f.host("a")), 0o755, "missing parents made 0755");
    let leftovers: Vec<_> = fs::read_dir(host.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    assert_eq!(f.fs.read(p, 3).unwrap().unwrap(), b"two");
    assert!(err(f.fs.read(p, 2)).contains("larger than 2 bytes"));
    assert_eq!(f.fs.read(Path::new("a/none"), 9).unwrap(), None);
    assert_eq!(f.fs.read(Path::new("none/none"), 9).unwrap(), None);
    assert!(f.fs.metadata(Path::new("none/x")).unwrap().is_none());
}

#[test]
fn a_symlink_in_the_middle_is_refused_and_named() {
    let f = fixture();
    fs::create_dir_all(f.host("etc/pki/vdsm")).unwrap();
    symlink(&f.outside, f.host("etc/pki/vdsm/keys")).unwrap();
    let before = f.outside_state();
    let keys = f.host("etc/pki/vdsm/keys");
    let refused = format!(
        "{}: is a symbolic link; refusing to write through it",
        keys.display()
    );
    let p = Path::new("/etc/pki/vdsm/keys/vdsmkey.pem");
    let through = Path::new("/etc/pki/vdsm/keys/file");
    for e in [
        err(f.fs.write_atomic(p, b"KEY", 0o400)),
        err(f.fs.create_dirs(Path::new("/etc/pki/vdsm/keys/sub"), 0o700)),
        err(f.fs.set_mode(through, 0o777)),
        err(f.fs.set_owner(through, 36, 36)),
        err(f.fs.create_file(Path::new("/etc/pki/vdsm/keys/new"), 0o600)),
        err(f.fs.remove(through)),
        err(f.fs.rename(through, Path::new("/etc/x"))),
    ] {
        assert!(e.contains(&refused), "{e}");
    }
    // Reads refuse too: nothing outside is taken for ours.
    let e = err(f.fs.read(through, 100));
    assert!(
        e.contains(&format!(
            "{}: is a symbolic link; refusing to follow it",
            keys.display()
        )),
        "{e}"
    );
    assert!(err(f.fs.metadata(through)).contains("is a symbolic link"));
    assert_eq!(f.outside_state(), before, "nothing changed outside");
}

/// The one-call open takes an existing directory, and gives up (so the walk decides) on a
/// missing one and on any symlink on the way, even one that stays inside the root.
#[test]
fn the_one_call_open_takes_only_real_directories_beneath() {
    let f = fixture();
    fs::create_dir_all(f.host("etc/pki/vdsm/keys")).unwrap();
    symlink("pki", f.host("etc/inside")).unwrap();
    symlink(&f.outside, f.host("etc/out")).unwrap();
    let root = File::open(f.fs.dir()).unwrap();
    let root = OwnedFd::from(root);
    let open = |p: &str| {
        let names: Vec<&OsStr> = Path::new(p).iter().collect();
        open_beneath(&root, &names)
    };
    let keys = open("etc/pki/vdsm/keys").expect("openat2 (Linux 5.6+) opens a real directory");
    let st = rustix::fs::fstat(&keys).unwrap();
    assert_eq!(
        st.st_ino,
        fs::metadata(f.host("etc/pki/vdsm/keys")).unwrap().ino()
    );
    for refused in [
        "etc/inside/vdsm",
        "etc/inside",
        "etc/out",
        "etc/missing",
        "etc/pki/x/y",
    ] {
        assert!(open(refused).is_none(), "{refused}");
    }
    // And through the public calls, a write beneath a real directory still lands there.
    f.fs.write_atomic(Path::new("/etc/pki/vdsm/keys/k.pem"), b"K", 0o400)
        .unwrap();
    assert_eq!(fs::read(f.host("etc/pki/vdsm/keys/k.pem")).unwrap(), b"K");
}

#[test]
fn a_symlink_as_the_last_name_is_refused_unless_replacing_it() {
    let f = fixture();
    fs::create_dir_all(f.host("etc")).unwrap();
    let target = f.outside.join("file");
    symlink(&target, f.host("etc/link")).unwrap();
    symlink(&f.outside, f.host("etc/dirlink")).unwrap();
    let before = f.outside_state();
    let link = Path::new("/etc/link");
    for e in [
        err(f.fs.write_atomic(link, b"x", 0o644)),
        err(f.fs.set_mode(link, 0o777)),
        err(f.fs.create_dirs(Path::new("/etc/dirlink"), 0o700)),
    ] {
        assert!(
            e.contains("etc/link: is a symbolic link")
                || e.contains("etc/dirlink: is a symbolic link"),
            "{e}"
        );
    }
    assert!(err(f.fs.read(link, 100)).contains("refusing to follow it"));
    assert!(err(f.fs.list(Path::new("/etc/dirlink"))).contains("is a symbolic link"));
    // chown changes the link itself, as lchown does.
    let (uid, gid) = owner();
    f.fs.set_owner(link, uid, gid).unwrap();
    assert_eq!(fs::symlink_metadata(f.host("etc/link")).unwrap().uid(), uid);
    assert!(f
        .fs
        .metadata(link)
        .unwrap()
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(f.fs.read_link(link).unwrap(), target);
    assert_eq!(f.outside_state(), before, "nothing changed outside");
    // Replacing the link itself (resolv.conf): the target is never opened.
    f.fs.write_replacing_link(link, b"nameserver 10.0.0.1\n", 0o644)
        .unwrap();
    assert!(fs::symlink_metadata(f.host("etc/link")).unwrap().is_file());
    assert_eq!(f.outside_state(), before, "the link's target untouched");
}

#[test]
fn dot_dot_is_refused_never_clamped() {
    let f = fixture();
    for p in ["../outside/file", "/a/../../outside/x", "a/.."] {
        let e = err(f.fs.write_atomic(Path::new(p), b"x", 0o644));
        assert!(e.contains("`..` is not allowed"), "{p}: {e}");
        assert!(err(f.fs.create_dirs(Path::new(p), 0o755)).contains("`..`"));
        assert!(err(f.fs.read(Path::new(p), 9)).contains("`..`"));
    }
    assert!(
        fs::read_dir(f.fs.dir()).unwrap().next().is_none(),
        "nothing created"
    );
    assert_eq!(fs::read(f.outside.join("file")).unwrap(), b"outside");
    // `.` and repeated slashes are harmless.
    f.fs.write_atomic(Path::new("/./a//b"), b"x", 0o644)
        .unwrap();
    assert!(f.host("a/b").is_file());
    assert!(err(f.fs.write_atomic(Path::new("/"), b"x", 0o644)).contains("names no file"));
}

#[test]
fn directories_files_links_and_removal_stay_inside() {
    let f = fixture();
    f.fs.create_dirs(Path::new("/root/.ssh"), 0o700).unwrap();
    assert_eq!(
        (mode(&f.host("root")), mode(&f.host("root/.ssh"))),
        (0o700, 0o700)
    );
    f.fs.create_dir(Path::new("/t"), 0o750).unwrap();
    assert!(err(f.fs.create_dir(Path::new("/t"), 0o750)).contains("File exists"));
    assert!(err(f.fs.create_dir(Path::new("/none/t"), 0o750)).contains("does not exist"));
    f.fs.create_file(Path::new("/t/empty"), 0o640).unwrap();
    assert_eq!(mode(&f.host("t/empty")), 0o640);
    f.fs.symlink(&f.outside, Path::new("/t/out")).unwrap();
    f.fs.create_dir(Path::new("/t/sub"), 0o700).unwrap();
    f.fs.write_atomic(Path::new("/t/sub/f"), b"f", 0o600)
        .unwrap();
    f.fs.set_mode(Path::new("/t"), 0o755).unwrap();
    assert_eq!(mode(&f.host("t")), 0o755);
    assert_eq!(
        f.fs.list(Path::new("/t")).unwrap(),
        ["empty", "out", "sub"].map(OsString::from)
    );
    f.fs.exchange(Path::new("/t/sub"), Path::new("/t/empty"))
        .unwrap();
    assert!(f.host("t/empty").is_dir() && f.host("t/sub").is_file());
    f.fs.rename(Path::new("/t/sub"), Path::new("/t/moved"))
        .unwrap();
    f.fs.sync_dir(Path::new("/t")).unwrap();
    let before = f.outside_state();
    f.fs.remove(Path::new("/t")).unwrap();
    assert!(!f.host("t").exists());
    assert_eq!(
        f.outside_state(),
        before,
        "a link in a removed tree is not followed"
    );
    f.fs.remove(Path::new("/t")).unwrap();
}
