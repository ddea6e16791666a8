//! The state machine (the "unified model"): resumable, idempotent steps, each checkpointed
//! in the store after it succeeds (`/config/ovirt-node-reg/state.json`).
//!
//! `configured → network_up → engine_found → clock_ok → engine_trusted → registered → csr_submitted →
//! approved → certs_installed → vdsm_configured → done`. A reboot or a crash resumes at the
//! first step not checkpointed. After `registered` the node enrols with protocol v2
//! (docs/protocol-v2.md) when the engine speaks it; a stock engine deploys the host itself.
//!
//! This file holds the loop, the steps' table and the entry points; the checkpoint is in
//! `state`, and each step in a file of its own, in the order they run: `configure`
//! (`configured`), `network` (`network_up`), `discover` (`engine_found`: DNS SRV when no
//! engine is configured), `clock` (`clock_ok`), `trust`
//! (`engine_trusted`), `register` (`registered`), `enroll` (`csr_submitted`, `approved`),
//! `install` (`certs_installed`, `vdsm_configured`, renewal).

mod state;

// The steps, in the order they run (a blank line between them keeps rustfmt from sorting).
mod configure; // configured

mod network; // network_up

mod discover; // engine_found

mod clock; // clock_ok

mod trust; // engine_trusted

mod register; // registered

mod enroll; // csr_submitted, approved

mod install; // certs_installed, vdsm_configured
             // The key pairs enroll makes and install installs.
mod keys;

pub use enroll::STOCK_ENGINE_REASON;
pub use state::State;

use state::ca_pin;

use anyhow::{Context, Result};
use log::{info, warn};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Loaded;
use crate::http::Endpoint;
use crate::identity;
use crate::paths::{self, Root};
use crate::retry::Policy;
use crate::status::{self, Outcome, Status};
use crate::store::{Batch, Store};
use crate::trust::CaCert;
use crate::values::{EngineAddr, DEFAULT_ENGINE_PORT};
use crate::worker::{self, Net};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Configured,
    NetworkUp,
    EngineFound,
    ClockOk,
    EngineTrusted,
    Registered,
    CsrSubmitted,
    Approved,
    CertsInstalled,
    VdsmConfigured,
    Done,
}

pub const STEPS: [Step; 11] = [
    Step::Configured,
    Step::NetworkUp,
    Step::EngineFound,
    Step::ClockOk,
    Step::EngineTrusted,
    Step::Registered,
    Step::CsrSubmitted,
    Step::Approved,
    Step::CertsInstalled,
    Step::VdsmConfigured,
    Step::Done,
];

impl Step {
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Everything a step needs.
pub struct StepContext<'a> {
    pub root: &'a Root,
    pub loaded: &'a Loaded,
    pub store: &'a Store,
    pub started: Instant,
    /// The run's network worker: started at its first job, ended with the run.
    worker: RefCell<worker::Session>,
}

impl<'a> StepContext<'a> {
    /// A run starting now: `ovirt.reg.timeout` counts from here. `debug`: the network worker
    /// logs at debug level too.
    fn new(root: &'a Root, loaded: &'a Loaded, store: &'a Store, debug: bool) -> Self {
        StepContext {
            root,
            loaded,
            store,
            started: Instant::now(),
            worker: RefCell::new(worker::Session::new(debug)),
        }
    }

    /// Run `job` in the run's network worker; its reply, still to be checked by the step.
    fn call<J: worker::Call>(&self, job: &J) -> Result<J::Reply> {
        self.worker.borrow_mut().call(job)
    }
}

/// What a step decided.
enum StepResult {
    Done,
    /// Done, with a line for the status (the last step's summary).
    DoneWith(String),
    /// Nothing to do in this build or this boot; not checkpointed.
    Skipped(String),
    /// Stop here for this run, with a result and reason (not an error).
    Stop(Outcome, String),
}

/// Run the boot flow from the first step not checkpointed. Returns the final status; the
/// status file is kept up to date on the way.
pub fn boot(root: &Root, loaded: &Loaded, store: &Store, debug: bool, stage: Stage) -> Status {
    let ctx = StepContext::new(root, loaded, store, debug);
    let mut state = State::load(store);
    let mut st = run_steps(&ctx, &mut state, stage.steps());
    if stage == Stage::Initramfs && matches!(st.result, Outcome::Ok | Outcome::Running) {
        st.set(
            &st.step.clone(),
            Outcome::Waiting,
            Some("initramfs stage done; `boot --stage system` resumes in the real root".into()),
        );
        publish(root, store, &st);
    }
    st
}

/// Which flow `boot` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Boot(Stage),
    Reenroll,
}

/// The config store the settings name (`ovirt.reg.store=`), else the one labelled CONFIG.
pub fn open_store(root: &Root, loaded: &Loaded) -> Result<Store> {
    Store::open(root, loaded.config.reg.store.as_deref()).context("opening the config store")
}

/// `boot` and `reenroll` from the command line: load the settings, open the store and put the
/// persisted files back, run the flow. Never an error: every failure becomes a status. The
/// initramfs stage ends by releasing the store so the hand-over to the real root is clean.
pub fn start(root: &Root, cmdline: &Path, debug: bool, run: Run) -> Status {
    let opened = crate::sources::load_warned(root, cmdline)
        .and_then(|l| open_store(root, &l).map(|store| (l, store)));
    let (loaded, store) = match opened {
        Ok(x) => x,
        Err(e) => {
            let mut st = Status::start();
            st.set("configured", Outcome::Failed, Some(format!("{e:#}")));
            if let Err(w) = status::write(root, &st) {
                warn!("cannot write the status file: {w:#}");
            }
            return st;
        }
    };
    if let Err(e) = store.restore() {
        warn!("restoring persisted files: {e:#}");
    }
    let debug = debug || loaded.config.reg.debug;
    let st = match run {
        Run::Boot(stage) => boot(root, &loaded, &store, debug, stage),
        Run::Reenroll => reenroll(root, &loaded, &store, debug),
    };
    if run == Run::Boot(Stage::System) && st.step == "done" && st.result == Outcome::Ok {
        // An installed node: `done` confirms a trial boot slot (src/slots).
        let text = std::fs::read_to_string(cmdline).unwrap_or_default();
        crate::slots::after_done(root, &text);
    }
    if run == Run::Boot(Stage::Initramfs) {
        if let Err(e) = store.release() {
            warn!("releasing the config store for the real root: {e:#}");
        }
    }
    st
}

/// `setup`: write what the settings say exactly as the `configured` step does (the legacy
/// files, root's password, sshd's password login), without running any step.
pub fn write_configuration(root: &Root, loaded: &Loaded, store: &Store) -> Result<()> {
    configure::write_files(&StepContext::new(root, loaded, store, false))
}

/// Settings given as command options, over the configured ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides<'a> {
    /// `--engine HOST[:PORT]`
    pub engine: Option<&'a str>,
    /// `--store SPEC`, as `ovirt.reg.store=` (`none`: no config store)
    pub store: Option<&'a str>,
}

/// The settings from the root's files and command line, with `over` applied; an invalid
/// setting is an error.
pub fn load_with(root: &Root, cmdline: &Path, over: Overrides) -> Result<Loaded> {
    let mut loaded = crate::sources::load_warned(root, cmdline)?;
    if let Some(e) = over.engine {
        let addr = e
            .parse()
            .map_err(|x| anyhow::anyhow!("--engine {e}: expected {x}"))?;
        loaded.config.reg.engine = Some(addr);
        loaded.config.reg.engine_auto = false;
    }
    if let Some(s) = over.store {
        let raw = crate::config::RawSetting::new("ovirt.reg.store", Some(s));
        loaded.apply_layer(crate::config::Source::Option, &[raw]);
    }
    anyhow::ensure!(
        loaded.errors.is_empty(),
        "invalid settings: {}",
        loaded.error_summary()
    );
    Ok(loaded)
}

/// `register [--engine HOST[:PORT]] [--store SPEC]` from the command line: load the settings
/// (the options replace the configured ones), open the store, run the trust and register
/// steps only. Never an error: a failure to start becomes the status.
pub fn start_register(root: &Root, cmdline: &Path, over: Overrides, debug: bool) -> Status {
    let prepared = load_with(root, cmdline, over).and_then(|loaded| {
        let store = open_store(root, &loaded)?;
        Ok((loaded, store))
    });
    match prepared {
        Ok((loaded, store)) => register(root, &loaded, &store, debug || loaded.config.reg.debug),
        Err(e) => {
            let mut st = Status::start();
            st.set("registered", Outcome::Failed, Some(format!("{e:#}")));
            st
        }
    }
}

/// Where `boot` runs (docs/design.md §4): the initramfs hook stops after `csr_submitted` so the boot
/// goes on; the system unit (and a plain `boot`) runs every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Initramfs,
    System,
}

impl std::str::FromStr for Stage {
    type Err = &'static str;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "initramfs" => Ok(Stage::Initramfs),
            "system" => Ok(Stage::System),
            _ => Err("initramfs or system"),
        }
    }
}

impl Stage {
    fn steps(self) -> &'static [Step] {
        let last = match self {
            Stage::Initramfs => Step::CsrSubmitted,
            Stage::System => Step::Done,
        };
        let end = STEPS
            .iter()
            .position(|s| *s == last)
            .map_or(STEPS.len(), |i| i + 1);
        &STEPS[..end]
    }
}

/// `ovirt-node-reg reenroll`: a new certificate for the installed keys now, then the rest
/// of the flow as a boot would run it.
pub fn reenroll(root: &Root, loaded: &Loaded, store: &Store, debug: bool) -> Status {
    let mut state = State::load(store);
    if !state.is_done(Step::Done) {
        let mut st = Status::start();
        let why = "this host is not enrolled yet: run `ovirt-node-reg boot` first";
        st.set("csr_submitted", Outcome::Failed, Some(why.into()));
        return st;
    }
    state.reenroll_requested = true;
    if let Err(e) = state.save(store) {
        let mut st = Status::start();
        st.set(
            "csr_submitted",
            Outcome::Failed,
            Some(format!("cannot save the checkpoint: {e:#}")),
        );
        return st;
    }
    boot(root, loaded, store, debug, Stage::System)
}

/// `ovirt-node-reg register`: trust and register again on an installed host, because the
/// operator asked (the only case besides a new engine where `register` is sent again).
pub fn register(root: &Root, loaded: &Loaded, store: &Store, debug: bool) -> Status {
    let ctx = StepContext::new(root, loaded, store, debug);
    let mut state = State::load(store);
    let prepared = prepare_register(&ctx, &mut state);
    if let Err(e) = prepared {
        let mut st = Status::start();
        st.set("registered", Outcome::Failed, Some(format!("{e:#}")));
        publish(root, store, &st);
        return st;
    }
    run_steps(&ctx, &mut state, &[Step::EngineTrusted, Step::Registered])
}

fn prepare_register(ctx: &StepContext, state: &mut State) -> Result<()> {
    let cfg = &ctx.loaded.config;
    let (id, _) = identity::ensure(ctx.root)?;
    ctx.store
        .persist(Path::new(paths::VDSM_ID))
        .context("persisting the host id")?;
    state.unique_id = Some(id.unique_id);
    // Without --engine or management_server: the engine found by DNS SRV on an earlier boot.
    match &cfg.reg.engine {
        Some(engine) => {
            state.reset_for_engine(&format!("{}:{}", engine.host, cfg.engine_port()));
            state.engine_source = Some("--engine / management_server=".into());
        }
        None => anyhow::ensure!(
            state.engine.is_some(),
            "no engine: give --engine HOST[:PORT]"
        ),
    }
    state.completed.retain(|s| *s != Step::Registered);
    // Registering again after a rejection is how an operator asks for another chance; an
    // enrolled host keeps its keys and certificates (never re-key otherwise).
    if state.rejected.is_some() {
        state.forget_enrollment();
    }
    Ok(())
}

/// Run `steps` in order, checkpointing each one done; stop at the first that stops.
fn run_steps(ctx: &StepContext, state: &mut State, steps: &[Step]) -> Status {
    let (root, store) = (ctx.root, ctx.store);
    let mut st = Status::start();
    st.completed = state.completed.iter().map(Step::name).collect();
    for &step in steps {
        st.set(&step.name(), Outcome::Running, None);
        details(&mut st, state);
        publish_progress(root, store, &st);
        let result = run_step(ctx, state, step);
        let go_on = record(&mut st, state, store, step, result);
        details(&mut st, state);
        if !go_on {
            break;
        }
    }
    publish(root, store, &st);
    st
}

/// What an operator compares with the engine: engine, CA and enrolment fingerprints, expiry.
fn details(st: &mut Status, state: &State) {
    st.engine = state.engine.clone();
    st.engine_source = state.engine_source.clone();
    st.ca_fingerprint = state
        .ca_pem
        .as_deref()
        .and_then(|pem| CaCert::from_pem(pem.as_bytes()).ok())
        .map(|ca| ca.sha256_pin().to_string());
    st.csr_fingerprint = state.csr_fingerprint.clone();
    st.cert_not_after = state.cert_not_after.clone();
}

/// Note a step's result in the status (and the checkpoint); false means stop here.
fn record(
    st: &mut Status,
    state: &mut State,
    store: &Store,
    step: Step,
    result: Result<StepResult>,
) -> bool {
    let name = step.name();
    match result {
        Ok(StepResult::Done) => record(
            st,
            state,
            store,
            step,
            Ok(StepResult::DoneWith(String::new())),
        ),
        Ok(StepResult::DoneWith(reason)) => {
            // Crash tests: a power cut after the step's work, before and after its checkpoint.
            crate::fault::point(format_args!("flow.{name}.done"));
            state.mark(step);
            if let Err(e) = state.save(store) {
                st.set(
                    &name,
                    Outcome::Failed,
                    Some(format!("cannot save the checkpoint: {e:#}")),
                );
                return false;
            }
            crate::fault::point(format_args!("flow.{name}.checkpointed"));
            // One line per checkpoint: the console's timeline (demo, boot benchmark).
            info!("step {name}: done");
            st.completed = state.completed.iter().map(Step::name).collect();
            st.set(&name, Outcome::Ok, Some(reason).filter(|r| !r.is_empty()));
            true
        }
        Ok(StepResult::Skipped(why)) => {
            info!("{name}: skipped: {why}");
            true
        }
        Ok(StepResult::Stop(outcome, reason)) => {
            // A stop can carry news for later runs (a rejection, a host to register again).
            if let Err(e) = state.save(store) {
                warn!("cannot save the checkpoint: {e:#}");
            }
            st.set(&name, outcome, Some(reason));
            false
        }
        Err(e) => {
            st.set(&name, Outcome::Failed, Some(format!("{e:#}")));
            false
        }
    }
}

/// The status file in /run and its copy in the store, made durable: a run's last word. A
/// failure to write either is logged, never fatal (the console banner still tells).
fn publish(root: &Root, store: &Store, st: &Status) {
    publish_as(root, store, st, StatusCopy::Durable);
}

/// [`publish`] while the run goes on: the store's copy is not synced. Losing it in a power
/// cut costs nothing (the checkpoint is what the next boot trusts, and the run's last
/// [`publish`] syncs its copy); two fsyncs less per step: 22 of the 71 a first boot made on
/// the store (docs/ARCHITECTURE.md, decisions).
fn publish_progress(root: &Root, store: &Store, st: &Status) {
    publish_as(root, store, st, StatusCopy::Unsynced);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StatusCopy {
    Durable,
    Unsynced,
}

fn publish_as(root: &Root, store: &Store, st: &Status, copy: StatusCopy) {
    if let Err(e) = status::write(root, st) {
        warn!("cannot write the status file: {e:#}");
    }
    let json = serde_json::to_string_pretty(st).unwrap_or_default();
    let written = match copy {
        StatusCopy::Durable => store.write_state(paths::STORE_STATUS_FILE, json.as_bytes(), 0o644),
        StatusCopy::Unsynced => {
            store.write_state_unsynced(paths::STORE_STATUS_FILE, json.as_bytes(), 0o644)
        }
    };
    if let Err(e) = written {
        warn!("cannot keep the status in the store: {e:#}");
    }
}

fn run_step(ctx: &StepContext, state: &mut State, step: Step) -> Result<StepResult> {
    if remaining(ctx).is_zero() {
        let timeout = ctx.loaded.config.reg.timeout;
        return Ok(StepResult::Stop(
            Outcome::Failed,
            format!("deadline of {timeout} (ovirt.reg.timeout) passed"),
        ));
    }
    match step {
        Step::Configured => configure::configured(ctx, state),
        Step::NetworkUp => network::network_up(ctx),
        Step::EngineFound => discover::engine_found(ctx, state),
        Step::ClockOk => clock::clock_ok(ctx, state),
        Step::EngineTrusted => trust::engine_trusted(ctx, state),
        Step::Registered => register::registered(ctx, state),
        Step::CsrSubmitted => enroll::csr_submitted(ctx, state),
        Step::Approved => enroll::approved(ctx, state),
        Step::CertsInstalled => install::certs_installed(ctx, state),
        Step::VdsmConfigured => install::vdsm_configured(ctx, state),
        Step::Done => Ok(StepResult::DoneWith(summary(state))),
    }
}

/// Time left of `ovirt.reg.timeout` for this run.
fn remaining(ctx: &StepContext) -> Duration {
    ctx.loaded
        .config
        .reg
        .timeout
        .duration()
        .saturating_sub(ctx.started.elapsed())
}

/// Largest configuration file, certificate or key we read back from the root tree.
const MAX_CONFIG_FILE: u64 = 1 << 20;

/// Rewrite a persisted file through the store (so a bind-mounted copy is updated too),
/// persisted when `batch` commits.
fn update_persisted(
    batch: &mut Batch,
    path: &str,
    mode: u32,
    edit: impl FnOnce(&str) -> String,
) -> Result<()> {
    let old = batch
        .root()
        .fs()
        .read_text(Path::new(path), MAX_CONFIG_FILE)?
        .unwrap_or_default();
    let new = edit(&old);
    batch
        .write(Path::new(path), new.as_bytes(), mode)
        .with_context(|| format!("writing {path}"))?;
    Ok(())
}

/// What the worker needs to reach the engine within what is left of the deadline: the
/// engine the checkpoint names and the retry policy of the settings.
fn net_settings(ctx: &StepContext, state: &State) -> Result<Net> {
    let engine = state
        .engine
        .as_deref()
        .context("no engine in the checkpoint")?;
    let addr: EngineAddr = engine
        .parse()
        .map_err(|e| anyhow::anyhow!("the engine {engine} in the checkpoint: expected {e}"))?;
    Ok(net_settings_for(ctx, &addr))
}

/// [`net_settings`] for an engine not (yet) in the checkpoint.
fn net_settings_for(ctx: &StepContext, addr: &EngineAddr) -> Net {
    Net {
        endpoint: Endpoint::new(addr, DEFAULT_ENGINE_PORT),
        policy: Policy {
            deadline: remaining(ctx),
            ..Policy::from_config(&ctx.loaded.config.reg)
        },
    }
}

fn ca_cert(pem: &str, what: &str) -> Result<CaCert> {
    CaCert::from_pem(pem.as_bytes()).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// The `done` status line: what an administrator compares with the engine.
fn summary(state: &State) -> String {
    format!(
        "enrolled with {} as {}; engine CA {}; keys {}; certificate valid until {}",
        state.engine.as_deref().unwrap_or("-"),
        state.registered_as.as_deref().unwrap_or("-"),
        ca_pin(state),
        state.csr_fingerprint.as_deref().unwrap_or("-"),
        state.cert_not_after.as_deref().unwrap_or("-")
    )
}
