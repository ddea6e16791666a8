//! The real binary, run against temporary root trees. Commands that mount (the store
//! bind-mounts persisted files) run in a private mount namespace (`unshare -m`), which
//! also plays the part of a reboot: the next run starts with no mounts. Only root can: the
//! boots that persist are in the privileged tier (`cargo test --features privileged`); the
//! rest run for any user.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

#[cfg(feature = "privileged")]
use qemu_tests::Handle;

mod common;
#[cfg(feature = "privileged")]
use common::stock_engine;
use common::{output_with_stdin, Node, BIN};

/// A node whose kernel command line is `cmdline`.
fn node_with(cmdline: &str) -> Node {
    let node = Node::new();
    node.write("/proc/cmdline", cmdline);
    node
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[cfg(feature = "privileged")]
/// A PXE-like command line pointing at a simulated engine on loopback (pinned).
fn good(sim: &Handle) -> String {
    format!(
        "BOOT_IMAGE=vmlinuz ro management_server=127.0.0.1:{} BOOTIF=01-52-54-00-12-34-56 ip=dhcp \
         ovirt.reg.store=/config ovirt.reg.ca_pin=sha256:{} ovirt.reg.timeout=20 console=ttyS0\n",
        sim.port(),
        sim.ca_sha256()
    )
}

/// A valid command line for tests that never reach the network.
const OFFLINE: &str = "ro management_server=127.0.0.1:8443 ovirt.reg.store=/config\n";

#[test]
fn help_for_every_subcommand() {
    for sub in [
        &[][..],
        &["boot"],
        &["config", "show"],
        &["config", "check"],
        &["persist"],
        &["unpersist"],
        &["restore"],
        &["status"],
        &["install"],
        &["upgrade"],
        &["version"],
    ] {
        let out = Command::new(BIN).args(sub).arg("--help").output().unwrap();
        assert_eq!(code(&out), 0, "{sub:?} --help");
        assert!(
            text(&out.stdout).contains("Usage:"),
            "{sub:?}: {}",
            text(&out.stdout)
        );
    }
    let out = Command::new(BIN).arg("version").output().unwrap();
    assert!(text(&out.stdout).starts_with("ovirt-node-reg 0."));
}

#[test]
fn config_show_json_sources_and_errors() {
    let node = node_with(
        "management_server=engine:70000 hostname=node1.example.com BOOTIF=01-52-54-00-12-34\n",
    );
    node.write("/etc/default/ovirt", "OVIRT_NTP=\"ntp.example.com\"\n");
    let out = node.output(&["config", "show", "--json"]);
    assert_eq!(
        code(&out),
        2,
        "errors give exit code 2: {}",
        text(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(errors, ["management_server", "BOOTIF"]);
    assert_eq!(v["settings"]["hostname"]["values"][0], "node1.example.com");
    assert_eq!(v["settings"]["hostname"]["source"], "cmdline");
    assert_eq!(v["settings"]["ntp"]["source"], "default-ovirt");
    assert_eq!(v["settings"]["ovirt.reg.timeout"]["source"], "default");
}

#[test]
fn config_show_text_with_cmdline_file_and_no_secret() {
    let node = node_with("");
    node.write(
        "/other-cmdline",
        "management_server=[fd00::1]:8443 rhevm_admin_password=$6$salt$TOPSECRETHASH\n",
    );
    let out = Command::new(BIN)
        .arg("--root")
        .arg(&node.root)
        .arg("--cmdline")
        .arg(node.path("/other-cmdline"))
        .args(["config", "show"])
        .output()
        .unwrap();
    let all = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(code(&out), 0, "{all}");
    assert!(all.contains("[fd00::1]:8443"), "{all}");
    assert!(
        all.contains("rhevm_admin_password") && all.contains("<redacted>"),
        "{all}"
    );
    assert!(!all.contains("TOPSECRETHASH"), "secret printed: {all}");
}

#[cfg(feature = "privileged")]
#[test]
fn boot_configures_persists_and_second_boot_changes_nothing() {
    let sim = stock_engine();
    let node = node_with(&good(&sim));
    let out = node.output(&["boot"]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 0, "{err}");
    assert!(
        err.contains("ovirt-node-reg: waiting, step csr_submitted"),
        "banner: {err}"
    );
    let listed = node.read("/config/files");
    assert_eq!(
        listed,
        "/etc/default/ovirt\n/etc/pki/ovirt-engine/ca.pem\n/etc/vdsm-reg/vdsm-reg.conf\n\
         /etc/vdsm/vdsm.id\n/root/.ssh/authorized_keys\n"
    );
    let ovirt = node.read("/config/etc/default/ovirt");
    assert!(
        ovirt.contains(&format!(
            "OVIRT_MANAGEMENT_SERVER=\"127.0.0.1:{}\"\n",
            sim.port()
        )),
        "{ovirt}"
    );
    assert!(ovirt.contains("OVIRT_IP_ADDRESS=\"\"\n"), "{ovirt}");
    let conf = node.read("/config/etc/vdsm-reg/vdsm-reg.conf");
    assert_eq!(
        conf,
        format!(
            "[vars]\nvdc_host_name=127.0.0.1\nvdc_host_port={}\n",
            sim.port()
        )
    );
    assert_eq!(
        node.read("/config/etc/vdsm/vdsm.id"),
        "4c4c4544-0042-3510-8052-b4c04f4e3232"
    );
    let state: serde_json::Value =
        serde_json::from_str(&node.read("/config/ovirt-node-reg/state.json")).unwrap();
    assert_eq!(
        state["completed"],
        serde_json::json!(["configured", "clock_ok", "engine_trusted", "registered"])
    );
    let status: serde_json::Value =
        serde_json::from_str(&node.read("/run/ovirt-node-reg/status.json")).unwrap();
    assert_eq!(
        (status["step"].as_str(), status["result"].as_str()),
        (Some("csr_submitted"), Some("waiting"))
    );

    // Next boot: /run is empty again, the store is not.
    fs::remove_dir_all(node.path("/run")).unwrap();
    let stored = || -> Vec<String> {
        let files = [
            "/config/files",
            "/config/root/.ssh/authorized_keys",
            "/config/etc/default/ovirt",
            "/config/etc/vdsm-reg/vdsm-reg.conf",
        ];
        files.iter().map(|p| node.read(p)).collect()
    };
    let before = stored();
    let out = node.output(&["boot"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("restored 5 persisted paths"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(before, stored());
    let out = node.output(&["status"]);
    assert_eq!(code(&out), 0);
    assert!(
        text(&out.stdout)
            .contains("completed: configured → clock_ok → engine_trusted → registered"),
        "{}",
        text(&out.stdout)
    );
}

#[cfg(feature = "privileged")]
#[test]
fn invalid_setting_fails_clearly_and_keeps_persisted_files() {
    let sim = stock_engine();
    let node = node_with(&good(&sim));
    assert_eq!(code(&node.output(&["boot"])), 0);
    let before = node.read("/config/etc/default/ovirt");
    node.write(
        "/proc/cmdline",
        "management_server=engine.example.com:99999 ovirt.reg.store=/config\n",
    );
    let out = node.output(&["boot"]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("ovirt-node-reg: FAILED at step configured: invalid settings: management_server=engine.example.com:99999: expected HOST[:PORT]"),
        "{err}"
    );
    assert_eq!(
        node.read("/config/etc/default/ovirt"),
        before,
        "persisted file untouched"
    );
    let out = node.output(&["status", "--json"]);
    assert_eq!(code(&out), 1, "status of a failed run exits 1");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"], "failed");
}

#[test]
fn no_engine_or_no_store_or_disabled() {
    let node = node_with("ovirt.reg.store=/config\n");
    let out = node.output(&["boot"]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("no engine configured: give management_server=HOST[:PORT]"),
        "{}",
        text(&out.stderr)
    );

    let node = node_with("management_server=e.example.com ovirt.reg.store=/nonexistent\n");
    let out = node.output(&["boot"]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("config store"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        node.path("/run/ovirt-node-reg/status.json").exists(),
        "failure still leaves a status file"
    );

    let node =
        node_with("management_server=e.example.com ovirt.reg.store=/config ovirt_vdsm_disable\n");
    let out = node.output(&["boot"]);
    assert_eq!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("disabled"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !node.path("/config/etc/default/ovirt").exists(),
        "disabled: nothing written"
    );
}

#[cfg(feature = "privileged")]
#[test]
fn secrets_never_reach_logs_or_status() {
    let sim = stock_engine();
    let node = node_with(&format!(
        "{} rhevm_admin_password=$6$salt$TOPSECRETHASH ovirt.reg.token=TOKEN123 ovirt.reg.insecure_token_on_cmdline",
        good(&sim).trim()
    ));
    let out = node.output(&["boot"]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 0, "{err}");
    assert!(
        err.contains("was given on the kernel command line"),
        "warned: {err}"
    );
    for file in [
        "/run/ovirt-node-reg/status.json",
        "/config/etc/default/ovirt",
        "/config/ovirt-node-reg/state.json",
    ] {
        let t = node.read(file);
        assert!(
            !t.contains("TOPSECRETHASH") && !t.contains("TOKEN123"),
            "{file}: {t}"
        );
    }
    assert!(
        !err.contains("TOPSECRETHASH") && !err.contains("TOKEN123"),
        "{err}"
    );
}

/// Bad kernel arguments are errors, not surprises: an inline token without the flag, a
/// slave given twice, an escape sequence and a newline in a value. `config show` lists them
/// all, `boot` fails closed at `configured`; the token and the raw control characters never
/// reach the terminal or the status.
#[test]
fn bad_kernel_arguments_are_errors_escaped_and_without_the_token() {
    let bad =
        "management_server=engine.example.com ovirt.reg.store=/config ovirt.reg.token=TOKEN123 \
               bond=bond0:eth0,eth1,eth0 \"hostname=evil\x1b[2J\n[INFO] forged\"\n";
    let node = node_with(bad);
    let out = node.output(&["config", "show"]);
    let all = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(code(&out), 2, "{all}");
    for line in [
        "error: ovirt.reg.token=<redacted>: expected the token in a file, not on the kernel command line: \
         /proc/cmdline is readable by every local user; use ovirt.reg.token_file=PATH (a root-owned 0600 file), \
         or add ovirt.reg.insecure_token_on_cmdline to accept it (from kernel command line)",
        "error: bond=bond0:eth0,eth1,eth0: expected each slave once (eth0 given more than once) (from kernel command line)",
    ] {
        assert!(all.lines().any(|l| l == line), "missing {line} in\n{all}");
    }
    assert!(
        all.lines()
            .any(|l| l.starts_with("error: hostname=evil\\x1b[2J\\n[INFO] forged: expected")),
        "{all}"
    );
    let no_raw =
        |t: &str| !t.contains("TOKEN123") && !t.contains('\x1b') && !t.contains("\n[INFO]");
    assert!(no_raw(&all), "{all}");

    let out = node.output(&["boot"]);
    let err = text(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("ovirt-node-reg: FAILED at step configured: invalid settings: ")
            && err.contains("; ovirt.reg.token=<redacted>: expected the token in a file"),
        "{err}"
    );
    assert!(no_raw(&err), "{err}");
    let status = node.read("/run/ovirt-node-reg/status.json");
    assert!(
        !status.contains("TOKEN123") && status.contains("bond=bond0"),
        "{status}"
    );
    let out = node.output(&["status"]);
    assert!(no_raw(&text(&out.stdout)), "{}", text(&out.stdout));
    assert!(
        !node.path("/config/etc/default/ovirt").exists(),
        "nothing written"
    );

    // The operator's explicit choice: accepted, still warned about.
    node.write(
        "/proc/cmdline",
        "management_server=engine.example.com ovirt.reg.store=/config ovirt.reg.token=TOKEN123 \
         ovirt.reg.insecure_token_on_cmdline bond=bond0:eth0,eth1:mode=active-backup,miimon=100\n",
    );
    let out = node.output(&["config", "show"]);
    let all = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(code(&out), 0, "{all}");
    assert!(
        all.contains("warning: ovirt.reg.token was given on the kernel command line"),
        "{all}"
    );
    assert!(!all.contains("TOKEN123"), "{all}");
}

#[test]
fn status_before_any_run() {
    let node = node_with(OFFLINE);
    let out = node.output(&["status"]);
    assert_eq!(code(&out), 3);
    assert!(text(&out.stdout).contains("has not run since boot"));
    assert!(!Path::new(&node.path("/run")).exists());
}

#[test]
fn unreadable_cmdline_is_a_clear_error() {
    let node = node_with(OFFLINE);
    fs::remove_file(node.path("/proc/cmdline")).unwrap();
    let out = node.output(&["config", "show"]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("reading the kernel command line from"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn config_show_explains_what_it_will_do() {
    let node = node_with(
        "BOOTIF=01-52-54-00-ab-cd-ef management_server=[fd00::1]:8443 ovirt.reg.timeout=5m \
         ip=192.0.2.10::192.0.2.1:255.255.255.0:node1.example.com:eth0:none:9000 \
         bond=bond0:eth0,eth1:mode=1,miimon=100 vlan=100 ovirt.reg.store=/config\n",
    );
    let out = node.output(&["config", "show", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["settings"];
    assert_eq!(
        s["BOOTIF"]["values"][0], "01-52-54-00-ab-cd-ef",
        "raw value kept"
    );
    assert_eq!(s["BOOTIF"]["interpreted"]["mac"], "52:54:00:ab:cd:ef");
    let ip = &s["ip"]["interpreted"];
    assert_eq!(
        (&ip["method"], &ip["address"], &ip["prefix"], &ip["gateway"]),
        (
            &"static".into(),
            &"192.0.2.10".into(),
            &24.into(),
            &"192.0.2.1".into()
        )
    );
    assert_eq!(
        (&ip["hostname"], &ip["interface"], &ip["mtu"]),
        (&"node1.example.com".into(), &"eth0".into(), &9000.into())
    );
    let engine = &s["management_server"]["interpreted"];
    assert_eq!(
        (&engine["host"], &engine["port"]),
        (&"fd00::1".into(), &8443.into())
    );
    assert_eq!(s["ovirt.reg.timeout"]["interpreted"]["seconds"], 300);
    assert_eq!(s["bond"]["interpreted"]["mode"], "active-backup");
    assert_eq!(s["vlan"]["interpreted"]["id"], 100);
    assert_eq!(s["hostname"]["interpreted"], serde_json::Value::Null);
    assert_eq!(
        v["effective"]["management_nic"]["meaning"],
        "bridge ovirtmgmt over VLAN 100 on bond bond0"
    );
    assert_eq!(
        v["config"]["net"]["bootif"], "01-52-54-00-ab-cd-ef",
        "config unchanged"
    );

    let out = node.output(&["config", "show", "--explain"]);
    assert_eq!(code(&out), 0);
    let lines = text(&out.stdout);
    let bootif: Vec<&str> = lines
        .lines()
        .filter(|l| l.starts_with("BOOTIF = "))
        .collect();
    assert_eq!(
        bootif,
        ["BOOTIF = 01-52-54-00-ab-cd-ef (kernel command line): the NIC the node booted from: the NIC with MAC 52:54:00:ab:cd:ef (pxelinux BOOTIF, Ethernet)"]
    );
    assert!(
        lines.contains(
            "ovirt.reg.retry_cap = 60s (default): longest retry delay: 60 seconds (1 min)\n"
        ),
        "{lines}"
    );
    let out = node.output(&["config", "show"]);
    assert!(
        text(&out.stdout).contains("→ static 192.0.2.10/24, gateway 192.0.2.1"),
        "{}",
        text(&out.stdout)
    );
}

/// `config check` with `args`, stdin `input`; exit code, stdout, stderr.
fn check(args: &[&str], input: &str) -> (i32, String, String) {
    // No --root, and a root that does not exist: nothing of this machine is read.
    let out = output_with_stdin(
        Command::new(BIN)
            .args(["--root", "/nonexistent-root", "config", "check"])
            .args(args),
        input,
    );
    (code(&out), text(&out.stdout), text(&out.stderr))
}

#[test]
fn config_check_validates_a_command_line() {
    let pin = format!("ovirt.reg.ca_pin=sha256:{}", "ab".repeat(32));
    let good =
        format!("BOOTIF=01-52-54-00-ab-cd-ef ip=dhcp management_server=engine.example.com {pin}");
    let (rc, out, err) = check(&["--cmdline", &good], "");
    assert_eq!((rc, err.as_str()), (0, ""), "{out}");
    assert!(out.starts_with("ok: 4 settings"), "{out}");

    let bad = format!(
        "management_server=engine:70000 BOOTIF=01-52-54-00-12-34 ip=10.0.0.1::10.0.0.999:24 \
         ovirt.reg.tiemout=5 {pin} ovirt.reg.token=TOPSECRET console=ttyS0"
    );
    let (rc, out, err) = check(&["--cmdline", &bad], "");
    assert_eq!(rc, 2, "{err}");
    assert_eq!(out, "");
    for want in [
        "management_server=engine:70000: expected HOST[:PORT]",
        "BOOTIF=01-52-54-00-12-34: expected a pxelinux MAC",
        "ip=10.0.0.1::10.0.0.999:24: expected dhcp, off",
        "ovirt.reg.token=<redacted>: expected the token in a file",
        "warning: unknown setting ovirt.reg.tiemout",
    ] {
        assert!(err.contains(want), "{want:?} missing from: {err}");
    }
    assert!(!err.contains("TOPSECRET"), "secret printed: {err}");
    assert_eq!(
        err.lines().filter(|l| !l.contains("warning")).count(),
        4,
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pxelinux-append");
    fs::write(&file, format!("{good}\n")).unwrap();
    let (rc, _, err) = check(&["--cmdline-file", file.to_str().unwrap()], "");
    assert_eq!(rc, 0, "{err}");
    let (rc, _, err) = check(&["--cmdline-file", "-"], "ip=dhcp ovirt.reg.ca_pin=x\n");
    assert_eq!(rc, 2);
    assert!(
        err.contains("ovirt.reg.ca_pin=x: expected sha256:<64 hex digits>")
            && !err.contains("ovirt.reg.ca_pin: missing"),
        "{err}"
    );
    // No management_server: the engine is found by DNS SRV, which needs a pin (a
    // trust-on-first-use flag is not enough); with one the line is valid.
    let (rc, _, err) = check(
        &["--cmdline-file", "-"],
        "ip=dhcp ovirt.reg.insecure_tofu\n",
    );
    assert_eq!(rc, 2, "{err}");
    assert!(
        err.contains("ovirt.reg.ca_pin: missing") && err.contains("found by DNS SRV"),
        "{err}"
    );
    let pin = format!("sha256:{}", "ab".repeat(32));
    let (rc, _, err) = check(
        &["--cmdline-file", "-"],
        &format!("management_server=auto ovirt.reg.domain=example.test ovirt.reg.ca_pin={pin}\n"),
    );
    assert_eq!(rc, 0, "{err}");
    let (rc, _, _) = check(&["--cmdline-file", "-"], "ovirt_vdsm_disable\n");
    assert_eq!(rc, 0, "nothing is needed when registration is disabled");
    let (rc, _, err) = check(&[], "");
    assert_eq!(rc, 1);
    assert!(err.contains("--cmdline"), "{err}");
    let (rc, _, err) = check(&["--cmdline-file", "-"], &"x".repeat(70_000));
    assert_eq!(rc, 1);
    assert!(err.contains("not a kernel command line"), "{err}");
}

/// A pipe whose reading end is already closed: every write to it fails with EPIPE, as when
/// `| head -1` has read its line and gone.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

#[test]
fn closed_stdout_ends_quietly() {
    // A run that fails at once (no engine) leaves a status to print, with exit code 1.
    let node = node_with("ovirt.reg.store=/config\n");
    assert_eq!(code(&node.output(&["boot"])), 1);
    let cases: [(&[&str], i32); 6] = [
        (&["config", "show"], 0),
        (&["config", "show", "--json"], 0),
        (&["config", "show", "--explain"], 0),
        (&["version"], 0),
        (&["config", "check", "--cmdline", "ovirt_vdsm_disable"], 0),
        (&["status"], 1),
    ];
    for (args, want) in cases {
        let out = Command::new(BIN)
            .arg("--root")
            .arg(&node.root)
            .args(args)
            .stdout(closed_pipe())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(
            (code(&out), err.as_str()),
            (want, ""),
            "{args:?}: the command's own exit code, nothing on stderr"
        );
    }
    // And through a shell pipeline that stops reading after one line.
    let cmd = format!(
        "set -o pipefail 2>/dev/null; {BIN} --root '{}' config show --explain | head -1 >/dev/null; echo rc=$?",
        node.root.display()
    );
    let out = Command::new("bash").args(["-c", &cmd]).output().unwrap();
    assert_eq!(text(&out.stdout), "rc=0\n", "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}

/// `install` and `upgrade` refuse what they cannot use with one line naming it, exit 1.
#[test]
fn install_and_upgrade_name_what_is_missing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_str().unwrap();
    let cmdline = t.path().join("cmdline");
    std::fs::write(&cmdline, "ovirt.slot=A\n").unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(["--root", root, "--cmdline", cmdline.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["install", "--disk", "/nonexistent-disk"]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr)
            .contains("/usr/lib/ovirt-node-reg/boot/esp.img: the boot loader file is missing"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["upgrade", "--image", "/x.iso"]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("not installed"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["status"]);
    assert!(
        !text(&out.stdout).contains("slot A"),
        "no slots on a machine without them"
    );
}
