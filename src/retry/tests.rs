use super::*;
use std::cell::{Cell, RefCell};

/// A clock that only moves when slept on, recording each sleep.
#[derive(Default)]
struct FakeClock {
    now: Cell<Duration>,
    sleeps: RefCell<Vec<Duration>>,
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.now.get()
    }
    fn sleep(&self, d: Duration) {
        self.now.set(self.now.get() + d);
        self.sleeps.borrow_mut().push(d);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct E(Class);

impl Classify for E {
    fn class(&self) -> Class {
        self.0
    }
}

impl fmt::Display for E {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

const TRANSIENT: E = E(Class::Transient { retry_after: None });

fn policy(base: u64, cap: u64, deadline: u64) -> Policy {
    Policy {
        base: Duration::from_secs(base),
        cap: Duration::from_secs(cap),
        deadline: Duration::from_secs(deadline),
        max_attempts: MAX_ATTEMPTS,
    }
}

#[test]
fn succeeds_after_transient_failures() {
    let clock = FakeClock::default();
    let mut n = 0;
    let r = run(
        &policy(1, 60, 300),
        &clock,
        &mut Jitter::seeded(1),
        "t",
        |a| {
            assert_eq!(a.number, n);
            n += 1;
            if n < 4 {
                Err(TRANSIENT)
            } else {
                Ok(n)
            }
        },
    );
    assert_eq!(r.unwrap(), 4);
    assert_eq!(clock.sleeps.borrow().len(), 3);
}

#[test]
fn fatal_stops_at_once() {
    let clock = FakeClock::default();
    let r: Result<(), _> = run(
        &policy(1, 60, 300),
        &clock,
        &mut Jitter::seeded(1),
        "t",
        |_| Err(E(Class::Fatal)),
    );
    let e = r.unwrap_err();
    assert_eq!((e.reason, e.attempts), (Reason::Fatal, 1));
    assert!(clock.sleeps.borrow().is_empty());
}

#[test]
fn full_jitter_stays_under_the_exponential_ceiling_and_the_cap() {
    let p = policy(1, 60, 300);
    let mut rng = Jitter::seeded(7);
    for attempt in 0..40 {
        let ceiling = Duration::from_secs((1u64 << attempt.min(20)).min(60));
        for _ in 0..50 {
            assert!(p.delay(attempt, None, &mut rng) <= ceiling);
        }
    }
}

#[test]
fn jitter_spreads_and_is_reproducible() {
    let p = policy(1, 60, 300);
    let seq = |seed| {
        let mut rng = Jitter::seeded(seed);
        (0..20)
            .map(|_| p.delay(10, None, &mut rng))
            .collect::<Vec<_>>()
    };
    assert_eq!(seq(42), seq(42));
    assert_ne!(seq(42), seq(43));
    let distinct: std::collections::HashSet<_> = seq(42).into_iter().collect();
    assert!(distinct.len() > 10, "full jitter spreads the waits");
}

#[test]
fn retry_after_is_honoured_and_capped() {
    let p = policy(1, 60, 3000);
    let mut rng = Jitter::seeded(3);
    for _ in 0..50 {
        let d = p.delay(0, Some(Duration::from_secs(7)), &mut rng);
        assert!(
            d >= Duration::from_secs(7) && d <= Duration::from_secs(8),
            "{d:?}"
        );
        let d = p.delay(0, Some(Duration::from_secs(86_400)), &mut rng);
        assert!(
            d >= Duration::from_secs(60) && d <= Duration::from_secs(61),
            "{d:?}"
        );
    }
}

#[test]
fn deadline_bounds_the_loop() {
    let clock = FakeClock::default();
    let r: Result<(), _> = run(
        &policy(1, 10, 60),
        &clock,
        &mut Jitter::seeded(9),
        "t",
        |a| {
            assert!(a.remaining <= Duration::from_secs(60));
            Err(TRANSIENT)
        },
    );
    let e = r.unwrap_err();
    assert_eq!(e.reason, Reason::Deadline);
    assert!(
        clock.now() < Duration::from_secs(60),
        "never sleeps past the deadline"
    );
    assert!(e.attempts > 3);
}

#[test]
fn gives_up_early_when_retry_after_passes_the_deadline() {
    let clock = FakeClock::default();
    let ra = E(Class::Transient {
        retry_after: Some(Duration::from_secs(120)),
    });
    let r: Result<(), _> = run(
        &policy(1, 300, 100),
        &clock,
        &mut Jitter::seeded(9),
        "t",
        |_| Err(ra),
    );
    assert_eq!(r.unwrap_err().reason, Reason::Deadline);
    assert!(clock.sleeps.borrow().is_empty());
}

/// A clock that never advances and never sleeps: only the attempt bound ends the loop.
struct StuckClock;

impl Clock for StuckClock {
    fn now(&self) -> Duration {
        Duration::ZERO
    }
    fn sleep(&self, _: Duration) {}
}

#[test]
fn attempt_bound_ends_a_stuck_clock() {
    let mut p = policy(1, 1, 10);
    p.max_attempts = 25;
    let r: Result<(), _> = run(&p, &StuckClock, &mut Jitter::seeded(1), "t", |_| {
        Err(TRANSIENT)
    });
    let e = r.unwrap_err();
    assert_eq!((e.reason, e.attempts), (Reason::TooManyAttempts, 25));
}

#[test]
fn huge_attempt_numbers_do_not_overflow() {
    let p = policy(60, 60 * 60, 300);
    let mut rng = Jitter::seeded(5);
    assert!(p.delay(u32::MAX, None, &mut rng) <= Duration::from_secs(3600));
    assert!(p.delay(0, Some(Duration::MAX), &mut rng) <= Duration::from_secs(3660));
}

#[test]
fn policy_from_config() {
    let cfg = crate::config::Config::default();
    let p = Policy::from_config(&cfg.reg);
    assert_eq!(
        (p.base, p.cap, p.deadline),
        (
            Duration::from_secs(1),
            Duration::from_secs(60),
            Duration::from_secs(300)
        )
    );
}

#[test]
fn gave_up_message_names_the_reason() {
    let e = GaveUp {
        reason: Reason::Deadline,
        attempts: 3,
        elapsed: Duration::from_secs(12),
        last: "connection refused",
    };
    assert_eq!(
        e.to_string(),
        "connection refused (deadline reached after 3 attempt(s) in 12s)"
    );
}

/// A shareable fake clock for the boxed `Retrier`.
#[derive(Clone, Default)]
struct SharedClock(std::rc::Rc<FakeClock>);

impl Clock for SharedClock {
    fn now(&self) -> Duration {
        self.0.now()
    }
    fn sleep(&self, d: Duration) {
        self.0.sleep(d)
    }
}

#[test]
fn retrier_deadline_spans_all_operations() {
    let clock = SharedClock::default();
    let mut r = Retrier::new(
        policy(1, 10, 60),
        Box::new(clock.clone()),
        Jitter::seeded(2),
    );
    clock.sleep(Duration::from_secs(50));
    assert_eq!(r.remaining(), Duration::from_secs(10));
    let e = r.run("late", |_| Err::<(), _>(TRANSIENT)).unwrap_err();
    assert_eq!(e.reason, Reason::Deadline);
    assert!(clock.now() < Duration::from_secs(60));
    assert_eq!(
        r.run("ok", |_| Ok::<_, E>(1)).unwrap(),
        1,
        "always one attempt"
    );
}
