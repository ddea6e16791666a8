//! Steps `certs_installed` and `vdsm_configured`, and when an enrolled host enrols again
//! (renewal).

use anyhow::{Context, Result};
use log::{info, warn};
use std::path::Path;
use std::time::Duration;

use super::enroll::{PendingKeys, PENDING_DIR, PENDING_QEMU_KEY, PENDING_VDSM_KEY};
use super::state::{host_address, trusted_ca};
use super::{ca_cert, update_persisted, State, Step, StepContext, StepResult, MAX_CONFIG_FILE};
use crate::install::{self, Material, Owners};
use crate::paths::{self, Root};
use crate::pki::{self, HostKey};
use crate::secret::Secret;
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
    update_persisted(ctx, paths::VDSM_CONF, 0o644, |old| {
        install::render_vdsm_conf(old, issued.management_port, issued.ssl)
    })?;
    ctx.store
        .write_persisted(
            Path::new(paths::CORE_SYSCTL),
            install::core_sysctl().as_bytes(),
            0o644,
        )
        .context("writing the core-dump sysctl")?;
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
