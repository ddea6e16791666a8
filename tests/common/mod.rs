//! The test node shared by the integration tests: a temporary root tree, and the real binary
//! run on it as a "boot" in a private mount namespace (the store bind-mounts persisted files;
//! a fresh namespace also plays the part of a reboot: the next run starts with no mounts).
//! Only root can make one: run by another user (the default test tier, README "Testing") the
//! binary runs directly, and only commands that mount nothing belong in that tier.
#![allow(dead_code)] // each test file uses its own part

use std::fs;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ovirt-node-reg");
/// The node's DMI UUID, as vdsm reports it (lower case).
pub const UUID: &str = "4c4c4544-0042-3510-8052-b4c04f4e3232";

pub struct Node {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Node {
    /// A root tree with a directory store at /config and a DMI UUID.
    pub fn new() -> Node {
        Node::with_dir(tempfile::tempdir().unwrap())
    }

    /// The same, under `parent` (e.g. a tmpfs for a crowd of nodes).
    pub fn new_in(parent: &std::path::Path) -> Node {
        Node::with_dir(tempfile::tempdir_in(parent).unwrap())
    }

    fn with_dir(dir: tempfile::TempDir) -> Node {
        let root = dir.path().to_path_buf();
        let node = Node { _dir: dir, root };
        fs::create_dir_all(node.path("/config")).unwrap();
        node.write(
            "/sys/class/dmi/id/product_uuid",
            &format!("{}\n", UUID.to_uppercase()),
        );
        node
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    pub fn write(&self, p: &str, text: &str) {
        let p = self.path(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    pub fn read(&self, p: &str) -> String {
        fs::read_to_string(self.path(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    /// The binary with `args` under `--root`, in a fresh private mount namespace, with the
    /// fault point `fault` armed (or none); its output and its stderr as text.
    pub fn run_with(&self, args: &[&str], fault: Option<&str>) -> (Output, String) {
        self.run_env(args, fault, &[])
    }

    /// [`Node::run_with`] with extra environment variables (test hooks).
    pub fn run_env(
        &self,
        args: &[&str],
        fault: Option<&str>,
        env: &[(&str, &std::path::Path)],
    ) -> (Output, String) {
        let mut cmd = command();
        cmd.envs(env.iter().copied());
        cmd.arg("--root").arg(&self.root).args(args);
        match fault {
            Some(f) => cmd.env("OVIRT_NODE_REG_FAULT", f),
            None => cmd.env_remove("OVIRT_NODE_REG_FAULT"),
        };
        let out = cmd.output().unwrap_or_else(|e| {
            panic!("running {cmd:?}: {e} (unshare: apt-get install util-linux)")
        });
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out, err)
    }

    pub fn run(&self, args: &[&str]) -> (Output, String) {
        self.run_with(args, None)
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.run(args).0
    }
}

/// A stock engine (protocol v1): a run stops after registering (the v2 enrolment that follows
/// is tests/enroll_flow.rs).
pub fn stock_engine() -> qemu_tests::Handle {
    let cfg = qemu_tests::SimConfig {
        protocol_version: 1,
        ..qemu_tests::SimConfig::default()
    };
    qemu_tests::Simulator::start(cfg).expect("simulator starts")
}

/// Run `cmd` with `input` on its stdin (closed after it), capturing stdout and stderr.
pub fn output_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(input.as_bytes())
        .expect("writing the command's stdin");
    child.wait_with_output().expect("the command's output")
}

/// A node for `setup`: a directory store, a host name, short retries, and `shadow` as its
/// `/etc/shadow`.
pub fn setup_node(shadow: &str) -> Node {
    let node = Node::new();
    node.write(
        "/proc/cmdline",
        "ro ovirt.reg.store=/config hostname=node1.example.com ovirt.reg.retry_base=1 \
         ovirt.reg.retry_cap=2 ovirt.reg.timeout=30\n",
    );
    node.write("/etc/shadow", shadow);
    node
}

/// The binary, in a fresh private mount namespace when we are root (so nothing it mounts
/// leaks into the machine); as another user, directly: it can mount nothing then. The
/// privileged tier insists on root.
pub fn command() -> Command {
    if cfg!(feature = "privileged") {
        require_root();
    }
    if !rustix::process::geteuid().is_root() {
        return Command::new(BIN);
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", BIN]);
    cmd
}

/// Fail (never skip) a privileged test run by another user, saying how to run it.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (private mount and network namespaces, loop devices, the \
         worker's drop to nobody): run the privileged tier as root, `cargo test --features \
         privileged` (build-support/test-all.sh runs every tier); a plain `cargo test` runs \
         the tests any user can"
    );
}

/// Start dnsmasq from `cmd` (which passes `--pid-file=pid_file`) and wait, at most 10 s, until
/// it has written that pid file: it does so once it listens. A dnsmasq that never gets there
/// is killed before the test fails.
pub fn start_dnsmasq(cmd: &mut Command, pid_file: &Path) -> Child {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting dnsmasq");
    let until = Instant::now() + Duration::from_secs(10);
    while !pid_file.exists() {
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dnsmasq did not start within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// `tool --version` runs: the tool is installed (tests name the package when it is not).
pub fn tool_present(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
