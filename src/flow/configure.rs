//! Step `configured`: the settings checked and the legacy files written.

use anyhow::{Context, Result};
use log::info;
use std::path::Path;

use super::{update_persisted, State, StepContext, StepResult};
use crate::identity;
use crate::legacy;
use crate::paths;
use crate::status::{Outcome, DISCOVERED};
use crate::store::Batch;
use crate::values::EngineAddr;

/// `configured`: the settings are valid; the legacy files the rest of the node reads
/// (`/etc/default/ovirt`, `vdsm-reg.conf`, `vdsm.id`) are written and persisted.
pub(super) fn configured(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
    let loaded = ctx.loaded;
    if !loaded.errors.is_empty() {
        anyhow::bail!("invalid settings: {}", loaded.error_summary());
    }
    if loaded.config.reg.vdsm_disabled {
        return Ok(StepResult::Stop(
            Outcome::Disabled,
            "ovirt_vdsm_disable is set: not configuring the engine".into(),
        ));
    }
    let engine = match &loaded.config.reg.engine {
        Some(e) => Some(e.clone()),
        None => discovery_allowed(ctx, state)?,
    };
    // The legacy files and the host id, persisted in one store transaction.
    let mut batch = ctx.store.batch();
    write_legacy_files(ctx, &mut batch, engine.as_ref())?;
    let (id, _) = identity::ensure(ctx.root)?;
    batch
        .persist(Path::new(paths::VDSM_ID))
        .context("persisting the host id")?;
    batch.commit()?;
    crate::login::apply(ctx.store, &loaded.config.reg)?;
    state.unique_id = Some(id.unique_id.clone());
    if loaded.config.discovers_engine() {
        // Found by the engine_found step; a later boot keeps the engine it found.
        info!("configured: engine by DNS SRV, host id {}", id.unique_id);
        return Ok(StepResult::Done);
    }
    let engine = format!(
        "{}:{}",
        engine_host(&loaded.config),
        loaded.config.engine_port()
    );
    info!("configured: engine {engine}, host id {}", id.unique_id);
    state.reset_for_engine(&engine);
    state.engine_source = Some(format!(
        "management_server= ({})",
        loaded.source_of("management_server")
    ));
    Ok(StepResult::Done)
}

/// Everything the settings say to write: the legacy files, then root's password and sshd's
/// password login (`rhevm_admin_password=`, `ssh_pwauth=`); all persisted. `setup` writes
/// its answers through this too.
pub(super) fn write_files(ctx: &StepContext) -> Result<()> {
    let mut batch = ctx.store.batch();
    write_legacy_files(ctx, &mut batch, None)?;
    batch.commit()?;
    crate::login::apply(ctx.store, &ctx.loaded.config.reg)
}

fn engine_host(cfg: &crate::config::Config) -> String {
    cfg.reg
        .engine
        .as_ref()
        .map(|e| e.host.to_string())
        .unwrap_or_default()
}

/// Without `management_server` the engine is found by DNS SRV, which must never widen trust:
/// a pin must say which CA to accept (`ovirt.reg.insecure_tofu` does not extend to an engine
/// DNS named). The engine found on an earlier boot, if any, is what the files keep naming.
fn discovery_allowed(ctx: &StepContext, state: &State) -> Result<Option<EngineAddr>> {
    let reg = &ctx.loaded.config.reg;
    let pinned = !reg.ca_pins.is_empty()
        || reg.ca_sha1.is_some()
        || crate::trust::stored_pin(ctx.store)?.is_some();
    anyhow::ensure!(
        pinned,
        "no engine configured: give management_server=HOST[:PORT] on the kernel command line, \
         or ovirt.reg.ca_pin=sha256:… to find the engine by DNS SRV (management_server=auto)"
    );
    Ok(state
        .engine
        .as_deref()
        .filter(|_| {
            state
                .engine_source
                .as_deref()
                .is_some_and(|s| s.starts_with(DISCOVERED))
        })
        .and_then(|e| e.parse().ok()))
}

/// Update `/etc/default/ovirt` and `vdsm-reg.conf` from the settings and persist both; an
/// engine found by DNS SRV is written as a configured one would be. Persisted when `batch`
/// commits.
pub(super) fn write_legacy_files(
    ctx: &StepContext,
    batch: &mut Batch,
    engine: Option<&EngineAddr>,
) -> Result<()> {
    let mut vars = legacy::default_ovirt_vars(ctx.loaded);
    let mut config = ctx.loaded.config.clone();
    if let (true, Some(found)) = (config.discovers_engine(), engine) {
        let name = legacy::ovirt_var("management_server");
        vars.retain(|(n, _)| *n != name);
        vars.push((name, found.to_string()));
        config.reg.engine = Some(found.clone());
    }
    update_persisted(batch, paths::DEFAULT_OVIRT, 0o644, |old| {
        legacy::render_default_ovirt(old, &vars)
    })?;
    update_persisted(batch, paths::VDSM_REG_CONF, 0o644, |old| {
        legacy::render_vdsm_reg_conf(old, &config)
    })
}
