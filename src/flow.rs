//! The state machine (the "unified model"): resumable, idempotent steps, each checkpointed
//! in the store after it succeeds (`/config/ovirt-node-reg/state.json`).
//!
//! `configured → network_up → clock_ok → engine_trusted → registered → csr_submitted →
//! approved → certs_installed → vdsm_configured → done`. A reboot or a crash resumes at the
//! first step not checkpointed. Steps not built yet stop the run with a clear status.

use anyhow::{Context, Result};
use log::{info, warn};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::clock;
use crate::config::Loaded;
use crate::identity;
use crate::legacy;
use crate::paths::{self, Root};
use crate::status::{self, Outcome, Status};
use crate::store::Store;
use crate::trust::{self, CaCert, Pins, SshKey};
use crate::worker::{self, HostInfo, Job, Net, Reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Configured,
    NetworkUp,
    ClockOk,
    EngineTrusted,
    Registered,
    CsrSubmitted,
    Approved,
    CertsInstalled,
    VdsmConfigured,
    Done,
}

pub const STEPS: [Step; 10] = [
    Step::Configured,
    Step::NetworkUp,
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

/// The checkpoint kept in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub completed: Vec<Step>,
    pub unique_id: Option<String>,
    /// `HOST:PORT` of the engine the later steps were done with.
    pub engine: Option<String>,
    /// The engine CA (PEM) verified in `engine_trusted`.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// The name and address the engine knows this host by.
    #[serde(default)]
    pub registered_as: Option<String>,
    pub updated_at: String,
}

impl State {
    /// The checkpoint, or a fresh state when there is none. A damaged checkpoint is not
    /// trusted: it is reported and the run starts over (every step is idempotent).
    pub fn load(store: &Store) -> State {
        match store.read_state(paths::STATE_FILE) {
            Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_else(|e| {
                warn!("ignoring damaged checkpoint {}: {e}", paths::STATE_FILE);
                State::default()
            }),
            Ok(None) => State::default(),
            Err(e) => {
                warn!("cannot read checkpoint: {e:#}");
                State::default()
            }
        }
    }

    pub fn save(&mut self, store: &Store) -> Result<()> {
        self.updated_at = status::now_rfc3339();
        let json = serde_json::to_string_pretty(self).context("encoding the checkpoint")?;
        store.write_state(paths::STATE_FILE, json.as_bytes(), 0o600)
    }

    pub fn is_done(&self, step: Step) -> bool {
        self.completed.contains(&step)
    }

    /// Forget every step after `configured`: a new engine means trusting and registering
    /// again (design §4: re-registration only when the engine changes).
    fn reset_for_engine(&mut self, engine: &str) {
        if self.engine.as_deref().is_some_and(|e| e != engine) {
            info!(
                "engine changed from {} to {engine}: trusting and registering again",
                self.engine.as_deref().unwrap_or("-")
            );
            self.completed.retain(|s| *s == Step::Configured);
            self.ca_pem = None;
            self.registered_as = None;
        }
        self.engine = Some(engine.to_string());
    }

    fn mark(&mut self, step: Step) {
        if !self.is_done(step) {
            self.completed.push(step);
        }
    }
}

/// Everything a step needs.
pub struct StepContext<'a> {
    pub root: &'a Root,
    pub loaded: &'a Loaded,
    pub store: &'a Store,
    pub started: Instant,
    /// Pass `--debug` on to the network worker.
    pub debug: bool,
}

/// What a step decided.
enum StepResult {
    Done,
    /// Nothing to do in this build or this boot; not checkpointed.
    Skipped(String),
    /// Stop here for this run, with a result and reason (not an error).
    Stop(Outcome, String),
}

/// Run the boot flow from the first step not checkpointed. Returns the final status; the
/// status file is kept up to date on the way.
pub fn boot(root: &Root, loaded: &Loaded, store: &Store, debug: bool) -> Status {
    let ctx = StepContext {
        root,
        loaded,
        store,
        started: Instant::now(),
        debug,
    };
    let mut state = State::load(store);
    run_steps(&ctx, &mut state, &STEPS)
}

/// `ovirt-node-reg register`: trust and register again on an installed host, because the
/// operator asked (the only case besides a new engine where `register` is sent again).
pub fn register(root: &Root, loaded: &Loaded, store: &Store, debug: bool) -> Status {
    let ctx = StepContext {
        root,
        loaded,
        store,
        started: Instant::now(),
        debug,
    };
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
    let engine = cfg
        .reg
        .engine
        .as_ref()
        .context("no engine: give --engine HOST[:PORT]")?;
    let (id, _) = identity::ensure(ctx.root)?;
    ctx.store
        .persist(Path::new(paths::VDSM_ID))
        .context("persisting the host id")?;
    state.unique_id = Some(id.unique_id);
    state.reset_for_engine(&format!("{}:{}", engine.host, cfg.engine_port()));
    state.completed.retain(|s| *s != Step::Registered);
    Ok(())
}

/// Run `steps` in order, checkpointing each one done; stop at the first that stops.
fn run_steps(ctx: &StepContext, state: &mut State, steps: &[Step]) -> Status {
    let (root, store) = (ctx.root, ctx.store);
    let mut st = Status::start();
    st.completed = state.completed.iter().map(Step::name).collect();
    for &step in steps {
        st.set(&step.name(), Outcome::Running, None);
        publish(root, store, &st);
        let result = run_step(ctx, state, step);
        if !record(&mut st, state, store, step, result) {
            break;
        }
    }
    publish(root, store, &st);
    st
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
        Ok(StepResult::Done) => {
            state.mark(step);
            if let Err(e) = state.save(store) {
                st.set(
                    &name,
                    Outcome::Failed,
                    Some(format!("cannot save the checkpoint: {e:#}")),
                );
                return false;
            }
            st.completed = state.completed.iter().map(Step::name).collect();
            st.set(&name, Outcome::Ok, None);
            true
        }
        Ok(StepResult::Skipped(why)) => {
            info!("{name}: skipped: {why}");
            true
        }
        Ok(StepResult::Stop(outcome, reason)) => {
            st.set(&name, outcome, Some(reason));
            false
        }
        Err(e) => {
            st.set(&name, Outcome::Failed, Some(format!("{e:#}")));
            false
        }
    }
}

/// The status file in /run and its copy in the store; a failure to write either is
/// logged, never fatal (the console banner still tells).
fn publish(root: &Root, store: &Store, st: &Status) {
    if let Err(e) = status::write(root, st) {
        warn!("cannot write the status file: {e:#}");
    }
    let json = serde_json::to_string_pretty(st).unwrap_or_default();
    if let Err(e) = store.write_state(paths::STORE_STATUS_FILE, json.as_bytes(), 0o644) {
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
        Step::Configured => configured(ctx, state),
        Step::NetworkUp => Ok(StepResult::Skipped(
            "this build uses the network as the system set it up".into(),
        )),
        Step::ClockOk => clock_ok(ctx),

        Step::EngineTrusted => engine_trusted(ctx, state),
        Step::Registered => registered(ctx, state),
        _ => Ok(StepResult::Stop(
            Outcome::Waiting,
            format!(
                "registered with {} as {}: waiting for the engine to approve the host and deploy it over SSH (host-register v1)",
                state.engine.as_deref().unwrap_or("-"),
                state.registered_as.as_deref().unwrap_or("-")
            ),
        )),
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

/// `configured`: the settings are valid; the legacy files the rest of the node reads
/// (`/etc/default/ovirt`, `vdsm-reg.conf`, `vdsm.id`) are written and persisted.
fn configured(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
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
    write_legacy_files(ctx)?;
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

/// Rewrite a persisted file through the store (so a bind-mounted copy is updated too).
fn update_persisted(
    ctx: &StepContext,
    path: &str,
    mode: u32,
    edit: impl FnOnce(&str) -> String,
) -> Result<()> {
    let old = crate::fsutil::read_optional(&ctx.root.join(path))?.unwrap_or_default();
    let new = edit(&old);
    ctx.store
        .write_persisted(Path::new(path), new.as_bytes(), mode)
        .with_context(|| format!("writing {path}"))?;
    Ok(())
}

/// `engine_trusted`: the engine CA, fetched by the worker and matching the pins. A CA kept
/// from an earlier boot is checked against today's pins, not fetched again.
fn engine_trusted(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
    let reg = &ctx.loaded.config.reg;
    let stored = trust::stored_pin(ctx.store)?;
    let pins = Pins::from_config(reg, stored.clone());
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
    let job = Job::Trust {
        net: net_settings(ctx, state),
        pins: reg.ca_pins.iter().map(|p| p.to_string()).collect(),
        sha1: reg.ca_sha1.as_ref().map(|p| p.to_string()),
        stored: stored.map(|p| p.to_string()),
        insecure_tofu: reg.insecure_tofu,
    };
    let Reply::Trusted { ca_pem, first_use } = worker::run(&job, ctx.debug)? else {
        anyhow::bail!("the network worker answered the trust job with something else");
    };
    let ca =
        CaCert::from_pem(ca_pem.as_bytes()).map_err(|e| anyhow::anyhow!("the worker's CA: {e}"))?;
    if first_use {
        trust::store_pin(ctx.store, &ca.sha256_pin())?;
    }
    // Where vdsm-tool register leaves it, for tools that look there.
    let ca_path = Path::new(paths::ENGINE_CA_PEM);
    ctx.store
        .write_persisted(ca_path, ca_pem.as_bytes(), 0o644)
        .context("installing the engine CA")?;
    info!("engine CA {} trusted", ca.sha256_pin());
    state.ca_pem = Some(ca_pem);
    Ok(StepResult::Done)
}

/// `registered`: the engine's SSH key installed for root, then `register` sent. Never
/// sent twice for the same engine: once checkpointed, later boots skip it.
fn registered(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
    if state.is_done(Step::Registered) {
        return Ok(StepResult::Skipped(
            "already registered; not registering again".into(),
        ));
    }
    let ca_pem = state
        .ca_pem
        .clone()
        .context("no trusted engine CA in the checkpoint")?;
    let job = Job::SshKey {
        net: net_settings(ctx, state),
        ca_pem: ca_pem.clone(),
    };
    let Reply::SshKey { line } = worker::run(&job, ctx.debug)? else {
        anyhow::bail!("the network worker answered the SSH key job with something else");
    };
    let key = SshKey::parse(&line).map_err(|e| anyhow::anyhow!("the engine SSH key: {e}"))?;
    trust::install_ssh_key(ctx.store, &key).context("installing the engine SSH key")?;
    let job = Job::Register {
        net: net_settings(ctx, state),
        ca_pem,
        host: host_info(ctx, state)?,
    };
    let Reply::Registered { name, address } = worker::run(&job, ctx.debug)? else {
        anyhow::bail!("the network worker answered the register job with something else");
    };
    state.registered_as = Some(format!("{name} ({address})"));
    // The marker the stock node plugin checks, so it does not register a second time.
    let vars = [("OVIRT_NODE_REGISTER".to_string(), "True".to_string())];
    update_persisted(ctx, paths::DEFAULT_OVIRT, 0o644, |old| {
        legacy::render_default_ovirt(old, &vars)
    })?;
    Ok(StepResult::Done)
}

/// What the worker needs to reach the engine within what is left of the deadline.
fn net_settings(ctx: &StepContext, state: &State) -> Net {
    let reg = &ctx.loaded.config.reg;
    Net {
        engine: state.engine.clone().unwrap_or_default(),
        deadline_ms: remaining(ctx).as_millis() as u64,
        retry_base_ms: reg.retry_base.0 * 1000,
        retry_cap_ms: reg.retry_cap.0 * 1000,
    }
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

/// `clock_ok`: every boot, before any certificate is checked. The worker measures the
/// offset (SNTP to `ntp=`, else the engine's `Date`); the parent sets the clock, never below
/// the build time. Under `--root` the machine's clock is left alone (dry run).
fn clock_ok(ctx: &StepContext) -> Result<StepResult> {
    let net = &ctx.loaded.config.net;
    let ntp = if net.ntp_off {
        Vec::new()
    } else {
        net.ntp.iter().map(|h| h.to_string()).collect()
    };
    let engine = ctx
        .loaded
        .config
        .reg
        .engine
        .as_ref()
        .context("no engine configured")?;
    let job = Job::Clock {
        net: Net {
            engine: format!("{}:{}", engine.host, ctx.loaded.config.engine_port()),
            ..net_settings(ctx, &State::default())
        },
        ntp,
    };
    let Reply::Clock { observation, error } = worker::run(&job, ctx.debug)? else {
        anyhow::bail!("the network worker answered the clock job with something else");
    };
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
