//! The network worker, seen from outside: the real binary as the worker, what it inherits
//! (descriptors, environment), what it may not do (create files), that it dies with its
//! parent, and its session: one worker per run whatever the number of jobs, one pinned TLS
//! connection for the requests of a run, a worker that dies replaced a bounded number of
//! times. The tests that run a whole `boot` or `register` (they persist files through bind
//! mounts) are the privileged tier, `cargo test --features privileged`.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
#[cfg(feature = "privileged")]
use std::process::Stdio;
use std::time::{Duration, Instant};

use ovirt_node_reg::http::Endpoint;
use ovirt_node_reg::retry::{Policy, MAX_ATTEMPTS};
use ovirt_node_reg::trust::CaCert;
use ovirt_node_reg::worker::{self, GetVersion, Net, Sandbox, Session, TryCreate, Whoami};
use qemu_tests::{EventKind, Handle, SimConfig, Simulator};

mod common;
#[cfg(feature = "privileged")]
use common::Node;
use common::BIN;

fn session() -> Session {
    Session::with_binary(Path::new(BIN), false)
}

fn whoami() -> Sandbox {
    session().call(&Whoami {}).expect("the worker answers")
}

#[test]
fn the_worker_inherits_no_descriptor_and_no_environment() {
    assert!(
        std::env::vars_os().next().is_some(),
        "the test itself has an environment to leak"
    );
    // An inheritable descriptor, as a careless library might leave one.
    let leak = fs::File::open("/proc/self/status").unwrap();
    let fd = leak.as_raw_fd();
    // SAFETY: our own open descriptor.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    let Sandbox {
        fds,
        env,
        seccomp,
        no_new_privs,
        ..
    } = whoami();
    drop(leak);
    assert!(fd > 2);
    assert_eq!(
        fds,
        [0, 1, 2],
        "only the pipes and stderr (fd {fd} leaked?)"
    );
    assert!(env.is_empty(), "environment {env:?}");
    assert!(seccomp, "the seccomp filter is on");
    assert!(no_new_privs);
}

#[test]
fn the_worker_cannot_create_remove_or_change_files() {
    let dir = tempfile::tempdir().unwrap();
    // Writable by the worker's uid, so only the filter can say no.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let existing = dir.path().join("existing");
    fs::write(&existing, "kept\n").unwrap();
    fs::set_permissions(&existing, fs::Permissions::from_mode(0o666)).unwrap();
    if rustix::process::geteuid().is_root() {
        let nobody = Some(worker::WORKER_ID);
        std::os::unix::fs::chown(&existing, nobody, nobody).unwrap();
    }
    let job = TryCreate {
        dir: dir.path().to_str().unwrap().to_string(),
    };
    let results = session().call(&job).unwrap();
    assert!(results.len() >= 12, "{results:?}");
    for (what, errno) in &results {
        let want = if what.starts_with("openat existing") {
            None
        } else {
            Some(libc::EPERM)
        };
        assert_eq!(*errno, want, "{what}: {results:?}");
    }
    let mut left: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["existing"], "nothing created, moved or removed");
    assert_eq!(fs::read_to_string(&existing).unwrap(), "kept\n");
    let mode = fs::metadata(&existing).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
}

#[cfg(feature = "privileged")]
#[test]
fn the_worker_dies_with_its_parent() {
    let sim = Simulator::start(SimConfig::default()).expect("simulator starts");
    sim.set_fault("stall:secs=60".parse().unwrap());
    let node = Node::new();
    node.write(
        "/proc/cmdline",
        &format!(
            "ro management_server=127.0.0.1:{} ovirt.reg.store=/config ovirt.reg.timeout=60 \
             ovirt.reg.ca_pin=sha256:{}\n",
            sim.port(),
            sim.ca_sha256()
        ),
    );
    // `unshare` execs the binary: the child's pid is the parent of the worker.
    let mut parent = common::command()
        .arg("--root")
        .arg(&node.root)
        .arg("boot")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare runs (apt-get install util-linux)");
    let stalled = wait_for(Duration::from_secs(20), || stalling(&sim));
    let worker = workers_of(parent.id());
    if !stalled || worker.len() != 1 {
        let _ = parent.kill();
        let _ = parent.wait();
        panic!(
            "expected one worker inside a stalled request: stalled {stalled}, workers {worker:?}"
        );
    }
    let worker = worker[0];

    parent.kill().unwrap();
    parent.wait().unwrap();
    let killed = Instant::now();
    let gone = wait_for(Duration::from_secs(1), || !alive(worker));
    assert!(
        gone,
        "worker {worker} still running {:?} after its parent was killed",
        killed.elapsed()
    );
    eprintln!(
        "worker gone {:?} after its parent was killed",
        killed.elapsed()
    );
}

#[test]
fn one_worker_serves_every_job_of_a_session_and_ends_with_it() {
    let mut session = session();
    let first = session.call(&Whoami {}).unwrap();
    let second = session.call(&Whoami {}).unwrap();
    assert_eq!(first.pid, second.pid, "the same worker for both jobs");
    assert!(alive(first.pid));
    drop(session);
    // The worker reads the end of its input and exits; Session::drop waits for it.
    assert!(
        !alive(first.pid),
        "worker {} outlived its session",
        first.pid
    );
}

#[test]
fn a_worker_killed_inside_a_job_fails_that_job_by_name_and_the_next_job_gets_another() {
    let sim = Simulator::start(SimConfig::default()).expect("simulator starts");
    let mut session = session();
    let pid = session.call(&Whoami {}).unwrap().pid;
    sim.set_fault("stall:secs=30".parse().unwrap());
    let job = GetVersion {
        net: net(&sim),
        ca: CaCert::from_pem(sim.ca_pem().as_bytes()).unwrap(),
    };
    let started = Instant::now();
    let (result, stalled) = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            let stalled = wait_for(Duration::from_secs(20), || stalling(&sim));
            kill(pid);
            stalled
        });
        (session.call(&job), killer.join().unwrap())
    });
    assert!(stalled, "the request reached the simulator");
    let e = format!("{:#}", result.unwrap_err());
    assert!(
        e.contains("the network worker died during the version job"),
        "{e}"
    );
    assert!(e.contains("SIGKILL"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "not the stall's end"
    );
    let next = session.call(&Whoami {}).unwrap().pid;
    assert_ne!(next, pid, "a new worker");
}

#[test]
fn a_worker_that_keeps_dying_is_not_started_again_and_again() {
    let mut session = session();
    let mut pids = Vec::new();
    for _ in 0..3 {
        let pid = session.call(&Whoami {}).expect("a worker").pid;
        kill(pid);
        assert!(wait_for(Duration::from_secs(1), || !alive(pid)));
        pids.push(pid);
    }
    pids.dedup();
    assert_eq!(pids.len(), 3, "three workers: {pids:?}");
    let e = format!("{:#}", session.call(&Whoami {}).unwrap_err());
    assert!(e.contains("started 3 times"), "{e}");
    assert!(e.contains("not starting it again"), "{e}");
}

#[cfg(feature = "privileged")]
/// A stock engine (v1): `boot` ends after `register` and `get-version`.
fn v1_engine(close_each: bool) -> Handle {
    let cfg = SimConfig {
        protocol_version: 1,
        close_each,
        ..SimConfig::default()
    };
    Simulator::start(cfg).expect("simulator starts")
}

#[cfg(feature = "privileged")]
const SETTINGS: &str = "ovirt.reg.store=/config hostname=node1.example.com \
                        ovirt.reg.retry_base=1 ovirt.reg.retry_cap=2 ovirt.reg.timeout=30";

#[cfg(feature = "privileged")]
/// `register --engine` on a fresh node, with `--debug` (the worker's start is logged).
fn register_run(sim: &Handle) -> (std::process::Output, String) {
    let node = Node::new();
    let pin = format!("ovirt.reg.ca_pin=sha256:{}", sim.ca_sha256());
    node.write("/proc/cmdline", &format!("ro {SETTINGS} {pin}\n"));
    let engine = format!("127.0.0.1:{}", sim.port());
    node.run(&["--debug", "register", "--engine", &engine])
}

#[cfg(feature = "privileged")]
/// Workers started by a run: each logs its sandbox once, when it starts.
fn workers_started(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("network worker: uid"))
        .count()
}

#[cfg(feature = "privileged")]
/// The engine commands the simulator saw, with the number of the connection each came on.
fn requests_by_connection(sim: &Handle) -> Vec<(String, u64)> {
    sim.requests()
        .iter()
        .map(|e| {
            let what = e.command().or(e.path.as_deref()).unwrap_or_default();
            (what.to_string(), e.connection.unwrap_or_default())
        })
        .collect()
}

#[cfg(feature = "privileged")]
#[test]
fn a_register_run_uses_one_worker_and_one_pinned_connection() {
    let sim = v1_engine(false);
    let (out, err) = register_run(&sim);
    assert!(out.status.success(), "{err}");
    assert_eq!(workers_started(&err), 1, "{err}");
    let seen = requests_by_connection(&sim);
    let commands: Vec<&str> = seen.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(commands, ["get-pki-trust", "get-ssh-trust", "register"]);
    // The CA download on its own (unverified) connection, everything after it on one
    // pinned connection.
    assert_eq!(seen[1].1, seen[2].1, "{seen:?}");
    assert_ne!(seen[0].1, seen[1].1, "{seen:?}");
    assert_eq!(sim.tls_connections(), 2);
}

#[cfg(feature = "privileged")]
#[test]
fn a_boot_run_starts_one_worker_for_all_its_jobs() {
    let sim = v1_engine(false);
    let node = Node::new();
    let pin = format!("ovirt.reg.ca_pin=sha256:{}", sim.ca_sha256());
    let server = format!("management_server=127.0.0.1:{}", sim.port());
    node.write("/proc/cmdline", &format!("ro {server} {SETTINGS} {pin}\n"));
    let (_, err) = node.run(&["--debug", "boot"]);
    let seen = requests_by_connection(&sim);
    let commands: Vec<&str> = seen.iter().map(|(c, _)| c.as_str()).collect();
    // The clock's get-version, the CA, then the key, register and get-version pinned.
    assert_eq!(
        commands,
        [
            "get-version",
            "get-pki-trust",
            "get-ssh-trust",
            "register",
            "get-version"
        ],
        "{err}"
    );
    assert_eq!(workers_started(&err), 1, "{err}");
    assert!(sim.tls_connections() <= 2, "{seen:?}");
}

#[cfg(feature = "privileged")]
#[test]
fn an_engine_that_closes_after_each_answer_still_gets_a_registration() {
    let sim = v1_engine(true);
    let (out, err) = register_run(&sim);
    assert!(out.status.success(), "{err}");
    assert_eq!(workers_started(&err), 1, "{err}");
    let seen = requests_by_connection(&sim);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        sim.tls_connections(),
        3,
        "a new connection for each request"
    );
    assert_eq!(sim.hosts().len(), 1, "registered");
}

fn net(sim: &Handle) -> Net {
    Net {
        endpoint: Endpoint {
            host: "127.0.0.1".parse().unwrap(),
            port: sim.port(),
        },
        policy: Policy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
            max_attempts: MAX_ATTEMPTS,
        },
    }
}

/// The simulator holds a request in a stall.
fn stalling(sim: &Handle) -> bool {
    sim.events().iter().any(|e| {
        e.kind == EventKind::Fault && e.detail.as_deref().unwrap_or("").starts_with("stalling")
    })
}

fn kill(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill");
}

/// Poll `done` every 10 ms for at most `limit`.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(feature = "privileged")]
/// The children of `pid`'s main thread that run as `worker`.
fn workers_of(pid: u32) -> Vec<u32> {
    let children =
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .filter(|c: &u32| {
            let argv = fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
            argv.split(|&b| b == 0).any(|a| a == b"worker")
        })
        .collect()
}

/// Running, not gone and not a zombie waiting for whoever inherited it.
fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}
