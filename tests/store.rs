//! The config store through the real binary: persist / unpersist / restore on a directory
//! store and on a real ext4 filesystem labelled CONFIG on a loop device, and crash safety: the
//! binary is killed at every fault point of persist and unpersist, after which the store on
//! disk must be entirely old or entirely new, and the next normal run must finish the job.
//!
//! Everything that mounts runs in a private mount namespace (`unshare --mount`), so no mount
//! leaks into the machine; leaving the namespace also plays the part of a reboot.
//! These tests need root, `unshare`, `losetup` and `mkfs.ext4`, and fail (never skip) without.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_ovirt-node-reg");

/// Fail with a clear message when a tool the test needs is missing.
fn need(tool: &str) {
    // Root first: the sbin tools are missing from most users' PATH, which would mislead.
    common::require_root();
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{tool} is needed by this test and is missing (util-linux / e2fsprogs)"
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A temporary machine: `root/` is the tree given as `--root`, `cmdline` the kernel command
/// line; both live in one temporary directory with room for scratch files.
struct Node {
    dir: tempfile::TempDir,
    root: PathBuf,
    cmdline: PathBuf,
}

impl Node {
    fn new(cmdline: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let cmdline_file = dir.path().join("cmdline");
        fs::create_dir_all(&root).unwrap();
        fs::write(&cmdline_file, cmdline).unwrap();
        Node {
            dir,
            root,
            cmdline: cmdline_file,
        }
    }

    /// A directory store at /config.
    fn with_dir_store() -> Node {
        let node = Node::new("ro quiet ovirt.reg.store=/config\n");
        fs::create_dir(node.path("/config")).unwrap();
        node
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, p: &str, data: &str, mode: u32) {
        let p = self.path(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn files(&self) -> String {
        fs::read_to_string(self.path("/config/files")).unwrap_or_default()
    }

    /// Run `script` with sh in a new private mount namespace. `reg ARGS` runs the binary on
    /// this node; `$ROOT` and `$OUT` (a scratch directory) are set, as is every `env` pair.
    fn ns(&self, script: &str, env: &[(&str, &str)]) -> Output {
        common::require_root();
        need("unshare");
        let out_dir = self.scratch("out");
        fs::create_dir_all(&out_dir).unwrap();
        let prelude = r#"reg() { "$BIN" --root "$ROOT" --cmdline "$CMDLINE" "$@"; }
mounts_on() { awk -v p="$1" '$5 == p' /proc/self/mountinfo | wc -l; }
"#;
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!("{prelude}{script}"))
            .env("BIN", BIN)
            .env("ROOT", &self.root)
            .env("CMDLINE", &self.cmdline)
            .env("OUT", &out_dir)
            .envs(env.iter().copied())
            .output()
            .expect("running unshare")
    }

    /// Like [`Node::ns`], asserting that the script succeeds.
    fn ns_ok(&self, script: &str, env: &[(&str, &str)]) -> Output {
        let out = self.ns(script, env);
        assert!(
            out.status.success(),
            "script failed: {script}\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    fn out(&self, name: &str) -> String {
        fs::read_to_string(self.scratch("out").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

/// A file or directory tree as "relative path → kind, mode, owner, content" (`None` when
/// missing). Equal descriptions mean equal content, mode and owner.
type Desc = BTreeMap<PathBuf, String>;

fn describe(top: &Path) -> Option<Desc> {
    fs::symlink_metadata(top).ok()?;
    let mut out = Desc::new();
    let mut todo = vec![top.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let what = if m.is_dir() {
            todo.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            "dir".to_string()
        } else if m.file_type().is_symlink() {
            format!("link {}", fs::read_link(&p).unwrap().display())
        } else {
            format!(
                "mode {:o} file {:?}",
                m.mode() & 0o7777,
                text(&fs::read(&p).unwrap())
            )
        };
        let mode = if m.file_type().is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        };
        out.insert(
            p.strip_prefix(top).unwrap().to_path_buf(),
            format!("{mode:o} {}:{} {what}", m.uid(), m.gid()),
        );
    }
    Some(out)
}

/// A loop device over an image file, detached when dropped.
struct Loop {
    dev: String,
}

impl Loop {
    /// A fresh ext4 filesystem labelled `label` on a loop device.
    fn ext4(node: &Node, label: &str) -> Loop {
        need("losetup");
        need("mkfs.ext4");
        let img = node.scratch("config.img");
        fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", label])
            .arg(&img)
            .output()
            .unwrap();
        assert!(mkfs.status.success(), "mkfs.ext4: {}", text(&mkfs.stderr));
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup cannot attach a loop device (root needed): {}",
            text(&out.stderr)
        );
        Loop {
            dev: text(&out.stdout).trim().to_string(),
        }
    }

    fn name(&self) -> &str {
        self.dev.trim_start_matches("/dev/")
    }

    /// Make the device visible in `node`'s root as sysfs and /dev would show it.
    fn expose(&self, node: &Node) {
        fs::create_dir_all(node.path(&format!("/sys/class/block/{}", self.name()))).unwrap();
        fs::create_dir_all(node.path("/dev")).unwrap();
        std::os::unix::fs::symlink(&self.dev, node.path(&format!("/dev/{}", self.name()))).unwrap();
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

#[test]
fn directory_store_persist_twice_restore_unpersist() {
    let node = Node::with_dir_store();
    node.write("/etc/vdsm/vdsm.conf", "[vars]\nssl = true\n", 0o644);
    node.write("/etc/pki/vdsm/keys/vdsmkey.pem", "KEY", 0o600);
    let out = node.ns_ok(
        r#"reg persist /etc/vdsm/vdsm.conf /etc/pki/vdsm/keys/vdsmkey.pem
           reg persist /etc/vdsm/vdsm.conf
           mounts_on "$ROOT/etc/vdsm/vdsm.conf" > "$OUT/mounts""#,
        &[],
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("/etc/vdsm/vdsm.conf: persisted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("/etc/vdsm/vdsm.conf: already persisted, unchanged"),
        "{stdout}"
    );
    assert_eq!(node.out("mounts").trim(), "1", "one bind mount, not two");
    assert_eq!(
        node.files(),
        "/etc/pki/vdsm/keys/vdsmkey.pem\n/etc/vdsm/vdsm.conf\n"
    );
    let key = describe(&node.path("/config/etc/pki/vdsm/keys/vdsmkey.pem"));
    assert_eq!(
        key,
        describe(&node.path("/etc/pki/vdsm/keys/vdsmkey.pem")),
        "stored with content, mode and owner"
    );

    // Reboot: the live file is gone, restore brings the stored one back.
    fs::remove_file(node.path("/etc/vdsm/vdsm.conf")).unwrap();
    node.ns_ok(
        r#"reg restore > "$OUT/restored"
           cat "$ROOT/etc/vdsm/vdsm.conf" > "$OUT/live"
           reg unpersist /etc/pki/vdsm/keys/vdsmkey.pem
           mounts_on "$ROOT/etc/pki/vdsm/keys/vdsmkey.pem" > "$OUT/mounts""#,
        &[],
    );
    assert_eq!(
        node.out("restored"),
        "restored /etc/pki/vdsm/keys/vdsmkey.pem\nrestored /etc/vdsm/vdsm.conf\n"
    );
    assert_eq!(node.out("live"), "[vars]\nssl = true\n");
    assert_eq!(node.out("mounts").trim(), "0");
    assert_eq!(node.files(), "/etc/vdsm/vdsm.conf\n");
    assert!(!node.path("/config/etc/pki/vdsm/keys/vdsmkey.pem").exists());
    assert_eq!(
        fs::read_to_string(node.path("/etc/pki/vdsm/keys/vdsmkey.pem")).unwrap(),
        "KEY"
    );
}

#[test]
fn refusals_fail_clearly_and_change_nothing() {
    let node = Node::with_dir_store();
    node.write("/etc/ok.conf", "ok", 0o644);
    node.ns_ok("reg persist /etc/ok.conf", &[]);
    fs::create_dir_all(node.path("/var/lib")).unwrap();
    std::os::unix::fs::symlink("../../../../../..", node.path("/var/lib/up")).unwrap();
    let before = describe(&node.root);
    for (args, why) in [
        ("persist etc/ok.conf", "not an absolute path"),
        ("persist /", "top-level"),
        ("persist /etc", "top-level"),
        ("persist /etc/missing.conf", "no such file"),
        // A symlinked parent is refused, never followed (here it would climb out of the root).
        (
            "persist /var/lib/up/etc/passwd",
            "var/lib/up: is a symbolic link",
        ),
        ("persist /etc/x/../ok.conf", "`..` is not allowed"),
        ("persist /config/files", "config store"),
        ("unpersist /etc/never.conf", "not persisted"),
    ] {
        let out = node.ns(&format!("reg {args}"), &[]);
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(why),
            "{args}: {stderr}"
        );
    }
    assert_eq!(
        describe(&node.root),
        before,
        "a refused command changed the tree"
    );
}

#[test]
fn ext4_store_found_by_label_persist_restore_unpersist() {
    let node = Node::new("ro quiet\n");
    let dev = Loop::ext4(&node, "CONFIG");
    dev.expose(&node);
    // Decoys the scan must pass over: no device node, an empty device.
    fs::create_dir_all(node.path("/sys/class/block/vdz")).unwrap();
    fs::create_dir_all(node.path("/sys/class/block/loop99")).unwrap();
    fs::write(node.path("/sys/class/block/loop99/size"), "0\n").unwrap();
    node.write("/etc/vdsm/vdsm.conf", "[vars]\n", 0o644);
    node.write("/etc/pki/vdsm/keys/vdsmkey.pem", "KEY", 0o600);
    std::os::unix::fs::chown(
        node.path("/etc/pki/vdsm/keys/vdsmkey.pem"),
        Some(36),
        Some(36),
    )
    .unwrap();
    node.write("/etc/iscsi/initiatorname.iscsi", "iqn", 0o644);
    node.write("/etc/iscsi/nodes/n1", "n1", 0o600);
    let key_desc = describe(&node.path("/etc/pki/vdsm/keys/vdsmkey.pem"));
    let iscsi_desc = describe(&node.path("/etc/iscsi"));

    let config = node.path("/config");
    let config = config.to_str().unwrap();
    node.ns_ok(
        r#"reg persist /etc/vdsm/vdsm.conf /etc/pki/vdsm/keys/vdsmkey.pem /etc/iscsi
           reg persist /etc/iscsi | grep -q unchanged
           awk -v p="$ROOT/config" '$5 == p { print $(NF-2), $(NF-1) }' /proc/self/mountinfo > "$OUT/config-mount""#,
        &[],
    );
    assert_eq!(
        node.out("config-mount").trim(),
        format!("ext4 {}", dev.dev),
        "the CONFIG filesystem is mounted on /config"
    );
    assert!(
        !node.path("/config/files").exists(),
        "nothing written to the directory under the mount point"
    );

    // Reboot: live copies changed or gone; restore finds the store by label again.
    node.write("/etc/vdsm/vdsm.conf", "junk", 0o644);
    fs::remove_dir_all(node.path("/etc/pki")).unwrap();
    fs::remove_dir_all(node.path("/etc/iscsi")).unwrap();
    node.ns_ok(
        r#"reg restore > "$OUT/restored"
           cat "$ROOT/etc/vdsm/vdsm.conf" > "$OUT/vdsm.conf"
           cp -a "$ROOT/etc/pki/vdsm/keys/vdsmkey.pem" "$ROOT/etc/iscsi" "$OUT/"
           cp "$CONFIG/files" "$OUT/files"
           # oVirt's edit cycle on a directory: unmount, copy the stored one back, edit, persist.
           umount "$ROOT/etc/iscsi" && cp -a "$CONFIG/etc/iscsi/." "$ROOT/etc/iscsi/"
           echo changed > "$ROOT/etc/iscsi/initiatorname.iscsi"
           reg persist /etc/iscsi > "$OUT/updated"
           cat "$ROOT/etc/iscsi/initiatorname.iscsi" "$CONFIG/etc/iscsi/nodes/n1" > "$OUT/iscsi-live"
           reg unpersist /etc/vdsm/vdsm.conf /etc/iscsi
           mounts_on "$ROOT/etc/iscsi" > "$OUT/mounts"
           cp "$CONFIG/files" "$OUT/files-after"
           test ! -e "$CONFIG/etc/iscsi" && test ! -e "$CONFIG/etc/vdsm/vdsm.conf""#,
        &[("CONFIG", config)],
    );
    assert_eq!(
        node.out("restored").lines().count(),
        3,
        "{}",
        node.out("restored")
    );
    assert_eq!(node.out("vdsm.conf"), "[vars]\n");
    assert_eq!(
        describe(&node.scratch("out/vdsmkey.pem")),
        key_desc,
        "secret keeps content, 0600 and owner"
    );
    assert_eq!(describe(&node.scratch("out/iscsi")), iscsi_desc);
    assert_eq!(
        node.out("files"),
        "/etc/iscsi\n/etc/pki/vdsm/keys/vdsmkey.pem\n/etc/vdsm/vdsm.conf\n"
    );
    assert_eq!(node.out("updated"), "/etc/iscsi: updated\n");
    assert_eq!(
        node.out("iscsi-live"),
        "changed\nn1",
        "the new directory is mounted"
    );
    assert_eq!(node.out("mounts").trim(), "0");
    assert_eq!(node.out("files-after"), "/etc/pki/vdsm/keys/vdsmkey.pem\n");
    let mut updated = iscsi_desc.unwrap();
    updated.insert(
        PathBuf::from("initiatorname.iscsi"),
        "644 0:0 mode 644 file \"changed\\n\"".into(),
    );
    assert_eq!(
        describe(&node.path("/etc/iscsi")),
        Some(updated),
        "unpersist copied the updated directory back"
    );
    assert_eq!(
        fs::read_to_string(node.path("/etc/vdsm/vdsm.conf")).unwrap(),
        "[vars]\n"
    );
}

#[test]
fn ext4_store_given_as_device_and_existing_mount_is_used() {
    let node = Node::new("ovirt.reg.store=/dev/storedisk\n");
    let dev = Loop::ext4(&node, "OTHER");
    fs::create_dir_all(node.path("/dev")).unwrap();
    std::os::unix::fs::symlink(&dev.dev, node.path("/dev/storedisk")).unwrap();
    node.write("/etc/hosts.conf", "h", 0o644);
    node.ns_ok(
        r#"reg persist /etc/hosts.conf
           awk -v p="$ROOT/config" '$5 == p { print $(NF-2) }' /proc/self/mountinfo > "$OUT/fstype"
           cat "$ROOT/config/files" > "$OUT/files""#,
        &[],
    );
    assert_eq!(node.out("fstype").trim(), "ext4");
    assert_eq!(node.out("files"), "/etc/hosts.conf\n");
    // Something already mounted on /config is used as it is.
    node.ns_ok(
        r#"mount -t tmpfs tmpfs "$ROOT/config"
           reg persist /etc/hosts.conf
           cat "$ROOT/config/files" > "$OUT/files"
           mounts_on "$ROOT/config" > "$OUT/mounts""#,
        &[],
    );
    assert_eq!(node.out("files"), "/etc/hosts.conf\n");
    assert_eq!(
        node.out("mounts").trim(),
        "1",
        "the device was not mounted over the tmpfs"
    );
}

/// A crash scenario: one command killed at each fault point in turn, on a fresh node.
struct Crash {
    /// Prepare a node: the state before the command.
    setup: fn() -> Node,
    /// Shell run in the namespace before the command (e.g. `reg restore`, as at boot).
    pre: &'static str,
    /// `persist PATH…` (several paths: one store transaction) or `unpersist PATH`.
    command: &'static str,
    /// The paths the command works on.
    paths: &'static [&'static str],
    points: &'static [&'static str],
}

/// One path of a crash scenario: where it lives, and its stored copy before and after.
struct Expect {
    path: &'static str,
    live: PathBuf,
    old_copy: Option<Desc>,
    new_copy: Option<Desc>,
    /// What the live path shows once the command has finished.
    live_after: Option<Desc>,
}

impl Crash {
    fn run(&self) {
        for point in self.points {
            self.run_one(point);
        }
    }

    fn unpersist(&self) -> bool {
        self.command.starts_with("unpersist")
    }

    fn expect(&self, node: &Node) -> Vec<Expect> {
        let unpersist = self.unpersist();
        self.paths
            .iter()
            .map(|&path| {
                let live = node.path(path);
                let old_copy = describe(&node.path(&format!("/config{path}")));
                // Persist stores the live content; unpersist puts the stored content back live.
                let new_copy = if unpersist { None } else { describe(&live) };
                let live_after = if unpersist {
                    old_copy.clone()
                } else {
                    new_copy.clone()
                };
                Expect {
                    path,
                    live,
                    old_copy,
                    new_copy,
                    live_after,
                }
            })
            .collect()
    }

    /// Shell copying each live path to `$OUT/live<i>` and counting its mounts.
    fn copy_live(expect: &[Expect]) -> String {
        let mut script = String::new();
        for (i, e) in expect.iter().enumerate() {
            let live = e.live.display();
            script.push_str(&format!(
                "rm -rf \"$OUT/live{i}\"; cp -a \"{live}\" \"$OUT/live{i}\"\n\
                 mounts_on \"{live}\" > \"$OUT/mounts{i}\"\n"
            ));
        }
        script
    }

    fn run_one(&self, point: &str) {
        let node = (self.setup)();
        let unpersist = self.unpersist();
        let expect = self.expect(&node);
        let old_list = node.files();
        let new_list = expected_list(&old_list, self.paths, !unpersist);
        let script = format!(
            r#"{pre}
            OVIRT_NODE_REG_FAULT="$POINT" reg {cmd}; echo "crash exit $?" >&2
            cp -a "$ROOT/config" "$OUT/snapshot"
            reg {cmd} || exit 90
            {copy}"#,
            pre = self.pre,
            cmd = self.command,
            copy = Crash::copy_live(&expect),
        );
        let out = node.ns(&script, &[("POINT", point)]);
        let ctx = format!("{} at {point}:\n{}", self.command, text(&out.stderr));
        assert!(
            out.status.success(),
            "the run after the crash failed: {ctx}"
        );
        // The process names the point without its `#n`.
        let name = point.split('#').next().unwrap();
        assert!(
            ctx.contains(&format!("fault point {name}: killing self"))
                && ctx.contains("crash exit 137"),
            "no crash: {ctx}"
        );
        check_snapshot(&node, &expect, &old_list, &new_list, &ctx);

        // After the next normal run: entirely new.
        assert_eq!(node.files(), new_list, "{ctx}");
        for (i, e) in expect.iter().enumerate() {
            let stored = node.path(&format!("/config{}", e.path));
            assert_eq!(describe(&stored), e.new_copy, "{}: {ctx}", e.path);
            assert_eq!(
                describe(&node.scratch(&format!("out/live{i}"))),
                e.live_after,
                "live view of {}: {ctx}",
                e.path
            );
            assert_eq!(
                node.out(&format!("mounts{i}")).trim(),
                if unpersist { "0" } else { "1" },
                "mounts on {}: {ctx}",
                e.path
            );
        }
        // A reboot after all that: restore shows the same live content.
        node.ns_ok(&format!("reg restore\n{}", Crash::copy_live(&expect)), &[]);
        for (i, e) in expect.iter().enumerate() {
            assert_eq!(
                describe(&node.scratch(&format!("out/live{i}"))),
                e.live_after,
                "{} after a reboot: {ctx}",
                e.path
            );
        }
    }
}

/// On disk after the crash: the files list and every stored copy old or new, never in
/// between, and every listed path stored.
fn check_snapshot(node: &Node, expect: &[Expect], old_list: &str, new_list: &str, ctx: &str) {
    let snap = node.scratch("out/snapshot");
    let list = fs::read_to_string(snap.join("files")).unwrap_or_default();
    assert!(
        list == old_list || list == new_list,
        "torn files list {list:?}: {ctx}"
    );
    for listed in list.lines() {
        let copy = describe(&snap.join(listed.trim_start_matches('/')));
        assert!(copy.is_some(), "{listed} is listed but not stored: {ctx}");
    }
    for e in expect {
        let copy = describe(&snap.join(e.path.trim_start_matches('/')));
        let listed = list.lines().any(|l| l == e.path);
        assert!(
            copy == e.old_copy || copy == e.new_copy || (copy.is_none() && !listed),
            "torn stored copy of {} {copy:?}: {ctx}",
            e.path
        );
    }
}

/// The files list with `paths` added or removed, as the store writes it.
fn expected_list(old: &str, paths: &[&str], add: bool) -> String {
    let mut lines: Vec<&str> = old.lines().filter(|l| !paths.contains(l)).collect();
    if add {
        lines.extend(paths);
    }
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

const SECRET: &str = "/etc/pki/vdsm/keys/vdsmkey.pem";
const DIR: &str = "/etc/iscsi";

/// A node with one unrelated file persisted already, and a secret not persisted yet.
fn node_with_secret() -> Node {
    let node = Node::with_dir_store();
    node.write("/etc/other.conf", "other", 0o644);
    node.ns_ok("reg persist /etc/other.conf", &[]);
    node.write(SECRET, "NEW KEY", 0o600);
    std::os::unix::fs::chown(node.path(SECRET), Some(36), Some(36)).unwrap();
    node
}

/// The secret persisted with old content; the live file (nothing mounted now) since rewritten.
fn node_with_changed_secret() -> Node {
    let node = node_with_secret();
    fs::write(node.path(SECRET), "OLD KEY").unwrap();
    node.ns_ok(&format!("reg persist {SECRET}"), &[]);
    fs::write(node.path(SECRET), "NEW KEY, longer than the old one").unwrap();
    node
}

/// The secret persisted; the live file underneath (hidden by the mount at boot) differs.
fn node_with_persisted_secret() -> Node {
    let node = node_with_secret();
    node.ns_ok(&format!("reg persist {SECRET}"), &[]);
    fs::write(node.path(SECRET), "stale underlying copy").unwrap();
    node
}

fn node_with_dir() -> Node {
    let node = Node::with_dir_store();
    node.write("/etc/other.conf", "other", 0o644);
    node.ns_ok("reg persist /etc/other.conf", &[]);
    node.write("/etc/iscsi/a", "A", 0o600);
    node.write("/etc/iscsi/sub/b", "B", 0o644);
    std::os::unix::fs::symlink("a", node.path("/etc/iscsi/link")).unwrap();
    node
}

/// The directory persisted; the live one (nothing mounted now) since changed.
fn node_with_changed_dir() -> Node {
    let node = node_with_dir();
    node.ns_ok(&format!("reg persist {DIR}"), &[]);
    node.write("/etc/iscsi/a", "A2", 0o600);
    node.write("/etc/iscsi/c", "C", 0o644);
    fs::remove_dir_all(node.path("/etc/iscsi/sub")).unwrap();
    node
}

#[test]
fn crash_while_persisting_a_new_file() {
    Crash {
        setup: node_with_secret,
        pre: "",
        command: "persist /etc/pki/vdsm/keys/vdsmkey.pem",
        paths: &[SECRET],
        points: &[
            "atomic.tmp_written",
            "atomic.before_rename",
            "atomic.after_rename",
            "store.staged",
            "store.synced",
            "store.copied",
            "store.mounted",
            "atomic.tmp_written#2",
            "atomic.before_rename#2",
            "atomic.after_rename#2",
            "store.listed",
        ],
    }
    .run();
}

#[test]
fn crash_while_persisting_a_changed_file() {
    Crash {
        setup: node_with_changed_secret,
        pre: "",
        command: "persist /etc/pki/vdsm/keys/vdsmkey.pem",
        paths: &[SECRET],
        points: &[
            "atomic.tmp_written",
            "atomic.before_rename",
            "atomic.after_rename",
            "store.staged",
            "store.copied",
            "store.mounted",
        ],
    }
    .run();
}

#[test]
fn crash_while_persisting_a_new_directory() {
    Crash {
        setup: node_with_dir,
        pre: "",
        command: "persist /etc/iscsi",
        paths: &[DIR],
        points: &[
            "atomic.after_rename",
            "atomic.after_rename#2",
            "store.staged",
            "store.copied",
            "store.mounted",
            "atomic.before_rename#3",
            "store.listed",
        ],
    }
    .run();
}

#[test]
fn crash_while_persisting_a_changed_directory() {
    Crash {
        setup: node_with_changed_dir,
        pre: "",
        command: "persist /etc/iscsi",
        paths: &[DIR],
        points: &[
            "atomic.after_rename",
            "store.synced",
            "store.swapped",
            "store.copied",
            "store.mounted",
        ],
    }
    .run();
}

const NEW_FILE: &str = "/etc/vdsm/vdsm.conf";

/// For one transaction of three: the secret persisted and since changed, a new file and a
/// new directory.
fn node_with_batch() -> Node {
    let node = node_with_changed_secret();
    node.write(NEW_FILE, "[vars]\nssl = true\n", 0o644);
    node.write("/etc/iscsi/a", "A", 0o600);
    node.write("/etc/iscsi/sub/b", "B", 0o644);
    node
}

/// Several paths persisted in one store transaction: staged one by one (four file writes),
/// synced once, renamed one by one, mounted, and listed with one write of the files list
/// (the fifth). A crash between the renames leaves some copies new and some old.
#[test]
fn crash_while_persisting_a_batch() {
    Crash {
        setup: node_with_batch,
        pre: "",
        command: "persist /etc/pki/vdsm/keys/vdsmkey.pem /etc/vdsm/vdsm.conf /etc/iscsi",
        paths: &[SECRET, NEW_FILE, DIR],
        points: &[
            "store.staged",
            "atomic.after_rename#2",
            "store.staged#3",
            "store.synced",
            "store.copied",
            "store.copied#2",
            "store.copied#3",
            "store.mounted",
            "store.mounted#2",
            "atomic.before_rename#5",
            "atomic.after_rename#5",
            "store.listed",
        ],
    }
    .run();
}

#[test]
fn crash_while_unpersisting_a_file() {
    Crash {
        setup: node_with_persisted_secret,
        pre: "reg restore",
        command: "unpersist /etc/pki/vdsm/keys/vdsmkey.pem",
        paths: &[SECRET],
        points: &[
            "store.unmounted",
            "atomic.tmp_written",
            "atomic.before_rename",
            "store.staged",
            "atomic.after_rename",
            "store.copied_back",
            "atomic.tmp_written#2",
            "atomic.before_rename#2",
            "atomic.after_rename#2",
            "store.unlisted",
        ],
    }
    .run();
}

#[test]
fn crash_while_unpersisting_a_directory() {
    Crash {
        setup: || {
            let node = node_with_changed_dir();
            node.ns_ok(&format!("reg persist {DIR}"), &[]);
            fs::write(node.path("/etc/iscsi/c"), "stale underlying copy").unwrap();
            node
        },
        pre: "reg restore",
        command: "unpersist /etc/iscsi",
        paths: &[DIR],
        points: &[
            "store.unmounted",
            "atomic.after_rename",
            "store.swapped",
            "store.copied_back",
            "store.unlisted",
        ],
    }
    .run();
}
