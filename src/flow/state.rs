//! The checkpoint kept in the store (`state.json`) and what the steps read back from it.

use anyhow::{Context, Result};
use log::{info, warn};
use serde::{Deserialize, Serialize};

use super::Step;
use crate::engine::Issued;
use crate::paths;
use crate::status;
use crate::store::Store;
use crate::trust::CaCert;

/// The checkpoint kept in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub completed: Vec<Step>,
    pub unique_id: Option<String>,
    /// `HOST:PORT` of the engine the later steps were done with.
    pub engine: Option<String>,
    /// Where the engine came from: `management_server= (SOURCE)` or `DNS SRV NAME`.
    #[serde(default)]
    pub engine_source: Option<String>,
    /// The engine CA (PEM) verified in `engine_trusted`.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// The name and address the engine knows this host by.
    #[serde(default)]
    pub registered_as: Option<String>,
    /// The address the host registered with: what its certificates must name.
    #[serde(default)]
    pub address: Option<String>,
    /// `sha256:…` over both public keys, shown to the administrator (protocol-v2 §6).
    #[serde(default)]
    pub csr_fingerprint: Option<String>,
    /// What the engine signed, kept until installed (public material only).
    #[serde(default)]
    pub issued: Option<Issued>,
    /// `notAfter` of the installed vdsm certificate, RFC 3339.
    #[serde(default)]
    pub cert_not_after: Option<String>,
    /// The administrator's rejection: final until the engine or the registration changes.
    #[serde(default)]
    pub rejected: Option<String>,
    /// Re-enrol once this many per mille of the certificate's lifetime have passed; drawn
    /// once per certificate from 700–900 so hosts enrolled together do not renew together.
    #[serde(default)]
    pub renew_per_mille: Option<u16>,
    /// Enrolling again with the installed keys: always submit (a poll would only return the
    /// old certificates).
    #[serde(default)]
    pub renewing: bool,
    /// `ovirt-node-reg reenroll` asked for a new certificate (same keys).
    #[serde(default)]
    pub reenroll_requested: bool,
    pub updated_at: String,
}

impl State {
    /// The checkpoint, or a fresh state when there is none. A damaged checkpoint is not
    /// trusted: it is reported and the run starts over (every step is idempotent).
    pub fn load(store: &Store) -> State {
        match store.read_state(paths::STATE_FILE) {
            Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_else(|e| {
                warn!("ignoring damaged checkpoint {}: {e}", paths::STATE_FILE);
                State::default()
            }),
            Ok(None) => State::default(),
            Err(e) => {
                warn!("cannot read checkpoint: {e:#}");
                State::default()
            }
        }
    }

    pub fn save(&mut self, store: &Store) -> Result<()> {
        self.updated_at = status::now_rfc3339();
        let json = serde_json::to_string_pretty(self).context("encoding the checkpoint")?;
        store.write_state(paths::STATE_FILE, json.as_bytes(), 0o600)
    }

    pub fn is_done(&self, step: Step) -> bool {
        self.completed.contains(&step)
    }

    /// Forget every step after `configured`: a new engine means trusting and registering
    /// again (docs/design.md §4: re-registration only when the engine changes).
    pub(super) fn reset_for_engine(&mut self, engine: &str) {
        if self.engine.as_deref().is_some_and(|e| e != engine) {
            info!(
                "engine changed from {} to {engine}: trusting and registering again",
                self.engine.as_deref().unwrap_or("-")
            );
            self.completed.retain(|s| *s == Step::Configured);
            self.ca_pem = None;
            self.registered_as = None;
            self.forget_enrollment();
        }
        self.engine = Some(engine.to_string());
    }

    /// A new registration starts a new enrolment (the pending keys, if any, are kept: still
    /// one key pair per host until it is enrolled).
    pub(super) fn forget_enrollment(&mut self) {
        self.completed.retain(|s| *s < Step::CsrSubmitted);
        self.csr_fingerprint = None;
        self.issued = None;
        self.rejected = None;
        self.renewing = false;
    }

    pub(super) fn mark(&mut self, step: Step) {
        if !self.is_done(step) {
            self.completed.push(step);
        }
    }
}

pub(super) fn ca_pin(state: &State) -> String {
    state
        .ca_pem
        .as_deref()
        .and_then(|pem| CaCert::from_pem(pem.as_bytes()).ok())
        .map_or_else(|| "-".to_string(), |ca| ca.sha256_pin().to_string())
}

/// The engine CA trusted in `engine_trusted`, read back from the checkpoint.
pub(super) fn trusted_ca(state: &State) -> Result<CaCert> {
    let pem = state
        .ca_pem
        .as_deref()
        .context("no trusted engine CA in the checkpoint")?;
    CaCert::from_pem(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the engine CA in the checkpoint: {e}"))
}

pub(super) fn unique_id(state: &State) -> Result<String> {
    state
        .unique_id
        .clone()
        .context("no host id in the checkpoint")
}

/// The registered address; checkpoints written before it was kept hold it in
/// `registered_as` ("name (address)").
pub(super) fn host_address(state: &State) -> Result<String> {
    let from_name = || {
        let r = state.registered_as.as_deref()?;
        let inner = r.rsplit_once(" (")?.1.strip_suffix(')')?;
        Some(inner.to_string())
    };
    state
        .address
        .clone()
        .or_else(from_name)
        .context("no registered address in the checkpoint")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Root;

    #[test]
    fn a_hostile_checkpoint_is_refused_not_trusted_nor_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        std::fs::create_dir_all(root.join("/config/ovirt-node-reg")).unwrap();
        let store = Store::open(&root, Some("/config")).unwrap();
        let good = State {
            completed: vec![Step::Configured, Step::Registered],
            ..State::default()
        };
        let state_file = root.join("/config").join(paths::STATE_FILE);
        let deep = "[".repeat(100_000);
        let huge = format!("{{\"completed\": [], \"x\": \"{}\"}}", "a".repeat(2 << 20));
        for hostile in [
            "{\"completed\": 5, \"updated_at\": []}",
            "{\"completed\": [\"no_such_step\"], \"updated_at\": \"\"}",
            deep.as_str(),
            huge.as_str(),
            "\u{0}\u{ff}",
        ] {
            std::fs::write(&state_file, hostile).unwrap();
            assert_eq!(State::load(&store), State::default());
        }
        // A checkpoint reached through a planted `ovirt-node-reg -> ../etc` is not read.
        std::fs::remove_dir_all(root.join("/config/ovirt-node-reg")).unwrap();
        std::fs::create_dir_all(root.join("/etc")).unwrap();
        let json = serde_json::to_string(&good).unwrap();
        std::fs::write(root.join("/etc/state.json"), &json).unwrap();
        std::os::unix::fs::symlink("../etc", root.join("/config/ovirt-node-reg")).unwrap();
        assert_eq!(State::load(&store), State::default());
        let e = format!("{:#}", good.clone().save(&store).unwrap_err());
        assert!(e.contains("ovirt-node-reg: is a symbolic link"), "{e}");
        assert_eq!(
            std::fs::read_to_string(root.join("/etc/state.json")).unwrap(),
            json
        );
    }

    #[test]
    fn address_from_an_older_checkpoint() {
        let state = State {
            registered_as: Some("node1 (a b) (192.0.2.7)".into()),
            ..State::default()
        };
        assert_eq!(host_address(&state).unwrap(), "192.0.2.7");
    }
}
