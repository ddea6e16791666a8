//! The one retry policy for everything that talks to the engine.
//!
//! Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff and
//! Jitter"): attempt `n` waits a uniformly random time in `[0, min(cap, base * 2^n)]`, so 500
//! PXE-booted hosts that fail together spread out instead of hammering the engine in waves.
//! A server's `Retry-After` is honoured (capped, plus a little jitter for the same reason).
//! Fatal errors (a 4xx other than 408/429, a trust failure) stop at once; transient ones are
//! retried until the overall deadline (`ovirt.reg.timeout`). The clock and the random source
//! are injected so the unit tests run instantly and deterministically.

use std::fmt;
use std::time::{Duration, Instant};

use log::warn;

use crate::config::RegConfig;

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Trying again cannot change the answer (bad request, wrong CA, ...).
    Fatal,
    /// The engine is unreachable, busy or restarting; `retry_after` is its own hint.
    Transient { retry_after: Option<Duration> },
}

/// Errors that know which [`Class`] they are.
pub trait Classify {
    fn class(&self) -> Class;
}

/// Time as the retry loop sees it: monotonic "now" and a way to wait.
pub trait Clock {
    /// Time elapsed since some fixed point (only differences matter).
    fn now(&self) -> Duration;
    fn sleep(&self, d: Duration);
}

/// The real clock.
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A small seeded PRNG (splitmix64). Jitter needs spread, not cryptographic strength, and a
/// seed makes the tests reproducible.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    pub fn seeded(seed: u64) -> Jitter {
        Jitter { state: seed }
    }

    /// Seeded from the kernel, so that hosts booted from one image do not share a sequence.
    /// `GRND_INSECURE`: never block early in boot waiting for the entropy pool, which jitter
    /// does not need.
    pub fn from_os() -> Jitter {
        let mut buf = [0u8; 8];
        let seed = match rustix::rand::getrandom(&mut buf, rustix::rand::GetRandomFlags::INSECURE) {
            Ok(8) => u64::from_le_bytes(buf),
            // Kernel older than 5.6: the clock still differs between hosts.
            _ => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        };
        Jitter::seeded(seed ^ u64::from(std::process::id()))
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max]` at millisecond resolution.
    pub fn up_to(&mut self, max: Duration) -> Duration {
        let ms = max.as_millis().min(u128::from(u64::MAX - 1)) as u64;
        Duration::from_millis(self.next_u64() % (ms + 1))
    }
}

/// Hard bound on attempts whatever the clock says (a clock that never advances must not
/// make the loop endless).
pub const MAX_ATTEMPTS: u32 = 10_000;

/// Backoff parameters and the overall deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub base: Duration,
    pub cap: Duration,
    /// Total time allowed, from the first attempt.
    pub deadline: Duration,
    pub max_attempts: u32,
}

impl Policy {
    /// `ovirt.reg.retry_base`, `ovirt.reg.retry_cap`, `ovirt.reg.timeout`.
    pub fn from_config(reg: &RegConfig) -> Policy {
        Policy {
            base: reg.retry_base.duration(),
            cap: reg.retry_cap.duration(),
            deadline: reg.timeout.duration(),
            max_attempts: MAX_ATTEMPTS,
        }
    }

    /// The wait after failed attempt number `attempt` (0-based).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, rng: &mut Jitter) -> Duration {
        match retry_after {
            // The engine said when; add up to one base of jitter so hosts told the same
            // time do not all come back in the same second.
            Some(ra) => ra.min(self.cap) + rng.up_to(self.base.min(self.cap)),
            None => rng.up_to(self.ceiling(attempt)),
        }
    }

    /// `min(cap, base * 2^attempt)` without overflow.
    fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// Why the retry loop gave up; `last` is the error of the last attempt.
#[derive(Debug)]
pub struct GaveUp<E> {
    pub reason: Reason,
    pub attempts: u32,
    pub elapsed: Duration,
    pub last: E,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Fatal,
    /// The next wait would pass the deadline.
    Deadline,
    TooManyAttempts,
}

impl<E: fmt::Display> fmt::Display for GaveUp<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            Reason::Fatal => "not retried",
            Reason::Deadline => "deadline reached",
            Reason::TooManyAttempts => "too many attempts",
        };
        write!(
            f,
            "{} ({why} after {} attempt(s) in {}s)",
            self.last,
            self.attempts,
            self.elapsed.as_secs()
        )
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for GaveUp<E> {}

/// What an attempt knows about the loop: its number and the time left, so that it can cap
/// its own network timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
    pub remaining: Duration,
}

/// The policy with its clock, random source and start time: one per registration run, so
/// that `ovirt.reg.timeout` bounds all the steps together, not each one.
pub struct Retrier {
    policy: Policy,
    clock: Box<dyn Clock>,
    rng: Jitter,
    start: Duration,
}

impl Retrier {
    pub fn new(policy: Policy, clock: Box<dyn Clock>, rng: Jitter) -> Retrier {
        let start = clock.now();
        Retrier {
            policy,
            clock,
            rng,
            start,
        }
    }

    /// The real clock and a kernel-seeded jitter.
    pub fn system(policy: Policy) -> Retrier {
        Retrier::new(policy, Box::<SystemClock>::default(), Jitter::from_os())
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Time left before the overall deadline.
    pub fn remaining(&self) -> Duration {
        let elapsed = self.clock.now().saturating_sub(self.start);
        self.policy.deadline.saturating_sub(elapsed)
    }

    /// [`run`], against the deadline counted from this retrier's creation.
    pub fn run<T, E, F>(&mut self, what: &str, op: F) -> Result<T, GaveUp<E>>
    where
        E: Classify + fmt::Display,
        F: FnMut(Attempt) -> Result<T, E>,
    {
        run_from(
            &self.policy,
            self.clock.as_ref(),
            &mut self.rng,
            self.start,
            what,
            op,
        )
    }
}

/// Run `op` until it succeeds, fails fatally, or the policy's deadline or attempt bound is
/// reached. `what` names the operation in the log.
pub fn run<T, E, F>(
    policy: &Policy,
    clock: &dyn Clock,
    rng: &mut Jitter,
    what: &str,
    op: F,
) -> Result<T, GaveUp<E>>
where
    E: Classify + fmt::Display,
    F: FnMut(Attempt) -> Result<T, E>,
{
    run_from(policy, clock, rng, clock.now(), what, op)
}

/// The loop itself; the deadline counts from `start`. Always makes at least one attempt.
fn run_from<T, E, F>(
    policy: &Policy,
    clock: &dyn Clock,
    rng: &mut Jitter,
    start: Duration,
    what: &str,
    mut op: F,
) -> Result<T, GaveUp<E>>
where
    E: Classify + fmt::Display,
    F: FnMut(Attempt) -> Result<T, E>,
{
    let mut number = 0u32;
    loop {
        let elapsed = clock.now().saturating_sub(start);
        let remaining = policy.deadline.saturating_sub(elapsed);
        let err = match op(Attempt { number, remaining }) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        number += 1;
        let elapsed = clock.now().saturating_sub(start);
        let (reason, wait) = match err.class() {
            Class::Fatal => (Some(Reason::Fatal), Duration::ZERO),
            _ if number >= policy.max_attempts => (Some(Reason::TooManyAttempts), Duration::ZERO),
            Class::Transient { retry_after } => {
                let wait = policy.delay(number - 1, retry_after, rng);
                // Do not sleep only to fail: give up now if the wait passes the deadline.
                let late = elapsed.saturating_add(wait) >= policy.deadline;
                (late.then_some(Reason::Deadline), wait)
            }
        };
        if let Some(reason) = reason {
            return Err(GaveUp {
                reason,
                attempts: number,
                elapsed,
                last: err,
            });
        }
        warn!(
            "{what}: attempt {number} failed: {err}; retrying in {:.1}s",
            wait.as_secs_f64()
        );
        clock.sleep(wait);
    }
}

#[cfg(test)]
mod tests;
