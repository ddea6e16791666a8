//! The engine's rate limit and what the simulator measured: every request to the engine
//! endpoints (never `/admin/`) is counted in 1-second buckets, accepted or refused, and with a
//! limit set a request over it is answered `503 Service Unavailable` with `Retry-After`.
//!
//! The limit uses fixed 1-second windows counted from the simulator's start: at most `limit`
//! requests are served per window, so any 1-second span (which overlaps two windows) sees at
//! most `2 × limit` served requests. The measurement buckets are the same windows.
//!
//! `Retry-After` is either fixed or derived from a virtual queue: each refused client is
//! promised a place in the first later window that has fewer than `limit` promises, and told
//! to come back then. The returning crowd is thereby spread at the limit's pace instead of
//! coming back all together in one second.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::events::lock;

/// Per-second buckets kept for `/admin/stats` (one hour); totals and peaks cover the whole
/// run.
pub const MAX_BUCKETS: usize = 3600;

/// The `fault` of a request event answered 503 by the rate limit.
pub const FAULT_LABEL: &str = "rate_limit";

/// Longest derived `Retry-After`.
pub const MAX_RETRY_AFTER: u64 = 300;

/// The limit's runtime settings (also in `GET/POST /admin/settings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Limit {
    /// Requests per second served; 0 = no limit.
    pub rate_limit: u32,
    /// Fixed `Retry-After` of a refused request; `None` = derived from the backlog.
    pub rate_limit_retry_after_secs: Option<u64>,
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept,
    /// Answer 503 with this `Retry-After`.
    Refuse {
        retry_after: u64,
    },
}

/// One second of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Bucket {
    /// Seconds since the simulator started.
    pub second: u64,
    /// Unix time (ms) at which the second began.
    pub unix_ms: u64,
    pub accepted: u32,
    pub refused: u32,
}

impl Bucket {
    pub fn offered(&self) -> u32 {
        self.accepted + self.refused
    }
}

/// `GET /admin/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub rate_limit: u32,
    pub rate_limit_retry_after_secs: Option<u64>,
    /// Requests served (not refused by the limit; faults and 4xx included).
    pub accepted: u64,
    /// 503s sent by the limit.
    pub refused: u64,
    pub offered: u64,
    /// Peaks of the per-second buckets (the limiter's windows).
    pub peak_accepted_per_sec: u32,
    pub peak_offered_per_sec: u32,
    /// Peaks over any 1-second span, not aligned to the windows: what a client crowd
    /// really saw. Fixed windows bound the accepted one by twice the limit.
    pub peak_accepted_any_sec: u32,
    pub peak_offered_any_sec: u32,
    /// Over the seconds from the first request to the last (both included).
    pub mean_accepted_per_sec: f64,
    pub mean_offered_per_sec: f64,
    /// That span in seconds (0 before any request).
    pub active_secs: u64,
    /// The longest `Retry-After` sent.
    pub max_retry_after_secs: u64,
    /// The last [`MAX_BUCKETS`] seconds from the first request on, empty seconds included.
    pub buckets: Vec<Bucket>,
}

struct Inner {
    limit: Limit,
    /// Buckets from `first` on (consecutive seconds); the last one is the current window.
    buckets: VecDeque<Bucket>,
    first_second: Option<u64>,
    accepted: u64,
    refused: u64,
    peak_accepted: u32,
    peak_offered: u32,
    max_retry_after: u64,
    /// Times of the requests of the last second, accepted and all.
    recent_accepted: VecDeque<Instant>,
    recent_offered: VecDeque<Instant>,
    peak_accepted_any: u32,
    peak_offered_any: u32,
    /// The virtual queue's tail: the window promised last and how many it was promised to.
    promised_window: u64,
    promised_count: u32,
}

pub struct RateLimiter {
    start: Instant,
    start_unix_ms: u64,
    inner: Mutex<Inner>,
}

impl RateLimiter {
    pub fn new(limit: Limit) -> RateLimiter {
        RateLimiter {
            start: Instant::now(),
            start_unix_ms: unix_ms(),
            inner: Mutex::new(Inner {
                limit,
                buckets: VecDeque::new(),
                first_second: None,
                accepted: 0,
                refused: 0,
                peak_accepted: 0,
                peak_offered: 0,
                max_retry_after: 0,
                recent_accepted: VecDeque::new(),
                recent_offered: VecDeque::new(),
                peak_accepted_any: 0,
                peak_offered_any: 0,
                promised_window: 0,
                promised_count: 0,
            }),
        }
    }

    pub fn limit(&self) -> Limit {
        lock(&self.inner).limit
    }

    pub fn set_limit(&self, limit: Limit) {
        lock(&self.inner).limit = limit;
    }

    /// Counts one engine request and decides it. Also returns the buckets of the seconds
    /// that ended since the last request (for the event log), at most a few.
    pub fn check(&self) -> (Decision, Vec<Bucket>) {
        let mut inner = lock(&self.inner);
        // Read under the lock, so the times of the decisions only go forward.
        let now = Instant::now();
        let second = now.duration_since(self.start).as_secs();
        self.decide(&mut inner, second, now)
    }

    /// [`check`] in window `second` (seconds since start); the tests drive time with it
    /// (the 1-second spans then use `start + second`).
    pub fn check_at(&self, second: u64) -> (Decision, Vec<Bucket>) {
        let mut inner = lock(&self.inner);
        let now = self.start + std::time::Duration::from_secs(second);
        self.decide(&mut inner, second, now)
    }

    fn decide(&self, inner: &mut Inner, second: u64, now: Instant) -> (Decision, Vec<Bucket>) {
        let closed = self.advance(inner, second);
        let bucket = inner.buckets.back().copied().unwrap_or_default();
        let limit = inner.limit.rate_limit;
        let decision = if limit == 0 || bucket.accepted < limit {
            Decision::Accept
        } else {
            let retry_after = match inner.limit.rate_limit_retry_after_secs {
                Some(s) => s,
                None => promise(inner, second, limit),
            };
            Decision::Refuse { retry_after }
        };
        let Some(b) = inner.buckets.back_mut() else {
            return (decision, closed); // unreachable: advance always leaves a bucket
        };
        match decision {
            Decision::Accept => b.accepted += 1,
            Decision::Refuse { .. } => b.refused += 1,
        }
        let (accepted, offered) = (b.accepted, b.offered());
        match decision {
            Decision::Accept => inner.accepted += 1,
            Decision::Refuse { retry_after } => {
                inner.refused += 1;
                inner.max_retry_after = inner.max_retry_after.max(retry_after);
            }
        }
        inner.peak_accepted = inner.peak_accepted.max(accepted);
        inner.peak_offered = inner.peak_offered.max(offered);
        let n = in_last_second(&mut inner.recent_offered, now);
        inner.peak_offered_any = inner.peak_offered_any.max(n);
        if decision == Decision::Accept {
            let n = in_last_second(&mut inner.recent_accepted, now);
            inner.peak_accepted_any = inner.peak_accepted_any.max(n);
        }
        (decision, closed)
    }

    /// Makes the bucket of `second` the last one (adding empty seconds between), and returns
    /// the non-empty buckets that just closed. A `second` before the last bucket (a thread
    /// that read the clock just before another) counts in the last bucket.
    fn advance(&self, inner: &mut Inner, second: u64) -> Vec<Bucket> {
        let mut closed = Vec::new();
        let Some(last) = inner.buckets.back().map(|b| b.second) else {
            inner.first_second = Some(second);
            inner.buckets.push_back(self.bucket(second));
            return closed;
        };
        if second <= last {
            return closed;
        }
        if let Some(b) = inner.buckets.back().filter(|b| b.offered() > 0) {
            closed.push(*b);
        }
        // Empty seconds are kept (a rate of 0 is a measurement), but never more than the
        // buckets kept: a long idle gap restarts the series.
        let from = (last + 1).max(second.saturating_sub(MAX_BUCKETS as u64));
        for s in from..=second {
            inner.buckets.push_back(self.bucket(s));
            if inner.buckets.len() > MAX_BUCKETS {
                inner.buckets.pop_front();
            }
        }
        closed
    }

    fn bucket(&self, second: u64) -> Bucket {
        Bucket {
            second,
            unix_ms: self.start_unix_ms + second * 1000,
            accepted: 0,
            refused: 0,
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats_at(self.start.elapsed().as_secs())
    }

    /// The figures as of window `now` (the current window counts even if unfinished).
    pub fn stats_at(&self, now: u64) -> Stats {
        let mut inner = lock(&self.inner);
        self.advance(&mut inner, now);
        let active_secs = match (inner.first_second, inner.buckets.back()) {
            // Up to the last second that saw a request.
            (Some(first), Some(_)) => {
                let last = inner
                    .buckets
                    .iter()
                    .rev()
                    .find(|b| b.offered() > 0)
                    .map_or(first, |b| b.second);
                last.saturating_sub(first) + 1
            }
            _ => 0,
        };
        let mean = |n: u64| {
            if active_secs == 0 {
                0.0
            } else {
                n as f64 / active_secs as f64
            }
        };
        Stats {
            rate_limit: inner.limit.rate_limit,
            rate_limit_retry_after_secs: inner.limit.rate_limit_retry_after_secs,
            accepted: inner.accepted,
            refused: inner.refused,
            offered: inner.accepted + inner.refused,
            peak_accepted_per_sec: inner.peak_accepted,
            peak_offered_per_sec: inner.peak_offered,
            peak_accepted_any_sec: inner.peak_accepted_any,
            peak_offered_any_sec: inner.peak_offered_any,
            mean_accepted_per_sec: mean(inner.accepted),
            mean_offered_per_sec: mean(inner.accepted + inner.refused),
            active_secs,
            max_retry_after_secs: inner.max_retry_after,
            buckets: inner.buckets.iter().copied().collect(),
        }
    }
}

/// Adds `now` and drops what is a second or more older; the count of the span `(now - 1 s,
/// now]`.
fn in_last_second(times: &mut VecDeque<Instant>, now: Instant) -> u32 {
    times.push_back(now);
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t).as_secs_f64() >= 1.0)
    {
        times.pop_front();
    }
    times.len() as u32
}

/// The virtual queue: the first window after `now` promised to fewer than `limit` clients
/// (windows are promised in order, so only the tail is kept); `Retry-After` reaches it.
fn promise(inner: &mut Inner, now: u64, limit: u32) -> u64 {
    if inner.promised_window <= now {
        inner.promised_window = now + 1;
        inner.promised_count = 0;
    }
    if inner.promised_count >= limit {
        inner.promised_window += 1;
        inner.promised_count = 0;
    }
    inner.promised_count += 1;
    (inner.promised_window - now).min(MAX_RETRY_AFTER)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One line for the event log: a second of traffic.
pub fn describe(b: &Bucket, limit: u32) -> String {
    format!(
        "rate second {}: accepted {}, refused {}, offered {} (limit {})",
        b.second,
        b.accepted,
        b.refused,
        b.offered(),
        if limit == 0 {
            "none".to_string()
        } else {
            limit.to_string()
        }
    )
}

/// One line for the event log: the whole run so far.
pub fn summary(s: &Stats) -> String {
    format!(
        "rate summary: accepted {}, refused {} (503), peak {}/s accepted, {}/s offered, \
         mean {:.1}/s accepted, {:.1}/s offered over {} s (limit {})",
        s.accepted,
        s.refused,
        s.peak_accepted_per_sec,
        s.peak_offered_per_sec,
        s.mean_accepted_per_sec,
        s.mean_offered_per_sec,
        s.active_secs,
        s.rate_limit
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limited(n: u32) -> RateLimiter {
        RateLimiter::new(Limit {
            rate_limit: n,
            rate_limit_retry_after_secs: None,
        })
    }

    #[test]
    fn no_limit_only_counts() {
        let l = RateLimiter::new(Limit::default());
        for _ in 0..1000 {
            assert_eq!(l.check_at(0).0, Decision::Accept);
        }
        let s = l.stats_at(0);
        assert_eq!(
            (s.accepted, s.refused, s.peak_accepted_per_sec),
            (1000, 0, 1000)
        );
    }

    #[test]
    fn a_window_serves_at_most_the_limit() {
        let l = limited(3);
        let d: Vec<Decision> = (0..5).map(|_| l.check_at(7).0).collect();
        assert_eq!(&d[..3], &[Decision::Accept; 3]);
        assert_eq!(d[3], Decision::Refuse { retry_after: 1 });
        assert_eq!(l.check_at(8).0, Decision::Accept, "a new window");
        let s = l.stats_at(8);
        assert_eq!((s.accepted, s.refused, s.offered), (4, 2, 6));
        assert_eq!((s.peak_accepted_per_sec, s.peak_offered_per_sec), (3, 5));
        assert_eq!(s.active_secs, 2);
        assert_eq!(s.mean_accepted_per_sec, 2.0);
        assert_eq!(s.buckets.len(), 2);
        assert_eq!((s.buckets[0].second, s.buckets[0].refused), (7, 2));
    }

    #[test]
    fn the_virtual_queue_spreads_the_excess() {
        let l = limited(2);
        l.check_at(0);
        l.check_at(0);
        // Seven refused in window 0: two promised to each of windows 1, 2, 3, one to 4.
        let ra: Vec<u64> = (0..7)
            .map(|_| match l.check_at(0).0 {
                Decision::Refuse { retry_after } => retry_after,
                Decision::Accept => panic!("over the limit"),
            })
            .collect();
        assert_eq!(ra, [1, 1, 2, 2, 3, 3, 4]);
        // In window 2 the queue continues where it was, relative to now.
        l.check_at(2);
        l.check_at(2);
        assert_eq!(l.check_at(2).0, Decision::Refuse { retry_after: 2 });
        assert_eq!(l.stats_at(2).max_retry_after_secs, 4);
        // Once the promised windows are past, the queue starts afresh.
        l.check_at(10);
        l.check_at(10);
        assert_eq!(l.check_at(10).0, Decision::Refuse { retry_after: 1 });
    }

    #[test]
    fn spans_across_two_windows_see_at_most_twice_the_limit() {
        let l = limited(4);
        let start = l.start;
        let mut inner = lock(&l.inner);
        // Four at the end of window 0, then a burst at the start of window 1.
        for _ in 0..6 {
            l.decide(&mut inner, 0, start + Duration::from_millis(900));
        }
        for _ in 0..6 {
            l.decide(&mut inner, 1, start + Duration::from_millis(1100));
        }
        drop(inner);
        let s = l.stats_at(1);
        assert_eq!((s.peak_accepted_per_sec, s.peak_accepted_any_sec), (4, 8));
        assert_eq!(s.peak_offered_any_sec, 12);
    }

    #[test]
    fn fixed_retry_after_and_runtime_changes() {
        let l = limited(1);
        l.set_limit(Limit {
            rate_limit: 1,
            rate_limit_retry_after_secs: Some(9),
        });
        l.check_at(0);
        assert_eq!(l.check_at(0).0, Decision::Refuse { retry_after: 9 });
        l.set_limit(Limit::default());
        assert_eq!(l.check_at(0).0, Decision::Accept, "limit off");
    }

    #[test]
    fn closed_seconds_are_reported_and_gaps_are_bounded() {
        let l = limited(0);
        l.check_at(0);
        l.check_at(0);
        let (_, closed) = l.check_at(3);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].second, closed[0].accepted), (0, 2));
        let s = l.stats_at(3);
        assert_eq!(s.buckets.len(), 4, "empty seconds are measured too");
        assert_eq!(s.active_secs, 4);
        assert!(describe(&closed[0], 0).contains("accepted 2"));
        assert!(summary(&s).contains("accepted 3"));
        // An idle day keeps at most MAX_BUCKETS buckets.
        l.check_at(86_400);
        let s = l.stats_at(86_400);
        assert_eq!(s.buckets.len(), MAX_BUCKETS);
        assert_eq!(s.buckets.last().map(|b| b.second), Some(86_400));
        // A late reader of the clock counts in the current window.
        l.check_at(5);
        assert_eq!(
            l.stats_at(86_400).buckets.last().map(|b| b.accepted),
            Some(2)
        );
    }
}
