//! The kernel's random number generator, before the first use that needs it.
//!
//! TLS (rustls through ring) and key generation read `getrandom()`, which blocks until the
//! kernel's CRNG is initialised. A machine whose kernel trusts a hardware source (RDRAND with
//! `CONFIG_RANDOM_TRUST_CPU`, virtio-rng, a seed from the boot loader) has it at once; one
//! without can wait a second or more in early boot, silently, inside whichever step first
//! needs randomness. The node cannot make entropy, but it can say that it waits: ask without
//! blocking first, and on `EAGAIN` print one line, then block (docs/qemu-harness.md §8).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{debug, info};

/// The line printed before blocking.
pub const WAITING: &str = "waiting for the kernel's random number generator to be seeded";

/// One read of a few random bytes, blocking or not: the seam tests replace.
pub trait Pool {
    /// `Err` of kind `WouldBlock` when `block` is false and the pool is not ready yet.
    fn read(&self, block: bool) -> io::Result<()>;
}

/// `getrandom(2)`; `GRND_NONBLOCK` when not blocking.
pub struct KernelPool;

impl Pool for KernelPool {
    fn read(&self, block: bool) -> io::Result<()> {
        let flags = if block {
            rustix::rand::GetRandomFlags::empty()
        } else {
            rustix::rand::GetRandomFlags::NONBLOCK
        };
        let mut b = [0u8; 1];
        rustix::rand::getrandom(&mut b, flags)?;
        Ok(())
    }
}

/// Once the pool answered, it stays ready (the kernel never un-seeds it): later calls are free.
static READY: AtomicBool = AtomicBool::new(false);

/// Before the first TLS handshake or key: return at once when the kernel's pool is ready,
/// else say so on the console and block until it is (then say how long it took).
pub fn wait_until_ready() {
    if READY.load(Ordering::Relaxed) {
        return;
    }
    match wait(&KernelPool, &mut |line| info!("{line}")) {
        Ok(_) => READY.store(true, Ordering::Relaxed),
        // ring reads getrandom itself and reports its own failure; this was only to tell.
        Err(e) => debug!("cannot ask the kernel's random number generator: {e}"),
    }
}

/// Ask `pool` without blocking; if it is not ready, `say` [`WAITING`], block, and `say` how
/// long it took. The wait, `None` when there was none.
pub fn wait(pool: &dyn Pool, say: &mut dyn FnMut(&str)) -> io::Result<Option<Duration>> {
    match pool.read(false) {
        Ok(()) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    say(WAITING);
    let start = Instant::now();
    read_blocking(pool)?;
    let waited = start.elapsed();
    say(&format!(
        "the kernel's random number generator is ready after {:.2} s",
        waited.as_secs_f64()
    ));
    Ok(Some(waited))
}

/// A blocking read, again when a signal interrupts it (a few times at most).
fn read_blocking(pool: &dyn Pool) -> io::Result<()> {
    let mut last = None;
    for _ in 0..8 {
        match pool.read(true) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::Interrupted)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Answers with the scripted results in order, and records each call's `block`.
    struct Scripted {
        answers: RefCell<Vec<io::Result<()>>>,
        calls: RefCell<Vec<bool>>,
    }

    impl Scripted {
        fn new(answers: Vec<io::Result<()>>) -> Scripted {
            Scripted {
                answers: RefCell::new(answers.into_iter().rev().collect()),
                calls: RefCell::new(Vec::new()),
            }
        }
    }

    impl Pool for Scripted {
        fn read(&self, block: bool) -> io::Result<()> {
            self.calls.borrow_mut().push(block);
            self.answers
                .borrow_mut()
                .pop()
                .expect("more reads than scripted")
        }
    }

    fn would_block() -> io::Result<()> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    #[test]
    fn a_ready_pool_is_asked_once_without_blocking_and_nothing_is_said() {
        let pool = Scripted::new(vec![Ok(())]);
        let mut said = Vec::new();
        let waited = wait(&pool, &mut |l| said.push(l.to_string())).unwrap();
        assert_eq!(waited, None);
        assert_eq!(*pool.calls.borrow(), vec![false]);
        assert!(said.is_empty(), "{said:?}");
    }

    #[test]
    fn an_unseeded_pool_is_announced_then_waited_for() {
        let pool = Scripted::new(vec![would_block(), Ok(())]);
        let mut said = Vec::new();
        let waited = wait(&pool, &mut |l| said.push(l.to_string())).unwrap();
        assert!(waited.is_some());
        assert_eq!(*pool.calls.borrow(), vec![false, true]);
        assert_eq!(said.len(), 2, "{said:?}");
        assert_eq!(said[0], WAITING);
        assert!(said[1].contains("ready after"), "{said:?}");
    }

    #[test]
    fn a_blocking_read_interrupted_by_a_signal_is_made_again() {
        let eintr = || Err(io::ErrorKind::Interrupted.into());
        let pool = Scripted::new(vec![would_block(), eintr(), eintr(), Ok(())]);
        assert!(wait(&pool, &mut |_| {}).unwrap().is_some());
        assert_eq!(*pool.calls.borrow(), vec![false, true, true, true]);
    }

    #[test]
    fn endless_interruptions_end_in_an_error() {
        let answers = std::iter::once(would_block())
            .chain((0..8).map(|_| Err(io::ErrorKind::Interrupted.into())))
            .collect();
        let pool = Scripted::new(answers);
        let e = wait(&pool, &mut |_| {}).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Interrupted);
        assert_eq!(pool.calls.borrow().len(), 9);
    }

    #[test]
    fn another_error_is_returned_without_a_word() {
        let pool = Scripted::new(vec![Err(io::Error::from_raw_os_error(libc::ENOSYS))]);
        let mut said = Vec::new();
        assert!(wait(&pool, &mut |l| said.push(l.to_string())).is_err());
        assert!(said.is_empty(), "{said:?}");
    }

    #[test]
    fn the_kernel_pool_of_this_machine_answers() {
        // The test machine has been up long enough for its pool to be seeded.
        assert_eq!(wait(&KernelPool, &mut |_| {}).unwrap(), None);
    }
}
