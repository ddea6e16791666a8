//! `ovirt-node-reg setup` with flags (the scripted form) against the engine simulator,
//! in-process on loopback, under a private `--root`; and `boot` applying
//! `rhevm_admin_password=` / `ssh_pwauth=`. The terminal form is tests/setup_tty.rs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use qemu_tests::Handle;

mod common;
use common::{output_with_stdin, setup_node, stock_engine, Node, BIN};

/// SHA-512-crypt of "secret one" (any valid hash does: it is only written).
const HASH: &str = "$6$rounds=1000$abc$dENps5UOWRfLYBe8otmm5nXQ3Ubvt4RMTI8o91NCe7vbQ23d0eoqaHsS.jWywAxjcrVp0pF.K7obec3V5RYkt1";

/// `/etc/shadow` as Debian ships it (root:shadow 0640).
fn node() -> Node {
    let node = setup_node("root:!:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n");
    fs::set_permissions(node.path("/etc/shadow"), fs::Permissions::from_mode(0o640)).unwrap();
    node
}

fn setup(node: &Node, args: &[&str]) -> (Output, String) {
    let mut all = vec!["setup"];
    all.extend_from_slice(args);
    let (out, err) = node.run(&all);
    let text = format!("{}{err}", String::from_utf8_lossy(&out.stdout));
    (out, text)
}

fn pin(sim: &Handle) -> String {
    format!("sha256:{}", sim.ca_sha256())
}

fn commands(sim: &Handle) -> Vec<String> {
    sim.requests()
        .iter()
        .filter_map(|e| e.command().map(str::to_string).or_else(|| e.path.clone()))
        .collect()
}

#[test]
fn flags_write_what_boot_writes_and_register() {
    let sim = stock_engine();
    let node = node();
    let engine = format!("127.0.0.1:{}", sim.port());
    let (out, text) = setup(
        &node,
        &[
            "--engine",
            &engine,
            "--ca-pin",
            &pin(&sim),
            "--root-password-hash",
            HASH,
            "--ssh-pwauth",
            "--yes",
        ],
    );
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains(HASH) && !text.contains("dENps5"),
        "the hash is never printed: {text}"
    );
    // The status, as `status` prints it.
    assert!(
        text.contains("result:") && text.contains("registered, waiting for engine host deploy"),
        "{text}"
    );
    assert!(
        commands(&sim).contains(&"register".to_string()),
        "{:?}",
        commands(&sim)
    );

    let defaults = node.read("/etc/default/ovirt");
    assert!(
        defaults.contains(&format!("OVIRT_MANAGEMENT_SERVER=\"{engine}\"")),
        "{defaults}"
    );
    assert!(
        defaults.contains(&format!("OVIRT_REG_CA_PIN=\"{}\"", pin(&sim))),
        "{defaults}"
    );
    assert!(defaults.contains("OVIRT_SSH_PWAUTH=\"1\""), "{defaults}");
    assert!(!defaults.contains("$6$"), "{defaults}");
    let reg = node.read("/etc/vdsm-reg/vdsm-reg.conf");
    assert!(
        reg.contains("vdc_host_name=127.0.0.1\n")
            && reg.contains(&format!("vdc_host_port={}\n", sim.port())),
        "{reg}"
    );

    let shadow = node.read("/config/etc/shadow");
    assert!(shadow.starts_with(&format!("root:{HASH}:")), "{shadow}");
    assert!(
        shadow.ends_with("daemon:*:19000:0:99999:7:::\n"),
        "{shadow}"
    );
    let mode = fs::metadata(node.path("/etc/shadow"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o640, "the system's mode is kept");
    // No sshd_config in this root: the drop-in.
    assert_eq!(
        node.read("/config/etc/ssh/sshd_config.d/01-ovirt-node-reg.conf")
            .lines()
            .last(),
        Some("PasswordAuthentication yes")
    );
    let files = node.read("/config/files");
    for p in [
        "/etc/shadow",
        "/etc/default/ovirt",
        "/etc/vdsm-reg/vdsm-reg.conf",
        "/etc/ssh/sshd_config.d/01-ovirt-node-reg.conf",
    ] {
        assert!(files.contains(&format!("{p}\n")), "{p} persisted: {files}");
    }
}

#[test]
fn a_wrong_or_missing_pin_changes_nothing() {
    let sim = stock_engine();
    let node = node();
    let engine = format!("127.0.0.1:{}", sim.port());
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let (out, text) = setup(&node, &["--engine", &engine, "--ca-pin", &wrong, "--yes"]);
    assert!(!out.status.success());
    assert!(
        text.contains("does not match") && text.contains(&pin(&sim)),
        "{text}"
    );
    // --yes is no pin: refused, with what to compare.
    let (out, text) = setup(&node, &["--engine", &engine, "--yes"]);
    assert!(!out.status.success());
    assert!(text.contains(&format!("--ca-pin {}", pin(&sim))), "{text}");
    assert!(!node.path("/etc/default/ovirt").exists() && !node.path("/config/files").exists());
    assert_eq!(
        node.read("/etc/shadow"),
        "root:!:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
    );
    assert!(
        commands(&sim).iter().all(|c| c == "get-pki-trust"),
        "only the CA was fetched: {:?}",
        commands(&sim)
    );
}

#[test]
fn without_a_terminal_the_flags_are_required() {
    let node = node();
    let out = Command::new(BIN)
        .arg("--root")
        .arg(&node.root)
        .arg("setup")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stdin is not a terminal") && err.contains("--engine"),
        "{err}"
    );
}

#[test]
fn boot_applies_the_password_hash_and_ssh_pwauth() {
    let sim = stock_engine();
    let node = node();
    node.write(
        "/etc/ssh/sshd_config",
        "Port 22\n#PasswordAuthentication yes\nMatch User guest\n  PasswordAuthentication yes\n",
    );
    node.write(
        "/proc/cmdline",
        &format!(
            "ro management_server=127.0.0.1:{} ovirt.reg.ca_pin={} ovirt.reg.store=/config \
             ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 ovirt.reg.timeout=30 \
             rhevm_admin_password={HASH} ssh_pwauth=0\n",
            sim.port(),
            pin(&sim)
        ),
    );
    let (out, err) = node.run(&["boot"]);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("dENps5"), "{err}");
    assert!(node
        .read("/config/etc/shadow")
        .starts_with(&format!("root:{HASH}:")));
    // No sshd_config.d: sshd_config itself, before the Match block.
    assert_eq!(
        node.read("/config/etc/ssh/sshd_config"),
        "Port 22\n#PasswordAuthentication yes\nPasswordAuthentication no\nMatch User guest\n  PasswordAuthentication yes\n"
    );
    let files = node.read("/config/files");
    assert!(
        files.contains("/etc/shadow\n") && files.contains("/etc/ssh/sshd_config\n"),
        "{files}"
    );
}

#[test]
fn an_included_drop_in_directory_gets_the_setting_and_sshd_config_stays() {
    let sim = stock_engine();
    let node = node();
    let config = "Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n";
    node.write("/etc/ssh/sshd_config", config);
    fs::create_dir_all(node.path("/etc/ssh/sshd_config.d")).unwrap();
    let engine = format!("127.0.0.1:{}", sim.port());
    let (out, text) = setup(
        &node,
        &[
            "--engine",
            &engine,
            "--ca-pin",
            &pin(&sim),
            "--no-ssh-pwauth",
        ],
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("register with `ovirt-node-reg boot`"),
        "without --yes: {text}"
    );
    assert!(!commands(&sim).contains(&"register".to_string()));
    assert_eq!(node.read("/etc/ssh/sshd_config"), config);
    let drop_in = "/etc/ssh/sshd_config.d/01-ovirt-node-reg.conf";
    assert!(node.read(drop_in).ends_with("PasswordAuthentication no\n"));
    let mode = fs::metadata(node.path(drop_in))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        node.read("/etc/shadow"),
        "root:!:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
        "no password asked for, none set"
    );
}

#[test]
fn the_hash_can_come_from_stdin() {
    let sim = stock_engine();
    let node = node();
    let engine = format!("127.0.0.1:{}", sim.port());
    let out = output_with_stdin(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", BIN, "--root"])
            .arg(&node.root)
            .args([
                "setup",
                "--engine",
                &engine,
                "--ca-pin",
                &pin(&sim),
                "--root-password-hash",
                "-",
            ]),
        &format!("{HASH}\n"),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(node
        .read("/config/etc/shadow")
        .starts_with(&format!("root:{HASH}:")));
    // A bad one is refused without being shown.
    let out = output_with_stdin(
        Command::new(BIN).arg("--root").arg(&node.root).args([
            "setup",
            "--engine",
            &engine,
            "--root-password-hash",
            "-",
        ]),
        "$1$salt$TOPSECRETMD5\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--root-password-hash: expected"),
        "{err}"
    );
    assert!(!err.contains("TOPSECRET"), "{err}");
}
