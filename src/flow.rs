//! The state machine (the "unified model"): resumable, idempotent steps, each checkpointed
//! in the store after it succeeds (`/config/ovirt-node-reg/state.json`).
//!
//! `configured → network_up → clock_ok → engine_trusted → registered → csr_submitted →
//! approved → certs_installed → vdsm_configured → done`. A reboot or a crash resumes at the
//! first step not checkpointed. After `registered` the node enrols with protocol v2
//! (docs/protocol-v2.md) when the engine speaks it; a stock engine deploys the host itself.

use anyhow::{Context, Result};
use log::{info, warn};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::clock;
use crate::config::Loaded;
use crate::engine::{Enrollment, Issued};
use crate::identity;
use crate::install::{self, Material, Owners};
use crate::legacy;
use crate::paths::{self, Root};
use crate::pki::{self, HostKey, Purpose};
use crate::secret::Secret;
use crate::status::{self, Outcome, Status};
use crate::store::Store;
use crate::trust::{self, CaCert, Pins, SshKey, Verified};
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
    /// The address the host registered with: what its certificates must name.
    #[serde(default)]
    pub address: Option<String>,
    /// `sha256:…` over both public keys, shown to the administrator (protocol-v2 §6).
    #[serde(default)]
    pub csr_fingerprint: Option<String>,
    /// What the engine signed, kept until installed (public material only).
    #[serde(default)]
    pub issued: Option<Issued>,
    /// `notAfter` of the installed vdsm certificate, RFC 3339.
    #[serde(default)]
    pub cert_not_after: Option<String>,
    /// The administrator's rejection: final until the engine or the registration changes.
    #[serde(default)]
    pub rejected: Option<String>,
    /// Re-enrol once this many per mille of the certificate's lifetime have passed; drawn
    /// once per certificate from 700–900 so hosts enrolled together do not renew together.
    #[serde(default)]
    pub renew_per_mille: Option<u16>,
    /// Enrolling again with the installed keys: always submit (a poll would only return the
    /// old certificates).
    #[serde(default)]
    pub renewing: bool,
    /// `ovirt-node-reg reenroll` asked for a new certificate (same keys).
    #[serde(default)]
    pub reenroll_requested: bool,
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
            self.forget_enrollment();
        }
        self.engine = Some(engine.to_string());
    }

    /// A new registration starts a new enrolment (the pending keys, if any, are kept: still
    /// one key pair per host until it is enrolled).
    fn forget_enrollment(&mut self) {
        self.completed.retain(|s| *s < Step::CsrSubmitted);
        self.csr_fingerprint = None;
        self.issued = None;
        self.rejected = None;
        self.renewing = false;
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

impl<'a> StepContext<'a> {
    /// A run starting now: `ovirt.reg.timeout` counts from here.
    fn new(root: &'a Root, loaded: &'a Loaded, store: &'a Store, debug: bool) -> Self {
        StepContext {
            root,
            loaded,
            store,
            started: Instant::now(),
            debug,
        }
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
    let opened = crate::config::load_warned(root, cmdline)
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
    if run == Run::Boot(Stage::Initramfs) {
        if let Err(e) = store.release() {
            warn!("releasing the config store for the real root: {e:#}");
        }
    }
    st
}

/// Where `boot` runs (design §4): the initramfs hook stops after `csr_submitted` so the boot
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
        publish(root, store, &st);
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
        Step::NetworkUp => network_up(ctx),
        Step::ClockOk => clock_ok(ctx, state),
        Step::EngineTrusted => engine_trusted(ctx, state),
        Step::Registered => registered(ctx, state),
        Step::CsrSubmitted => csr_submitted(ctx, state),
        Step::Approved => approved(ctx, state),
        Step::CertsInstalled => certs_installed(ctx, state),
        Step::VdsmConfigured => vdsm_configured(ctx, state),
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
    let old = ctx
        .root
        .fs()
        .read_text(Path::new(path), MAX_CONFIG_FILE)?
        .unwrap_or_default();
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
    let Reply::Trusted { ca_pem } = worker::run(&job, ctx.debug)? else {
        anyhow::bail!("the network worker answered the trust job with something else");
    };
    let ca = ca_cert(&ca_pem, "the engine CA the network worker fetched")?;
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
    let host = host_info(ctx, state)?;
    let job = Job::Register {
        net: net_settings(ctx, state),
        ca_pem,
        host: host.clone(),
    };
    let Reply::Registered { name, address } = worker::run(&job, ctx.debug)? else {
        anyhow::bail!("the network worker answered the register job with something else");
    };
    let (name, address) = registered_as(&host, name, address)?;
    state.registered_as = Some(format!("{name} ({address})"));
    state.address = Some(address);
    // The marker the stock node plugin checks, so it does not register a second time.
    let vars = [("OVIRT_NODE_REGISTER".to_string(), "True".to_string())];
    update_persisted(ctx, paths::DEFAULT_OVIRT, 0o644, |old| {
        legacy::render_default_ovirt(old, &vars)
    })?;
    Ok(StepResult::Done)
}

/// The name and address the worker says it registered, checked before they are kept: the
/// address goes into the certificate requests and the checkpoint, so it must be the one we
/// gave or else an IP address, and the name the one we asked for (else the address).
fn registered_as(host: &HostInfo, name: String, address: String) -> Result<(String, String)> {
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
fn clock_ok(ctx: &StepContext, state: &State) -> Result<StepResult> {
    let net = &ctx.loaded.config.net;
    let ntp = if net.ntp_off {
        Vec::new()
    } else {
        net.ntp.iter().map(|h| h.to_string()).collect()
    };
    // `configured` has recorded the engine in the state (state.engine) for every later step.
    // The clock is best effort (an unchecked clock is raised to the build time and warned
    // about): it gets a third of what is left, so an unreachable engine is reported by the
    // steps that need it, with their own error, before the deadline.
    let mut net = net_settings(ctx, state);
    net.deadline_ms /= 3;
    let job = Job::Clock { net, ntp };
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

// ------------------------------------------------------------------ enrolment (protocol v2)

/// The status of a host whose engine deploys certificates itself (stock oVirt, design §5).
pub const STOCK_ENGINE_REASON: &str = "registered, waiting for engine host deploy";

/// The pending private keys, in the store's private state until the certificates are
/// installed: a reboot or crash in between resumes with the same keys (one pair per
/// enrolment).
const PENDING_DIR: &str = "ovirt-node-reg/pending";
const PENDING_VDSM_KEY: &str = "ovirt-node-reg/pending/vdsmkey.pem";
const PENDING_QEMU_KEY: &str = "ovirt-node-reg/pending/qemukey.pem";

/// Largest configuration file, certificate or key we read back from the root tree.
const MAX_CONFIG_FILE: u64 = 1 << 20;

/// Time a poll may take; a wait that would end closer to the deadline is not started.
const POLL_MARGIN: Duration = Duration::from_secs(1);
/// The engine's `Retry-After` is clamped to this range (protocol-v2 §4).
const RETRY_AFTER_RANGE: (u64, u64) = (1, 300);

struct PendingKeys {
    vdsm: HostKey,
    qemu: HostKey,
    /// Read back from the store: an earlier run may have submitted them already.
    resumed: bool,
}

impl PendingKeys {
    fn load(store: &Store) -> Result<Option<PendingKeys>> {
        let (Some(vdsm), Some(qemu)) = (
            store.read_state(PENDING_VDSM_KEY)?,
            store.read_state(PENDING_QEMU_KEY)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(PendingKeys {
            vdsm: HostKey::from_pem(&Secret::new(vdsm))?,
            qemu: HostKey::from_pem(&Secret::new(qemu))?,
            resumed: true,
        }))
    }

    /// Generated here, in the root parent; only the CSRs go to the worker. Both are stored
    /// before anything is submitted, so nothing submitted is ever lost.
    fn load_or_generate(ctx: &StepContext) -> Result<PendingKeys> {
        if let Some(keys) = PendingKeys::load(ctx.store)? {
            return Ok(keys);
        }
        let kind = ctx.loaded.config.reg.key;
        let generate = || HostKey::generate(kind).with_context(|| format!("ovirt.reg.key={kind}"));
        let keys = PendingKeys {
            vdsm: generate()?,
            qemu: generate()?,
            resumed: false,
        };
        let store = ctx.store;
        store
            .make_state_dir(PENDING_DIR, 0o700)
            .context("making the pending key directory private")?;
        store.write_state(
            PENDING_QEMU_KEY,
            keys.qemu.private_pem().expose().as_bytes(),
            0o600,
        )?;
        store.write_state(
            PENDING_VDSM_KEY,
            keys.vdsm.private_pem().expose().as_bytes(),
            0o600,
        )?;
        crate::fault::point("flow.keys_written");
        Ok(keys)
    }

    fn remove(store: &Store) -> Result<()> {
        store
            .remove_state(PENDING_DIR)
            .context("removing the pending keys from the store")
    }
}

/// `csr_submitted`: on a v2 engine, the key pairs made (once) and both CSRs submitted; on a
/// stock engine the run stops here, the engine deploys the host over SSH.
fn csr_submitted(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
    if let Some(stop) = rejected(state) {
        return Ok(stop);
    }
    if let Some(why) = renewal_due(ctx.root, state) {
        info!("enrolling again with the same keys: {why}");
        stage_installed_keys(ctx)?;
        state.forget_enrollment();
        state.renewing = true;
    }
    if state.is_done(Step::CsrSubmitted) {
        return Ok(StepResult::Skipped(
            "certificate requests already submitted".into(),
        ));
    }
    let version = engine_version(ctx, state)?;
    if version < 2 {
        info!("the engine speaks host-register v{version}: it deploys this host itself");
        return Ok(StepResult::Stop(
            Outcome::Waiting,
            STOCK_ENGINE_REASON.into(),
        ));
    }
    let keys = PendingKeys::load_or_generate(ctx)?;
    let address = host_address(state)?;
    let vdsm = pki::csr(&keys.vdsm, &address, Purpose::Vdsm)?;
    let qemu = pki::csr(&keys.qemu, &address, Purpose::Qemu)?;
    let fp = pki::enrollment_fingerprint(&vdsm, &qemu);
    info!("enrolment fingerprint {fp}: compare it with the one the engine shows before approving");
    state.csr_fingerprint = Some(fp);
    let answer = match resumed_answer(ctx, state, &keys)? {
        Some(a) => a,
        None => submit(ctx, state, &vdsm.pem, &qemu.pem)?,
    };
    crate::fault::point("flow.csr_submitted");
    Ok(match progress(state, answer)? {
        Progress::Pending(_) | Progress::Approved => StepResult::Done,
        Progress::Stop(stop) => stop,
    })
}

/// `get-version` over the pinned connection, asked on every run until enrolled: an engine
/// upgraded to v2 is then noticed.
fn engine_version(ctx: &StepContext, state: &State) -> Result<u32> {
    let job = Job::Version {
        net: net_settings(ctx, state),
        ca_pem: trusted_ca(state)?,
    };
    match worker::run(&job, ctx.debug)? {
        Reply::Version { version } if version >= 1 => Ok(version),
        _ => anyhow::bail!("the network worker answered the version job with something else"),
    }
}

/// After a crash the engine may hold these keys already: a poll sends no CSR and no token.
/// `None`: submit (new keys, a renewal, or the engine never got them).
fn resumed_answer(
    ctx: &StepContext,
    state: &State,
    keys: &PendingKeys,
) -> Result<Option<Enrollment>> {
    if !keys.resumed || state.renewing {
        return Ok(None);
    }
    let answer = poll(ctx, state)?;
    Ok(Some(answer).filter(|a| !matches!(a, Enrollment::NoEnrollment { .. })))
}

fn submit(ctx: &StepContext, state: &State, vdsm_csr: &str, qemu_csr: &str) -> Result<Enrollment> {
    let job = Job::SubmitCsr {
        net: net_settings(ctx, state),
        ca_pem: trusted_ca(state)?,
        unique_id: unique_id(state)?,
        vdsm_csr: vdsm_csr.to_string(),
        qemu_csr: qemu_csr.to_string(),
        // Approved keys are signed again without one (protocol-v2 §6); it may be used up.
        token: if state.renewing {
            None
        } else {
            enrollment_token(ctx)?
        },
    };
    enrollment_reply(worker::run(&job, ctx.debug)?)
}

fn poll(ctx: &StepContext, state: &State) -> Result<Enrollment> {
    let job = Job::PollCerts {
        net: net_settings(ctx, state),
        ca_pem: trusted_ca(state)?,
        unique_id: unique_id(state)?,
    };
    enrollment_reply(worker::run(&job, ctx.debug)?)
}

fn enrollment_reply(reply: Reply) -> Result<Enrollment> {
    match reply {
        Reply::Enrollment { answer } => Ok(answer),
        _ => anyhow::bail!("the network worker answered the enrolment job with something else"),
    }
}

/// What an answer means for the flow.
enum Progress {
    Pending(u64),
    /// The certificates are in `state.issued`.
    Approved,
    Stop(StepResult),
}

fn progress(state: &mut State, answer: Enrollment) -> Result<Progress> {
    let answer = sane_answer(answer)?;
    let ours = state.csr_fingerprint.clone().unwrap_or_default();
    let check = |theirs: &Option<String>| {
        match theirs {
        Some(t) if *t != ours => anyhow::bail!(
            "the engine holds other keys for this host ({t}, ours {ours}): remove the host in the engine and register again"
        ),
        _ => Ok(()),
    }
    };
    let failed = |reason: String| Progress::Stop(StepResult::Stop(Outcome::Failed, reason));
    Ok(match answer {
        Enrollment::Pending {
            fingerprint,
            retry_after_secs,
        } => {
            check(&fingerprint)?;
            Progress::Pending(retry_after_secs)
        }
        Enrollment::Approved {
            fingerprint,
            issued,
        } => {
            check(&fingerprint)?;
            state.issued = Some(issued);
            Progress::Approved
        }
        Enrollment::Rejected { reason } => {
            let stop = failed(format!("rejected by engine: {reason}"));
            state.rejected = Some(reason);
            stop
        }
        Enrollment::TokenRefused { reason } => failed(format!(
            "the engine refused the enrolment token: {reason} (fix or drop ovirt.reg.token_file / ovirt.reg.token)"
        )),
        Enrollment::UnknownHost { reason } => {
            state.completed.retain(|s| *s < Step::Registered);
            failed(format!("{reason}: the next run registers this host again"))
        }
        Enrollment::NoEnrollment { reason } => {
            state.completed.retain(|s| *s < Step::CsrSubmitted);
            failed(format!("{reason}: the next run submits again"))
        }
        Enrollment::StockEngine => Progress::Stop(StepResult::Stop(
            Outcome::Waiting,
            STOCK_ENGINE_REASON.into(),
        )),
        Enrollment::Refused { code, reason } => {
            anyhow::bail!("the engine refused the enrolment (HTTP {code}): {reason}")
        }
    })
}

/// The worker's account of an answer, checked again here: the engine's reasons reach the
/// console as one printable line, and approved material must have the right form.
fn sane_answer(answer: Enrollment) -> Result<Enrollment> {
    let clean = |r: String| crate::engine::clean_reason(Some(&r));
    Ok(match answer {
        Enrollment::Approved {
            fingerprint,
            issued,
        } => {
            issued
                .check()
                .context("the approved answer the network worker handed over")?;
            Enrollment::Approved {
                fingerprint: fingerprint.map(clean),
                issued,
            }
        }
        Enrollment::Pending {
            fingerprint,
            retry_after_secs,
        } => Enrollment::Pending {
            fingerprint: fingerprint.map(clean),
            retry_after_secs,
        },
        Enrollment::Rejected { reason } => Enrollment::Rejected {
            reason: clean(reason),
        },
        Enrollment::TokenRefused { reason } => Enrollment::TokenRefused {
            reason: clean(reason),
        },
        Enrollment::UnknownHost { reason } => Enrollment::UnknownHost {
            reason: clean(reason),
        },
        Enrollment::NoEnrollment { reason } => Enrollment::NoEnrollment {
            reason: clean(reason),
        },
        Enrollment::Refused { code, reason } => Enrollment::Refused {
            code,
            reason: clean(reason),
        },
        Enrollment::StockEngine => Enrollment::StockEngine,
    })
}

/// A rejection is final: later runs stop at once, without asking the engine again.
fn rejected(state: &State) -> Option<StepResult> {
    let reason = state.rejected.as_ref()?;
    Some(StepResult::Stop(
        Outcome::Failed,
        format!("rejected by engine: {reason}"),
    ))
}

/// `approved`: poll with the engine's jittered `Retry-After` until approved, bounded by the
/// run's deadline (`ovirt.reg.timeout`); still pending then is not a failure: the boot goes
/// on and a later run resumes here.
fn approved(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
    if let Some(stop) = rejected(state) {
        return Ok(stop);
    }
    if state.is_done(Step::Approved) {
        return Ok(StepResult::Skipped("already approved".into()));
    }
    let mut jitter = crate::retry::Jitter::from_os();
    let mut announced = false;
    let approval_until = Instant::now() + ctx.loaded.config.reg.approval_timeout.duration();
    while state.issued.is_none() {
        let retry_after = match progress(state, poll(ctx, state)?)? {
            Progress::Pending(secs) => secs,
            Progress::Approved => break,
            Progress::Stop(stop) => return Ok(stop),
        };
        if !announced {
            info!("{}", waiting_reason(state));
            note(ctx, waiting_reason(state));
            announced = true;
        }
        let wait = pace(retry_after, &mut jitter);
        let left = remaining(ctx).min(approval_until.saturating_duration_since(Instant::now()));
        if left < wait + POLL_MARGIN {
            return Ok(StepResult::Stop(Outcome::Waiting, waiting_reason(state)));
        }
        std::thread::sleep(wait);
    }
    crate::fault::point("flow.approved");
    Ok(StepResult::Done)
}

/// Put `reason` in the status while the step still runs: an operator asking `status` during
/// a long wait needs the fingerprint to compare with the engine's.
fn note(ctx: &StepContext, reason: String) {
    if let Ok(Some(mut st)) = status::read(ctx.root) {
        st.reason = Some(reason);
        st.updated_at = status::now_rfc3339();
        publish(ctx.root, ctx.store, &st);
    }
}

/// `Retry-After` clamped to 1–300 s, ±20 %: PXE-booted hosts must not poll in step.
fn pace(retry_after_secs: u64, jitter: &mut crate::retry::Jitter) -> Duration {
    let secs = retry_after_secs.clamp(RETRY_AFTER_RANGE.0, RETRY_AFTER_RANGE.1);
    let base = Duration::from_secs(secs);
    base - base / 5 + jitter.up_to(base * 2 / 5)
}

fn waiting_reason(state: &State) -> String {
    format!(
        "waiting for approval on the engine {}: enrolment fingerprint {}; engine CA {}; a later run resumes here",
        state.engine.as_deref().unwrap_or("-"),
        state.csr_fingerprint.as_deref().unwrap_or("-"),
        ca_pin(state)
    )
}

/// `certs_installed`: each certificate checked against its key, its CA (the pinned one for
/// vdsm) and this host's address, then the files of ovirt-protocol.md §5.4 installed.
fn certs_installed(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
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
    let ca_pem = trusted_ca(state)?;
    let pinned = ca_cert(&ca_pem, "the pinned engine CA")?;
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
    let not_after = status::rfc3339(u64::try_from(vdsm.validity.not_after).unwrap_or(0));
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

/// Why an enrolled host must enrol again (design §4): its certificate passed its renewal
/// point, or the engine CA now trusted is not the installed one. Local files only: a boot
/// with nothing due sends nothing.
fn renewal_due(root: &Root, state: &State) -> Option<String> {
    if !state.is_done(Step::Done) {
        return None;
    }
    if state.reenroll_requested {
        return Some("requested by ovirt-node-reg reenroll".into());
    }
    let read = |p: &str| root.fs().read_text(Path::new(p), MAX_CONFIG_FILE).ok()?;
    let cert = read(install::VDSM_CERT)?;
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
    let installed_ca = read(install::VDSM_CA)?;
    (Some(installed_ca.trim()) != state.ca_pem.as_deref().map(str::trim))
        .then(|| "the engine CA changed".to_string())
}

/// The installed keys become the pending ones again: re-enrolment never re-keys.
fn stage_installed_keys(ctx: &StepContext) -> Result<()> {
    ctx.store
        .make_state_dir(PENDING_DIR, 0o700)
        .context("making the pending key directory private")?;
    for (installed, pending) in [
        (install::VDSM_KEY, PENDING_VDSM_KEY),
        (install::QEMU_KEY, PENDING_QEMU_KEY),
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

fn ca_cert(pem: &str, what: &str) -> Result<CaCert> {
    CaCert::from_pem(pem.as_bytes()).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// `vdsm_configured`: `vdsm.conf` as the engine asked, the core-dump pattern, and the
/// pending key material removed (the installed copies are the keys now).
fn vdsm_configured(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
    if state.is_done(Step::VdsmConfigured) {
        return Ok(StepResult::Skipped("vdsm already configured".into()));
    }
    let issued = state
        .issued
        .as_ref()
        .context("no engine settings in the checkpoint")?;
    update_persisted(ctx, install::VDSM_CONF, 0o644, |old| {
        install::render_vdsm_conf(old, issued.management_port, issued.ssl)
    })?;
    ctx.store
        .write_persisted(
            Path::new(install::CORE_SYSCTL),
            install::core_sysctl().as_bytes(),
            0o644,
        )
        .context("writing the core-dump sysctl")?;
    if ctx.root.is_system() {
        // Now, for this boot; the drop-in keeps it for the next ones.
        if let Err(e) = std::fs::write("/proc/sys/kernel/core_pattern", install::CORE_PATTERN) {
            warn!("cannot set kernel.core_pattern: {e}");
        }
    }
    crate::fault::point("flow.vdsm_configured");
    PendingKeys::remove(ctx.store)?;
    Ok(StepResult::Done)
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

fn ca_pin(state: &State) -> String {
    state
        .ca_pem
        .as_deref()
        .and_then(|pem| CaCert::from_pem(pem.as_bytes()).ok())
        .map_or_else(|| "-".to_string(), |ca| ca.sha256_pin().to_string())
}

fn trusted_ca(state: &State) -> Result<String> {
    state
        .ca_pem
        .clone()
        .context("no trusted engine CA in the checkpoint")
}

fn unique_id(state: &State) -> Result<String> {
    state
        .unique_id
        .clone()
        .context("no host id in the checkpoint")
}

/// The registered address; checkpoints written before it was kept hold it in
/// `registered_as` ("name (address)").
fn host_address(state: &State) -> Result<String> {
    let from_name = || {
        let r = state.registered_as.as_deref()?;
        let inner = r.rsplit_once(" (")?.1.strip_suffix(')')?;
        Some(inner.to_string())
    };
    state
        .address
        .clone()
        .or_else(from_name)
        .context("no registered address in the checkpoint")
}

/// The enrolment token: `ovirt.reg.token_file` (read here, by root), else `ovirt.reg.token`,
/// else the legacy `ticket`. Sent only to the pinned engine, never logged.
fn enrollment_token(ctx: &StepContext) -> Result<Option<Secret>> {
    let reg = &ctx.loaded.config.reg;
    if let Some(file) = &reg.token_file {
        return read_token_file(&ctx.root.join(file), file).map(Some);
    }
    Ok(reg.token.clone().or_else(|| reg.ticket.clone()))
}

/// A token file others could read (or write) is refused: the token would not be secret.
/// Owner: root, or our own user when not root (a test run).
fn read_token_file(path: &Path, shown: &str) -> Result<Secret> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("ovirt.reg.token_file {shown}"))?;
    let mode = meta.mode() & 0o7777;
    let owner = rustix::process::geteuid().as_raw();
    anyhow::ensure!(
        meta.is_file() && matches!(mode, 0o600 | 0o400) && meta.uid() == owner,
        "ovirt.reg.token_file {shown}: refused: must be a regular file owned by uid {owner} with mode 0600 or 0400 (is {mode:04o}, uid {})",
        meta.uid()
    );
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(std::fs::File::open(path)?, 4096),
        &mut text,
    )
    .with_context(|| format!("reading ovirt.reg.token_file {shown}"))?;
    let token = text.trim();
    let printable = token.bytes().all(|b| b.is_ascii_graphic());
    anyhow::ensure!(
        printable && (1..=512).contains(&token.len()),
        "ovirt.reg.token_file {shown}: not a token (1 to 512 printable characters without spaces)"
    );
    Ok(Secret::new(token))
}

/// `network_up`: every boot, on the real machine, when the command line says how
/// (`ip=`, `BOOTIF=`, `ovirt.reg.nic=`); otherwise the network is the one the system set up.
/// Never under `--root`: netlink would change this machine's links, not the tree's.
/// Runs in the root parent: links, addresses and routes need CAP_NET_ADMIN.
fn network_up(ctx: &StepContext) -> Result<StepResult> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_file_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "  abcdefghijklmnop0123\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_token_file(&p, "/t").unwrap_err().to_string();
        assert!(e.contains("refused") && !e.contains("abcdefgh"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_token_file(&p, "/t").unwrap().expose(),
            "abcdefghijklmnop0123"
        );
        std::fs::write(&p, "two words").unwrap();
        let e = read_token_file(&p, "/t").unwrap_err().to_string();
        assert!(!e.contains("words"), "{e}");
    }

    #[test]
    fn a_hostile_checkpoint_is_refused_not_trusted_nor_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        std::fs::create_dir_all(root.join("/config/ovirt-node-reg")).unwrap();
        let store = Store::open(&root, Some("/config")).unwrap();
        let good = State {
            completed: vec![Step::Configured, Step::Registered],
            ..State::default()
        };
        let state_file = root.join("/config").join(paths::STATE_FILE);
        let deep = "[".repeat(100_000);
        let huge = format!("{{\"completed\": [], \"x\": \"{}\"}}", "a".repeat(2 << 20));
        for hostile in [
            "{\"completed\": 5, \"updated_at\": []}",
            "{\"completed\": [\"no_such_step\"], \"updated_at\": \"\"}",
            deep.as_str(),
            huge.as_str(),
            "\u{0}\u{ff}",
        ] {
            std::fs::write(&state_file, hostile).unwrap();
            assert_eq!(State::load(&store), State::default());
        }
        // A checkpoint reached through a planted `ovirt-node-reg -> ../etc` is not read.
        std::fs::remove_dir_all(root.join("/config/ovirt-node-reg")).unwrap();
        std::fs::create_dir_all(root.join("/etc")).unwrap();
        let json = serde_json::to_string(&good).unwrap();
        std::fs::write(root.join("/etc/state.json"), &json).unwrap();
        std::os::unix::fs::symlink("../etc", root.join("/config/ovirt-node-reg")).unwrap();
        assert_eq!(State::load(&store), State::default());
        let e = format!("{:#}", good.clone().save(&store).unwrap_err());
        assert!(e.contains("ovirt-node-reg: is a symbolic link"), "{e}");
        assert_eq!(
            std::fs::read_to_string(root.join("/etc/state.json")).unwrap(),
            json
        );
    }

    #[test]
    fn polling_is_clamped_and_jittered() {
        let mut j = crate::retry::Jitter::seeded(7);
        for (ra, lo, hi) in [(0, 800, 1200), (5, 4000, 6000), (100_000, 240_000, 360_000)] {
            let ms = pace(ra, &mut j).as_millis();
            assert!((lo..=hi).contains(&ms), "{ra}: {ms}");
        }
    }

    #[test]
    fn answers_move_the_flow() {
        let mut state = State {
            csr_fingerprint: Some("sha256:aa".into()),
            completed: STEPS[..6].to_vec(),
            ..State::default()
        };
        let pending = |fp: &str| Enrollment::Pending {
            fingerprint: Some(fp.into()),
            retry_after_secs: 3,
        };
        assert!(matches!(
            progress(&mut state, pending("sha256:aa")),
            Ok(Progress::Pending(3))
        ));
        let e = progress(&mut state, pending("sha256:bb"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("other keys for this host (sha256:bb, ours sha256:aa)"),
            "{e}"
        );
        let Ok(Progress::Stop(StepResult::Stop(Outcome::Failed, why))) = progress(
            &mut state,
            Enrollment::Rejected {
                reason: "no".into(),
            },
        ) else {
            panic!("a rejection stops")
        };
        assert_eq!(why, "rejected by engine: no");
        assert_eq!(state.rejected.as_deref(), Some("no"));
        let gone = Enrollment::UnknownHost {
            reason: "unknown".into(),
        };
        assert!(matches!(progress(&mut state, gone), Ok(Progress::Stop(_))));
        assert!(!state.is_done(Step::Registered), "registers again next run");
    }

    #[test]
    fn address_from_an_older_checkpoint() {
        let state = State {
            registered_as: Some("node1 (a b) (192.0.2.7)".into()),
            ..State::default()
        };
        assert_eq!(host_address(&state).unwrap(), "192.0.2.7");
    }
}
