//! `ovirt-node-reg setup` on a real terminal: tmux runs it in a pseudo-terminal, the test
//! types the answers and reads the screen. The engine simulator runs in-process on loopback;
//! the node is a private `--root`. Every wait polls the screen with a deadline.
//! tmux is required (build-support/setup.sh installs it): without it these tests fail.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use qemu_tests::Handle;

mod common;
use common::{setup_node, stock_engine, Node, BIN};

const PASSWORD: &str = "hunter2-not-shown";
const WAIT: Duration = Duration::from_secs(40);
const SHADOW: &str = "root:!:19000:0:99999:7:::\n";

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    dir: tempfile::TempDir,
}

impl Tmux {
    /// `setup` under `node`'s root in a 200×50 terminal; its exit status and the terminal's
    /// modes afterwards are written to files.
    fn start(node: &Node) -> Tmux {
        let found = Command::new("tmux").arg("-V").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "tmux is missing: apt-get install tmux (build-support/setup.sh installs it)"
        );
        let t = Tmux {
            dir: tempfile::tempdir().unwrap(),
        };
        let script = format!(
            "unshare --mount --propagation private {BIN} --root {} setup; echo $? > {}; stty -a > {}; sleep 300",
            node.root.display(),
            t.file("rc").display(),
            t.file("stty").display()
        );
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "s",
            "-x",
            "200",
            "-y",
            "50",
            &script,
        ]);
        t
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(self.file("sock"))
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-t", "s", "-S", "-500"])
    }

    /// Wait until the screen shows `text`; the screen is the failure message.
    fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                start.elapsed() < WAIT,
                "no {text:?} within {WAIT:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Type `text` and Enter.
    fn answer(&self, text: &str) {
        if !text.is_empty() {
            self.tmux(&["send-keys", "-t", "s", "-l", text]);
        }
        self.tmux(&["send-keys", "-t", "s", "Enter"]);
    }

    fn key(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "s", key]);
    }

    /// The exit status of setup, once it has ended.
    fn exit_status(&self) -> String {
        let start = Instant::now();
        loop {
            if let Ok(rc) =
                fs::read_to_string(self.file("stty")).and(fs::read_to_string(self.file("rc")))
            {
                return rc.trim().to_string();
            }
            assert!(
                start.elapsed() < WAIT,
                "setup did not end; the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(self.file("sock"))
            .arg("kill-server")
            .output();
    }
}

fn node() -> Node {
    setup_node(SHADOW)
}

/// Address, a bad port then the right one, the CA's fingerprints confirmed.
fn up_to_the_pin(t: &Tmux, sim: &Handle) -> String {
    t.wait_for("Engine address");
    t.answer("127.0.0.1");
    t.wait_for("Engine port [443]:");
    t.answer("70000");
    t.wait_for("\"70000\" is not accepted: expected a port number from 1 to 65535; try again");
    t.answer(&sim.port().to_string());
    let screen = t.wait_for("Type \"yes\" to pin this CA");
    t.answer("yes");
    screen
}

#[test]
fn the_fingerprint_shown_is_the_engines_and_ctrl_c_changes_nothing() {
    let sim = stock_engine();
    let node = node();
    let t = Tmux::start(&node);
    let screen = up_to_the_pin(&t, &sim);
    assert!(
        screen.contains(&format!("SHA-256: sha256:{}", sim.ca_sha256())),
        "{screen}"
    );
    let sha1 = sim.ca_sha1().to_uppercase();
    assert!(screen.contains(&format!("SHA-1:   {sha1}")), "{screen}");
    t.wait_for("Set root's password");
    t.answer("y");
    t.wait_for("New password for root:");
    t.answer(PASSWORD);
    t.wait_for("Again:");
    t.key("C-c");
    assert_eq!(t.exit_status(), "130", "{}", t.screen());
    let screen = t.screen();
    assert!(
        screen.contains("setup: interrupted: nothing was changed"),
        "{screen}"
    );
    assert!(
        !screen.contains(PASSWORD),
        "the password is never echoed:\n{screen}"
    );
    let stty = fs::read_to_string(t.file("stty")).unwrap();
    assert!(
        stty.split_whitespace().any(|w| w == "echo"),
        "echo is back on: {stty}"
    );
    assert!(!node.path("/etc/default/ovirt").exists() && !node.path("/config/files").exists());
    assert_eq!(node.read("/etc/shadow"), SHADOW);
    assert!(sim
        .requests()
        .iter()
        .all(|e| e.command() != Some("register")));
}

#[test]
fn a_whole_session_writes_and_registers() {
    let sim = stock_engine();
    let node = node();
    let t = Tmux::start(&node);
    up_to_the_pin(&t, &sim);
    t.wait_for("Set root's password");
    t.answer("y");
    t.wait_for("New password for root:");
    t.answer(PASSWORD);
    t.wait_for("Again:");
    t.answer(PASSWORD);
    t.wait_for("Allow SSH password login (ssh_pwauth)? [Y/n]");
    t.answer("");
    t.wait_for("Configure the management network");
    t.answer("n");
    t.wait_for("Write these settings? [y/N]");
    t.answer("y");
    t.wait_for("Register with the engine now? [Y/n]");
    t.answer("");
    t.wait_for("result:");
    assert_eq!(t.exit_status(), "0", "{}", t.screen());
    let screen = t.screen();
    assert!(
        screen.contains("registered, waiting for engine host deploy"),
        "{screen}"
    );
    assert!(
        !screen.contains(PASSWORD) && !screen.contains("$6$"),
        "{screen}"
    );
    let shadow = node.read("/config/etc/shadow");
    let hash = shadow.lines().next().unwrap().split(':').nth(1).unwrap();
    assert!(
        ovirt_node_reg::crypt::verify(PASSWORD.as_bytes(), hash),
        "{shadow}"
    );
    let defaults = node.read("/etc/default/ovirt");
    assert!(
        defaults.contains(&format!("OVIRT_REG_CA_PIN=\"sha256:{}\"", sim.ca_sha256())),
        "{defaults}"
    );
    assert!(sim
        .requests()
        .iter()
        .any(|e| e.command() == Some("register")));
}

#[test]
fn end_of_input_changes_nothing() {
    let sim = stock_engine();
    let node = node();
    let t = Tmux::start(&node);
    up_to_the_pin(&t, &sim);
    t.wait_for("Set root's password");
    t.key("C-d");
    assert_eq!(t.exit_status(), "1", "{}", t.screen());
    t.wait_for("setup: end of input: nothing was changed");
    assert!(!node.path("/etc/default/ovirt").exists());
    assert_eq!(node.read("/etc/shadow"), SHADOW);
}
