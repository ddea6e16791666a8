//! Step `engine_trusted`: the engine CA, fetched by the worker, checked here against the pins.

use anyhow::{Context, Result};
use log::{info, warn};
use std::path::Path;

use super::{net_settings, State, Step, StepContext, StepResult};
use crate::paths;
use crate::trust::{self, CaCert, Pins, Verified};
use crate::worker::FetchCa;

/// `engine_trusted`: the engine CA, fetched by the worker and matching the pins. A CA kept
/// from an earlier boot is checked against today's pins, not fetched again.
pub(super) fn engine_trusted(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
    let reg = &ctx.loaded.config.reg;
    let stored = trust::stored_pin(ctx.store)?;
    let pins = Pins::from_config(reg, stored);
    if let (true, Some(pem)) = (state.is_done(Step::EngineTrusted), &state.ca_pem) {
        let ca = CaCert::from_pem(pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("the CA kept in the store: {e}"))?;
        if trust::verify(&ca, &pins).is_ok() {
            return Ok(StepResult::Skipped(format!(
                "engine CA {} already trusted",
                ca.sha256_pin()
            )));
        }
        warn!("the engine CA kept in the store no longer matches the pins: fetching it again");
    }
    let job = FetchCa {
        net: net_settings(ctx, state)?,
        pins: pins.clone(),
    };
    let ca = ctx.call(&job)?;
    // The worker's check is not taken on its word: the pins held here decide, and only they
    // say whether this is a first use (ovirt.reg.insecure_tofu) whose pin must be kept.
    let how = trust::verify(&ca, &pins).context("the engine CA the network worker fetched")?;
    if let Verified::FirstUse(pin) = &how {
        trust::store_pin(ctx.store, pin)?;
    }
    // Written from the DER that was checked, never the text that was sent.
    let pem = ca.pem();
    // Where vdsm-tool register leaves it, for tools that look there.
    let ca_path = Path::new(paths::ENGINE_CA_PEM);
    ctx.store
        .write_persisted(ca_path, pem.as_bytes(), 0o644)
        .context("installing the engine CA")?;
    info!("engine CA {} trusted: {how}", ca.sha256_pin());
    state.ca_pem = Some(pem);
    Ok(StepResult::Done)
}
