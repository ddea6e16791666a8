//! The VM side of the registration storm (issue 8): eight nodes, each its own config disk,
//! SMBIOS UUID and MAC, boot against one simulator, two QEMUs at a time (the harness's limit
//! on 2 cores). All must end `done`, each registered exactly once. The two ways a rack of
//! PXE nodes comes up, half the storm each, in one storm:
//! * direct kernel boot of the minimal PID-1 image with `ip=dhcp BOOTIF=…` (what a PXE node
//!   gets), a token per node in its initramfs;
//! * real PXE boots (pxelinux) of one shared `image/mkpxe.sh` tree without a token, as an
//!   operator serves a rack; an approver approves every pending host over the admin API.
//!
//! (They were two storms of eight, one after the other, alone on the machine at the end of
//! the CI run: 133-139 s of it, a third of the cores idle. One storm of eight asks the same of
//! the simulator and of both boot paths in about half the time.)
//!
//! The simulator serves [`RATE_LIMIT`] engine requests a second and answers the rest 503 with
//! `Retry-After` (rate_limit.rs): 503s must happen, nobody may give up, and the peak rate
//! the simulator accepted stays within twice its limit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use qemu_tests::hosts::HostStatus;
use qemu_tests::qemu::Boot;
use qemu_tests::scenario::{Machine, Scenario};
use qemu_tests::SimConfig;

const NODES: usize = 8;
/// Low enough that two booting nodes exceed it (a registration is about 6 requests in 2 s).
const RATE_LIMIT: u32 = 2;

/// Deadlines long enough to wait out a busy engine: nobody may give up.
fn patient(m: Machine<'_>) -> Machine<'_> {
    m.timeout(200).retry_cap(8).approval_timeout(150)
}

#[test]
fn eight_vms_one_engine() {
    let label = "storm";
    let config = SimConfig {
        protocol_version: 2,
        rate_limit: RATE_LIMIT,
        ..SimConfig::default()
    };
    let s = Scenario::with("eight_vms_one_engine", config);
    let sim = &s.sim;
    let start = Instant::now();
    // One tree for the PXE half of the rack: no token, BOOTIF from pxelinux, no ip= needed.
    let tree = patient(s.machine("pxe-storm").pxe("pxelinux.0"))
        .pxe_tree(None)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let nodes: Vec<_> = (0..NODES)
        .map(|i| {
            let m = s
                .machine(&format!("{label}-{i}"))
                .uuid(&format!("4c4c4544-0042-3510-8052-b4c04f4e54{i:02}"))
                .mac(&format!("52:54:00:12:35:{i:02x}"))
                .vm_timeout(Duration::from_secs(240));
            let m = if i % 2 == 0 {
                m.token().bootif(0).args("ip=dhcp")
            } else {
                m.pxe_from(&tree, "pxelinux.0")
            };
            patient(m).build()
        })
        .collect();
    // The engine's administrator: approves every host waiting for approval (the PXE nodes).
    let stop = AtomicBool::new(false);
    // One thread per node; the harness lets two QEMUs run at once, the others wait.
    let boots: Vec<Boot> = std::thread::scope(|scope| {
        let stop = &stop;
        scope.spawn(move || {
            // Bounded: the boots' own timeouts end the storm long before.
            let until = Instant::now() + Duration::from_secs(1800);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                for h in sim.hosts() {
                    if h.status == HostStatus::PendingApproval {
                        sim.approve(&h.reg.unique_id);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let handles: Vec<_> = nodes.iter().map(|n| scope.spawn(move || n.run())).collect();
        let boots = handles
            .into_iter()
            .map(|h| h.join().expect("boot thread"))
            .collect::<Vec<_>>();
        stop.store(true, Ordering::Relaxed);
        boots
            .into_iter()
            .map(|b| b.unwrap_or_else(|e| panic!("{e:#}")))
            .collect()
    });
    let total = start.elapsed();
    // The storm itself: the first QEMU's start to the last one's exit (images built before).
    let first = boots.iter().map(|b| b.started).min().expect("boots");
    let last = boots
        .iter()
        .map(|b| b.started + b.elapsed)
        .max()
        .expect("boots");
    let span = last.duration_since(first).unwrap_or_default();
    let mut report = Vec::new();
    for (node, boot) in nodes.iter().zip(&boots) {
        node.assert_done(boot);
        assert!(boot.powered_off(), "{}\n{}", boot.name, boot.tail());
        let host = node.assert_registered_once(boot);
        assert_eq!(host.status, HostStatus::Approved, "{host:?}");
        node.assert_certs(boot);
        node.assert_clean_disk(boot);
        report.push(format!(
            "{} {:.1} s (registered at {} s, done at {:.1} s uptime)",
            boot.name,
            boot.elapsed.as_secs_f64(),
            node.registered_after(boot)
                .map_or("-".into(), |t| format!("{t:.1}")),
            boot.step_done_at("done").unwrap_or(f64::NAN)
        ));
    }
    let requests = sim.requests();
    let by_status = |code: u16| requests.iter().filter(|e| e.status == Some(code)).count();
    let stats = sim.stats();
    eprintln!(
        "[qemu] {label}: {NODES} VMs, 2 at a time, {:.1} s first QEMU start to last exit ({:.1} s \
         with the images); limit {RATE_LIMIT}/s: {} requests ({} 503), accepted {} refused {}, \
         peak accepted {}/s, peak offered {}/s, mean accepted {:.2}/s over {} s, longest \
         Retry-After {} s; per node: {}",
        span.as_secs_f64(),
        total.as_secs_f64(),
        requests.len(),
        by_status(503),
        stats.accepted,
        stats.refused,
        stats.peak_accepted_per_sec,
        stats.peak_offered_per_sec,
        stats.mean_accepted_per_sec,
        stats.active_secs,
        stats.max_retry_after_secs,
        report.join("; ")
    );
    let seconds: Vec<String> = stats
        .buckets
        .iter()
        .map(|b| format!("{}/{}", b.accepted, b.refused))
        .collect();
    eprintln!(
        "[qemu] {label}: accepted/refused per second: {}",
        seconds.join(" ")
    );
    assert_eq!(sim.hosts().len(), NODES);
    assert!(
        stats.refused > 0 && by_status(503) > 0,
        "the limit was never reached: no 503 ({stats:?})"
    );
    assert!(
        stats.peak_accepted_per_sec <= 2 * RATE_LIMIT,
        "peak accepted {}/s over twice the limit {RATE_LIMIT}/s",
        stats.peak_accepted_per_sec
    );
    for b in boots {
        b.pass();
    }
}
