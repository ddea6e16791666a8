//! Fault switches: what an engine can do wrong, on demand. Each switch applies to the engine
//! endpoints only (never to `/admin/`, so a test can always turn it off again), optionally only
//! to one `command` or path, and for a number of requests (`count`) or until cleared.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::events::lock;

/// Default size of the oversized answer: far above any sane cap for a PEM or an SSH key line.
pub const DEFAULT_OVERSIZED: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum FaultKind {
    /// Close the listening sockets for `secs` seconds: clients get "connection refused".
    Refuse { secs: u64 },
    /// Answer `status` (e.g. 500, 503) instead of the real answer, with `Retry-After` if set.
    Status {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// Read the request, then say nothing for `secs` seconds before answering normally.
    Stall { secs: u64 },
    /// The right status and content type, with a body of `bytes` bytes.
    Oversized {
        #[serde(default = "default_oversized")]
        bytes: usize,
    },
    /// The right status and content type, with a garbage body (bad PEM, binary junk).
    Malformed,
    /// `200 text/html` with a login page, as a proxy or SSO front in front of the engine
    /// answers; the engine never sees the request.
    LoginPage,
    /// Present a server certificate signed by another CA (connection level).
    WrongCa,
    /// Answer `302` to the same target over plain http.
    RedirectHttp,
}

fn default_oversized() -> usize {
    DEFAULT_OVERSIZED
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    #[serde(flatten)]
    pub kind: FaultKind,
    /// How many requests (connections for `wrong_ca`) to affect; absent = until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Only requests whose `command` parameter or path equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl FaultSpec {
    pub fn new(kind: FaultKind) -> FaultSpec {
        FaultSpec {
            kind,
            count: None,
            command: None,
        }
    }

    pub fn count(mut self, n: u32) -> FaultSpec {
        self.count = Some(n);
        self
    }

    pub fn only(mut self, command: &str) -> FaultSpec {
        self.command = Some(command.to_string());
        self
    }

    fn matches(&self, command: Option<&str>, path: &str) -> bool {
        match &self.command {
            None => true,
            Some(c) => command == Some(c.as_str()) || path == c,
        }
    }
}

impl FaultKind {
    /// Short name used in the event log's `fault` field.
    pub fn label(&self) -> String {
        match self {
            FaultKind::Refuse { .. } => "refuse".into(),
            FaultKind::Status { status, .. } => format!("status:{status}"),
            FaultKind::Stall { .. } => "stall".into(),
            FaultKind::Oversized { .. } => "oversized".into(),
            FaultKind::Malformed => "malformed".into(),
            FaultKind::LoginPage => "login_page".into(),
            FaultKind::WrongCa => "wrong_ca".into(),
            FaultKind::RedirectHttp => "redirect_http".into(),
        }
    }
}

const KEYS: &[&str] = &["secs", "status", "retry_after", "bytes", "count", "command"];

/// Command-line form: `KIND[:key=value,...]`, e.g. `status:status=503,retry_after=2,count=3`,
/// `refuse:secs=5`, `stall:secs=3,command=register`, `wrong_ca`, `oversized:bytes=100000`.
/// A leading `{` means the JSON form of the admin API.
impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultSpec, String> {
        let s = s.trim();
        if s.starts_with('{') {
            return serde_json::from_str(s).map_err(|e| format!("bad fault JSON: {e}"));
        }
        let (kind, args) = s.split_once(':').unwrap_or((s, ""));
        let mut obj = serde_json::Map::new();
        obj.insert("fault".into(), kind.into());
        for kv in args.split(',').filter(|a| !a.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got `{kv}`"))?;
            // serde's flatten cannot deny unknown fields; catch typos like `cout=3` here.
            if !KEYS.contains(&k) {
                return Err(format!(
                    "unknown fault key `{k}` (known: {})",
                    KEYS.join(", ")
                ));
            }
            let value = match v.parse::<u64>() {
                Ok(n) => serde_json::Value::from(n),
                Err(_) => serde_json::Value::from(v),
            };
            obj.insert(k.to_string(), value);
        }
        serde_json::from_value(obj.into()).map_err(|e| format!("bad fault `{s}`: {e}"))
    }
}

/// Parses an admin API body: one fault or a list, as JSON or in the command-line form
/// (one per line).
pub fn parse_body(body: &str) -> Result<Vec<FaultSpec>, String> {
    let t = body.trim();
    if t.starts_with('[') {
        return serde_json::from_str(t).map_err(|e| format!("bad fault list: {e}"));
    }
    if t.starts_with('{') {
        return Ok(vec![t.parse()?]);
    }
    t.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::parse)
        .collect()
}

#[derive(Default)]
struct Inner {
    active: Vec<FaultSpec>,
    refuse_until: Option<Instant>,
}

#[derive(Default)]
pub struct Faults {
    inner: Mutex<Inner>,
}

impl Faults {
    pub fn add(&self, spec: FaultSpec) {
        let mut inner = lock(&self.inner);
        match spec.kind {
            FaultKind::Refuse { secs } => {
                inner.refuse_until = Some(Instant::now() + Duration::from_secs(secs));
            }
            _ if spec.count == Some(0) => {}
            _ => inner.active.push(spec),
        }
    }

    pub fn clear(&self) {
        *lock(&self.inner) = Inner::default();
    }

    /// Active switches with their remaining counts (refuse shows the seconds left).
    pub fn list(&self) -> Vec<FaultSpec> {
        let inner = lock(&self.inner);
        let mut out = inner.active.clone();
        if let Some(secs) = refuse_left(inner.refuse_until) {
            out.insert(0, FaultSpec::new(FaultKind::Refuse { secs }));
        }
        out
    }

    /// Whether the listeners must stay closed right now.
    pub fn refusing(&self) -> bool {
        refuse_left(lock(&self.inner).refuse_until).is_some()
    }

    /// Consumes one wrong-CA use, for a new TLS connection.
    pub fn take_wrong_ca(&self) -> bool {
        self.take(|f| f.kind == FaultKind::WrongCa).is_some()
    }

    /// Consumes the first request-level switch that applies to this request.
    pub fn take_for_request(&self, command: Option<&str>, path: &str) -> Option<FaultKind> {
        self.take(|f| f.kind != FaultKind::WrongCa && f.matches(command, path))
    }

    fn take(&self, pred: impl Fn(&FaultSpec) -> bool) -> Option<FaultKind> {
        let mut inner = lock(&self.inner);
        let idx = inner.active.iter().position(pred)?;
        let f = &mut inner.active[idx];
        let kind = f.kind.clone();
        if let Some(n) = f.count.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.active.remove(idx);
            }
        }
        Some(kind)
    }
}

fn refuse_left(until: Option<Instant>) -> Option<u64> {
    let left = until?.checked_duration_since(Instant::now())?;
    (!left.is_zero()).then(|| left.as_secs_f64().ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_form_parses() {
        let f: FaultSpec = "status:status=503,retry_after=2,count=3".parse().unwrap();
        assert_eq!(
            f.kind,
            FaultKind::Status {
                status: 503,
                retry_after: Some(2)
            }
        );
        assert_eq!(f.count, Some(3));
        let f: FaultSpec = "stall:secs=1,command=register".parse().unwrap();
        assert_eq!(f.command.as_deref(), Some("register"));
        assert_eq!(
            "wrong_ca".parse::<FaultSpec>().unwrap().kind,
            FaultKind::WrongCa
        );
        let f: FaultSpec = "oversized".parse().unwrap();
        assert_eq!(
            f.kind,
            FaultKind::Oversized {
                bytes: DEFAULT_OVERSIZED
            }
        );
        assert!("nonsense".parse::<FaultSpec>().is_err());
        assert!("status:status".parse::<FaultSpec>().is_err());
        assert!("stall".parse::<FaultSpec>().is_err(), "secs is required");
        assert!("stall:secs=1,cout=2".parse::<FaultSpec>().is_err());
    }

    #[test]
    fn json_forms_parse() {
        let v =
            parse_body(r#"[{"fault":"malformed","count":1},{"fault":"refuse","secs":2}]"#).unwrap();
        assert_eq!(v.len(), 2);
        let v = parse_body("redirect_http:count=1\nwrong_ca\n").unwrap();
        assert_eq!(v[0].kind, FaultKind::RedirectHttp);
        let json = serde_json::to_string(&v[0]).unwrap();
        assert_eq!(json, r#"{"fault":"redirect_http","count":1}"#);
    }

    #[test]
    fn counts_are_consumed_and_filters_apply() {
        let faults = Faults::default();
        faults.add(
            "status:status=500,count=2,command=register"
                .parse()
                .unwrap(),
        );
        faults.add("wrong_ca:count=1".parse().unwrap());
        assert_eq!(faults.take_for_request(Some("get-version"), "/x"), None);
        assert!(faults.take_for_request(Some("register"), "/x").is_some());
        assert!(faults.take_for_request(Some("register"), "/x").is_some());
        assert_eq!(faults.take_for_request(Some("register"), "/x"), None);
        assert!(faults.take_wrong_ca());
        assert!(!faults.take_wrong_ca());
        assert!(faults.list().is_empty());
    }

    #[test]
    fn refuse_is_time_based() {
        let faults = Faults::default();
        faults.add(FaultSpec::new(FaultKind::Refuse { secs: 30 }));
        assert!(faults.refusing());
        assert_eq!(faults.list()[0].kind, FaultKind::Refuse { secs: 30 });
        faults.clear();
        assert!(!faults.refusing());
    }
}
