//! Step `network_up`: the management network, brought up by the root parent.

use anyhow::Result;
use log::info;

use super::{remaining, StepContext, StepResult};

/// `network_up`: every boot, on the real machine, when the command line says how
/// (`ip=`, `BOOTIF=`, `ovirt.reg.nic=`); otherwise the network is the one the system set up.
/// Never under `--root`: netlink would change this machine's links, not the tree's.
/// Runs in the root parent: links, addresses and routes need CAP_NET_ADMIN.
pub(super) fn network_up(ctx: &StepContext) -> Result<StepResult> {
    let net = &ctx.loaded.config.net;
    if !ctx.root.is_system() {
        return Ok(StepResult::Skipped(
            "--root: this machine's network is not the node's".into(),
        ));
    }
    if net.ip.is_none() && net.bootif.is_none() && net.nic.is_none() {
        return Ok(StepResult::Skipped(
            "no ip=, BOOTIF= or ovirt.reg.nic=: using the network the system set up".into(),
        ));
    }
    let report = crate::net::bring_up(ctx.root, net, Some(ctx.store), remaining(ctx))?;
    info!(
        "network up: bridge {} over {} ({}), address {}, gateway {}",
        report.bridge,
        report.port,
        report.method,
        report.address.as_deref().unwrap_or("-"),
        report.gateway.map_or("-".to_string(), |g| g.to_string())
    );
    Ok(StepResult::Done)
}
