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
use std::time::Instant;

use crate::config::Loaded;
use crate::legacy;
use crate::paths::{self, Root};
use crate::status::{self, Outcome, Status};
use crate::store::Store;

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
    pub engine: Option<String>,
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
}

/// What a step decided.
enum StepResult {
    Done,
    /// Stop here for this run, with a result and reason (not an error).
    Stop(Outcome, String),
}

/// Run the boot flow from the first step not checkpointed. Returns the final status; the
/// status file is kept up to date on the way.
pub fn boot(root: &Root, loaded: &Loaded, store: &Store) -> Status {
    let mut st = Status::start();
    let ctx = StepContext {
        root,
        loaded,
        store,
        started: Instant::now(),
    };
    let mut state = State::load(store);
    st.completed = state.completed.iter().map(Step::name).collect();
    for step in STEPS {
        st.set(&step.name(), Outcome::Running, None);
        publish(root, store, &st);
        match run_step(&ctx, &mut state, step) {
            Ok(StepResult::Done) => {
                state.mark(step);
                if let Err(e) = state.save(store) {
                    st.set(
                        &step.name(),
                        Outcome::Failed,
                        Some(format!("cannot save the checkpoint: {e:#}")),
                    );
                    break;
                }
                st.completed = state.completed.iter().map(Step::name).collect();
                st.set(&step.name(), Outcome::Ok, None);
            }
            Ok(StepResult::Stop(outcome, reason)) => {
                st.set(&step.name(), outcome, Some(reason));
                break;
            }
            Err(e) => {
                st.set(&step.name(), Outcome::Failed, Some(format!("{e:#}")));
                break;
            }
        }
    }
    publish(root, store, &st);
    st
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
    let timeout = ctx.loaded.config.reg.timeout.duration();
    if ctx.started.elapsed() > timeout {
        return Ok(StepResult::Stop(
            Outcome::Failed,
            format!(
                "deadline of {}s (ovirt.reg.timeout) passed",
                timeout.as_secs()
            ),
        ));
    }
    match step {
        Step::Configured => configured(ctx, state),
        _ => Ok(StepResult::Stop(
            Outcome::Waiting,
            format!(
                "stopped before {}: this build implements the steps up to configured",
                step.name()
            ),
        )),
    }
}

/// `configured`: the settings are valid; the legacy files the rest of the node reads
/// (`/etc/default/ovirt`, `vdsm-reg.conf`, `vdsm.id`) are written and persisted.
fn configured(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
    let loaded = ctx.loaded;
    if !loaded.errors.is_empty() {
        let list: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
        anyhow::bail!("invalid settings: {}", list.join("; "));
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
    let (id, _) = crate::identity::ensure(ctx.root)?;
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
    state.engine = Some(format!("{}:{}", engine.host, loaded.config.engine_port()));
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
