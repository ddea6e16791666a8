//! Running a boot: at most [`MAX_VMS`] QEMUs at once, the hard timeout (QEMU itself is
//! killed), the console log and QEMU's stderr in `target/qemu-artifacts`, one line per boot in
//! [`BOOT_TIMES`].

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use super::boot::Boot;
use super::host::{artifacts_dir, host, target_dir};
use super::images::lock_file;
use super::vm::Vm;

/// QEMU boots at once, at most, across every test process sharing this target directory (the
/// machine has 2 cores; docs/qemu-harness.md §4: one VM per core). build-support/test-all.sh
/// runs several QEMU test binaries at once and this keeps them to one VM per core.
pub const MAX_VMS: usize = 2;

/// How long a boot may wait for a free slot before the test fails: longer than the slowest
/// scenario (the BIOS install, five boots) holds one, so only a stuck run gets here.
const SLOT_WAIT: Duration = Duration::from_secs(3600);

/// One of the [`MAX_VMS`] slots: an exclusive lock on `qemu-slots/N.lock` in the target
/// directory. The kernel drops the lock when the file is closed, also when a test process dies.
struct Slot {
    _lock: fs::File,
}

/// In `qemu-slots/`: held shared by each boot of [`Vm::first_in_line`] while it waits for a
/// slot. Other boots take no slot while anyone holds it.
const FIRST_IN_LINE: &str = "first-in-line.lock";

static TOTAL_MS: Mutex<u128> = Mutex::new(0);

impl Slot {
    /// A free slot; with `first`, before any boot that is not first in line (the queue's
    /// shared lock is held until this returns).
    fn take(first: bool) -> Result<Slot> {
        Slot::take_in(&target_dir().join("qemu-slots"), first)
    }

    fn take_in(dir: &Path, first: bool) -> Result<Slot> {
        fs::create_dir_all(dir)?;
        let queue = lock_file(&dir.join(FIRST_IN_LINE))?;
        if first {
            queue.lock_shared()?;
        }
        let mut files = (0..MAX_VMS)
            .map(|n| lock_file(&dir.join(format!("{n}.lock"))))
            .collect::<Result<Vec<_>>>()?;
        let start = Instant::now();
        loop {
            // A boot that must give way does not even try the slots.
            if first || nobody_first(&queue) {
                if let Some(n) = files.iter().position(|f| f.try_lock().is_ok()) {
                    return Ok(Slot {
                        _lock: files.swap_remove(n),
                    });
                }
            }
            if start.elapsed() >= SLOT_WAIT {
                bail!(
                    "no free QEMU slot in {} after {} s: another test process holds both",
                    dir.display(),
                    SLOT_WAIT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether no boot first in line waits for a slot: nobody holds the queue's lock shared.
fn nobody_first(queue: &fs::File) -> bool {
    let free = queue.try_lock().is_ok();
    if free {
        let _ = queue.unlock();
    }
    free
}

/// In the artefacts directory: `name<TAB>seconds<TAB>start` per boot (start in seconds since
/// the Unix epoch), appended by every test process.
pub const BOOT_TIMES: &str = "boot-times.tsv";

/// The same for the image builds (`what<TAB>seconds<TAB>start`).
pub const BUILD_TIMES: &str = "build-times.tsv";

/// Appends one line to `file` in the artefacts directory (best effort: timing only).
pub(super) fn record_time(file: &str, what: &str, took: Duration, started: SystemTime) {
    let start = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let _ = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(artifacts_dir().join(file))
        .and_then(|mut f| {
            writeln!(
                f,
                "{what}\t{:.2}\t{:.2}",
                took.as_secs_f64(),
                start.as_secs_f64()
            )
        });
}

/// QEMU wall time of every boot of this test process so far.
pub fn total_qemu_time() -> Duration {
    Duration::from_millis(*TOTAL_MS.lock().unwrap_or_else(|e| e.into_inner()) as u64)
}

/// Boots `vm` and waits for QEMU to exit, killing it at `vm.timeout`. The console log goes to
/// `target/qemu-artifacts/<name>.serial.log` and stays there unless [`Boot::pass`] is called.
pub fn boot(vm: &Vm) -> Result<Boot> {
    boot_with(vm, None)
}

/// [`boot`], calling `on_marker.1` once, while the guest runs, as soon as a console line
/// contains `on_marker.0` (e.g. the ISO root's `QH-VDSM listening`: the engine checks the
/// node's vdsm port while the guest waits for it).
pub fn boot_with(vm: &Vm, mut on_marker: Option<(&str, &mut dyn FnMut())>) -> Result<Boot> {
    let host = host()?;
    let arts = artifacts_dir();
    fs::create_dir_all(&arts)?;
    let log_path = arts.join(format!("{}.serial.log", vm.name));
    let _ = fs::remove_file(&log_path);
    let err_path = arts.join(format!("{}.qemu-stderr.log", vm.name));
    let mut cmd = vm.command(&host, &log_path)?;
    let stderr = fs::File::create(&err_path)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let slot = Slot::take(vm.first_in_line)?;
    let start = Instant::now();
    let started = SystemTime::now();
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let mut timed_out = false;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if let Some((marker, f)) = &mut on_marker {
            let seen = fs::read(&log_path).is_ok_and(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .any(|l| l.contains(*marker))
            });
            if seen {
                f();
                on_marker = None;
            }
        }
        if start.elapsed() >= vm.timeout {
            timed_out = true;
            // QEMU itself, not a wrapper: the serial file is written as the guest prints.
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed();
    drop(slot);
    *TOTAL_MS.lock().unwrap_or_else(|e| e.into_inner()) += elapsed.as_millis();
    let log = String::from_utf8_lossy(&fs::read(&log_path).unwrap_or_default()).into_owned();
    let qemu_stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&err_path);
    if !qemu_stderr.trim().is_empty() {
        // Keep QEMU's complaints with the console log.
        let _ = fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .and_then(|mut f| write!(f, "\n--- qemu stderr ---\n{qemu_stderr}"));
    }
    // One line per boot for the test command's total and timeline (build-support/test-all.sh).
    record_time(BOOT_TIMES, &vm.name, elapsed, started);
    eprintln!(
        "[qemu] boot {}: {:.2} s QEMU wall time{}",
        vm.name,
        elapsed.as_secs_f64(),
        if timed_out {
            " (killed at the timeout)"
        } else {
            ""
        }
    );
    let boot = Boot {
        name: vm.name.clone(),
        log,
        log_path,
        started,
        elapsed,
        timed_out,
        qemu_stderr,
        image: vm.image,
    };
    if timed_out {
        bail!(
            "{}: no poweroff within {:?}\n{}",
            vm.name,
            vm.timeout,
            boot.tail()
        );
    }
    Ok(boot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// While a boot first in line waits (here: the test holds the queue's lock as one does),
    /// another boot takes no slot although both are free, and one first in line takes one at
    /// once; when nobody first in line waits any more, the other boot gets its slot.
    #[test]
    fn boots_give_way_to_one_first_in_line() {
        let dir = tempfile::tempdir().unwrap();
        let queue = lock_file(&dir.path().join(FIRST_IN_LINE)).unwrap();
        queue.lock_shared().unwrap();
        let (tx, rx) = mpsc::channel();
        let path = dir.path().to_path_buf();
        let other = std::thread::spawn(move || {
            let slot = Slot::take_in(&path, false).unwrap();
            tx.send(()).unwrap();
            drop(slot);
        });
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            rx.try_recv().is_err(),
            "a boot took a slot before one first in line"
        );
        let first = Slot::take_in(dir.path(), true).expect("a free slot at once");
        drop(queue);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the other boot gets the second slot once nobody is first in line");
        drop(first);
        other.join().unwrap();
    }
}
