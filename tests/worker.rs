//! The network worker's sandbox, seen from outside: the real binary as the worker, what it
//! inherits (descriptors, environment), what it may not do (create files), and that it dies
//! with its parent (a boot: the privileged tier, `cargo test --features privileged`).

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
#[cfg(feature = "privileged")]
use std::process::Stdio;
#[cfg(feature = "privileged")]
use std::time::{Duration, Instant};

use ovirt_node_reg::worker::{self, Job, Reply};
#[cfg(feature = "privileged")]
use qemu_tests::{EventKind, SimConfig, Simulator};

mod common;
#[cfg(feature = "privileged")]
use common::Node;
use common::BIN;

fn whoami() -> Reply {
    worker::run_binary(Path::new(BIN), &Job::Whoami, false).expect("the worker answers")
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
    let reply = whoami();
    drop(leak);
    let Reply::Whoami {
        fds,
        env,
        seccomp,
        no_new_privs,
        ..
    } = reply
    else {
        panic!("expected whoami, got {reply:?}")
    };
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
    let job = Job::TryCreate {
        dir: dir.path().to_str().unwrap().to_string(),
    };
    let reply = worker::run_binary(Path::new(BIN), &job, false).unwrap();
    let Reply::Created { results } = reply else {
        panic!("expected the creation results, got {reply:?}")
    };
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

/// A boot persists files (bind mounts): root only.
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
    let stalled = wait_for(Duration::from_secs(20), || {
        sim.events().iter().any(|e| {
            e.kind == EventKind::Fault && e.detail.as_deref().unwrap_or("").starts_with("stalling")
        })
    });
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

/// Poll `done` every 10 ms for at most `limit`.
#[cfg(feature = "privileged")]
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

/// The children of `pid`'s main thread that run as `worker`.
#[cfg(feature = "privileged")]
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
#[cfg(feature = "privileged")]
fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}
