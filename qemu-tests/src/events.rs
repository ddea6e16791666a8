//! The event log tests read: one record per request (with the query exactly as received), per
//! TLS failure and per admin action, kept in memory and optionally appended as JSON lines to a
//! file so a QEMU scenario can inspect it after the fact.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Memory bound: a registration storm benchmark must not grow the simulator without limit.
const MAX_IN_MEMORY: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The simulator is up (`detail` has the URL).
    Listening,
    /// A parsed request and the status answered.
    Request,
    /// Bytes that were not a request we accept (answered 4xx, or not at all).
    BadRequest,
    /// A TLS handshake that failed, e.g. a client refusing the wrong-CA certificate.
    TlsError,
    /// Fault switches changed, or the listener closed/reopened for the refuse fault.
    Fault,
    /// A host was added, approved, rejected or removed.
    Host,
    /// Request rates: one per second that saw engine requests (`rate second N: accepted A,
    /// refused R, …`), and a `rate summary: …` when the simulator stops.
    Rate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub unix_ms: u64,
    pub kind: EventKind,
    /// `https` or `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Query string as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_query: Option<String>,
    /// Decoded `[name, value]` pairs in the order received, names exactly as the client
    /// spelled them (so a test can see `vdsPort` and not the wrong `port`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The fault switch that shaped this answer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The number of the connection a request came on (1, 2, … in the order they were
    /// accepted): requests with the same number shared one connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<u64>,
}

impl Event {
    pub fn new(kind: EventKind) -> Event {
        Event {
            seq: 0,
            unix_ms: 0,
            kind,
            scheme: None,
            remote: None,
            method: None,
            path: None,
            raw_query: None,
            query: Vec::new(),
            status: None,
            fault: None,
            detail: None,
            connection: None,
        }
    }

    pub fn detail(mut self, d: impl Into<String>) -> Event {
        self.detail = Some(d.into());
        self
    }

    /// First value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The host-register `command` of a request event.
    pub fn command(&self) -> Option<&str> {
        self.param("command")
    }

    pub fn is_request(&self) -> bool {
        self.kind == EventKind::Request
    }
}

struct Inner {
    events: VecDeque<Event>,
    next_seq: u64,
    file: Option<File>,
}

pub struct EventLog {
    inner: Mutex<Inner>,
}

impl EventLog {
    /// `path`: JSON-lines file, truncated at start so a run's log holds only that run.
    pub fn new(path: Option<&Path>) -> Result<EventLog> {
        let file = match path {
            Some(p) => Some(File::create(p).with_context(|| format!("creating {}", p.display()))?),
            None => None,
        };
        Ok(EventLog {
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                next_seq: 1,
                file,
            }),
        })
    }

    pub fn push(&self, mut ev: Event) -> u64 {
        let mut inner = lock(&self.inner);
        ev.seq = inner.next_seq;
        inner.next_seq += 1;
        ev.unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if let Some(f) = inner.file.as_mut() {
            // A full disk must not take the simulator down; the in-memory log still works.
            if let Ok(mut line) = serde_json::to_vec(&ev) {
                line.push(b'\n');
                let _ = f.write_all(&line);
            }
        }
        if inner.events.len() >= MAX_IN_MEMORY {
            inner.events.pop_front();
        }
        inner.events.push_back(ev);
        inner.next_seq - 1
    }

    /// Events with `seq > since` (0 for all).
    pub fn since(&self, since: u64) -> Vec<Event> {
        lock(&self.inner)
            .events
            .iter()
            .filter(|e| e.seq > since)
            .cloned()
            .collect()
    }
}

/// A poisoned lock only means another connection thread panicked mid-update; the data is
/// still usable for a test tool, and one bad connection must not stop the simulator.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads a JSON-lines event log written by a simulator (possibly still running: a torn last
/// line is skipped).
pub fn read_log(path: &Path) -> Result<Vec<Event>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_memory_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = EventLog::new(Some(&path)).unwrap();
        let mut ev = Event::new(EventKind::Request);
        ev.query = vec![("vdsPort".into(), "54321".into())];
        ev.status = Some(200);
        assert_eq!(log.push(ev), 1);
        log.push(Event::new(EventKind::Host).detail("x"));
        let mem = log.since(0);
        assert_eq!(mem, read_log(&path).unwrap());
        assert_eq!(mem[0].param("vdsPort"), Some("54321"));
        assert_eq!(log.since(1).len(), 1);
        let line = std::fs::read_to_string(&path).unwrap();
        assert!(line.contains(r#""query":[["vdsPort","54321"]]"#), "{line}");
    }
}
