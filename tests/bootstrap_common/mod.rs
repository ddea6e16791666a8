//! The prepared host of the bootstrap tests: a root tree with stand-in tools, the command
//! run on it, and the report read back.
#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use qemu_tests::{Handle, SimConfig, Simulator};
use serde_json::Value;

use crate::common::{self, output_with_stdin, Node};

pub const PACKAGES: [&str; 4] = ["vdsm", "libvirt-daemon-kvm", "qemu-kvm", "openssh-server"];

/// A prepared host root (Rocky 9, VT, 8 GiB, the packages, the services running) and a
/// directory of stand-in tools (`rpm`, `systemctl`) that answer for it.
pub struct Host {
    pub node: Node,
    tools: tempfile::TempDir,
}

impl Host {
    pub fn new(missing: &[&str]) -> Host {
        let node = Node::new();
        fs::remove_dir(node.path("/config")).unwrap();
        node.write(
            "/etc/os-release",
            "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n",
        );
        node.write("/proc/sys/kernel/osrelease", "5.14.0-427.el9.x86_64\n");
        node.write(
            "/proc/cpuinfo",
            "processor\t: 0\nflags\t\t: fpu vme vmx sse2\n",
        );
        node.write("/dev/kvm", "");
        node.write("/proc/meminfo", "MemTotal:        8000000 kB\n");
        fs::create_dir_all(node.path("/run/systemd/system")).unwrap();
        node.write(
            "/etc/yum.repos.d/rocky.repo",
            "[baseos]\nname=BaseOS\n[extras]\nenabled=0\n",
        );
        node.write("/etc/hostname", "host1.example.com\n");
        node.write("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
        node.write("/etc/group", "root:x:0:\n");
        let tools = tempfile::tempdir().unwrap();
        let installed: Vec<&str> = PACKAGES
            .iter()
            .copied()
            .filter(|p| !missing.contains(p))
            .collect();
        tool(
            tools.path(),
            "rpm",
            &format!(
                "for last; do :; done\ncase \" {} \" in *\" $last \"*) printf '1.0-1.el9'; exit 0;; esac\n\
                 echo \"package $last is not installed\"; exit 1\n",
                installed.join(" ")
            ),
        );
        tool(
            tools.path(),
            "systemctl",
            "case $1 in is-enabled) echo enabled;; is-active) echo active;; esac\n",
        );
        Host { node, tools }
    }

    pub fn bootstrap(&self, sim: &Handle, extra: &[&str], stdin: &str) -> (Output, Vec<Value>) {
        let engine = format!("127.0.0.1:{}", sim.port());
        let pin = format!("sha256:{}", sim.ca_sha256());
        let mut cmd = common::command();
        cmd.arg("--root")
            .arg(&self.node.root)
            .args([
                "bootstrap",
                "--engine",
                &engine,
                "--ca-pin",
                &pin,
                "--tools-path",
            ])
            .arg(self.tools.path())
            .args(extra);
        let out = output_with_stdin(&mut cmd, stdin);
        let lines = report(&out);
        (out, lines)
    }
}

impl Host {
    /// The command line the engine would run over SSH (`ovirt-node-reg bootstrap …`), run
    /// here under `--root` with the stand-in tools, `stdin` on its standard input.
    pub fn run_engine_command(&self, command: &str, stdin: &str) -> (Output, Vec<Value>) {
        let mut words = command.split_whitespace();
        assert_eq!(words.next(), Some("ovirt-node-reg"), "{command}");
        let mut cmd = common::command();
        cmd.arg("--root").arg(&self.node.root).args(words);
        cmd.arg("--tools-path").arg(self.tools.path());
        let out = output_with_stdin(&mut cmd, stdin);
        let lines = report(&out);
        (out, lines)
    }
}

fn tool(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Every stdout line is one report line with exactly the three documented fields.
pub fn report(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, ["component", "message", "status"], "{l}");
            assert!(
                ["OK", "WARN", "FAIL"].contains(&v["status"].as_str().unwrap()),
                "{l}"
            );
            v
        })
        .collect()
}

pub fn status_of<'a>(lines: &'a [Value], component: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l["component"] == component)
        .and_then(|l| l["status"].as_str())
        .unwrap_or_else(|| panic!("no {component} line: {lines:?}"))
}

pub fn failed(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["status"] == "FAIL")
        .map(|l| l["component"].as_str().unwrap().to_string())
        .collect()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir` with its content and mode, to show that nothing changed.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                todo.push(p.clone());
            }
            let data = if meta.is_file() {
                fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.insert(p, (data, meta.permissions().mode()));
        }
    }
    out
}

pub fn engine() -> Handle {
    Simulator::start(SimConfig::default()).expect("simulator starts")
}
