//! `ovirt-node-reg bootstrap`: what the engine runs over SSH on a host it adds (the seed's
//! `vds_bootstrap` and `vds_bootstrap_complete`, docs/ovirt-protocol.md), or on an oVirt Node
//! (the seed's "add node as host"). First the checks (`checks`, `reach`), each one line of
//! the report (`report`); then, unless `--check-only` and only when no check failed, the
//! actions (`actions`): the registration flow's own steps.
//!
//! Exit codes: [`EXIT_OK`], [`EXIT_CHECKS_FAILED`] (nothing changed),
//! [`EXIT_ACTIONS_FAILED`] (the report lists what was changed), [`EXIT_WAITING`]; 1 for a
//! bad option (nothing checked).

mod actions;
mod checks;
mod probe;
mod reach;
mod report;

pub use crate::paths::DEFAULT_TOOLS_PATH;
pub use report::{Level, Line};

use anyhow::{anyhow, Result};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::console;
use crate::identity;
use crate::os_release::OsRelease;
use crate::paths::Root;
use crate::trust::Pins;
use crate::values::{EngineAddr, Sha256Pin};
use crate::worker::Session;

use checks::Family;
use probe::Probe;
use report::Report;

/// Every check passed (and, without `--check-only`, the host is enrolled).
pub const EXIT_OK: u8 = 0;
/// A check failed: nothing was changed.
pub const EXIT_CHECKS_FAILED: u8 = 2;
/// An action failed: the report's `action:` lines say what was changed before it.
pub const EXIT_ACTIONS_FAILED: u8 = 3;
/// Enrolled up to the approval, which the engine has not given yet.
pub const EXIT_WAITING: u8 = 4;

/// How long the engine checks may take together (each job a few quick attempts).
const REACH_DEADLINE: Duration = Duration::from_secs(15);

/// The command's options, as given.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--engine HOST[:PORT]`
    pub engine: String,
    /// `--ca-pin sha256:…`
    pub ca_pin: String,
    /// `--token-file F` (an in-root path, 0600), or `-` for the token on stdin.
    pub token_file: Option<String>,
    pub check_only: bool,
    /// `--bridge NIC`: the management bridge over NIC, as `boot` makes it.
    pub bridge: Option<String>,
    /// `--store SPEC`, as `ovirt.reg.store=` (default: found, or none on a host).
    pub store: Option<String>,
    /// Where `rpm`, `dpkg-query` and `systemctl` are looked up (`PATH` form).
    pub tools_path: String,
}

/// The options checked and typed.
struct Plan {
    engine: EngineAddr,
    pin: Sha256Pin,
}

impl Options {
    fn plan(&self) -> Result<Plan> {
        let engine = self
            .engine
            .parse()
            .map_err(|e| anyhow!("--engine {}: expected {e}", self.engine))?;
        let pin = self
            .ca_pin
            .parse()
            .map_err(|e| anyhow!("--ca-pin {}: expected {e}", self.ca_pin))?;
        Ok(Plan { engine, pin })
    }
}

/// Run the checks, then the actions; the exit code says which part failed.
pub fn run(root: &Root, cmdline: &Path, opts: &Options, debug: bool) -> Result<ExitCode> {
    let plan = opts.plan()?;
    let os = OsRelease::read(root).ok().flatten();
    let mut report = Report::default();
    check(&mut report, root, opts, &plan, os.as_ref(), debug);
    let failed = report.failed();
    console::err_line(&report.summary());
    if failed > 0 {
        console::err_line(&format!(
            "bootstrap: {failed} check(s) failed: nothing was changed"
        ));
        return Ok(ExitCode::from(EXIT_CHECKS_FAILED));
    }
    if opts.check_only {
        return Ok(ExitCode::from(EXIT_OK));
    }
    let node = os.as_ref().is_some_and(OsRelease::is_ovirt_node);
    Ok(ExitCode::from(actions::run(
        &mut report,
        root,
        cmdline,
        opts,
        node,
        debug,
    )))
}

/// Every check, in the order of the report.
fn check(
    report: &mut Report,
    root: &Root,
    opts: &Options,
    plan: &Plan,
    os: Option<&OsRelease>,
    debug: bool,
) {
    let probe = Probe::new(root, &opts.tools_path);
    let family = os.map_or(Family::Other, Family::of);
    report.add(checks::platform());
    report.add(checks::os(os));
    report.add(checks::kernel(&probe));
    report.add(checks::cpu_virtualization(&probe));
    report.add(checks::memory(&probe));
    report.extend(checks::packages(&probe, family));
    report.extend(checks::services(&probe));
    report.add(checks::repositories(&probe));
    reach_checks(report, root, plan, debug);
}

/// The engine, the clock and the host name, through one worker session.
fn reach_checks(report: &mut Report, root: &Root, plan: &Plan, debug: bool) {
    let mut session = Session::new(debug);
    let net = reach::net(&plan.engine, REACH_DEADLINE);
    let pins = Pins {
        sha256: vec![plan.pin.clone()],
        ..Pins::default()
    };
    let engine = reach::engine(&mut session, &net, &pins);
    let reachable = engine.status != Level::Fail;
    report.add(engine);
    report.add(if reachable {
        reach::clock(&mut session, &net)
    } else {
        Line::warn("clock", "not measured: the engine is not reachable")
    });
    let name = identity::hostname(root);
    report.add(reach::hostname(&mut session, &net, name.as_deref()));
}
