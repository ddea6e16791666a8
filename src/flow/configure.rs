//! Step `configured`: the settings checked and the legacy files written.

use anyhow::{Context, Result};
use log::info;
use std::path::Path;

use super::{update_persisted, State, StepContext, StepResult};
use crate::identity;
use crate::legacy;
use crate::paths;
use crate::status::Outcome;

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
    let Some(engine) = &loaded.config.reg.engine else {
        anyhow::bail!(
            "no engine configured: give management_server=HOST[:PORT] on the kernel command line"
        );
    };
    write_files(ctx)?;
    let (id, _) = identity::ensure(ctx.root)?;
    ctx.store
        .persist(Path::new(paths::VDSM_ID))
        .context("persisting the host id")?;
    info!(
        "configured: engine {}:{}, host id {}",
        engine.host,
        loaded.config.engine_port(),
        id.unique_id
    );
    state.unique_id = Some(id.unique_id);
    state.reset_for_engine(&format!("{}:{}", engine.host, loaded.config.engine_port()));
    Ok(StepResult::Done)
}

/// Everything the settings say to write: the legacy files, then root's password and sshd's
/// password login (`rhevm_admin_password=`, `ssh_pwauth=`); all persisted. `setup` writes
/// its answers through this too.
pub(super) fn write_files(ctx: &StepContext) -> Result<()> {
    write_legacy_files(ctx)?;
    crate::login::apply(ctx.store, &ctx.loaded.config.reg)
}

/// Update `/etc/default/ovirt` and `vdsm-reg.conf` from the settings and persist both.
fn write_legacy_files(ctx: &StepContext) -> Result<()> {
    let vars = legacy::default_ovirt_vars(ctx.loaded);
    update_persisted(ctx, paths::DEFAULT_OVIRT, 0o644, |old| {
        legacy::render_default_ovirt(old, &vars)
    })?;
    update_persisted(ctx, paths::VDSM_REG_CONF, 0o644, |old| {
        legacy::render_vdsm_reg_conf(old, &ctx.loaded.config)
    })
}
