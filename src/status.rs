//! What happened, for people: the status file, `ovirt-node-reg status`, the console banner.
//!
//! `/run/ovirt-node-reg/status.json` holds the step reached, the result, a one-line
//! reason and timestamps. It never holds secrets: reasons are built from settings errors,
//! which redact secret values.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::escape;
use crate::fsutil::read_optional;
use crate::paths::{Root, STATUS_FILE};

/// How an engine found by DNS SRV names its origin: `DNS SRV _ovirt-engine._tcp.DOMAIN`.
pub const DISCOVERED: &str = "DNS SRV ";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Running,
    Ok,
    /// Done for this boot stage, more to do later (e.g. waiting for approval).
    Waiting,
    Failed,
    /// `ovirt_vdsm_disable` was given: nothing to do.
    Disabled,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Running => "running",
            Outcome::Ok => "ok",
            Outcome::Waiting => "waiting",
            Outcome::Failed => "FAILED",
            Outcome::Disabled => "disabled",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub step: String,
    pub result: Outcome,
    pub reason: Option<String>,
    pub completed: Vec<String>,
    pub started_at: String,
    pub updated_at: String,
    /// `HOST:PORT` of the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Where the engine came from: `management_server= (SOURCE)` or `DNS SRV NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_source: Option<String>,
    /// `sha256:…` of the trusted engine CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<String>,
    /// The enrolment fingerprint over both public keys, to compare in the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_fingerprint: Option<String>,
    /// `notAfter` of the installed vdsm certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_not_after: Option<String>,
}

impl Status {
    pub fn start() -> Status {
        let now = now_rfc3339();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            step: "start".to_string(),
            result: Outcome::Running,
            reason: None,
            completed: Vec::new(),
            started_at: now.clone(),
            updated_at: now,
            engine: None,
            engine_source: None,
            ca_fingerprint: None,
            csr_fingerprint: None,
            cert_not_after: None,
        }
    }

    /// Move to a new step/result, stamping the time.
    pub fn set(&mut self, step: &str, result: Outcome, reason: Option<String>) {
        self.step = step.to_string();
        self.result = result;
        self.reason = reason;
        self.updated_at = now_rfc3339();
    }

    /// The one line printed on the console at the end of a run (the reason may quote the
    /// command line, a file or the engine: control characters are escaped).
    pub fn banner(&self) -> String {
        let reason = self
            .reason
            .as_deref()
            .map(|r| format!(": {}", escape::controls(r)))
            .unwrap_or_default();
        // A discovered engine is named with where it came from: nobody typed it.
        let found = match (&self.engine, &self.engine_source) {
            (Some(e), Some(src)) if src.starts_with(DISCOVERED) => {
                escape::controls(&format!(" (engine {e} from {src})")).into_owned()
            }
            _ => String::new(),
        };
        match self.result {
            Outcome::Failed => {
                format!(
                    "ovirt-node-reg: FAILED at step {}{reason}{found}",
                    self.step
                )
            }
            r => format!("ovirt-node-reg: {r}, step {}{reason}{found}", self.step),
        }
    }

    /// Human-readable form for `ovirt-node-reg status`.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "result:    {}\nstep:      {}\nreason:    {}\ncompleted: {}\nstarted:   {}\nupdated:   {}\nversion:   {}\n",
            self.result,
            self.step,
            escape::controls(self.reason.as_deref().unwrap_or("-")),
            if self.completed.is_empty() { "-".to_string() } else { self.completed.join(" → ") },
            self.started_at,
            self.updated_at,
            self.version
        );
        let extra = [
            ("engine:   ", &self.engine),
            ("from:     ", &self.engine_source),
            ("engine CA:", &self.ca_fingerprint),
            ("keys:     ", &self.csr_fingerprint),
            ("cert end: ", &self.cert_not_after),
        ];
        for (label, value) in extra {
            if let Some(v) = value {
                out += &format!("{label} {}\n", escape::controls(v));
            }
        }
        out.truncate(out.trim_end().len());
        out
    }
}

/// Write the status file under `root` (0644: it holds nothing secret).
pub fn write(root: &Root, status: &Status) -> Result<()> {
    let json = serde_json::to_string_pretty(status).context("encoding the status")?;
    root.fs()
        .write_atomic(Path::new(STATUS_FILE), (json + "\n").as_bytes(), 0o644)
}

/// Read the status file; `None` when this boot has not run the binary yet.
pub fn read(root: &Root) -> Result<Option<Status>> {
    let path = root.join(STATUS_FILE);
    match read_optional(&path)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{} is not a valid status file", path.display())),
    }
}

/// The current UTC time as RFC 3339 (`2026-11-25T14:52:50Z`).
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    crate::calendar::rfc3339(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_banner() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        assert!(read(&root).unwrap().is_none());
        let mut s = Status::start();
        s.set(
            "configured",
            Outcome::Failed,
            Some("management_server=x:0: expected HOST[:PORT]".into()),
        );
        write(&root, &s).unwrap();
        assert_eq!(read(&root).unwrap().unwrap(), s);
        assert_eq!(s.banner(), "ovirt-node-reg: FAILED at step configured: management_server=x:0: expected HOST[:PORT]");
    }

    #[test]
    fn garbage_status_file_is_an_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        root.fs()
            .write_atomic(Path::new(STATUS_FILE), b"{not json", 0o644)
            .unwrap();
        let err = read(&root).unwrap_err().to_string();
        assert!(err.contains("not a valid status file"), "{err}");
    }
}
