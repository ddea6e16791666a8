//! Step `clock_ok`: the clock checked (and set) before any certificate is.

use anyhow::{Context, Result};
use log::{info, warn};

use super::{net_settings, State, StepContext, StepResult};
use crate::clock;
use crate::worker::{MeasureClock, Measured};

/// `clock_ok`: every boot, before any certificate is checked. The worker measures the
/// offset (SNTP to `ntp=`, else the engine's `Date`); the parent sets the clock, never below
/// the build time. Under `--root` the machine's clock is left alone (dry run).
pub(super) fn clock_ok(ctx: &StepContext, state: &State) -> Result<StepResult> {
    let net = &ctx.loaded.config.net;
    let ntp = if net.ntp_off {
        Vec::new()
    } else {
        net.ntp.clone()
    };
    // `configured` has recorded the engine in the state (state.engine) for every later step.
    // The clock is best effort (an unchecked clock is raised to the build time and warned
    // about): it gets a third of what is left, so an unreachable engine is reported by the
    // steps that need it, with their own error, before the deadline.
    let mut net = net_settings(ctx, state)?;
    net.policy.deadline /= 3;
    let Measured { observation, error } = ctx.call(&MeasureClock { net, ntp })?;
    if let Some(e) = error {
        warn!("no time source answered usably: {e}");
    }
    let limits = clock::Limits::build();
    let outcome = if ctx.root.is_system() {
        clock::apply(&clock::SystemClock, observation.as_ref(), &limits)
    } else {
        clock::apply(&DryRunClock, observation.as_ref(), &limits)
    }
    .context("setting the clock")?;
    if let clock::Outcome::Kept { offset_ns } = outcome {
        info!("clock kept: off by {:+.3} s", offset_ns as f64 / 1e9);
    }
    Ok(StepResult::Done)
}

/// The real clock for reading; setting only logs (tests must never change the machine's
/// clock, and `--root` means "not this machine").
struct DryRunClock;

impl clock::Clock for DryRunClock {
    fn now(&self) -> std::io::Result<clock::Time> {
        clock::SystemClock.now()
    }

    fn set(&self, t: clock::Time) -> std::io::Result<()> {
        info!("dry run under --root: would set the clock to {t}");
        Ok(())
    }
}
