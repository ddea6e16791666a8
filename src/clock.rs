//! A trustworthy clock before any certificate check (docs/design.md §3 `clock`, issue 5).
//!
//! A node booting with its RTC years off fails every TLS check (certificates "not yet valid"
//! or "expired"). So, before trust:
//!
//! 1. **measure** (network, runs in the unprivileged worker): SNTP (RFC 4330) to the `ntp=`
//!    servers, else the engine's HTTP `Date` header from an unauthenticated `get-version`.
//!    The result is an [`Observation`]: an *offset* from the local clock, which stays valid
//!    between the worker measuring and the parent applying (both read the same clock).
//! 2. **decide** ([`decide`], pure): step when the offset is above a threshold, refuse a time
//!    outside sane bounds, never go below the binary's build time.
//! 3. **apply** (root parent): `clock_settime`, and report the step made.
//!
//! The clock is reached through one seam, [`Clock`], so tests inject theirs and never change
//! the machine's clock. No date crate: the few calendar conversions are in `calendar`.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use log::{info, warn};
use serde::{Deserialize, Serialize};

// The calendar is calendar's; its dates are also named here, where the clock's tests and
// callers look for them.
use crate::calendar;
pub use crate::calendar::{civil_from_days, days_from_civil, parse_http_date};
use crate::http::Client;
use crate::retry::{Class, Classify, GaveUp, Retrier};

const NANOS: i64 = 1_000_000_000;

// ---------------------------------------------------------------------------- time values

/// Wall-clock time: nanoseconds since the Unix epoch (i64 reaches the year 2262).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Time(pub i64);

impl Time {
    pub fn from_secs(secs: i64) -> Time {
        Time(secs.saturating_mul(NANOS))
    }

    pub fn secs(self) -> i64 {
        self.0.div_euclid(NANOS)
    }

    pub fn subsec_nanos(self) -> u32 {
        self.0.rem_euclid(NANOS) as u32
    }

    /// `self + ns`, `None` past the representable range (an absurd offset from the network).
    pub fn checked_add(self, ns: i64) -> Option<Time> {
        self.0.checked_add(ns).map(Time)
    }

    /// `self - other` in nanoseconds, saturating.
    pub fn since(self, other: Time) -> i64 {
        self.0.saturating_sub(other.0)
    }
}

/// RFC 3339 UTC, seconds precision: `2026-11-25T15:40:00Z`.
impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&calendar::rfc3339(self.secs()))
    }
}

// ------------------------------------------------------------------------ the one seam

/// The wall clock: read it, set it. Tests inject theirs; [`SystemClock`] is the real one.
pub trait Clock {
    fn now(&self) -> io::Result<Time>;
    fn set(&self, t: Time) -> io::Result<()>;
}

/// `CLOCK_REALTIME`. Setting it needs CAP_SYS_TIME: only the root parent calls `set`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> io::Result<Time> {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        Ok(Time(
            ts.tv_sec.saturating_mul(NANOS).saturating_add(ts.tv_nsec),
        ))
    }

    fn set(&self, t: Time) -> io::Result<()> {
        let ts = rustix::time::Timespec {
            tv_sec: t.secs(),
            tv_nsec: i64::from(t.subsec_nanos()),
        };
        rustix::time::clock_settime(rustix::time::ClockId::Realtime, ts).map_err(Into::into)
    }
}

// ---------------------------------------------------------------------------- bounds

/// When this binary was built (build.rs; `SOURCE_DATE_EPOCH` when set).
pub const BUILD_UNIX_TIME: i64 = parse_decimal(env!("BUILD_UNIX_TIME"));

/// A time more than this past the build is not believed (a node image is not run 20 years).
pub const MAX_AGE: Duration = Duration::from_secs(20 * 366 * 86_400);

/// Offsets up to this are left alone: stepping for less gains nothing for TLS.
pub const DEFAULT_THRESHOLD: Duration = Duration::from_secs(1);

/// Compile-time decimal parse (a non-digit fails the build, which is what we want).
const fn parse_decimal(s: &str) -> i64 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut v: i64 = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "BUILD_UNIX_TIME is not a number");
        v = v * 10 + (b[i] - b'0') as i64;
        i += 1;
    }
    v
}

/// What time the clock may be set to, and when a difference is worth a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Never set the clock below this (the build time).
    pub floor: Time,
    /// A time past this is absurd (the build time + [`MAX_AGE`]).
    pub ceiling: Time,
    /// Offsets up to this (either sign) are left alone.
    pub threshold: Duration,
}

impl Limits {
    /// The bounds of this binary: build time, build time + 20 years, 1 s.
    pub fn build() -> Limits {
        Limits::from_floor(Time::from_secs(BUILD_UNIX_TIME))
    }

    pub fn from_floor(floor: Time) -> Limits {
        let max = MAX_AGE.as_secs() as i64;
        Limits {
            floor,
            ceiling: Time::from_secs(floor.secs().saturating_add(max)),
            threshold: DEFAULT_THRESHOLD,
        }
    }

    /// Whether `t` is a believable current time; the error says why not.
    pub fn check(&self, t: Time) -> Result<(), String> {
        if t < self.floor {
            return Err(format!(
                "{t} is before this binary was built ({})",
                self.floor
            ));
        }
        if t > self.ceiling {
            return Err(format!(
                "{t} is absurdly far in the future (after {})",
                self.ceiling
            ));
        }
        Ok(())
    }
}

// ------------------------------------------------------------------- observe, decide

/// Where a time came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Sntp {
        server: String,
    },
    EngineDate {
        engine: String,
    },
    /// No usable observation: the clock was only raised to the build time.
    BuildFloor,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Sntp { server } => write!(f, "SNTP server {server}"),
            Source::EngineDate { engine } => write!(f, "the Date header of engine {engine}"),
            Source::BuildFloor => f.write_str("the binary's build time"),
        }
    }
}

/// What a measurement found: how far the local clock is off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub source: Source,
    /// True time minus local time, nanoseconds. Relative, so it survives the trip from the
    /// worker to the parent.
    pub offset_ns: i64,
    /// How wrong the measurement itself may be (half the round trip, Date's 1 s resolution).
    pub error_ns: i64,
}

/// What to do with the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Close enough, or nothing better known: leave it.
    Keep { offset_ns: i64 },
    /// Set the clock to `to`.
    Step { to: Time, source: Source },
    /// The observed time is not believable and the local clock is not below the floor.
    Refuse { reason: String },
}

/// Pure: the local clock reads `now`; `observed` is the best measurement, if any.
pub fn decide(now: Time, observed: Option<&Observation>, limits: &Limits) -> Decision {
    let refusal = match observed {
        None => None,
        Some(o) => match now.checked_add(o.offset_ns) {
            None => Some("the observed offset is out of range".to_string()),
            Some(target) => match limits.check(target) {
                Ok(()) => return step_or_keep(target, o, limits),
                Err(why) => Some(format!("{}: {why}", o.source)),
            },
        },
    };
    if now < limits.floor {
        // Wrong but closer: certificates issued before the build become valid.
        return Decision::Step {
            to: limits.floor,
            source: Source::BuildFloor,
        };
    }
    match refusal {
        Some(reason) => Decision::Refuse { reason },
        None => Decision::Keep { offset_ns: 0 },
    }
}

fn step_or_keep(target: Time, o: &Observation, limits: &Limits) -> Decision {
    let threshold = i64::try_from(limits.threshold.as_nanos()).unwrap_or(i64::MAX);
    if o.offset_ns.unsigned_abs() <= threshold.unsigned_abs() {
        return Decision::Keep {
            offset_ns: o.offset_ns,
        };
    }
    Decision::Step {
        to: target,
        source: o.source.clone(),
    }
}

// ------------------------------------------------------------------------------ apply

/// A step made: for the console, the log and the status file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub old: Time,
    pub new: Time,
    /// `new - old` in nanoseconds (negative: the clock went back).
    pub step_ns: i64,
    pub source: Source,
}

impl Step {
    pub fn step_secs(&self) -> f64 {
        self.step_ns as f64 / NANOS as f64
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "clock stepped from {} to {} ({:+.3} s) from {}",
            self.old,
            self.new,
            self.step_secs(),
            self.source
        )
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Kept { offset_ns: i64 },
    Stepped(Step),
    Refused { reason: String },
}

/// Root parent: read the clock, [`decide`], and set it if the decision says so. The local
/// time is read again right before setting, so the step is exact whatever came between.
pub fn apply(
    clock: &dyn Clock,
    observed: Option<&Observation>,
    limits: &Limits,
) -> io::Result<Outcome> {
    let now = clock.now()?;
    let (to, source) = match decide(now, observed, limits) {
        Decision::Keep { offset_ns } => return Ok(Outcome::Kept { offset_ns }),
        Decision::Refuse { reason } => {
            warn!("clock left alone: {reason}");
            return Ok(Outcome::Refused { reason });
        }
        Decision::Step { to, source } => (to, source),
    };
    clock.set(to)?;
    let step = Step {
        old: now,
        new: to,
        step_ns: to.since(now),
        source,
    };
    info!("{step}");
    Ok(Outcome::Stepped(step))
}

// ------------------------------------------------------------------------------- SNTP

/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const NTP_UNIX_DELTA: i64 = 2_208_988_800;
pub const NTP_PORT: u16 = 123;
const PACKET_LEN: usize = 48;
const VERSION: u8 = 4;
const MODE_CLIENT: u8 = 3;
const MODE_SERVER: u8 = 4;

/// Local time → 64-bit NTP timestamp (32.32 fixed point, wraps every 136 years).
pub fn to_ntp(t: Time) -> u64 {
    let secs = (t.secs() + NTP_UNIX_DELTA).rem_euclid(1 << 32) as u64;
    let frac = (u64::from(t.subsec_nanos()) << 32) / NANOS as u64;
    (secs << 32) | frac
}

/// NTP timestamp → time. RFC 4330 §3: with the top bit set the time is in 1968–2036 (era 0),
/// otherwise in 2036–2104 (era 1, counted from 2036-02-07T06:28:16Z).
pub fn from_ntp(ts: u64) -> Time {
    let secs = (ts >> 32) as i64;
    let era = if secs & 0x8000_0000 != 0 { 0 } else { 1 << 32 };
    let nanos = ((ts & 0xFFFF_FFFF) * NANOS as u64) >> 32;
    Time((secs + era - NTP_UNIX_DELTA) * NANOS + nanos as i64)
}

/// A client request (RFC 4330 §5): LI 0, version 4, mode 3, all zero but the transmit
/// timestamp, which the server echoes as the originate timestamp.
pub fn encode_request(transmit: u64) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = (VERSION << 3) | MODE_CLIENT;
    p[40..48].copy_from_slice(&transmit.to_be_bytes());
    p
}

/// The fields of a server reply we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub leap: u8,
    pub version: u8,
    pub mode: u8,
    pub stratum: u8,
    pub originate: u64,
    pub receive: u64,
    pub transmit: u64,
}

/// Why a reply was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than an NTP header: not an answer to us.
    Short(usize),
    /// Not the answer to our request (stale, spoofed or someone else's).
    NotOurs,
    Unusable(&'static str),
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Short(n) => write!(f, "a {n}-byte packet is not an NTP reply"),
            PacketError::NotOurs => f.write_str("the reply does not answer our request"),
            PacketError::Unusable(why) => f.write_str(why),
        }
    }
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// Decode the fixed header; extension fields and MACs after it are ignored.
pub fn decode(b: &[u8]) -> Result<Reply, PacketError> {
    if b.len() < PACKET_LEN {
        return Err(PacketError::Short(b.len()));
    }
    Ok(Reply {
        leap: b[0] >> 6,
        version: (b[0] >> 3) & 7,
        mode: b[0] & 7,
        stratum: b[1],
        originate: be64(b, 24),
        receive: be64(b, 32),
        transmit: be64(b, 40),
    })
}

/// RFC 4330 §5 checks of a reply to the request we sent with `sent` as transmit timestamp.
pub fn validate(r: &Reply, sent: u64) -> Result<(), PacketError> {
    if r.originate != sent {
        return Err(PacketError::NotOurs);
    }
    let bad = |why| Err(PacketError::Unusable(why));
    match r {
        Reply { mode, .. } if *mode != MODE_SERVER => bad("not a server reply (mode is not 4)"),
        Reply { version, .. } if !(3..=4).contains(version) => bad("unsupported NTP version"),
        Reply { stratum: 0, .. } => bad("kiss-o'-death (stratum 0): the server refuses us"),
        Reply { stratum, .. } if *stratum > 15 => bad("the server is unsynchronized (stratum)"),
        Reply { leap: 3, .. } => bad("the server is unsynchronized (leap indicator 3)"),
        Reply { transmit: 0, .. } | Reply { receive: 0, .. } => bad("the server sent no time"),
        _ => Ok(()),
    }
}

/// RFC 4330 §5: offset `((T2−T1)+(T3−T4))/2` and round-trip delay `(T4−T1)−(T3−T2)`, in ns.
/// T1/T4 are local send/receive times, T2/T3 the server's receive/transmit times.
pub fn offset_delay(t1: Time, t2: Time, t3: Time, t4: Time) -> Option<(i64, i64)> {
    let (t1, t2, t3, t4) = (
        i128::from(t1.0),
        i128::from(t2.0),
        i128::from(t3.0),
        i128::from(t4.0),
    );
    let offset = ((t2 - t1) + (t3 - t4)) / 2;
    let delay = (t4 - t1) - (t3 - t2);
    Some((i64::try_from(offset).ok()?, i64::try_from(delay).ok()?))
}

/// How hard to try SNTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SntpOptions {
    /// Wait for one reply.
    pub attempt_timeout: Duration,
    /// Passes over the server list.
    pub rounds: u32,
    /// All SNTP work together, name resolution included.
    pub budget: Duration,
}

impl Default for SntpOptions {
    fn default() -> Self {
        SntpOptions {
            attempt_timeout: Duration::from_secs(2),
            rounds: 3,
            budget: Duration::from_secs(15),
        }
    }
}

/// `host`, `host:port`, `a.b.c.d:port`, `[v6]:port` or a bare IPv6 address → socket address.
pub fn resolve(server: &str) -> io::Result<SocketAddr> {
    let with_port = match server.rsplit_once(':') {
        // One colon: host:port. More than one without brackets: a bare IPv6 address.
        _ if server.starts_with('[') && server.ends_with(']') => format!("{server}:{NTP_PORT}"),
        Some((host, _)) if !host.contains(':') || server.starts_with('[') => server.to_string(),
        Some(_) => format!("[{server}]:{NTP_PORT}"),
        None => format!("{server}:{NTP_PORT}"),
    };
    with_port
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
}

/// Ask each server in turn, `rounds` times over, within `budget`; the first reply that passes
/// the checks and gives a time inside `limits` wins.
pub fn measure_sntp(
    servers: &[String],
    clock: &dyn Clock,
    limits: &Limits,
    opts: &SntpOptions,
) -> Result<Observation, String> {
    let start = Instant::now();
    let mut errors = Vec::new();
    for _ in 0..opts.rounds {
        for server in servers {
            let left = opts.budget.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(summary(&errors, "SNTP time budget spent"));
            }
            match query(server, clock, limits, opts.attempt_timeout.min(left)) {
                Ok(o) => return Ok(o),
                Err(e) => {
                    warn!("SNTP {server}: {e}");
                    errors.push(format!("{server}: {e}"));
                }
            }
        }
    }
    Err(summary(&errors, "no NTP server given"))
}

fn summary(errors: &[String], empty: &str) -> String {
    match errors.last() {
        Some(last) => format!("no NTP server answered usably (last: {last})"),
        None => empty.to_string(),
    }
}

/// One request to one server, bounded by `timeout`.
fn query(
    server: &str,
    clock: &dyn Clock,
    limits: &Limits,
    timeout: Duration,
) -> Result<Observation, String> {
    let addr = resolve(server).map_err(|e| format!("cannot resolve: {e}"))?;
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    // Connected: the kernel drops datagrams from any other address.
    sock.connect(addr).map_err(|e| e.to_string())?;
    let t1 = clock.now().map_err(|e| e.to_string())?;
    let sent = to_ntp(t1);
    sock.send(&encode_request(sent))
        .map_err(|e| e.to_string())?;
    let (reply, t4) = receive(&sock, clock, sent, timeout)?;
    sntp_observation(&addr.to_string(), t1, &reply, t4, limits)
}

/// Pure: what a checked `reply` to a request sent at local `t1` and received at local `t4`
/// says about the local clock, refused when the time it implies is outside `limits`.
pub fn sntp_observation(
    server: &str,
    t1: Time,
    reply: &Reply,
    t4: Time,
    limits: &Limits,
) -> Result<Observation, String> {
    let (offset_ns, delay_ns) =
        offset_delay(t1, from_ntp(reply.receive), from_ntp(reply.transmit), t4)
            .ok_or("offset out of range")?;
    let observed = t4.checked_add(offset_ns).ok_or("offset out of range")?;
    limits
        .check(observed)
        .map_err(|e| format!("time refused: {e}"))?;
    Ok(Observation {
        source: Source::Sntp {
            server: server.to_string(),
        },
        offset_ns,
        error_ns: delay_ns.max(0) / 2,
    })
}

/// Wait for the reply to `sent`, skipping stray packets, until `timeout` has passed.
fn receive(
    sock: &UdpSocket,
    clock: &dyn Clock,
    sent: u64,
    timeout: Duration,
) -> Result<(Reply, Time), String> {
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!("no reply within {} ms", timeout.as_millis()));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(e.to_string()),
        };
        let t4 = clock.now().map_err(|e| e.to_string())?;
        let checked = decode(&buf[..n]).and_then(|r| validate(&r, sent).map(|()| r));
        match checked {
            Ok(r) => return Ok((r, t4)),
            Err(PacketError::Short(_) | PacketError::NotOurs) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

// ------------------------------------------------------------------ engine Date header

/// The offset implied by a `Date` of `date_secs` on an answer requested at local `t1` and
/// received at `t4`. The server stamped it somewhere in between, truncated to the second:
/// so the midpoint, plus half a second, with the half round trip and half a second as error.
pub fn date_observation(date_secs: i64, t1: Time, t4: Time, engine: &str) -> Observation {
    let mid = Time(t1.0.saturating_add(t4.since(t1) / 2));
    let stamped = Time::from_secs(date_secs).0.saturating_add(NANOS / 2);
    Observation {
        source: Source::EngineDate {
            engine: engine.to_string(),
        },
        offset_ns: stamped.saturating_sub(mid.0),
        error_ns: (t4.since(t1) / 2).saturating_add(NANOS / 2),
    }
}

/// Why the engine's `Date` was not used.
#[derive(Debug)]
pub enum DateError {
    Http(crate::http::Error),
    /// No `Date`, an unparsable one, or one outside the limits: asking again will not help.
    Unusable(String),
}

impl fmt::Display for DateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DateError::Http(e) => write!(f, "engine Date: {e}"),
            DateError::Unusable(m) => write!(f, "engine Date: {m}"),
        }
    }
}

impl std::error::Error for DateError {}

impl Classify for DateError {
    fn class(&self) -> Class {
        match self {
            DateError::Http(e) => e.class(),
            DateError::Unusable(_) => Class::Fatal,
        }
    }
}

/// Read the engine's time from the `Date` of an unauthenticated `get-version` over `client`
/// (the unverified [`Client::for_ca_fetch`]: nothing secret is sent, and the answer is only
/// believed inside `limits`). Transient failures are retried within the retrier's deadline.
pub fn measure_engine_date(
    client: &Client,
    clock: &dyn Clock,
    limits: &Limits,
    retrier: &mut Retrier,
) -> Result<Observation, GaveUp<DateError>> {
    let engine = client.endpoint().to_string();
    retrier.run("reading the engine's time", |attempt| {
        let now = || clock.now().map_err(|e| DateError::Unusable(e.to_string()));
        let t1 = now()?;
        let resp = client
            .get(crate::protocol::GET_VERSION, attempt.remaining, 64 * 1024)
            .map_err(DateError::Http)?;
        let t4 = now()?;
        let unusable = |m: String| DateError::Unusable(m);
        let date = resp.date.ok_or_else(|| unusable("no Date header".into()))?;
        let secs = parse_http_date(&date).ok_or_else(|| unusable(format!("bad Date {date:?}")))?;
        limits.check(Time::from_secs(secs)).map_err(unusable)?;
        Ok(date_observation(secs, t1, t4, &engine))
    })
}

/// SNTP first; the engine's `Date` when no server is given or none answers usably. `engine`
/// is the unverified client of [`Client::for_ca_fetch`].
pub fn measure(
    servers: &[String],
    engine: Option<&Client>,
    clock: &dyn Clock,
    limits: &Limits,
    sntp: &SntpOptions,
    retrier: &mut Retrier,
) -> Result<Observation, String> {
    let sntp_failed = match measure_sntp(servers, clock, limits, sntp) {
        Ok(o) => return Ok(o),
        Err(e) => e,
    };
    let Some(client) = engine else {
        return Err(sntp_failed);
    };
    measure_engine_date(client, clock, limits, retrier).map_err(|e| format!("{sntp_failed}; {e}"))
}

#[cfg(test)]
mod tests;
