//! Step `engine_found`: without `management_server` (or with `management_server=auto`) the
//! engine is found by DNS SRV (docs/ovirt-protocol.md §7). The domain and the resolver are
//! read here, the DNS exchange runs in the network worker (src/net/dns.rs), its answer is
//! checked again, and the targets are tried in RFC 2782 order: the first whose CA matches
//! the pins is the engine. Discovery never widens trust: a pin is required
//! (`configured` refuses without one) and a first use is never allowed here.

use anyhow::{Context, Result};
use log::{info, warn};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::{configure, net_settings_for, remaining, State, Step, StepContext, StepResult};
use crate::net::dns::ResolvConf;
use crate::net::srv::{self, Srv};
use crate::paths::RESOLV_CONF;
use crate::status::DISCOVERED;
use crate::trust::{self, Pins, Verified};
use crate::values::{EngineAddr, Host, Hostname};
use crate::worker::{FetchCa, LookupSrv, SrvFound};

/// The SRV names asked, in order: the engine's own, then the legacy one.
pub const SERVICES: [&str; 2] = ["_ovirt-engine._tcp", "_ovirt._tcp"];

/// Targets tried at most: more is not a list of engines.
const MAX_TARGETS: usize = 8;

/// CA downloads per target: a target that does not answer is passed over quickly.
const ATTEMPTS_PER_TARGET: u32 = 2;

/// Largest resolv.conf read.
const MAX_RESOLV_CONF: u64 = 64 * 1024;

/// `engine_found`: nothing to do when the settings name the engine; an engine found on an
/// earlier boot is kept (the trust step checks its CA against today's pins).
pub(super) fn engine_found(ctx: &StepContext, state: &mut State) -> Result<StepResult> {
    if !ctx.loaded.config.discovers_engine() {
        return Ok(StepResult::Skipped(
            "management_server= names the engine".into(),
        ));
    }
    if let (true, Some(engine)) = (state.is_done(Step::EngineFound), &state.engine) {
        let source = state.engine_source.as_deref().unwrap_or("-");
        return Ok(StepResult::Skipped(format!(
            "engine {engine} found earlier ({source})"
        )));
    }
    let found = lookup(ctx)?;
    let engine = first_trusted(ctx, &found)?;
    let name = engine.to_string();
    info!("engine {name} found by {}", found.source);
    state.reset_for_engine(&name);
    state.engine_source = Some(found.source);
    let mut batch = ctx.store.batch();
    configure::write_legacy_files(ctx, &mut batch, Some(&engine))?;
    batch.commit()?;
    Ok(StepResult::Done)
}

/// Engines one SRV name offered, in the order to try them.
struct Found {
    /// `DNS SRV <name>`: where the engine came from, for the status.
    source: String,
    targets: Vec<EngineAddr>,
}

/// Ask DNS (in the worker) for the engine's SRV records; bounded by what is left of
/// `ovirt.reg.timeout`.
fn lookup(ctx: &StepContext) -> Result<Found> {
    let text = ctx
        .root
        .fs()
        .read_text(Path::new(RESOLV_CONF), MAX_RESOLV_CONF)?
        .unwrap_or_default();
    let conf = ResolvConf::parse(&text);
    let domain = domain(ctx, &conf).context(
        "no management_server= and no domain to find the engine in by DNS SRV: give \
         ovirt.reg.domain=DOMAIN (or a DHCP domain name, or a host name with a domain), or \
         management_server=HOST[:PORT]",
    )?;
    let servers = servers(ctx, &conf);
    anyhow::ensure!(
        !servers.is_empty(),
        "no DNS server to find the engine of {domain} by DNS SRV: give dns= (or a DHCP \
         server that sends one), or management_server=HOST[:PORT]"
    );
    let names: Vec<String> = SERVICES.iter().map(|s| format!("{s}.{domain}")).collect();
    let job = LookupSrv {
        names: names.clone(),
        servers,
        tcp_only: conf.tcp_only,
        deadline: remaining(ctx),
    };
    let reply = ctx
        .call(&job)
        .with_context(|| format!("finding the engine of {domain} by DNS SRV"))?;
    checked(&names, reply, &mut srv::system_draw)
}

/// `ovirt.reg.domain=`, else the resolver's search domain (what the network step wrote from
/// the DHCP lease's domain name), else the host name's domain.
fn domain(ctx: &StepContext, conf: &ResolvConf) -> Option<Hostname> {
    let cfg = &ctx.loaded.config;
    if let Some(d) = &cfg.reg.domain {
        return Some(d.clone());
    }
    let host_name = cfg
        .net
        .hostname
        .as_ref()
        .map(|h| h.to_string())
        .or_else(|| crate::identity::hostname(ctx.root));
    let host_domain = host_name.and_then(|h| Some(h.split_once('.')?.1.to_string()));
    conf.search
        .iter()
        .cloned()
        .chain(host_domain)
        .find_map(|d| d.parse::<Hostname>().ok())
}

/// `dns=` when given, else the resolver configuration's servers (what the network step
/// wrote from the lease, or the system's).
fn servers(ctx: &StepContext, conf: &ResolvConf) -> Vec<SocketAddr> {
    let dns = &ctx.loaded.config.net.dns;
    if dns.is_empty() {
        return conf.servers.clone();
    }
    dns.iter()
        .take(crate::net::dns::MAX_SERVERS)
        .map(|ip| SocketAddr::new(*ip, 53))
        .collect()
}

/// The worker's answer, not taken on its word: a name we asked, at most 64 records, each
/// target a host name with a port from 1 to 65535 (a bad one is skipped with a warning), in
/// RFC 2782 order. Only "." targets: DNS says there is no engine.
fn checked(names: &[String], reply: SrvFound, draw: &mut dyn FnMut(u32) -> u32) -> Result<Found> {
    let SrvFound { name, records } = reply;
    if records.is_empty() {
        anyhow::bail!("no SRV records for {}", names.join(" or "));
    }
    anyhow::ensure!(
        names.iter().any(|n| n.eq_ignore_ascii_case(&name)) && records.len() <= 64,
        "the network worker reported {} records for {name:?}: expected at most 64 for {}",
        records.len(),
        names.join(" or ")
    );
    let offered: Vec<Srv> = records.into_iter().filter(|r| !r.is_no_service()).collect();
    anyhow::ensure!(
        !offered.is_empty(),
        "DNS SRV {name} says there is no engine (target \".\")"
    );
    let mut targets = Vec::new();
    for r in srv::order(&offered, draw) {
        match (r.target.parse::<Hostname>(), r.port) {
            (Ok(host), 1..) => targets.push(EngineAddr {
                host: Host::Name(host),
                port: Some(r.port),
            }),
            _ => warn!(
                "DNS SRV {name}: skipping the target {:?} port {}: expected a host name and a port from 1 to 65535",
                r.target, r.port
            ),
        }
    }
    anyhow::ensure!(!targets.is_empty(), "DNS SRV {name} names no usable engine");
    targets.truncate(MAX_TARGETS);
    Ok(Found {
        source: format!("{DISCOVERED}{name}"),
        targets,
    })
}

/// The first target whose CA (fetched by the worker, checked here) matches the configured
/// pins. Each target gets its share of the time left; a wrong CA or no answer is that
/// target's failure, never a reason to trust less.
fn first_trusted(ctx: &StepContext, found: &Found) -> Result<EngineAddr> {
    let reg = &ctx.loaded.config.reg;
    let pins = Pins {
        insecure_tofu: false,
        ..Pins::from_config(reg, trust::stored_pin(ctx.store)?)
    };
    let mut failures = Vec::new();
    for (i, target) in found.targets.iter().enumerate() {
        let mut net = net_settings_for(ctx, target);
        net.policy.deadline = share(remaining(ctx), found.targets.len() - i);
        net.policy.max_attempts = net.policy.max_attempts.min(ATTEMPTS_PER_TARGET);
        let job = FetchCa {
            net,
            pins: pins.clone(),
        };
        let verified = ctx
            .call(&job)
            .and_then(|ca| trust::verify(&ca, &pins).map_err(anyhow::Error::from));
        match verified {
            Ok(Verified::FirstUse(_)) => failures.push(format!("{target}: not pinned")),
            Ok(_) => return Ok(target.clone()),
            Err(e) => {
                warn!("engine {target} from {}: {e:#}", found.source);
                failures.push(format!("{target}: {e:#}"));
            }
        }
    }
    anyhow::bail!(
        "no engine {} named could be trusted: {}",
        found.source,
        failures.join("; ")
    )
}

/// Each target's share of what is left: the rest split evenly over the targets not tried
/// yet, so one that does not answer cannot use up the others' time.
fn share(left: Duration, targets_left: usize) -> Duration {
    left / u32::try_from(targets_left.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        SERVICES
            .iter()
            .map(|s| format!("{s}.example.test"))
            .collect()
    }

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn found(name: &str, records: Vec<Srv>) -> SrvFound {
        SrvFound {
            name: name.into(),
            records,
        }
    }

    #[test]
    fn the_workers_answer_is_checked_and_ordered() {
        let reply = found(
            "_ovirt._tcp.example.test",
            vec![
                srv(20, 0, 443, "backup.example.test"),
                srv(10, 0, 8443, "engine.example.test"),
                srv(10, 0, 0, "zero-port.example.test"),
                srv(10, 0, 443, "a\\046b.example.test"),
                srv(10, 0, 443, "."),
            ],
        );
        let ok = checked(&names(), reply, &mut |_| 0).unwrap();
        assert_eq!(ok.source, "DNS SRV _ovirt._tcp.example.test");
        let shown: Vec<String> = ok.targets.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["engine.example.test:8443", "backup.example.test:443"]
        );
    }

    #[test]
    fn what_cannot_be_an_engine_list_is_an_error() {
        let one = || vec![srv(0, 0, 443, "e.example.test")];
        let cases = [
            (
                found("", vec![]),
                "no SRV records for _ovirt-engine._tcp.example.test or _ovirt._tcp.example.test",
            ),
            (
                found("_ovirt._tcp.evil.example", one()),
                "expected at most 64",
            ),
            (
                found(
                    "_ovirt._tcp.example.test",
                    vec![srv(0, 0, 443, "e.example.test"); 65],
                ),
                "expected at most 64",
            ),
            (
                found("_ovirt._tcp.example.test", vec![srv(0, 0, 0, ".")]),
                "says there is no engine",
            ),
            (
                found(
                    "_ovirt._tcp.example.test",
                    vec![srv(0, 0, 443, "bad\\027name")],
                ),
                "no usable engine",
            ),
        ];
        for (reply, want) in cases {
            let e = checked(&names(), reply, &mut |_| 0).err().expect(want);
            assert!(format!("{e:#}").contains(want), "{e:#}");
        }
    }

    #[test]
    fn the_time_is_shared_between_targets() {
        assert_eq!(share(Duration::from_secs(90), 3), Duration::from_secs(30));
        assert_eq!(share(Duration::from_secs(90), 0), Duration::from_secs(90));
    }
}
