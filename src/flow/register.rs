//! Step `registered`: the engine's SSH key installed, then the host registered (once per
//! engine).

use anyhow::{Context, Result};

use super::state::trusted_ca;
use super::{net_settings, update_persisted, State, Step, StepContext, StepResult};
use crate::identity;
use crate::legacy;
use crate::paths;
use crate::trust;
use crate::worker::{FetchSshKey, HostInfo, Register, Registered};

/// `registered`: the engine's SSH key installed for root, then `register` sent. Never
/// sent twice for the same engine: once checkpointed, later boots skip it.
pub(super) fn registered(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
    if state.is_done(Step::Registered) {
        return Ok(StepResult::Skipped(
            "already registered; not registering again".into(),
        ));
    }
    let ca = trusted_ca(state)?;
    let job = FetchSshKey {
        net: net_settings(ctx, state)?,
        ca: ca.clone(),
    };
    // The key line was parsed again on this side of the pipe (worker::Call).
    let key = ctx.call(&job)?;
    trust::install_ssh_key(ctx.store, &key).context("installing the engine SSH key")?;
    let host = host_info(ctx, state)?;
    let job = Register {
        net: net_settings(ctx, state)?,
        ca,
        host: host.clone(),
    };
    let (name, address) = registered_as(&host, ctx.call(&job)?)?;
    state.registered_as = Some(format!("{name} ({address})"));
    state.address = Some(address);
    // The marker the stock node plugin checks, so it does not register a second time.
    let vars = [("OVIRT_NODE_REGISTER".to_string(), "True".to_string())];
    let mut batch = ctx.store.batch();
    update_persisted(&mut batch, paths::DEFAULT_OVIRT, 0o644, |old| {
        legacy::render_default_ovirt(old, &vars)
    })?;
    batch.commit()?;
    Ok(StepResult::Done)
}

/// The name and address the worker says it registered, checked before they are kept: the
/// address goes into the certificate requests and the checkpoint, so it must be the one we
/// gave or else an IP address, and the name the one we asked for (else the address).
fn registered_as(host: &HostInfo, told: Registered) -> Result<(String, String)> {
    let Registered { name, address } = told;
    let address_ok = match &host.address {
        Some(given) => *given == address,
        None => address.parse::<std::net::IpAddr>().is_ok(),
    };
    anyhow::ensure!(
        address_ok,
        "the network worker reported the address {address:?}: expected {}",
        host.address.as_deref().unwrap_or("an IP address")
    );
    let expected = host.name.as_deref().unwrap_or(&address);
    anyhow::ensure!(
        name == expected,
        "the network worker reported the name {name:?}: expected {expected:?}"
    );
    Ok((name, address))
}

fn host_info(ctx: &StepContext, state: &State) -> Result<HostInfo> {
    let cfg = &ctx.loaded.config;
    let name = cfg
        .net
        .hostname
        .as_ref()
        .map(|h| h.to_string())
        .or_else(|| identity::hostname(ctx.root));
    Ok(HostInfo {
        name,
        address: None,
        unique_id: state
            .unique_id
            .clone()
            .context("no host id in the checkpoint")?,
        ssh_user: "root".into(),
        ssh_port: 22,
        ssh_key_fingerprint: identity::ssh_host_key_fingerprint(ctx.root),
        vds_port: cfg.reg.vds_port,
    })
}
