//! `ovirt-node-reg bootstrap` typed on a guest's console (what the engine runs over SSH),
//! against the simulator through the guest's only way out (`guestfwd`, `restrict=on`): the
//! static binary on a real kernel reports every check as a JSON line, the engine's CA
//! matches the pin, and the checks a minimal initramfs must fail (no os-release, no
//! packages, 512 MiB of memory, no host name) stop it with exit code 2 before anything is
//! sent or changed.

use qemu_tests::scenario::Scenario;

/// The console script: an address on QEMU's user network (the guestfwd is at 10.0.2.100),
/// the engine and pin from the kernel command line the harness wrote, then the command.
const CONSOLE: &str = r#"#!/bin/sh
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p"; }
/usr/sbin/ovirt-node-reg bootstrap --check-only --store /config \
    --engine "$(arg management_server)" --ca-pin "$(arg ovirt.reg.ca_pin)"
"#;

#[test]
fn bootstrap_check_report_in_a_guest() {
    let s = Scenario::start("bootstrap_check_report_in_a_guest", 2);
    let mut node = s.machine("bootstrap-guest").console(CONSOLE).build();
    let boot = node.boot();
    let report: Vec<serde_json::Value> = boot
        .log
        .lines()
        .filter_map(|l| l.find("{\"component\"").map(|i| &l[i..]))
        .map(|l| serde_json::from_str(l.trim_end()).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let status = |c: &str| {
        report
            .iter()
            .find(|l| l["component"] == c)
            .and_then(|l| l["status"].as_str())
            .unwrap_or_else(|| panic!("no {c} line\n{}", boot.tail()))
            .to_string()
    };
    assert_eq!(status("engine"), "OK", "{}", boot.tail());
    assert_eq!(status("platform"), "OK");
    assert_eq!(status("kernel"), "OK");
    assert_eq!(status("os"), "FAIL", "the initramfs has no /etc/os-release");
    assert_eq!(status("memory"), "FAIL", "the guest has 512 MiB");
    assert_eq!(status("hostname"), "FAIL", "the guest has no host name");
    // busybox may offer an `rpm` applet: then one line per package, else one `packages` line.
    let packages: Vec<_> = report
        .iter()
        .filter(|l| {
            l["component"]
                .as_str()
                .is_some_and(|c| c.starts_with("package"))
        })
        .collect();
    assert!(!packages.is_empty(), "no package line\n{}", boot.tail());
    assert!(
        packages.iter().all(|l| l["status"] == "FAIL"),
        "{packages:?}"
    );
    // TCG may show an svm or vmx flag, but the guest has no /dev/kvm.
    assert_ne!(status("cpu_virtualization"), "OK", "TCG has no /dev/kvm");
    let rc = boot.line("QH-EXIT rc=").unwrap_or_default();
    assert!(
        rc.starts_with("2 "),
        "exit 2, checks failed: {rc}\n{}",
        boot.tail()
    );
    assert!(
        boot.log.contains("check(s) failed: nothing was changed"),
        "the summary says nothing changed\n{}",
        boot.tail()
    );
    assert_eq!(s.count("register"), 0, "nothing was registered");
    boot.pass();
}
