//! `ovirt-node-reg setup`: configure a node by hand, the way oVirt Node's setup screen
//! (`rhevm.py`) did: the engine address and port, the engine CA pinned after the
//! administrator compared its fingerprints, optionally root's password and SSH password login
//! (the engine's "add host" with a password needs both), optionally the management NIC, VLAN
//! and a static address. Then the same files `boot` writes, and registration if asked.
//!
//! Interactive on a terminal; with `--engine` every question is a flag (for scripts).
//! Nothing is written before the final confirmation: Ctrl-C, end of input or too many bad
//! answers change nothing. The CA is fetched by the unprivileged network worker and never
//! trusted on its word: the root parent computes the fingerprints from the DER itself.

mod terminal;

use anyhow::{anyhow, bail, Context, Result};
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{Loaded, RawSetting, Source};
use crate::console;
use crate::crypt;
use crate::escape;
use crate::flow::{self, Run, Stage, Step};
use crate::http::Endpoint;
use crate::paths::{self, Root};
use crate::retry::{Policy, MAX_ATTEMPTS};
use crate::secret::Secret;
use crate::status::{Outcome, Status};
use crate::trust::CaCert;
use crate::values::{
    parse_ip, parse_port, EngineAddr, Host, IfName, IpSetting, Netmask, Sha256Pin, Vlan,
    DEFAULT_ENGINE_PORT,
};
use crate::worker::{DownloadCa, Net, Session};
use std::time::Duration;

pub use terminal::{Stop, Term, Tty};

/// Bad answers to one question before setup gives up.
pub const MAX_TRIES: usize = 5;
/// How long the worker may try to fetch the CA (a question is waiting).
const FETCH_DEADLINE_MS: u64 = 15_000;

/// `setup`'s flags: with `engine`, every question is answered by them.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub engine: Option<String>,
    pub ca_pin: Option<String>,
    pub root_password_hash: Option<Secret>,
    pub ssh_pwauth: Option<bool>,
    pub nic: Option<String>,
    pub vlan: Option<String>,
    pub address: Option<String>,
    pub gateway: Option<String>,
    /// Register now, once the settings are written.
    pub yes: bool,
}

/// What the administrator decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    /// With its port.
    pub engine: EngineAddr,
    pub pin: Sha256Pin,
    pub root_hash: Option<Secret>,
    pub ssh_pwauth: Option<bool>,
    pub nic: Option<IfName>,
    pub vlan: Option<Vlan>,
    /// An `ip=` value (pxelinux form), or `dhcp`.
    pub ip: Option<String>,
}

impl Answers {
    /// The answers as settings (never the password hash: it is not a file's setting).
    fn settings(&self) -> Vec<RawSetting> {
        let mut out = vec![
            RawSetting::new("management_server", Some(&self.engine.to_string())),
            RawSetting::new("ovirt.reg.ca_pin", Some(&self.pin.to_string())),
        ];
        if let Some(on) = self.ssh_pwauth {
            out.push(RawSetting::new(
                "ssh_pwauth",
                Some(if on { "1" } else { "0" }),
            ));
        }
        if let Some(nic) = &self.nic {
            out.push(RawSetting::new("ovirt.reg.nic", Some(&nic.to_string())));
        }
        if let Some(vlan) = &self.vlan {
            out.push(RawSetting::new("vlan", Some(&vlan.to_string())));
        }
        if let Some(ip) = &self.ip {
            out.push(RawSetting::new("ip", Some(ip)));
        }
        out
    }

    /// The settings with the answers on top, as `boot` will see them. A bad value the answers
    /// replace is no longer an error: fixing it is what setup is for.
    pub fn applied(&self, loaded: &Loaded) -> Loaded {
        let mut out = loaded.clone();
        let settings = self.settings();
        out.errors
            .retain(|e| !settings.iter().any(|s| s.name == e.name));
        out.apply_layer(Source::Setup, &settings);
        if let Some(hash) = &self.root_hash {
            out.config.reg.admin_password = Some(hash.clone());
        }
        out
    }

    /// What will be written, for the final confirmation; the hash is never shown.
    pub fn summary(&self, loaded: &Loaded) -> String {
        let mut out = String::from("Settings to write:\n");
        for s in self.settings() {
            out += &format!("  {}={}\n", s.name, s.value.unwrap_or_default());
        }
        if self.root_hash.is_some() {
            out += &format!("  root's password: set (hash in {})\n", paths::ETC_SHADOW);
        }
        for s in self.settings() {
            if loaded.source_of(&s.name) == Source::Cmdline {
                out += &format!(
                    "  note: {} is also on the kernel command line, which wins at the next boot\n",
                    s.name
                );
            }
        }
        if self.root_hash.is_some() && loaded.source_of("rhevm_admin_password") == Source::Cmdline {
            out += "  note: rhevm_admin_password on the kernel command line replaces this password at the next boot\n";
        }
        out
    }
}

/// `ovirt-node-reg setup`.
pub fn run(root: &Root, cmdline: &Path, opts: &Options, debug: bool) -> Result<ExitCode> {
    let loaded = crate::sources::load_warned(root, cmdline)?;
    let mut fetch = |engine: &EngineAddr| fetch_ca(engine, debug);
    if opts.engine.is_some() {
        let answers = from_flags(opts, &loaded, &mut fetch)?;
        let engine = write(root, &loaded, &answers)?;
        console::line(&format!("settings written for the engine {engine}"))?;
        if !opts.yes {
            console::line("register with `ovirt-node-reg boot` (or run setup again with --yes)")?;
            return Ok(ExitCode::SUCCESS);
        }
        return Ok(show(&register_now(root, cmdline, &engine, debug)));
    }
    anyhow::ensure!(
        rustix::termios::isatty(std::io::stdin()),
        "stdin is not a terminal: give every answer as a flag (setup --engine HOST[:PORT] --ca-pin sha256:…; see `setup --help`)"
    );
    let mut tty = Tty::open()?;
    interactive(root, cmdline, &loaded, &mut tty, &mut fetch, debug)
}

/// The interactive session: questions, the final confirmation, the files, registration.
fn interactive(
    root: &Root,
    cmdline: &Path,
    loaded: &Loaded,
    t: &mut dyn Term,
    fetch: &mut dyn FnMut(&EngineAddr) -> Result<CaCert>,
    debug: bool,
) -> Result<ExitCode> {
    t.say("ovirt-node-reg setup: connect this node to an oVirt Engine.\nCtrl-C or Ctrl-D at any question leaves everything as it was.\n\n");
    for e in &loaded.errors {
        t.say(&format!("note: the current settings have an error: {e}\n"));
    }
    let answers = match converse(t, loaded, fetch) {
        Ok(a) => a,
        Err(stop) => return Ok(stopped(t, &stop, "nothing was changed")),
    };
    let engine = write(root, loaded, &answers)?;
    t.say(&format!("Settings written for the engine {engine}.\n"));
    match yes_no(t, "Register with the engine now?", Some(true)) {
        Ok(true) => {}
        Ok(false) => {
            t.say("Not registering now: `ovirt-node-reg boot` registers with these settings.\n");
            return Ok(ExitCode::SUCCESS);
        }
        Err(stop) => {
            return Ok(stopped(
                t,
                &stop,
                "the settings are written; not registering",
            ))
        }
    }
    // Ctrl-C stops the registration as it would stop `boot`.
    terminal::release_sigint();
    t.say("Registering...\n");
    Ok(show(&register_now(root, cmdline, &engine, debug)))
}

fn stopped(t: &mut dyn Term, stop: &Stop, what: &str) -> ExitCode {
    t.say(&format!("\nsetup: {stop}: {what}\n"));
    stop.exit_code()
}

/// Every question, up to the final confirmation. Nothing is written here.
pub fn converse(
    t: &mut dyn Term,
    loaded: &Loaded,
    fetch: &mut dyn FnMut(&EngineAddr) -> Result<CaCert>,
) -> Result<Answers, Stop> {
    let (engine, ca) = engine_and_ca(t, loaded, fetch)?;
    let pin = confirm_ca(t, &engine, &ca)?;
    let root_hash = if yes_no(
        t,
        "Set root's password (the engine's \"add host\" logs in with it)?",
        Some(false),
    )? {
        Some(ask_password(t)?)
    } else {
        None
    };
    let current = loaded.config.reg.ssh_pwauth;
    let ssh_pwauth = match current.or(root_hash.as_ref().map(|_| true)) {
        Some(default) => Some(yes_no(
            t,
            "Allow SSH password login (ssh_pwauth)?",
            Some(default),
        )?),
        None => optional_yes_no(t, "Allow SSH password login (ssh_pwauth)?")?,
    };
    let mut answers = Answers {
        engine,
        pin,
        root_hash,
        ssh_pwauth,
        nic: None,
        vlan: None,
        ip: None,
    };
    if yes_no(
        t,
        "Configure the management network by hand (NIC, VLAN, static address)?",
        Some(false),
    )? {
        ask_network(t, loaded, &mut answers)?;
    }
    t.say(&format!("\n{}", answers.summary(loaded)));
    if !yes_no(t, "Write these settings?", Some(false))? {
        return Err(Stop::Declined("the settings were not confirmed"));
    }
    Ok(answers)
}

/// The engine's address and port, asked again (with the reason) until its CA can be fetched.
fn engine_and_ca(
    t: &mut dyn Term,
    loaded: &Loaded,
    fetch: &mut dyn FnMut(&EngineAddr) -> Result<CaCert>,
) -> Result<(EngineAddr, CaCert), Stop> {
    let mut host_default = loaded
        .config
        .reg
        .engine
        .as_ref()
        .map(|e| e.host.to_string());
    let mut port_default = loaded.config.engine_port().to_string();
    for _ in 0..MAX_TRIES {
        let host: Host = ask(
            t,
            "Engine address (host name or IP address)",
            host_default.as_deref(),
            |a| a.parse::<Host>().map_err(str::to_string),
        )?;
        let port = ask(t, "Engine port", Some(&port_default), |a| {
            parse_port(a).map_err(str::to_string)
        })?;
        let engine = EngineAddr {
            host,
            port: Some(port),
        };
        t.say(&format!(
            "Fetching the engine CA from {engine} (not trusted yet)...\n"
        ));
        match fetch(&engine) {
            Ok(ca) => return Ok((engine, ca)),
            Err(e) => {
                t.say(&format!(
                    "  cannot get the engine CA: {}\n  check the address and port\n",
                    escape::controls(&format!("{e:#}"))
                ));
                host_default = Some(engine.host.to_string());
                port_default = port.to_string();
            }
        }
    }
    Err(Stop::TooManyTries("the engine address and port".into()))
}

/// The CA's fingerprints, computed here from its DER; only an explicit "yes" pins it.
fn confirm_ca(t: &mut dyn Term, engine: &EngineAddr, ca: &CaCert) -> Result<Sha256Pin, Stop> {
    let pem = paths::ENGINE_CA_PEM;
    t.say(&format!(
        "\nThe engine {engine} presents this CA certificate:\n  SHA-256: {}\n  SHA-1:   {}\n\
         Compare it with the engine's own, on the engine:\n  openssl x509 -in {pem} -outform der | sha256sum\n  \
         openssl x509 -in {pem} -noout -fingerprint -sha1\n",
        ca.sha256_pin(),
        ca.sha1()
    ));
    let pinned = ask(
        t,
        "Do they match? Type \"yes\" to pin this CA, \"no\" to stop",
        None,
        |a| match a {
            "yes" => Ok(true),
            "no" => Ok(false),
            _ => Err("yes or no (only \"yes\" pins the CA)".to_string()),
        },
    )?;
    if !pinned {
        return Err(Stop::Declined("the engine CA was not confirmed"));
    }
    Ok(ca.sha256_pin())
}

/// A password read twice without echo, hashed with SHA-512-crypt; never shown or logged.
fn ask_password(t: &mut dyn Term) -> Result<Secret, Stop> {
    for _ in 0..MAX_TRIES {
        t.say("New password for root: ");
        let first = Secret::new(t.line(true)?);
        t.say("\nAgain: ");
        let second = Secret::new(t.line(true)?);
        t.say("\n");
        if first.expose().is_empty() {
            t.say("  an empty password is refused; try again\n");
        } else if first != second {
            t.say("  the two passwords differ; try again\n");
        } else {
            return crypt::hash_password(&first).map_err(|e| Stop::Failed(format!("{e:#}")));
        }
    }
    Err(Stop::TooManyTries("root's password".into()))
}

fn ask_network(t: &mut dyn Term, loaded: &Loaded, answers: &mut Answers) -> Result<(), Stop> {
    let net = &loaded.config.net;
    let nic_default = net.nic.as_ref().map(|n| n.to_string());
    answers.nic = ask(
        t,
        "Management NIC (Enter: chosen at boot)",
        nic_default.as_deref(),
        |a| optional(a, |v| v.parse::<IfName>().map_err(str::to_string)),
    )?;
    let vlan_default = net.vlan.as_ref().map(|v| v.to_string());
    answers.vlan = ask(t, "VLAN id (Enter: none)", vlan_default.as_deref(), |a| {
        optional(a, |v| v.parse::<Vlan>().map_err(str::to_string))
    })?;
    let address: Option<String> = ask(
        t,
        "Static address ADDRESS/PREFIX (Enter: DHCP)",
        None,
        |a| optional(a, |v| ip_value(v, None).map(|_| v.to_string())),
    )?;
    answers.ip = match address {
        Some(addr) => Some(ask(t, "Gateway (Enter: none)", None, |g| {
            ip_value(&addr, Some(g).filter(|g| !g.is_empty()))
        })?),
        None => Some("dhcp".to_string()),
    };
    Ok(())
}

fn optional<T>(a: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
    if a.is_empty() {
        Ok(None)
    } else {
        parse(a).map(Some)
    }
}

/// `ADDRESS/PREFIX` and a gateway as an `ip=` value (`ADDRESS::GATEWAY:PREFIX`), checked by
/// the same parser `boot` uses; `dhcp` stays `dhcp`.
pub fn ip_value(address: &str, gateway: Option<&str>) -> Result<String, String> {
    if address == "dhcp" {
        return Ok("dhcp".into());
    }
    const FORM: &str = "ADDRESS/PREFIX, e.g. 192.0.2.10/24 or fd00::10/64";
    let (addr, prefix) = address.split_once('/').ok_or(FORM)?;
    let addr = parse_ip(addr).ok_or(FORM)?;
    let mask: Netmask = prefix.parse().map_err(|_| FORM.to_string())?;
    let limit = if addr.is_ipv4() { 32 } else { 128 };
    if mask.prefix > limit {
        return Err(FORM.into());
    }
    let field = |a: IpAddr| match a {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let gw = match gateway {
        Some(g) => {
            let g = parse_ip(g).ok_or("a gateway IP address, e.g. 192.0.2.1")?;
            if g.is_ipv4() != addr.is_ipv4() {
                return Err("a gateway of the same family as the address".into());
            }
            field(g)
        }
        None => String::new(),
    };
    let value = format!("{}::{gw}:{}", field(addr), mask.prefix);
    value.parse::<IpSetting>().map_err(str::to_string)?;
    Ok(value)
}

/// One question, asked again with the reason while the answer is bad (at most
/// [`MAX_TRIES`] times); an empty answer takes the default.
pub fn ask<T>(
    t: &mut dyn Term,
    question: &str,
    default: Option<&str>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, Stop> {
    for tries in 1..=MAX_TRIES {
        match default.filter(|d| !d.is_empty()) {
            Some(d) => t.say(&format!("{question} [{d}]: ")),
            None => t.say(&format!("{question}: ")),
        }
        let line = t.line(false)?;
        let answer = match line.trim() {
            "" => default.unwrap_or(""),
            a => a,
        };
        match parse(answer) {
            Ok(v) => return Ok(v),
            Err(why) => {
                let again = if tries < MAX_TRIES { "; try again" } else { "" };
                t.say(&format!(
                    "  {:?} is not accepted: expected {why}{again}\n",
                    escape::controls(answer)
                ));
            }
        }
    }
    Err(Stop::TooManyTries(question.to_string()))
}

fn yes_no(t: &mut dyn Term, question: &str, default: Option<bool>) -> Result<bool, Stop> {
    let (q, d) = match default {
        Some(true) => (format!("{question} [Y/n]"), "yes"),
        Some(false) => (format!("{question} [y/N]"), "no"),
        None => (format!("{question} [y/n]"), ""),
    };
    ask(t, &q, None, |a| {
        match (a.to_ascii_lowercase().as_str(), d) {
            ("y" | "yes", _) | ("", "yes") => Ok(true),
            ("n" | "no", _) | ("", "no") => Ok(false),
            _ => Err("yes or no".to_string()),
        }
    })
}

/// Yes, no, or Enter for "leave it as it is" (`None`).
fn optional_yes_no(t: &mut dyn Term, question: &str) -> Result<Option<bool>, Stop> {
    ask(
        t,
        &format!("{question} [y/n, Enter: leave as it is]"),
        None,
        |a| match a.to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "y" | "yes" => Ok(Some(true)),
            "n" | "no" => Ok(Some(false)),
            _ => Err("yes, no or an empty answer".to_string()),
        },
    )
}

/// Every answer from the flags (`setup --engine …`). The CA is fetched in any case: a pin
/// must match it. Without `--ca-pin` only a pin already configured can vouch for it: a CA
/// nobody compared is never pinned by a script (`--yes` does not do it; see the README).
pub fn from_flags(
    opts: &Options,
    loaded: &Loaded,
    fetch: &mut dyn FnMut(&EngineAddr) -> Result<CaCert>,
) -> Result<Answers> {
    let given = opts.engine.as_deref().unwrap_or_default();
    let mut engine: EngineAddr = given
        .parse()
        .map_err(|e| anyhow!("--engine {}: expected {e}", escape::controls(given)))?;
    let port = engine
        .port
        .or(loaded.config.reg.management_port)
        .unwrap_or(crate::values::DEFAULT_ENGINE_PORT);
    engine.port = Some(port);
    let pin = opts
        .ca_pin
        .as_deref()
        .map(|p| {
            p.parse::<Sha256Pin>()
                .map_err(|e| anyhow!("--ca-pin {}: expected {e}", escape::controls(p)))
        })
        .transpose()?;
    let root_hash = opts
        .root_password_hash
        .as_ref()
        .map(|h| {
            crypt::check_hash(h.expose())
                .map(|()| h.clone())
                .map_err(|e| anyhow!("--root-password-hash: expected {e}"))
        })
        .transpose()?;
    let nic = flag(&opts.nic, "--nic", |v| {
        v.parse::<IfName>().map_err(str::to_string)
    })?;
    let vlan = flag(&opts.vlan, "--vlan", |v| {
        v.parse::<Vlan>().map_err(str::to_string)
    })?;
    anyhow::ensure!(
        opts.gateway.is_none() || opts.address.is_some(),
        "--gateway needs --address ADDRESS/PREFIX"
    );
    let ip = flag(&opts.address, "--address", |v| {
        ip_value(v, opts.gateway.as_deref())
    })?;
    let ca = fetch(&engine)?;
    let pin = check_pin(&engine, &ca, pin, loaded)?;
    Ok(Answers {
        engine,
        pin,
        root_hash,
        ssh_pwauth: opts.ssh_pwauth,
        nic,
        vlan,
        ip,
    })
}

fn flag<T>(
    value: &Option<String>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>> {
    value
        .as_deref()
        .map(|v| parse(v).map_err(|e| anyhow!("{name} {}: expected {e}", escape::controls(v))))
        .transpose()
}

/// The pin for the fetched CA: `--ca-pin` must match it; without one, a configured pin that
/// matches it; otherwise refused, naming the fingerprints to compare.
fn check_pin(
    engine: &EngineAddr,
    ca: &CaCert,
    given: Option<Sha256Pin>,
    loaded: &Loaded,
) -> Result<Sha256Pin> {
    let (sha256, sha1) = (ca.sha256_pin(), ca.sha1());
    match given {
        Some(pin) if pin == sha256 => Ok(pin),
        Some(pin) => bail!(
            "--ca-pin {pin} does not match the CA the engine {engine} presents ({sha256}, SHA-1 {sha1}): nothing changed"
        ),
        None if loaded.config.reg.ca_pins.contains(&sha256) => Ok(sha256),
        None => bail!(
            "the engine {engine} presents the CA {sha256} (SHA-1 {sha1}), which no pin vouches for: \
             compare it with the engine's ({}) and give --ca-pin {sha256}; nothing changed",
            paths::ENGINE_CA_PEM
        ),
    }
}

/// Write the answers exactly as `boot`'s `configured` step writes its settings; returns the
/// engine as `HOST:PORT`.
fn write(root: &Root, loaded: &Loaded, answers: &Answers) -> Result<String> {
    let applied = answers.applied(loaded);
    anyhow::ensure!(
        applied.errors.is_empty(),
        "invalid settings (fix them first; nothing changed): {}",
        applied.error_summary()
    );
    let store = flow::open_store(root, &applied)?;
    flow::write_configuration(root, &applied, &store).context("writing the settings")?;
    let engine = &answers.engine;
    Ok(format!("{}:{}", engine.host, applied.config.engine_port()))
}

/// Run the flow: `register` again when this host is already registered with this engine
/// (what `ovirt-node-reg register` does), else `boot` from the first step not done.
fn register_now(root: &Root, cmdline: &Path, engine: &str, debug: bool) -> Status {
    let registered = crate::sources::load(root, cmdline)
        .and_then(|l| flow::open_store(root, &l))
        .map(|store| {
            let state = flow::State::load(&store);
            state.engine.as_deref() == Some(engine) && state.is_done(Step::Registered)
        })
        .unwrap_or(false);
    if registered {
        flow::start_register(root, cmdline, flow::Overrides::default(), debug)
    } else {
        flow::start(root, cmdline, debug, Run::Boot(Stage::System))
    }
}

/// The state as `status` prints it, the console banner, and the exit code.
fn show(st: &Status) -> ExitCode {
    // A closed stdout is not a failure of the setup that already happened.
    let _ = console::line(&st.to_text());
    console::err_line(&st.banner());
    if st.result == Outcome::Failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `--root-password-hash -`: the hash on stdin's first line, kept out of the process's
/// arguments (which every local user can read while setup runs).
pub fn hash_from_stdin() -> Result<Secret> {
    use std::io::Read;
    let mut text = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut text)
        .context("reading the password hash from stdin")?;
    Ok(Secret::new(text.lines().next().unwrap_or_default().trim()))
}

/// The engine CA, fetched by the unprivileged worker; the parent re-parses it with the strict
/// parser (one certificate, a valid trust anchor) and trusts nothing else it says.
fn fetch_ca(engine: &EngineAddr, debug: bool) -> Result<CaCert> {
    let net = Net {
        endpoint: Endpoint::new(engine, DEFAULT_ENGINE_PORT),
        policy: Policy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(4),
            deadline: Duration::from_millis(FETCH_DEADLINE_MS),
            max_attempts: MAX_ATTEMPTS,
        },
    };
    Session::new(debug).call(&DownloadCa { net })
}

#[cfg(test)]
mod tests;
