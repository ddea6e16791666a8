//! Nothing escapes `--root` or the store: a symlink planted in the store (a CONFIG disk is
//! untrusted input) or in the tree makes the real binary fail with an error naming the link,
//! and nothing is written, chowned or chmod-ed where it points. A files list from such a disk
//! with `/`, `..` or relative lines has those refused with a warning, the rest restored.
//! Boots run against the engine simulator in-process, loopback only, each in a private
//! mount namespace with a short `ovirt.reg.timeout`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use qemu_tests::{Handle, SimConfig, Simulator};

mod common;
use common::{Node, UUID};

const TOKEN_FILE: &str = "/etc/ovirt-node-reg/token";

impl Node {
    /// Boot against `sim` (v2 when it speaks v2), with a token file for auto-approval.
    fn boot(&self, sim: &Handle, timeout: u64) -> (Output, String) {
        let token = sim
            .create_token(Duration::from_secs(600), Some(UUID))
            .unwrap();
        self.write(TOKEN_FILE, &format!("{}\n", token.token));
        fs::set_permissions(self.path(TOKEN_FILE), fs::Permissions::from_mode(0o600)).unwrap();
        let cmdline = format!(
            "ro management_server=127.0.0.1:{} ovirt.reg.store=/config hostname=node1.example.com \
             ovirt.reg.ca_pin=sha256:{} ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 \
             ovirt.reg.timeout={timeout} ovirt.reg.token_file={TOKEN_FILE}\n",
            sim.port(),
            sim.ca_sha256()
        );
        self.write("/proc/cmdline", &cmdline);
        self.run(&["--debug", "boot"])
    }
}

/// A directory outside the root, with one file in it: where a planted link points.
struct Elsewhere {
    dir: tempfile::TempDir,
}

impl Elsewhere {
    fn new() -> Elsewhere {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.path().join("keep"), "keep").unwrap();
        fs::set_permissions(dir.path().join("keep"), fs::Permissions::from_mode(0o644)).unwrap();
        Elsewhere { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Every entry under `top` (itself included) with its kind, mode, owner and content: equal
/// snapshots mean nothing was written, chowned or chmod-ed there.
fn snapshot(top: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![top.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let what = if m.is_dir() {
            todo.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            "dir".to_string()
        } else if m.file_type().is_symlink() {
            format!("-> {}", fs::read_link(&p).unwrap().display())
        } else {
            format!("{:?}", fs::read(&p).unwrap())
        };
        let key = p.strip_prefix(top).unwrap().to_path_buf();
        out.insert(
            key,
            format!("{:o} {}:{} {what}", m.mode(), m.uid(), m.gid()),
        );
    }
    out
}

fn banner(err: &str) -> &str {
    err.lines()
        .rev()
        .find(|l| l.starts_with("ovirt-node-reg: "))
        .unwrap_or_else(|| panic!("no banner: {err}"))
}

/// The run failed at `step` with an error naming `link` as a symbolic link.
fn assert_refused(out: &Output, err: &str, step: &str, link: &Path) {
    let line = banner(err);
    assert!(!out.status.success(), "{err}");
    assert!(
        line.starts_with(&format!("ovirt-node-reg: FAILED at step {step}: ")),
        "{line}"
    );
    let named = format!("{}: is a symbolic link; refusing to", link.display());
    assert!(line.contains(&named), "{named}: {line}");
}

fn start() -> Handle {
    let sim = Simulator::start(SimConfig::default()).expect("simulator starts");
    sim.set_retry_after(1);
    sim
}

#[test]
fn store_pending_link_is_refused_and_nothing_is_written_there() {
    let sim = start();
    let node = Node::new();
    let elsewhere = Elsewhere::new();
    fs::create_dir_all(node.path("/config/ovirt-node-reg")).unwrap();
    let link = node.path("/config/ovirt-node-reg/pending");
    symlink(elsewhere.path(), &link).unwrap();
    let before = snapshot(elsewhere.path());
    let (out, err) = node.boot(&sim, 20);
    assert_refused(&out, &err, "csr_submitted", &link);
    assert_eq!(
        snapshot(elsewhere.path()),
        before,
        "no key written or chmod-ed there"
    );
    assert!(sim.enrollment(UUID).is_none(), "nothing submitted");
}

#[test]
fn store_state_dir_link_to_etc_is_refused_and_nothing_is_written_there() {
    let sim = start();
    let node = Node::new();
    node.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    let link = node.path("/config/ovirt-node-reg");
    symlink("../etc", &link).unwrap();
    let before = snapshot(&node.path("/etc"));
    let (out, err) = node.boot(&sim, 20);
    assert_refused(&out, &err, "configured", &link);
    assert!(
        err.contains("cannot keep the status in the store"),
        "the status copy is refused too: {err}"
    );
    // The configured step writes its own files into /etc (the live tree, not through the
    // link); what was there before and /etc itself are untouched, and no state went there.
    let after = snapshot(&node.path("/etc"));
    for (path, was) in &before {
        assert_eq!(after.get(path), Some(was), "{}", path.display());
    }
    for state in ["state.json", "status.json", "pending", "ca-pin"] {
        assert!(
            !node.path("/etc").join(state).exists(),
            "{state} written through the link"
        );
    }
    assert!(
        sim.requests().is_empty(),
        "nothing sent after the failed checkpoint"
    );
}

#[test]
fn tree_vdsm_keys_link_is_refused_and_a_later_boot_recovers() {
    let sim = start();
    let node = Node::new();
    let elsewhere = Elsewhere::new();
    fs::create_dir_all(node.path("/etc/pki/vdsm")).unwrap();
    let link = node.path("/etc/pki/vdsm/keys");
    symlink(elsewhere.path(), &link).unwrap();
    let before = snapshot(elsewhere.path());
    let (out, err) = node.boot(&sim, 30);
    assert_refused(&out, &err, "certs_installed", &link);
    assert_eq!(
        snapshot(elsewhere.path()),
        before,
        "no key written or chowned there"
    );
    assert!(
        node.path("/config/ovirt-node-reg/pending/vdsmkey.pem")
            .is_file(),
        "the pending keys are kept for the next boot"
    );
    // Not a boot that fails forever: once the link is gone, the next boot finishes.
    fs::remove_file(&link).unwrap();
    let (out, err) = node.boot(&sim, 30);
    assert!(out.status.success(), "{err}");
    assert!(
        banner(&err).starts_with("ovirt-node-reg: ok, step done"),
        "{err}"
    );
    assert!(node.path("/config/etc/pki/vdsm/keys/vdsmkey.pem").is_file());
    assert_eq!(
        sim.enrollment(UUID).unwrap().submissions,
        1,
        "the same keys"
    );
}

#[test]
fn tree_root_ssh_link_is_refused_and_nothing_is_written_there() {
    let sim = start();
    let node = Node::new();
    let elsewhere = Elsewhere::new();
    fs::create_dir_all(node.path("/root")).unwrap();
    let link = node.path("/root/.ssh");
    symlink(elsewhere.path(), &link).unwrap();
    let before = snapshot(elsewhere.path());
    let (out, err) = node.boot(&sim, 20);
    assert_refused(&out, &err, "registered", &link);
    assert_eq!(
        snapshot(elsewhere.path()),
        before,
        "no authorized_keys written there, its mode not changed to 0700"
    );
    assert!(!node.path("/config/root").exists(), "nothing persisted");
}

#[test]
fn files_list_refuses_bad_lines_and_restores_the_rest() {
    let node = Node::new();
    let elsewhere = Elsewhere::new();
    node.write("/proc/cmdline", "ro ovirt.reg.store=/config\n");
    node.write("/config/etc/good.conf", "good\n");
    node.write("/config/etc/other.conf", "other\n");
    let escape = format!("/../../../..{}/keep", elsewhere.path().display());
    let list =
        format!("/etc/good.conf\n/\n{escape}\n/etc/../etc/shadow\nrelative/x\n/etc/other.conf\n");
    node.write("/config/files", &list);
    let before = snapshot(elsewhere.path());
    let (out, err) = node.run(&["restore"]);
    assert!(
        out.status.success(),
        "one bad line does not fail the boot: {err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout, "restored /etc/good.conf\nrestored /etc/other.conf\n",
        "{err}"
    );
    for (line, why) in [
        ("/", "the root directory cannot be persisted"),
        (escape.as_str(), "`..` is not allowed"),
        ("/etc/../etc/shadow", "`..` is not allowed"),
        ("relative/x", "not an absolute path"),
    ] {
        let warning = format!("refusing the line {line:?}: {why}");
        assert!(err.contains(&warning), "{warning}: {err}");
    }
    assert_eq!(snapshot(elsewhere.path()), before);
    assert!(!node.path("/etc/shadow").exists());
    assert_eq!(
        node.read("/config/files"),
        list,
        "the list is left as the disk had it"
    );
}
