//! The clock step end to end on loopback: an SNTP responder written here (UDP on 127.0.0.1,
//! ephemeral port) that answers the right time, a time years off, garbage or nothing, and the
//! engine simulator's `Date` header as the fallback. The local clock is injected (a skewed
//! copy of the real one): the machine's own clock is never changed. Every wait is bounded.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ovirt_node_reg::clock::{self, Clock, DateError, Limits, Outcome, SntpOptions, Source, Time};
use ovirt_node_reg::http::{Client, Endpoint, Timeouts};
use ovirt_node_reg::retry::{Jitter, Policy, Reason, Retrier, SystemClock};
use qemu_tests::{SimConfig, Simulator};

const S: i64 = 1_000_000_000;
const YEAR: i64 = 365 * 86_400 * S;

fn real_now() -> Time {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Time(d.as_nanos() as i64)
}

/// The machine's clock shifted by `skew`; `set` moves the shift, never the machine's clock.
struct Skewed {
    skew: Cell<i64>,
    sets: RefCell<Vec<Time>>,
}

impl Skewed {
    fn new(skew: i64) -> Skewed {
        Skewed {
            skew: Cell::new(skew),
            sets: RefCell::new(Vec::new()),
        }
    }
}

impl Clock for Skewed {
    fn now(&self) -> io::Result<Time> {
        Ok(Time(real_now().0 + self.skew.get()))
    }
    fn set(&self, t: Time) -> io::Result<()> {
        self.sets.borrow_mut().push(t);
        self.skew.set(t.0 - real_now().0);
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Answer {
    /// The server's clock is the real one shifted by this many ns.
    Time(i64),
    /// A short packet, then 48 bytes that answer nobody.
    Garbage,
    /// Kiss-o'-death: stratum 0.
    Kiss,
    Silent,
}

/// A one-socket SNTP server for the tests; stops when dropped.
struct Responder {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    fn start(answer: Answer) -> Responder {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    for out in answer_to(answer, &buf[..n]) {
                        let _ = sock.send_to(&out, peer);
                    }
                }
            }
        });
        Responder {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Responder {
    /// This server alone, as `ntp=` would list it.
    fn list(&self) -> Vec<String> {
        vec![self.addr.clone()]
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer_to(answer: Answer, req: &[u8]) -> Vec<Vec<u8>> {
    if req.len() < 48 {
        return Vec::new();
    }
    let reply = |stratum: u8, skew: i64| {
        let mut p = vec![0u8; 48];
        p[0] = (4 << 3) | 4;
        p[1] = stratum;
        p[24..32].copy_from_slice(&req[40..48]);
        let t = clock::to_ntp(Time(real_now().0 + skew));
        p[32..40].copy_from_slice(&t.to_be_bytes());
        p[40..48].copy_from_slice(&t.to_be_bytes());
        p
    };
    match answer {
        Answer::Time(skew) => vec![reply(2, skew)],
        Answer::Kiss => vec![reply(0, 0)],
        Answer::Garbage => vec![
            vec![0xA5; 12],
            (0..48u8).map(|i| i.wrapping_mul(37)).collect(),
        ],
        Answer::Silent => Vec::new(),
    }
}

fn quick() -> SntpOptions {
    SntpOptions {
        attempt_timeout: Duration::from_millis(300),
        rounds: 2,
        budget: Duration::from_secs(3),
    }
}

fn near(actual: i64, expected: i64, tolerance: i64) -> bool {
    (actual - expected).abs() <= tolerance
}

// ---------------------------------------------------------------------------- SNTP

#[test]
fn sntp_steps_a_clock_years_behind() {
    let server = Responder::start(Answer::Time(0));
    let local = Skewed::new(-25 * YEAR);
    let limits = Limits::build();
    let o = clock::measure_sntp(&server.list(), &local, &limits, &quick()).unwrap();
    assert!(near(o.offset_ns, 25 * YEAR, S / 2), "{o:?}");
    assert_eq!(
        o.source,
        Source::Sntp {
            server: server.addr.clone()
        }
    );
    assert!(o.error_ns >= 0 && o.error_ns < S / 2, "{o:?}");

    let Outcome::Stepped(step) = clock::apply(&local, Some(&o), &limits).unwrap() else {
        panic!("the clock was not stepped");
    };
    assert!(near(step.step_ns, 25 * YEAR, S), "{step}");
    assert!(near(step.new.since(step.old), step.step_ns, 0));
    assert!(
        near(local.now().unwrap().since(real_now()), 0, S),
        "now right"
    );
    assert_eq!(local.sets.borrow().len(), 1);
}

#[test]
fn sntp_right_time_changes_nothing() {
    let server = Responder::start(Answer::Time(0));
    let local = Skewed::new(0);
    let o = clock::measure_sntp(&server.list(), &local, &Limits::build(), &quick()).unwrap();
    assert!(near(o.offset_ns, 0, S / 2), "{o:?}");
    let outcome = clock::apply(&local, Some(&o), &Limits::build()).unwrap();
    assert!(matches!(outcome, Outcome::Kept { .. }), "{outcome:?}");
    assert!(local.sets.borrow().is_empty());
}

#[test]
fn sntp_server_years_off_is_refused_and_the_next_one_used() {
    let past = Responder::start(Answer::Time(-25 * YEAR));
    let future = Responder::start(Answer::Time(40 * YEAR));
    let good = Responder::start(Answer::Time(3600 * S));
    let local = Skewed::new(0);
    let limits = Limits::build();
    let bad = [past.addr.clone(), future.addr.clone()];
    let e = clock::measure_sntp(&bad, &local, &limits, &quick()).unwrap_err();
    assert!(e.contains("time refused"), "{e}");

    let all = [past.addr.clone(), future.addr.clone(), good.addr.clone()];
    let o = clock::measure_sntp(&all, &local, &limits, &quick()).unwrap();
    assert_eq!(
        o.source,
        Source::Sntp {
            server: good.addr.clone()
        }
    );
    assert!(near(o.offset_ns, 3600 * S, S / 2), "{o:?}");
}

#[test]
fn sntp_garbage_and_silence_time_out_within_the_bound() {
    for answer in [Answer::Garbage, Answer::Silent] {
        let server = Responder::start(answer);
        let start = Instant::now();
        let e = clock::measure_sntp(&server.list(), &Skewed::new(0), &Limits::build(), &quick())
            .unwrap_err();
        let took = start.elapsed();
        assert!(e.contains("no reply within 300 ms"), "{e}");
        // Two rounds of 300 ms.
        assert!(
            took >= Duration::from_millis(550) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}

#[test]
fn sntp_overall_budget_bounds_everything() {
    let servers: Vec<Responder> = (0..3).map(|_| Responder::start(Answer::Silent)).collect();
    let names: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
    let opts = SntpOptions {
        attempt_timeout: Duration::from_secs(5),
        rounds: 10,
        budget: Duration::from_millis(700),
    };
    let start = Instant::now();
    assert!(clock::measure_sntp(&names, &Skewed::new(0), &Limits::build(), &opts).is_err());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[test]
fn sntp_kiss_of_death_fails_at_once() {
    let server = Responder::start(Answer::Kiss);
    // Long attempt timeout, one round: only an immediate refusal ends this quickly.
    let opts = SntpOptions {
        attempt_timeout: Duration::from_secs(5),
        rounds: 1,
        budget: Duration::from_secs(5),
    };
    let start = Instant::now();
    let e =
        clock::measure_sntp(&server.list(), &Skewed::new(0), &Limits::build(), &opts).unwrap_err();
    assert!(e.contains("kiss-o'-death"), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

// ------------------------------------------------------------------ engine Date header

fn retrier(deadline: Duration) -> Retrier {
    let policy = Policy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(1),
        deadline,
        max_attempts: 20,
    };
    Retrier::new(policy, Box::<SystemClock>::default(), Jitter::seeded(5))
}

fn unverified(sim: &qemu_tests::Handle) -> Client {
    let endpoint = Endpoint {
        host: "127.0.0.1".parse().unwrap(),
        port: sim.port(),
    };
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        io: Duration::from_secs(3),
        request: Duration::from_secs(5),
    };
    Client::for_ca_fetch(endpoint, timeouts)
}

#[test]
fn engine_date_steps_a_clock_years_behind() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let client = unverified(&sim);
    let local = Skewed::new(-25 * YEAR);
    let limits = Limits::build();
    let o = clock::measure_engine_date(
        &client,
        &local,
        &limits,
        &mut retrier(Duration::from_secs(10)),
    )
    .unwrap();
    assert_eq!(
        o.source,
        Source::EngineDate {
            engine: format!("127.0.0.1:{}", sim.port())
        }
    );
    // Second resolution: within the reported error of the truth.
    assert!(near(o.offset_ns, 25 * YEAR, o.error_ns), "{o:?}");
    let Outcome::Stepped(step) = clock::apply(&local, Some(&o), &limits).unwrap() else {
        panic!("the clock was not stepped");
    };
    assert!(near(step.step_ns, 25 * YEAR, 2 * S), "{step}");
    assert!(near(local.now().unwrap().since(real_now()), 0, 2 * S));
}

#[test]
fn engine_date_outside_the_bounds_is_refused_at_once() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let client = unverified(&sim);
    // A binary "built" a year from now: the engine's true time is below its floor.
    let limits = Limits::from_floor(Time(real_now().0 + YEAR));
    let e = clock::measure_engine_date(
        &client,
        &Skewed::new(0),
        &limits,
        &mut retrier(Duration::from_secs(10)),
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::Fatal);
    assert_eq!(e.attempts, 1);
    assert!(
        matches!(&e.last, DateError::Unusable(m) if m.contains("before this binary")),
        "{e}"
    );
}

#[test]
fn falls_back_to_the_engine_when_no_ntp_server_answers() {
    let sim = Simulator::start(SimConfig::default()).unwrap();
    let client = unverified(&sim);
    let silent = Responder::start(Answer::Silent);
    let local = Skewed::new(-10 * YEAR);
    let o = clock::measure(
        &silent.list(),
        Some(&client),
        &local,
        &Limits::build(),
        &quick(),
        &mut retrier(Duration::from_secs(10)),
    )
    .unwrap();
    assert!(matches!(o.source, Source::EngineDate { .. }), "{o:?}");
    assert!(near(o.offset_ns, 10 * YEAR, o.error_ns), "{o:?}");

    // No server given at all: straight to the engine.
    let o = clock::measure(
        &[],
        Some(&client),
        &local,
        &Limits::build(),
        &quick(),
        &mut retrier(Duration::from_secs(10)),
    )
    .unwrap();
    assert!(matches!(o.source, Source::EngineDate { .. }), "{o:?}");
}

#[test]
fn nothing_to_ask_is_an_error_and_the_floor_still_applies() {
    let local = Skewed::new(-25 * YEAR);
    let limits = Limits::build();
    let e = clock::measure(
        &[],
        None,
        &local,
        &limits,
        &quick(),
        &mut retrier(Duration::from_secs(1)),
    )
    .unwrap_err();
    assert!(e.contains("no NTP server given"), "{e}");
    let Outcome::Stepped(step) = clock::apply(&local, None, &limits).unwrap() else {
        panic!("not raised to the floor");
    };
    assert_eq!(step.new, limits.floor);
    assert_eq!(step.source, Source::BuildFloor);
}
