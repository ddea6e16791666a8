//! The engine's side of v2 enrolment (docs/protocol-v2.md): CSRs per unique id, approval by
//! an administrator or a token, signing with the engine CA (vdsm) and the QEMU CA (qemu).
//! The host's approval state lives in the host table (hosts.rs), so v1 approve/reject and v2
//! enrolment can never disagree.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::ca;
use crate::events::{lock, Event, EventKind, EventLog};
use crate::hosts::{Host, HostStatus, Hosts};
use crate::signing::{self, HostCsr, Profile};
use crate::tls::Pki;
use crate::tokens::{Refusal, Tokens};

/// What an administrator may change while the simulator runs (`POST /admin/settings`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Settings {
    pub cert_lifetime_secs: u64,
    pub retry_after_secs: u64,
}

/// Certificates issued for one enrolment, PEM as the engine serves them.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    pub vdsm_cert: String,
    pub qemu_cert: String,
    /// Unix seconds; for tests of re-enrolment.
    pub not_after_unix: u64,
}

/// The latest CSR pair a host submitted.
#[derive(Clone, Serialize)]
pub struct Enrollment {
    pub unique_id: String,
    pub fingerprint: String,
    pub submissions: u32,
    pub approved_by_token: bool,
    pub issued: Option<Issued>,
    /// Certificates signed for this id so far (renewals included).
    pub signed: u32,
    #[serde(skip)]
    vdsm: HostCsr,
    #[serde(skip)]
    qemu: HostCsr,
}

/// Where an enrolment stands, as both v2 commands answer it.
pub enum State {
    Approved(Box<Enrollment>),
    Pending { fingerprint: String },
    Rejected(String),
    TokenRefused(Refusal),
    UnknownHost,
    NoEnrollment,
}

#[derive(Default)]
pub struct Enrollments {
    map: Mutex<BTreeMap<String, Enrollment>>,
    reasons: Mutex<BTreeMap<String, String>>,
}

impl Enrollments {
    pub fn list(&self) -> Vec<Enrollment> {
        lock(&self.map).values().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<Enrollment> {
        lock(&self.map).get(id).cloned()
    }

    pub fn forget(&self, id: &str) {
        lock(&self.map).remove(id);
        lock(&self.reasons).remove(id);
    }

    /// The administrator's reason, shown to the node in the 403.
    pub fn set_reason(&self, id: &str, reason: &str) {
        lock(&self.reasons).insert(id.to_string(), reason.to_string());
    }

    fn reason(&self, id: &str) -> String {
        lock(&self.reasons)
            .get(id)
            .cloned()
            .unwrap_or_else(|| "rejected by the engine administrator".into())
    }
}

/// One submission: the two CSRs as the node sent them, and its token if any.
pub struct Submission<'a> {
    pub unique_id: &'a str,
    pub vdsm_csr: &'a str,
    pub qemu_csr: &'a str,
    pub token: Option<&'a str>,
}

/// Everything enrolment needs, borrowed from the running simulator.
pub struct Enroller<'a> {
    pub pki: &'a Pki,
    pub hosts: &'a Hosts,
    pub enrollments: &'a Enrollments,
    pub tokens: &'a Tokens,
    pub events: &'a EventLog,
    pub settings: Settings,
    pub organization: &'a str,
}

impl Enroller<'_> {
    /// `submit-csr`. `Err` is a 400 reason (a CSR that does not parse or verify).
    pub fn submit(&self, sub: &Submission) -> Result<State, String> {
        let Some(host) = self.hosts.get(sub.unique_id) else {
            return Ok(State::UnknownHost);
        };
        let vdsm = HostCsr::parse(sub.vdsm_csr).map_err(|e| format!("vdsm_csr: {e}"))?;
        let qemu = HostCsr::parse(sub.qemu_csr).map_err(|e| format!("qemu_csr: {e}"))?;
        if host.status == HostStatus::Rejected {
            return Ok(State::Rejected(self.enrollments.reason(sub.unique_id)));
        }
        let fingerprint = signing::enrollment_fingerprint(&vdsm, &qemu);
        let rekey = self.store(sub.unique_id, &fingerprint, vdsm, qemu);
        self.note(format!("csr {} {fingerprint}", sub.unique_id));
        if rekey && host.status == HostStatus::Approved {
            // New keys for an enrolled host need a new approval (protocol-v2.md §6).
            self.hosts
                .set_status(sub.unique_id, HostStatus::PendingApproval);
            self.note(format!("pending {} (new keys)", sub.unique_id));
        } else if host.status == HostStatus::Approved {
            return self.sign(sub.unique_id, &host);
        }
        match sub.token {
            Some(t) => self.approve_by_token(sub.unique_id, t),
            None => Ok(State::Pending { fingerprint }),
        }
    }

    /// `get-certificates`: no signing of anything new unless the host was approved since.
    pub fn poll(&self, id: &str) -> Result<State, String> {
        let Some(host) = self.hosts.get(id) else {
            return Ok(State::UnknownHost);
        };
        if host.status == HostStatus::Rejected {
            return Ok(State::Rejected(self.enrollments.reason(id)));
        }
        let Some(e) = self.enrollments.get(id) else {
            return Ok(State::NoEnrollment);
        };
        match (host.status, e.issued.is_some()) {
            (HostStatus::Approved, true) => Ok(State::Approved(Box::new(e))),
            (HostStatus::Approved, false) => self.sign(id, &host),
            _ => Ok(State::Pending {
                fingerprint: e.fingerprint,
            }),
        }
    }

    /// Called after an administrator approved `id`: signs a waiting enrolment at once.
    pub fn approved(&self, id: &str) {
        let waiting = self.enrollments.get(id).is_some_and(|e| e.issued.is_none());
        if let (true, Some(host)) = (waiting, self.hosts.get(id)) {
            if let Err(e) = self.sign(id, &host) {
                self.note(format!("signing {id} failed: {e}"));
            }
        }
    }

    /// Records the submission; true when it replaced different keys.
    fn store(&self, id: &str, fingerprint: &str, vdsm: HostCsr, qemu: HostCsr) -> bool {
        let mut map = lock(&self.enrollments.map);
        let old = map.get(id);
        let rekey = old.is_some_and(|o| o.fingerprint != fingerprint);
        let e = Enrollment {
            unique_id: id.to_string(),
            fingerprint: fingerprint.to_string(),
            submissions: old.map_or(0, |o| o.submissions) + 1,
            approved_by_token: old.is_some_and(|o| o.approved_by_token && !rekey),
            issued: old.and_then(|o| o.issued.clone()).filter(|_| !rekey),
            signed: old.map_or(0, |o| o.signed),
            vdsm,
            qemu,
        };
        map.insert(id.to_string(), e);
        rekey
    }

    fn approve_by_token(&self, id: &str, token: &str) -> Result<State, String> {
        let address = self.hosts.get(id).map(|h| h.reg.address);
        if let Err(r) = self.tokens.consume(token, id, address.as_deref()) {
            self.note(format!("token refused for {id}: {}", r.reason()));
            return Ok(State::TokenRefused(r));
        }
        let Some(host) = self.hosts.set_status(id, HostStatus::Approved) else {
            return Ok(State::UnknownHost);
        };
        self.note(format!("approved {id} by token"));
        if let Some(e) = lock(&self.enrollments.map).get_mut(id) {
            e.approved_by_token = true;
        }
        self.sign(id, &host)
    }

    /// Signs the stored CSR pair for an approved host (a new pair of certificates each time).
    fn sign(&self, id: &str, host: &Host) -> Result<State, String> {
        let Some(mut e) = self.enrollments.get(id) else {
            return Ok(State::NoEnrollment);
        };
        let issued = self.issue(&e, &host.reg.address).map_err(|err| {
            self.note(format!("signing {id} failed: {err}"));
            format!("signing failed: {err}")
        })?;
        e.issued = Some(issued);
        e.signed += 1;
        let mut map = lock(&self.enrollments.map);
        // Only if nobody replaced the keys meanwhile.
        if map
            .get(id)
            .is_some_and(|cur| cur.fingerprint == e.fingerprint)
        {
            map.insert(id.to_string(), e.clone());
        }
        drop(map);
        self.note(format!("signed {id} {}", e.fingerprint));
        Ok(State::Approved(Box::new(e)))
    }

    fn issue(&self, e: &Enrollment, address: &str) -> anyhow::Result<Issued> {
        let lifetime = Duration::from_secs(self.settings.cert_lifetime_secs);
        let mut profile = Profile {
            organization: self.organization,
            address,
            unit: None,
            lifetime,
        };
        let vdsm = signing::sign(&self.pki.ca, &e.vdsm, &profile)?;
        profile.unit = Some("qemu");
        let qemu = signing::sign(&self.pki.qemu_ca, &e.qemu, &profile)?;
        let not_after = SystemTime::now() + lifetime;
        Ok(Issued {
            vdsm_cert: ca::engine_pem(&vdsm),
            qemu_cert: ca::engine_pem(&qemu),
            not_after_unix: not_after
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }

    fn note(&self, detail: String) {
        self.events.push(Event::new(EventKind::Host).detail(detail));
    }
}
