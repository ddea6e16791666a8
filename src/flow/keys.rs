//! The host's two key pairs (vdsm, qemu) through their life: made once and kept pending in
//! the store's private state until their certificates are installed, staged again from the
//! installed copies when a certificate is due for renewal (re-enrolment never re-keys).
//! Both `enroll` (makes and submits) and `install` (installs and removes) use them.

use anyhow::{Context, Result};
use std::path::Path;

use super::{State, Step, StepContext, MAX_CONFIG_FILE};
use crate::paths::{self, Root};
use crate::pki::{self, HostKey};
use crate::secret::Secret;
use crate::store::Store;

/// The pending private keys, in the store's private state until the certificates are
/// installed: a reboot or crash in between resumes with the same keys (one pair per
/// enrolment).
pub(super) const PENDING_DIR: &str = "ovirt-node-reg/pending";

pub(super) const PENDING_VDSM_KEY: &str = "ovirt-node-reg/pending/vdsmkey.pem";

pub(super) const PENDING_QEMU_KEY: &str = "ovirt-node-reg/pending/qemukey.pem";

pub(super) struct PendingKeys {
    pub(super) vdsm: HostKey,
    pub(super) qemu: HostKey,
    /// Read back from the store: an earlier run may have submitted them already.
    pub(super) resumed: bool,
}

impl PendingKeys {
    pub(super) fn load(store: &Store) -> Result<Option<PendingKeys>> {
        let (Some(vdsm), Some(qemu)) = (
            store.read_state(PENDING_VDSM_KEY)?,
            store.read_state(PENDING_QEMU_KEY)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(PendingKeys {
            vdsm: HostKey::from_pem(&Secret::new(vdsm))?,
            qemu: HostKey::from_pem(&Secret::new(qemu))?,
            resumed: true,
        }))
    }

    /// Generated here, in the root parent; only the CSRs go to the worker. Both are stored
    /// before anything is submitted, so nothing submitted is ever lost.
    pub(super) fn load_or_generate(ctx: &StepContext) -> Result<PendingKeys> {
        if let Some(keys) = PendingKeys::load(ctx.store)? {
            return Ok(keys);
        }
        let kind = ctx.loaded.config.reg.key;
        let generate = || HostKey::generate(kind).with_context(|| format!("ovirt.reg.key={kind}"));
        let keys = PendingKeys {
            vdsm: generate()?,
            qemu: generate()?,
            resumed: false,
        };
        let store = ctx.store;
        store
            .make_state_dir(PENDING_DIR, 0o700)
            .context("making the pending key directory private")?;
        store.write_state(
            PENDING_QEMU_KEY,
            keys.qemu.private_pem().expose().as_bytes(),
            0o600,
        )?;
        store.write_state(
            PENDING_VDSM_KEY,
            keys.vdsm.private_pem().expose().as_bytes(),
            0o600,
        )?;
        crate::fault::point("flow.keys_written");
        Ok(keys)
    }

    pub(super) fn remove(store: &Store) -> Result<()> {
        store
            .remove_state(PENDING_DIR)
            .context("removing the pending keys from the store")
    }
}

/// Why an enrolled host must enrol again (docs/design.md §4): its certificate passed its renewal
/// point, or the engine CA now trusted is not the installed one. Local files only: a boot
/// with nothing due sends nothing.
pub(super) fn renewal_due(root: &Root, state: &State) -> Option<String> {
    if !state.is_done(Step::Done) {
        return None;
    }
    if state.reenroll_requested {
        return Some("requested by ovirt-node-reg reenroll".into());
    }
    let read = |p: &str| root.fs().read_text(Path::new(p), MAX_CONFIG_FILE).ok()?;
    let cert = read(paths::VDSM_CERT)?;
    let validity = pki::validity(&crate::trust::pem_certificate(&cert).ok()?).ok()?;
    let per_mille = state.renew_per_mille.unwrap_or(800);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if now >= validity.renew_at(per_mille) {
        return Some(format!(
            "the certificate passed {}.{} % of its lifetime",
            per_mille / 10,
            per_mille % 10
        ));
    }
    let installed_ca = read(paths::VDSM_CA)?;
    (Some(installed_ca.trim()) != state.ca_pem.as_deref().map(str::trim))
        .then(|| "the engine CA changed".to_string())
}

/// The installed keys become the pending ones again: re-enrolment never re-keys.
pub(super) fn stage_installed_keys(ctx: &StepContext) -> Result<()> {
    ctx.store
        .make_state_dir(PENDING_DIR, 0o700)
        .context("making the pending key directory private")?;
    for (installed, pending) in [
        (paths::VDSM_KEY, PENDING_VDSM_KEY),
        (paths::QEMU_KEY, PENDING_QEMU_KEY),
    ] {
        let pem = ctx
            .root
            .fs()
            .read_text(Path::new(installed), MAX_CONFIG_FILE)
            .and_then(|t| t.context("it is missing"))
            .with_context(|| format!("reading the installed key {installed}"))?;
        let pem = Secret::new(pem);
        HostKey::from_pem(&pem).with_context(|| format!("the installed key {installed}"))?;
        ctx.store
            .write_state(pending, pem.expose().as_bytes(), 0o600)?;
    }
    Ok(())
}
