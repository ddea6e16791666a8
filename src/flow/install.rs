//! Steps `certs_installed` and `vdsm_configured`, and when an enrolled host enrols again
//! (renewal).

use anyhow::{Context, Result};
use log::{info, warn};
use std::path::Path;
use std::time::Duration;

use super::keys::PendingKeys;
use super::state::{host_address, trusted_ca};
use super::{ca_cert, update_persisted, State, Step, StepContext, StepResult};
use crate::install::{self, Material, Owners};
use crate::paths;
use crate::pki;
use crate::trust;

/// `certs_installed`: each certificate checked against its key, its CA (the pinned one for
/// vdsm) and this host's address, then the files of docs/ovirt-protocol.md §5.4 installed.
pub(super) fn certs_installed(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
    if state.is_done(Step::CertsInstalled) {
        return Ok(StepResult::Skipped("certificates already installed".into()));
    }
    let issued = state
        .issued
        .clone()
        .context("no certificates in the checkpoint")?;
    let keys = PendingKeys::load(ctx.store)?.context(
        "the pending keys are gone from the store; run `ovirt-node-reg register` to enrol again",
    )?;
    let pinned = trusted_ca(state)?;
    let given = ca_cert(&issued.ca, "the engine's ca")?;
    anyhow::ensure!(
        given.der() == pinned.der(),
        "the engine answered with CA {} instead of the pinned {}: a CA change goes through the pin",
        given.sha256_pin(),
        pinned.sha256_pin()
    );
    let qemu_ca = ca_cert(&issued.qemu_ca, "the engine's qemu_ca")?;
    let address = host_address(state)?;
    let now = std::time::SystemTime::now();
    let vdsm = pki::verify_issued(&issued.vdsm_cert, &keys.vdsm, &pinned, &address, now)
        .context("the vdsm certificate")?;
    let qemu = pki::verify_issued(&issued.qemu_cert, &keys.qemu, &qemu_ca, &address, now)
        .context("the qemu certificate")?;
    let (vdsm_key, qemu_key) = (keys.vdsm.private_pem(), keys.qemu.private_pem());
    // Every file is written from the DER that was checked, not from the engine's text.
    let (vdsm_pem, qemu_pem) = (trust::pem_encode(&vdsm.der), trust::pem_encode(&qemu.der));
    let (ca_pem, qemu_ca_pem) = (pinned.pem(), qemu_ca.pem());
    let material = Material {
        vdsm_key: &vdsm_key,
        vdsm_cert: &vdsm_pem,
        ca: &ca_pem,
        qemu_key: &qemu_key,
        qemu_cert: &qemu_pem,
        qemu_ca: &qemu_ca_pem,
    };
    install::install_certs(ctx.store, &material, &Owners::resolve(ctx.root))?;
    let not_after = crate::calendar::rfc3339(vdsm.validity.not_after.max(0));
    info!("certificates installed; the vdsm certificate is valid until {not_after}");
    state.cert_not_after = Some(not_after);
    state.renew_per_mille = Some(700 + jitter_per_mille(200));
    state.renewing = false;
    state.reenroll_requested = false;
    Ok(StepResult::Done)
}

/// A uniformly random 0..=`max`.
fn jitter_per_mille(max: u16) -> u16 {
    let d = crate::retry::Jitter::from_os().up_to(Duration::from_millis(u64::from(max)));
    u16::try_from(d.as_millis()).unwrap_or(0)
}

/// `vdsm_configured`: `vdsm.conf` as the engine asked, the core-dump pattern, and the
/// pending key material removed (the installed copies are the keys now).
pub(super) fn vdsm_configured(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
    if state.is_done(Step::VdsmConfigured) {
        return Ok(StepResult::Skipped("vdsm already configured".into()));
    }
    let issued = state
        .issued
        .as_ref()
        .context("no engine settings in the checkpoint")?;
    // Both files persisted in one store transaction.
    let mut batch = ctx.store.batch();
    update_persisted(&mut batch, paths::VDSM_CONF, 0o644, |old| {
        install::render_vdsm_conf(old, issued.management_port, issued.ssl)
    })?;
    batch
        .write(
            Path::new(paths::CORE_SYSCTL),
            install::core_sysctl().as_bytes(),
            0o644,
        )
        .context("writing the core-dump sysctl")?;
    batch.commit()?;
    if ctx.root.is_system() {
        // Now, for this boot; the drop-in keeps it for the next ones.
        if let Err(e) = std::fs::write(paths::PROC_CORE_PATTERN, paths::CORE_PATTERN) {
            warn!("cannot set kernel.core_pattern: {e}");
        }
    }
    crate::fault::point("flow.vdsm_configured");
    PendingKeys::remove(ctx.store)?;
    Ok(StepResult::Done)
}
