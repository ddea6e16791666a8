//! The rate limit seen from clients: over N engine requests in a 1-second window the
//! simulator answers 503 with `Retry-After`, never for the admin API; what it saw is in
//! `/admin/stats`, `Handle::stats` and the event log; `--rate-limit` and the settings endpoint
//! set it. All traffic stays on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use qemu_tests::client::{Client, Reply};
use qemu_tests::events::read_log;
use qemu_tests::rate_limit::{Stats, FAULT_LABEL};
use qemu_tests::{EventKind, SimConfig, Simulator};

const VERSION: &str = "/ovirt-engine/services/host-register?version=1&command=get-version";

/// `n` engine requests from `threads` clients at once.
fn burst(client: &Client, n: usize, threads: usize) -> Vec<Reply> {
    let per = n.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let c = client.clone();
            let k = per.min(n.saturating_sub(t * per));
            thread::spawn(move || {
                (0..k)
                    .map(|_| c.get(VERSION).expect("an answer"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("client thread"))
        .collect()
}

fn retry_after(r: &Reply) -> u64 {
    r.header("retry-after")
        .unwrap_or_else(|| panic!("503 without Retry-After: {:?}", r.headers))
        .parse()
        .expect("Retry-After in whole seconds")
}

fn check_buckets(s: &Stats, limit: u32) {
    assert!(!s.buckets.is_empty());
    for b in &s.buckets {
        assert!(
            b.accepted <= limit,
            "a window served more than the limit: {b:?}"
        );
    }
    assert_eq!(
        s.buckets.iter().map(|b| u64::from(b.accepted)).sum::<u64>(),
        s.accepted
    );
    assert_eq!(
        s.buckets.iter().map(|b| u64::from(b.refused)).sum::<u64>(),
        s.refused
    );
    assert!(s.peak_accepted_per_sec <= limit);
    assert!(s.peak_accepted_any_sec <= 2 * limit, "{s:?}");
    assert!(s.peak_offered_any_sec >= s.peak_accepted_any_sec);
}

#[test]
fn over_the_limit_gets_503_with_retry_after_and_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.jsonl");
    let sim = Simulator::start(SimConfig {
        rate_limit: 5,
        event_log: Some(log.clone()),
        ..SimConfig::default()
    })
    .unwrap();
    let client = Client::https(sim.addr(), &sim.ca_pem()).unwrap();
    let replies = burst(&client, 40, 8);
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(ok + refused.len(), 40, "only 200 and 503");
    // 40 requests take far less than 7 windows here, so at least 5 were refused.
    assert!(refused.len() >= 5, "the limit was hit: {ok} served");
    for r in &refused {
        assert!((1..=300).contains(&retry_after(r)));
    }

    // The admin API is neither limited nor counted.
    for _ in 0..20 {
        assert_eq!(client.get("/admin/settings").unwrap().status, 200);
    }
    let s: Stats = serde_json::from_slice(&client.get("/admin/stats").unwrap().body).unwrap();
    assert_eq!((s.accepted, s.refused), (ok as u64, refused.len() as u64));
    assert_eq!(s.rate_limit, 5);
    assert!(s.peak_offered_per_sec > 5);
    assert!(s.mean_accepted_per_sec > 0.0 && s.mean_accepted_per_sec <= 5.0);
    check_buckets(&s, 5);
    assert_eq!(sim.stats().refused, s.refused, "the library handle agrees");

    // Each 503 is a request event labelled with the limit.
    let limited = sim
        .requests()
        .into_iter()
        .filter(|e| e.status == Some(503))
        .inspect(|e| assert_eq!(e.fault.as_deref(), Some(FAULT_LABEL)))
        .count();
    assert_eq!(limited, refused.len());
    sim.stop();
    let events = read_log(&log).unwrap();
    let summary = events
        .iter()
        .filter(|e| e.kind == EventKind::Rate)
        .filter_map(|e| e.detail.as_deref())
        .find(|d| d.starts_with("rate summary:"))
        .expect("a summary when stopped");
    assert!(
        summary.contains(&format!("refused {} (503)", refused.len())),
        "{summary}"
    );
}

#[test]
fn the_excess_is_told_to_come_back_spread_out() {
    let sim = Simulator::start(SimConfig {
        rate_limit: 2,
        ..SimConfig::default()
    })
    .unwrap();
    let client = Client::https(sim.addr(), &sim.ca_pem()).unwrap();
    let replies = burst(&client, 30, 10);
    let mut waits: Vec<u64> = replies
        .iter()
        .filter(|r| r.status == 503)
        .map(retry_after)
        .collect();
    waits.sort_unstable();
    assert!(waits.len() >= 10, "{waits:?}");
    // Two places per later window: a crowd of refused clients is told different times.
    let longest = *waits.last().unwrap();
    assert!(longest >= 3, "{waits:?}");
    check_buckets(&sim.stats(), 2);
    // A second that ended is in the event log.
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(client.get(VERSION).unwrap().status, 200);
    assert!(sim.events().iter().any(|e| e.kind == EventKind::Rate
        && e.detail
            .as_deref()
            .is_some_and(|d| d.starts_with("rate second"))));
}

#[test]
fn no_limit_measures_only() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let client = Client::https(sim.addr(), &sim.ca_pem()).unwrap();
    let replies = burst(&client, 30, 6);
    assert!(replies.iter().all(|r| r.status == 200));
    let s = sim.stats();
    assert_eq!((s.rate_limit, s.accepted, s.refused), (0, 30, 0));
    assert!(s.peak_accepted_per_sec >= 1);
}

/// Kills the child however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cli_flag_and_settings_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine-sim"))
        .args(["--rate-limit", "1", "--rate-limit-retry-after", "7"])
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("engine-sim runs");
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().take(5) {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let lines: Vec<String> = (0..5)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("startup lines")
        })
        .collect();
    assert!(
        lines.iter().any(|l| l == "engine-sim rate limit 1/s"),
        "{lines:?}"
    );
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    let url = info["https_url"].as_str().unwrap();
    let addr = url.trim_start_matches("https://").parse().unwrap();
    let client = Client::https(addr, info["ca_pem"].as_str().unwrap()).unwrap();

    let replies = burst(&client, 6, 3);
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert!(!refused.is_empty());
    assert!(refused.iter().all(|r| retry_after(r) == 7));
    let settings: serde_json::Value =
        serde_json::from_slice(&client.get("/admin/settings").unwrap().body).unwrap();
    assert_eq!(settings["rate_limit"], 1);
    assert_eq!(settings["rate_limit_retry_after_secs"], 7);
    assert_eq!(settings["retry_after_secs"], 5, "the other settings stay");

    // Lift the limit at run time: everything is served again.
    let r = client
        .post("/admin/settings", r#"{"rate_limit":0}"#)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(burst(&client, 10, 2).iter().all(|r| r.status == 200));
    let s: Stats = serde_json::from_slice(&client.get("/admin/stats").unwrap().body).unwrap();
    assert_eq!(s.rate_limit, 0);
    assert_eq!(
        (s.accepted + s.refused, s.refused),
        (16, refused.len() as u64)
    );
}
