//! The checks that need the network, done by the run's unprivileged worker (the parent
//! never talks to the network itself): the engine reachable and its CA matching the pin,
//! the clock's offset from the engine's, and this host's name resolving to the address the
//! engine reaches it by.

use std::time::Duration;

use crate::http::Endpoint;
use crate::retry::Policy;
use crate::trust::{self, Pins};
use crate::values::{EngineAddr, DEFAULT_ENGINE_PORT};
use crate::worker::{FetchCa, MeasureClock, Measured, Net, Resolve, Resolved, Session};

use super::report::Line;

/// An offset the clock action will correct; larger ones are worth a warning.
const CLOCK_SLACK_NS: i64 = 1_000_000_000;

/// How the worker reaches the engine during the checks: a few quick attempts.
pub fn net(engine: &EngineAddr, deadline: Duration) -> Net {
    Net {
        endpoint: Endpoint::new(engine, DEFAULT_ENGINE_PORT),
        policy: Policy {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(2),
            deadline,
            max_attempts: 5,
        },
    }
}

/// The engine's CA, fetched and checked against the pin by the worker, then again here.
pub fn engine(session: &mut Session, net: &Net, pins: &Pins) -> Line {
    let fetched = session.call(&FetchCa {
        net: net.clone(),
        pins: pins.clone(),
    });
    let checked = fetched.and_then(|ca| {
        trust::verify(&ca, pins)?;
        Ok(ca)
    });
    match checked {
        Ok(ca) => Line::ok(
            "engine",
            format!("{} reachable, CA {}", net.endpoint, ca.sha256_pin()),
        ),
        Err(e) => Line::fail("engine", format!("{}: {e:#}", net.endpoint)),
    }
}

/// The clock against the engine's `Date` (or `ntp` servers, as `clock_ok` measures it).
pub fn clock(session: &mut Session, net: &Net) -> Line {
    let measured = session.call(&MeasureClock {
        net: net.clone(),
        ntp: Vec::new(),
    });
    match measured {
        Ok(Measured {
            observation: Some(o),
            ..
        }) => {
            let text = format!("off by {:+.3} s ({})", o.offset_ns as f64 / 1e9, o.source);
            if o.offset_ns.abs() <= CLOCK_SLACK_NS {
                Line::ok("clock", text)
            } else {
                Line::warn("clock", format!("{text}: the clock action sets it"))
            }
        }
        Ok(Measured { error, .. }) => Line::warn(
            "clock",
            format!(
                "not measured: {}",
                error.unwrap_or_else(|| "no time source".into())
            ),
        ),
        Err(e) => Line::warn("clock", format!("not measured: {e:#}")),
    }
}

/// This host's name resolves, and to the address the engine is reached from.
pub fn hostname(session: &mut Session, net: &Net, name: Option<&str>) -> Line {
    let Some(name) = name else {
        return Line::fail(
            "hostname",
            "this host has no name (kernel or /etc/hostname)",
        );
    };
    let resolved = session.call(&Resolve {
        net: net.clone(),
        name: name.to_string(),
    });
    match resolved {
        Ok(r) => judge(name, &r),
        Err(e) => Line::fail("hostname", format!("{name}: {e:#}")),
    }
}

fn judge(name: &str, r: &Resolved) -> Line {
    let list = r
        .addresses
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match (&r.error, r.management) {
        // The engine may add the host by its address; a name elsewhere is the real mistake.
        (Some(e), _) => Line::warn(
            "hostname",
            format!("{name} does not resolve ({e}): the engine must use the address"),
        ),
        (None, Some(m)) if r.addresses.contains(&m) => Line::ok(
            "hostname",
            format!("{name} resolves to {list}, the management address {m}"),
        ),
        (None, Some(m)) if m.is_loopback() => Line::warn(
            "hostname",
            format!("{name} resolves to {list}; the engine is on this machine ({m})"),
        ),
        (None, Some(m)) => Line::fail(
            "hostname",
            format!("{name} resolves to {list}, not to the management address {m}"),
        ),
        (None, None) => Line::warn(
            "hostname",
            format!("{name} resolves to {list}; no route to the engine to compare with"),
        ),
    }
}
