//! Steps `csr_submitted` and `approved`: enrolment with protocol v2 (docs/protocol-v2.md):
//! the pending keys, the certificate requests, polling for the administrator's answer.

use anyhow::{Context, Result};
use log::info;
use std::path::Path;
use std::time::{Duration, Instant};

use super::keys::{renewal_due, stage_installed_keys, PendingKeys};
use super::state::{ca_pin, host_address, trusted_ca, unique_id};
use super::{net_settings, publish_progress, remaining, State, Step, StepContext, StepResult};
use crate::engine::Enrollment;
use crate::pki::{self, Purpose};
use crate::secret::Secret;
use crate::status::{self, Outcome};
use crate::worker::{GetVersion, PollCerts, SubmitCsr};

/// The status of a host whose engine deploys certificates itself (stock oVirt, docs/design.md §5).
pub const STOCK_ENGINE_REASON: &str = "registered, waiting for engine host deploy";

/// Time a poll may take; a wait that would end closer to the deadline is not started.
const POLL_MARGIN: Duration = Duration::from_secs(1);

/// The engine's `Retry-After` is clamped to this range (protocol-v2 §4).
const RETRY_AFTER_RANGE: (u64, u64) = (1, 300);

/// `csr_submitted`: on a v2 engine, the key pairs made (once) and both CSRs submitted; on a
/// stock engine the run stops here, the engine deploys the host over SSH.
pub(super) fn csr_submitted(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
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
    let job = GetVersion {
        net: net_settings(ctx, state)?,
        ca: trusted_ca(state)?,
    };
    let version = ctx.call(&job)?;
    anyhow::ensure!(
        version >= 1,
        "the network worker reported protocol version {version}: expected 1 or more"
    );
    Ok(version)
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
    let job = SubmitCsr {
        net: net_settings(ctx, state)?,
        ca: trusted_ca(state)?,
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
    ctx.call(&job)
}

fn poll(ctx: &StepContext, state: &State) -> Result<Enrollment> {
    let job = PollCerts {
        net: net_settings(ctx, state)?,
        ca: trusted_ca(state)?,
        unique_id: unique_id(state)?,
    };
    ctx.call(&job)
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
pub(super) fn approved(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
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
        publish_progress(ctx.root, ctx.store, &st);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::STEPS;
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
}
