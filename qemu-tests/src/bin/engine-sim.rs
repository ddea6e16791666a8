//! `engine-sim`: the engine simulator as a standalone process, for QEMU scenarios and for
//! trying the node binary by hand. See qemu-tests/README.md.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use argh::FromArgs;
use qemu_tests::{EngineKeyType, FaultSpec, SimConfig, Simulator};

/// A stand-in for the oVirt Engine's host registration endpoints.
#[derive(FromArgs)]
struct Args {
    /// HTTPS address to listen on (default 127.0.0.1:0, a free port)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 0))")]
    listen: SocketAddr,
    /// also serve plain HTTP here (legacy paths, target of the redirect fault)
    #[argh(option)]
    http_listen: Option<SocketAddr>,
    /// keep the CA and engine key in this directory, so pins survive restarts
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// write the JSON-lines event log here
    #[argh(option)]
    event_log: Option<PathBuf>,
    /// type of a new engine key, the engine SSH key: rsa (default, as a stock engine) or
    /// ecdsa; a key kept in --state-dir is used whatever its type
    #[argh(option, default = "EngineKeyType::Rsa")]
    engine_key: EngineKeyType,
    /// engine name (CN of the engine and server certificates)
    #[argh(option, default = "String::from(\"engine-sim.test\")")]
    fqdn: String,
    /// extra server certificate SAN, DNS name or IP (repeatable)
    #[argh(option)]
    san: Vec<String>,
    /// do not put the QEMU guestfwd address 10.0.2.100 into the certificate
    #[argh(switch)]
    no_guest_san: bool,
    /// auto-approve pattern, like the engine's AutoApprovePatterns (repeatable)
    #[argh(option)]
    auto_approve: Vec<String>,
    /// fault switch, e.g. status:status=503,retry_after=2,count=3 (repeatable)
    #[argh(option)]
    fault: Vec<FaultSpec>,
    /// behave like a stock engine: get-version answers 1, version=2 requests get 400
    #[argh(switch)]
    v1_only: bool,
    /// lifetime of issued host certificates in seconds (default 1827 days)
    #[argh(option)]
    cert_lifetime_secs: Option<u64>,
    /// seconds of Retry-After in pending enrolment answers (default 5)
    #[argh(option, default = "5")]
    retry_after: u64,
    /// serve at most N engine requests per second (fixed 1-s windows; admin API excluded);
    /// more get 503 with Retry-After (default 0: no limit)
    #[argh(option, default = "0")]
    rate_limit: u32,
    /// seconds of Retry-After in the rate limit's 503s (default: derived from the backlog)
    #[argh(option)]
    rate_limit_retry_after: Option<u64>,
    /// organization name (O=) of issued host certificates (default engine-sim)
    #[argh(option, default = "String::from(\"engine-sim\")")]
    organization: String,
    /// close every connection after its answer (default: keep it for more requests)
    #[argh(switch)]
    close_each: bool,
    /// requests served on one kept-alive connection (default 100)
    #[argh(option, default = "100")]
    keep_alive_requests: u32,
    /// seconds a kept-alive connection may wait for its next request (default 5)
    #[argh(option, default = "5")]
    keep_alive_idle_secs: u64,
    /// write the JSON from GET /admin/info here once listening
    #[argh(option)]
    ready_file: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args: Args = argh::from_env();
    let mut config = SimConfig {
        listen: args.listen,
        http_listen: args.http_listen,
        state_dir: args.state_dir,
        event_log: args.event_log,
        fqdn: args.fqdn,
        engine_key: args.engine_key,
        auto_approve: args.auto_approve,
        faults: args.fault,
        protocol_version: if args.v1_only { 1 } else { 2 },
        retry_after_secs: args.retry_after,
        organization: args.organization,
        rate_limit: args.rate_limit,
        rate_limit_retry_after: args.rate_limit_retry_after.filter(|s| *s > 0),
        close_each: args.close_each,
        keep_alive_requests: args.keep_alive_requests.max(1),
        keep_alive_idle: std::time::Duration::from_secs(args.keep_alive_idle_secs.max(1)),
        ..SimConfig::default()
    };
    if let Some(secs) = args.cert_lifetime_secs.filter(|s| *s > 0) {
        config.cert_lifetime = std::time::Duration::from_secs(secs);
    }
    if args.no_guest_san {
        config.extra_names.clear();
    }
    config.extra_names.extend(args.san);
    let sim = Simulator::start(config)?;
    announce(&sim, args.ready_file)?;
    // Serve until killed; the threads do the work.
    loop {
        std::thread::park();
    }
}

fn announce(sim: &qemu_tests::Handle, ready_file: Option<PathBuf>) -> Result<()> {
    let info = sim.info();
    // The ready file comes first: whoever sees the stdout lines may read it at once.
    if let Some(path) = ready_file {
        // Write then rename, so a harness polling for the file never reads half of it.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&info)?)?;
        std::fs::rename(tmp, path)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "engine-sim listening on {}", info.https_url)?;
    if let Some(url) = &info.http_url {
        writeln!(out, "engine-sim plain http on {url}")?;
    }
    let limit = sim.stats();
    if limit.rate_limit > 0 {
        writeln!(out, "engine-sim rate limit {}/s", limit.rate_limit)?;
    }
    writeln!(out, "engine-sim CA sha256 {}", info.ca_sha256)?;
    writeln!(out, "engine-sim CA sha1 {}", info.ca_sha1)?;
    writeln!(
        out,
        "engine-sim karg ovirt.reg.ca_pin=sha256:{}",
        info.ca_sha256
    )?;
    out.flush()?;
    Ok(())
}
