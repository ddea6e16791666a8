//! The registration storm (issue 8): a crowd of real `ovirt-node-reg boot` processes, each
//! with its own root tree, directory store, DMI UUID and enrolment token, against one engine
//! simulator that serves at most `STORM_LIMIT` engine requests per second and answers the
//! rest `503` with `Retry-After`. Every node must register once and finish its enrolment
//! (`done`), none may give up, the limit must really have been hit, the nodes must wait at
//! least what `Retry-After` said, and the accepted rate over any 1-second span (not only the
//! limiter's own windows) must stay within twice the limit.
//!
//! `STORM_NODES` (default 500: the crowd; about 31 s on 2 cores),
//! `STORM_PARALLEL` (processes at once, default all up to 250), `STORM_LIMIT` (default
//! 100/s) and `STORM_REPORT` (append the figures to this file) let
//! `build-support/bench-storm.sh` run other crowds (release build, 50/s). Loopback only.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use qemu_tests::rate_limit::FAULT_LABEL;
use qemu_tests::{Handle, HostStatus, SimConfig, Simulator};

mod common;
use common::{Node, BIN};

const TOKEN_FILE: &str = "/etc/ovirt-node-reg/token";
/// Each node's own deadline (`ovirt.reg.timeout`): far above what the crowd needs.
const NODE_TIMEOUT_SECS: u64 = 900;
/// A node process still running this long after its start is killed (and fails the test).
const NODE_HARD_BOUND: Duration = Duration::from_secs(NODE_TIMEOUT_SECS + 60);

fn env_or(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: expected a number")),
        Err(_) => default,
    }
}

fn uuid(i: usize) -> String {
    format!("4c4c4544-0042-3510-8052-{i:012x}")
}

/// One node's run.
struct Outcome {
    uuid: String,
    status: Option<ExitStatus>,
    stderr: String,
    status_json: Option<serde_json::Value>,
    secs: f64,
}

impl Outcome {
    /// `attempt N failed: …; retrying in X.Ys` lines of the retry loop.
    fn retries(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains("failed: ") && l.contains("; retrying in "))
            .collect()
    }
}

/// A node ready to boot: unique DMI UUID and host name, a token bound to it, a retry cap
/// above any `Retry-After` the simulator sends and a deadline far above the storm.
fn prepare(sim: &Handle, parent: &Path, i: usize) -> Node {
    let node = Node::new_in(parent);
    let id = uuid(i);
    node.write(
        "/sys/class/dmi/id/product_uuid",
        &format!("{}\n", id.to_uppercase()),
    );
    let token = sim
        .create_token(Duration::from_secs(3600), Some(&id))
        .expect("token");
    node.write(TOKEN_FILE, &format!("{}\n", token.token));
    fs::set_permissions(node.path(TOKEN_FILE), fs::Permissions::from_mode(0o600)).unwrap();
    let cmdline = format!(
        "ro management_server=127.0.0.1:{} ovirt.reg.store=/config hostname=node{i}.example.com \
         ovirt.reg.ca_pin=sha256:{} ovirt.reg.retry_base=1 ovirt.reg.retry_cap=300 \
         ovirt.reg.timeout={NODE_TIMEOUT_SECS} ovirt.reg.token_file={TOKEN_FILE}\n",
        sim.port(),
        sim.ca_sha256()
    );
    node.write("/proc/cmdline", &cmdline);
    node
}

/// Where the root trees go: `STORM_TMP`, else the tmpfs `/dev/shm` (the nodes fsync every
/// write, and a disk would measure the disk, not the engine's rate limit), else the
/// temporary directory.
fn roots_dir() -> PathBuf {
    if let Ok(d) = std::env::var("STORM_TMP") {
        return PathBuf::from(d);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// `boot` in a private mount namespace, stderr to a file (no pipe to drain), bounded.
fn boot(node: &Node, id: String) -> Outcome {
    let t0 = Instant::now();
    let log = node.path("/boot.stderr");
    common::require_root();
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", BIN, "--root"])
        .arg(&node.root)
        .arg("boot")
        .env_remove("OVIRT_NODE_REG_FAULT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("unshare runs (apt-get install util-linux)");
    let status = loop {
        match child.try_wait().expect("waiting for a node") {
            Some(s) => break Some(s),
            None if t0.elapsed() > NODE_HARD_BOUND => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => thread::sleep(Duration::from_millis(50)),
        }
    };
    let status_json = fs::read(node.path("/run/ovirt-node-reg/status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    Outcome {
        uuid: id,
        status,
        stderr: fs::read_to_string(&log).unwrap_or_default(),
        status_json,
        secs: t0.elapsed().as_secs_f64(),
    }
}

/// Runs `nodes` at most `parallel` at a time; each thread takes the next node when its own
/// has finished, so the crowd overlaps all along. Also the time from the first start to the
/// last end.
fn crowd(sim: &Handle, nodes: usize, parallel: usize) -> (Vec<Outcome>, Duration) {
    let parent = roots_dir();
    let prepared: Vec<Node> = (0..nodes).map(|i| prepare(sim, &parent, i)).collect();
    let prepared = Arc::new(prepared);
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::with_capacity(nodes)));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..parallel.clamp(1, nodes))
        .map(|_| {
            let (prepared, next, results) = (prepared.clone(), next.clone(), results.clone());
            thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(node) = prepared.get(i) else { return };
                let outcome = boot(node, uuid(i));
                results.lock().unwrap().push(outcome);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a crowd thread");
    }
    let total = t0.elapsed();
    let out = std::mem::take(&mut *results.lock().unwrap());
    // The temporary roots go only now that every node has ended.
    drop(prepared);
    (out, total)
}

fn seconds(s: &str) -> f64 {
    s.trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or_else(|_| panic!("a number of seconds: {s}"))
}

/// Every `HTTP 503 (Retry-After Ns); retrying in Xs` line must wait at least N seconds.
/// Returns how many such lines there were.
fn check_honours_retry_after(o: &Outcome) -> usize {
    let mut n = 0;
    for line in o.retries() {
        let Some((_, ra)) = line.split_once("(Retry-After ") else {
            continue;
        };
        let ra = seconds(ra.split_once(')').map_or(ra, |(a, _)| a));
        let wait = seconds(line.rsplit_once("retrying in ").unwrap().1);
        assert!(
            wait >= ra,
            "{}: waited {wait}s after Retry-After {ra}s: {line}",
            o.uuid
        );
        n += 1;
    }
    n
}

#[test]
fn registration_storm() {
    let nodes = env_or("STORM_NODES", 500);
    let parallel = env_or("STORM_PARALLEL", nodes.min(250));
    let limit = env_or("STORM_LIMIT", 100) as u32;
    assert!(nodes > 0 && limit > 0);
    let sim = Simulator::start(SimConfig {
        rate_limit: limit,
        // Every node of the crowd may hold a connection at once.
        max_connections: 4 * parallel.max(256),
        ..SimConfig::default()
    })
    .expect("simulator starts");

    let (outcomes, total) = crowd(&sim, nodes, parallel);
    let stats = sim.stats();
    let requests = sim.requests();

    // Everyone finished, nobody gave up.
    assert_eq!(outcomes.len(), nodes);
    let mut failed = Vec::new();
    let mut told = 0;
    for o in &outcomes {
        let result = o
            .status_json
            .as_ref()
            .map(|s| (s["result"].clone(), s["step"].clone()));
        let ok = o.status.is_some_and(|s| s.success())
            && result == Some(("ok".into(), "done".into()))
            && !o.stderr.contains("FAILED");
        if !ok {
            failed.push(format!(
                "{} ({:?}, {result:?}): {}",
                o.uuid,
                o.status,
                o.stderr
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        told += check_honours_retry_after(o);
    }
    assert!(
        failed.is_empty(),
        "{} of {nodes} nodes did not finish:\n{}",
        failed.len(),
        failed
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    assert!(told > 0, "no node logged a Retry-After it waited for");

    // Each registered exactly once, approved by its token and enrolled.
    let mut registers: HashMap<String, usize> = HashMap::new();
    for e in &requests {
        if e.command() == Some("register") && e.status == Some(200) {
            *registers
                .entry(e.param("uniqueId").unwrap_or("").to_string())
                .or_default() += 1;
        }
    }
    for o in &outcomes {
        assert_eq!(
            registers.get(&o.uuid),
            Some(&1),
            "{} registered once",
            o.uuid
        );
        let host = sim.host(&o.uuid).expect("the host is known");
        assert_eq!(host.status, HostStatus::Approved, "{}", o.uuid);
        assert!(sim.enrollment(&o.uuid).is_some(), "{} enrolled", o.uuid);
    }
    assert_eq!(registers.len(), nodes, "no other host registered");

    // The limit was hit (the event log and the stats agree on how often).
    let engine: Vec<_> = requests
        .iter()
        .filter(|e| !e.path.as_deref().unwrap_or("").starts_with("/admin"))
        .collect();
    let refused = engine
        .iter()
        .filter(|e| e.fault.as_deref() == Some(FAULT_LABEL))
        .count();
    assert!(
        refused > 0,
        "the limit of {limit}/s was never hit: the storm proves nothing"
    );
    assert_eq!(refused as u64, stats.refused, "events and stats agree");
    // For the report: the same from the event log in wall-clock seconds (stamped when the
    // answer was ready, so not bounded as strictly as the spans measured at admission).
    let mut served: BTreeMap<u64, u32> = BTreeMap::new();
    let mut offered: BTreeMap<u64, u32> = BTreeMap::new();
    for e in &engine {
        *offered.entry(e.unix_ms / 1000).or_default() += 1;
        if e.fault.as_deref() != Some(FAULT_LABEL) {
            *served.entry(e.unix_ms / 1000).or_default() += 1;
        }
    }
    let peak_served = served.values().copied().max().unwrap_or(0);
    let peak_offered = offered.values().copied().max().unwrap_or(0);
    // Any 1-second span (measured at admission): fixed windows allow at most two windows'
    // worth; a window itself at most one.
    let mut brief = stats.clone();
    brief.buckets.clear();
    assert!(
        stats.peak_accepted_any_sec <= 2 * limit,
        "peak accepted rate above twice the limit {limit}/s: {brief:?}"
    );
    assert!(stats.peak_accepted_per_sec <= limit, "{brief:?}");

    // The figures (a report, not pass/fail).
    let retries: Vec<usize> = outcomes.iter().map(|o| o.retries().len()).collect();
    let node_secs: Vec<f64> = outcomes.iter().map(|o| o.secs).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let retries_f: Vec<f64> = retries.iter().map(|&r| r as f64).collect();
    let report = format!(
        "storm: nodes {nodes} (at most {parallel} at once), limit {limit}/s, total {:.1} s\n\
         storm: requests accepted {} refused {} (503) offered {}; longest Retry-After {} s\n\
         storm: peak accepted {}/s in a window, {}/s in any 1-s span, {peak_served}/s in a \
         wall-clock second of the event log\n\
         storm: peak offered {}/s in a window, {}/s in any 1-s span, {peak_offered}/s in a \
         wall-clock second\n\
         storm: mean accepted {:.1}/s offered {:.1}/s over {} s\n\
         storm: retries per node mean {:.2} max {}; node run time mean {:.1} s max {:.1} s\n",
        total.as_secs_f64(),
        stats.accepted,
        stats.refused,
        stats.offered,
        stats.max_retry_after_secs,
        stats.peak_accepted_per_sec,
        stats.peak_accepted_any_sec,
        stats.peak_offered_per_sec,
        stats.peak_offered_any_sec,
        stats.mean_accepted_per_sec,
        stats.mean_offered_per_sec,
        stats.active_secs,
        mean(&retries_f),
        retries.iter().max().unwrap_or(&0),
        mean(&node_secs),
        node_secs.iter().copied().fold(0.0, f64::max),
    );
    print!("{report}");
    if let Ok(path) = std::env::var("STORM_REPORT") {
        append(Path::new(&path), &report);
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap();
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}
