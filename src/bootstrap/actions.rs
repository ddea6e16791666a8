//! The actions of `bootstrap`, once every check passed: the settings saved as `setup` saves
//! them (`/etc/default/ovirt`, `vdsm-reg.conf`), the token kept 0600, then the registration
//! flow's own steps (`flow::boot`): the bridge only with `--bridge`, the clock, the engine
//! trusted and its SSH key installed, the v2 enrolment with the token (CSR, certificates,
//! `vdsm.conf`, core dumps), `done` (the seed's `vds_bootstrap_complete`). On an oVirt Node
//! the same flow is the node's own, with its config store; on a host the store is found or
//! none (files in place).

use anyhow::{Context, Result};
use std::io::Read;
use std::path::Path;

use crate::config::{Loaded, RawSetting, Source};
use crate::flow::{self, Overrides, Stage};
use crate::paths::{Root, BOOTSTRAP_TOKEN};
use crate::status::{Outcome, Status};
use crate::store::Store;

use super::report::{Line, Report};
use super::{Options, EXIT_ACTIONS_FAILED, EXIT_OK, EXIT_WAITING};

/// A token is at most this long (the enrolment step's own limit is 512 characters).
const MAX_TOKEN: u64 = 4096;

pub(super) fn run(
    report: &mut Report,
    root: &Root,
    cmdline: &Path,
    opts: &Options,
    node: bool,
    debug: bool,
) -> u8 {
    let prepared = prepare(root, cmdline, opts);
    let (loaded, store) = match prepared {
        Ok(x) => x,
        Err(e) => {
            report.add(Line::fail("action:configure", format!("{e:#}")));
            return EXIT_ACTIONS_FAILED;
        }
    };
    report.add(Line::ok("mode", mode(node, &store)));
    if opts.token_file.as_deref() == Some("-") {
        if let Err(e) = keep_token(&store) {
            report.add(Line::fail("action:token", format!("{e:#}")));
            return EXIT_ACTIONS_FAILED;
        }
        report.add(Line::ok(
            "action:token",
            format!("kept in {BOOTSTRAP_TOKEN} (0600)"),
        ));
    }
    let st = flow::boot(root, &loaded, &store, debug, Stage::System);
    outcome(report, &st)
}

fn mode(node: bool, store: &Store) -> String {
    let what = if node {
        "oVirt Node: the node's own registration flow"
    } else {
        "host: the registration flow"
    };
    format!("{what}; {}", store.describe())
}

/// The settings of the root with the bootstrap's on top, saved like `setup`'s answers; the
/// store they are written through.
fn prepare(root: &Root, cmdline: &Path, opts: &Options) -> Result<(Loaded, Store)> {
    let over = Overrides {
        engine: None,
        store: opts.store.as_deref(),
    };
    let mut loaded = flow::load_with(root, cmdline, over)?;
    loaded.apply_layer(Source::Setup, &settings(opts));
    anyhow::ensure!(
        loaded.errors.is_empty(),
        "invalid settings: {}",
        loaded.error_summary()
    );
    let store = flow::open_store(root, &loaded)?;
    Ok((loaded, store))
}

fn settings(opts: &Options) -> Vec<RawSetting> {
    let mut out = vec![
        RawSetting::new("management_server", Some(&opts.engine)),
        RawSetting::new("ovirt.reg.ca_pin", Some(&opts.ca_pin)),
    ];
    let token_file = match opts.token_file.as_deref() {
        Some("-") => Some(BOOTSTRAP_TOKEN),
        other => other,
    };
    if let Some(f) = token_file {
        out.push(RawSetting::new("ovirt.reg.token_file", Some(f)));
    }
    if let Some(nic) = &opts.bridge {
        out.push(RawSetting::new("ovirt.reg.nic", Some(nic)));
    }
    out
}

/// `--token-file -`: the token from stdin (the engine's SSH session), kept 0600 where
/// `ovirt.reg.token_file` names it; never in the process's arguments.
fn keep_token(store: &Store) -> Result<()> {
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_TOKEN)
        .read_to_string(&mut text)
        .context("reading the enrolment token from stdin")?;
    let token = text.trim();
    anyhow::ensure!(!token.is_empty(), "--token-file -: stdin held no token");
    store
        .write_persisted(
            Path::new(BOOTSTRAP_TOKEN),
            format!("{token}\n").as_bytes(),
            0o600,
        )
        .with_context(|| format!("writing {BOOTSTRAP_TOKEN}"))?;
    Ok(())
}

/// The flow's steps as `action:` lines, then `complete`, and the exit code.
fn outcome(report: &mut Report, st: &Status) -> u8 {
    for step in &st.completed {
        report.add(Line::ok(&format!("action:{step}"), changes(step)));
    }
    let reason = st.reason.clone().unwrap_or_default();
    match st.result {
        Outcome::Ok => {
            report.add(Line::ok("complete", reason));
            EXIT_OK
        }
        Outcome::Waiting => {
            report.add(Line::warn(
                "complete",
                format!("not approved yet: {reason}"),
            ));
            EXIT_WAITING
        }
        _ => {
            report.add(Line::fail(&format!("action:{}", st.step), reason));
            report.add(Line::fail(
                "complete",
                format!("changed before the failure: {}", st.completed.join(", ")),
            ));
            EXIT_ACTIONS_FAILED
        }
    }
}

/// What each step of the flow changes on the host (docs/ARCHITECTURE.md, `flow`).
fn changes(step: &str) -> &'static str {
    match step {
        "configured" => "the saved settings (/etc/default/ovirt, vdsm-reg.conf), vdsm.id",
        "network_up" => "the management bridge and its network files",
        "clock_ok" => "the clock (set when off by more than 1 s)",
        "engine_trusted" => "the engine CA pinned",
        "registered" => "the engine's SSH key in /root/.ssh/authorized_keys; registered",
        "csr_submitted" => "host key pairs made, certificate requests sent",
        "approved" => "certificates issued",
        "certs_installed" => "vdsm's, libvirt's and qemu's keys and certificates",
        "vdsm_configured" => "vdsm.conf, the core dump pattern",
        "done" => "the checkpoint",
        _ => "",
    }
}
