//! The typed configuration and where each setting came from.
//!
//! Three sources feed one table of settings (`SETTINGS`), lowest precedence first:
//! built-in defaults < `/etc/vdsm-reg/vdsm-reg.conf` < `/etc/default/ovirt` < the kernel
//! command line. Each source yields `(setting name, value)` pairs; one function applies a pair
//! to the `Config`, so a value means the same thing wherever it was written.

use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use crate::secret::Secret;
use crate::values::*;

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Default,
    VdsmRegConf,
    DefaultOvirt,
    Cmdline,
    /// The answers of `ovirt-node-reg setup`, saved like the command line's.
    Setup,
    /// An option of `register` or `bootstrap` (`--store`): for this run only, not saved.
    Option,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::VdsmRegConf => crate::paths::VDSM_REG_CONF,
            Source::DefaultOvirt => crate::paths::DEFAULT_OVIRT,
            Source::Cmdline => "kernel command line",
            Source::Setup => "ovirt-node-reg setup",
            Source::Option => "a command option",
        })
    }
}

/// One raw `name[=value]` from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSetting {
    pub name: String,
    pub value: Option<String>,
}

impl RawSetting {
    pub fn new(name: &str, value: Option<&str>) -> Self {
        RawSetting {
            name: name.to_string(),
            value: value.map(str::to_string),
        }
    }
}

/// An invalid value: names the argument and the expected form. Secret values are not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingError {
    pub name: String,
    pub value: String,
    pub expected: String,
    pub source: Source,
}

impl fmt::Display for SettingError {
    /// `NAME=VALUE: expected FORM (from SOURCE)`, control characters escaped: the value is
    /// whatever the command line or a file held, and this line reaches the console.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = format!(
            "{}={}: expected {} (from {})",
            self.name, self.value, self.expected, self.source
        );
        f.write_str(&crate::escape::controls(&line))
    }
}

/// Network settings (used by the network step).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkConfig {
    pub bootif: Option<BootIf>,
    pub nic: Option<IfName>,
    pub ip: Option<IpSetting>,
    pub netmask: Option<Netmask>,
    pub gateway: Option<IpAddr>,
    pub ipv6: Option<Ipv6Mode>,
    pub dns: Vec<IpAddr>,
    /// `ntp=` servers; empty with `ntp_off` false means "none given".
    pub ntp: Vec<Host>,
    pub ntp_off: bool,
    pub hostname: Option<Hostname>,
    pub vlan: Option<Vlan>,
    pub bond: Option<Bond>,
    pub layout: Option<NetworkLayout>,
    pub bridge: IfName,
    pub link_timeout: Seconds,
    pub netconf: NetConf,
}

/// Registration settings (`ovirt.reg.*` and the legacy engine arguments).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegConfig {
    /// `None`: the engine is found by DNS SRV (src/net/dns.rs).
    pub engine: Option<EngineAddr>,
    /// `management_server=auto` was given (shown and written back as such).
    pub engine_auto: bool,
    /// `ovirt.reg.domain=`: where DNS SRV discovery looks for the engine.
    pub domain: Option<Hostname>,
    pub management_port: Option<u16>,
    pub ca_sha1: Option<Sha1Fingerprint>,
    pub ca_pins: Vec<Sha256Pin>,
    pub insecure_tofu: bool,
    /// Accept an enrolment token given inline on the kernel command line (world-readable).
    pub insecure_token_on_cmdline: bool,
    pub token_file: Option<String>,
    pub token: Option<Secret>,
    pub ticket: Option<Secret>,
    pub admin_password: Option<Secret>,
    pub ssh_pwauth: Option<bool>,
    pub vdsm_disabled: bool,
    pub vds_port: u16,
    pub timeout: Seconds,
    /// How long the system stage waits for an administrator (also bounded by `timeout`).
    pub approval_timeout: Seconds,
    pub retry_base: Seconds,
    pub retry_cap: Seconds,
    pub key: KeyType,
    pub store: Option<String>,
    pub debug: bool,
    /// PID-1 mode with nothing to hand over to (no `root=`, no `init=`): power off at the end
    /// instead of keeping the machine up. For tests, demos and one-shot appliances.
    pub poweroff: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub reg: RegConfig,
    pub net: NetworkConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reg: RegConfig {
                engine: None,
                engine_auto: false,
                domain: None,
                management_port: None,
                ca_sha1: None,
                ca_pins: Vec::new(),
                insecure_tofu: false,
                insecure_token_on_cmdline: false,
                token_file: None,
                token: None,
                ticket: None,
                admin_password: None,
                ssh_pwauth: None,
                vdsm_disabled: false,
                vds_port: 54321,
                timeout: Seconds(300),
                approval_timeout: Seconds(900),
                retry_base: Seconds(1),
                retry_cap: Seconds(60),
                key: KeyType::Ecdsa,
                store: None,
                debug: false,
                poweroff: false,
            },
            net: NetworkConfig {
                bootif: None,
                nic: None,
                ip: None,
                netmask: None,
                gateway: None,
                ipv6: None,
                dns: Vec::new(),
                ntp: Vec::new(),
                ntp_off: false,
                hostname: None,
                vlan: None,
                bond: None,
                layout: None,
                bridge: IfName("ovirtmgmt".into()),
                link_timeout: Seconds(30),
                netconf: NetConf::Keyfile,
            },
        }
    }
}

impl Config {
    /// The same configuration with every secret removed (for comparisons and reports).
    pub fn without_secrets(&self) -> Config {
        let mut c = self.clone();
        c.reg.token = None;
        c.reg.ticket = None;
        c.reg.admin_password = None;
        c
    }

    /// No engine address: `management_server=auto` or none given; found by DNS SRV.
    pub fn discovers_engine(&self) -> bool {
        self.reg.engine.is_none()
    }

    /// The engine port: the one in `management_server`, else `management_port`, else 443.
    pub fn engine_port(&self) -> u16 {
        let addr_port = self.reg.engine.as_ref().and_then(|e| e.port);
        addr_port
            .or(self.reg.management_port)
            .unwrap_or(DEFAULT_ENGINE_PORT)
    }
}

/// How a setting takes its value, and how it prints its current value (canonical form,
/// one entry per value; empty when unset).
type Apply = fn(&mut Config, &str) -> Result<(), Expectation>;
type Show = fn(&Config) -> Vec<String>;

/// One known setting.
pub struct Setting {
    /// Canonical name (the kernel argument).
    pub name: &'static str,
    /// Other names that mean the same (legacy misspellings, 3.x names).
    pub aliases: &'static [&'static str],
    /// Given without `=value` it means "on".
    pub flag: bool,
    /// Repeatable settings accumulate instead of the last one winning (CA pins for
    /// rollover); this clears the values of a lower-precedence source.
    pub reset: Option<fn(&mut Config)>,
    /// Never printed; warned about when given on the command line.
    pub secret: bool,
    /// An enrolment token: refused on the kernel command line unless
    /// `ovirt.reg.insecure_token_on_cmdline` is set; the function forgets a refused value.
    pub token: Option<fn(&mut Config)>,
    apply: Apply,
    pub show: Show,
}

/// A setting with its own apply and show functions.
macro_rules! custom {
    ($name:literal, $apply:expr, $show:expr) => {
        Setting {
            name: $name,
            aliases: &[],
            flag: false,
            reset: None,
            secret: false,
            token: None,
            apply: $apply,
            show: $show,
        }
    };
}

/// A setting stored in an `Option<T>` field: parsed with `FromStr`, shown with `Display`.
macro_rules! opt {
    ($name:literal, [$($alias:literal),*], $($field:ident).+) => {
        Setting {
            name: $name, aliases: &[$($alias),*], flag: false, reset: None, secret: false,
            token: None,
            apply: |c, v| { c.$($field).+ = Some(v.parse()?); Ok(()) },
            show: |c| c.$($field).+.iter().map(|v| v.to_string()).collect(),
        }
    };
}

/// A setting stored in a plain field with a default: shown only when it differs from it.
macro_rules! val {
    ($name:literal, $($field:ident).+) => {
        Setting {
            name: $name, aliases: &[], flag: false, reset: None, secret: false, token: None,
            apply: |c, v| { c.$($field).+ = v.parse()?; Ok(()) },
            show: |c| vec![c.$($field).+.to_string()],
        }
    };
}

/// An on/off setting; given bare (`ovirt.reg.debug`) it means on.
macro_rules! flag {
    ($name:literal, $($field:ident).+) => {
        Setting {
            name: $name, aliases: &[], flag: true, reset: None, secret: false, token: None,
            apply: |c, v| { c.$($field).+ = parse_bool(v)?; Ok(()) },
            show: |c| if c.$($field).+ { vec!["1".to_string()] } else { vec![] },
        }
    };
}

/// A secret (`Option<Secret>`), checked by `$check`, never shown.
macro_rules! secret {
    ($name:literal, [$($alias:literal),*], $check:expr, $($field:ident).+) => {
        Setting {
            name: $name, aliases: &[$($alias),*], flag: false, reset: None, secret: true,
            token: None,
            apply: |c, v| { c.$($field).+ = Some(Secret::new($check(v)?)); Ok(()) },
            show: |c| c.$($field).+.iter().map(|v| v.to_string()).collect(),
        }
    };
}

/// An enrolment token: a secret that the kernel command line may hold only with
/// `ovirt.reg.insecure_token_on_cmdline`.
macro_rules! token {
    ($name:literal, $($field:ident).+) => {
        Setting {
            token: Some(|c| c.$($field).+ = None),
            ..secret!($name, [], parse_token, $($field).+)
        }
    };
}

fn show_list<T: fmt::Display>(items: &[T], sep: &str) -> Vec<String> {
    if items.is_empty() {
        return vec![];
    }
    vec![items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(sep)]
}

/// Every setting the binary understands (docs/ovirt-protocol.md §1, docs/design.md §6).
pub static SETTINGS: &[Setting] = &[
    Setting {
        name: "management_server",
        aliases: &["managment_server", "ovirt_managment_server"],
        flag: false,
        reset: None,
        secret: false,
        token: None,
        apply: |c, v| {
            (c.reg.engine, c.reg.engine_auto) = parse_engine(v)?;
            Ok(())
        },
        show: |c| match (&c.reg.engine, c.reg.engine_auto) {
            (Some(e), _) => vec![e.to_string()],
            (None, true) => vec![ENGINE_AUTO.to_string()],
            (None, false) => vec![],
        },
    },
    custom!(
        "management_port",
        |c, v| {
            c.reg.management_port = Some(parse_port(v)?);
            Ok(())
        },
        |c| c
            .reg
            .management_port
            .iter()
            .map(|p| p.to_string())
            .collect()
    ),
    opt!("management_server_fingerprint", [], reg.ca_sha1),
    secret!(
        "rhevm_admin_password",
        ["engine_admin_password"],
        parse_crypt_hash,
        reg.admin_password
    ),
    flag!("ovirt_vdsm_disable", reg.vdsm_disabled),
    custom!(
        "ssh_pwauth",
        |c, v| {
            c.reg.ssh_pwauth = Some(parse_bool(v)?);
            Ok(())
        },
        |c| c
            .reg
            .ssh_pwauth
            .iter()
            .map(|b| if *b { "1" } else { "0" }.to_string())
            .collect()
    ),
    opt!("BOOTIF", [], net.bootif),
    opt!("ip", [], net.ip),
    opt!("netmask", [], net.netmask),
    custom!(
        "gateway",
        |c, v| {
            c.net.gateway = Some(parse_ip(v).ok_or("an IP address such as 10.0.0.1")?);
            Ok(())
        },
        |c| c.net.gateway.iter().map(|g| g.to_string()).collect()
    ),
    opt!("ipv6", [], net.ipv6),
    custom!(
        "dns",
        |c, v| {
            c.net.dns = parse_ip_list(v)?;
            Ok(())
        },
        |c| show_list(&c.net.dns, ",")
    ),
    custom!(
        "ntp",
        |c, v| {
            (c.net.ntp, c.net.ntp_off) = parse_ntp(v)?;
            Ok(())
        },
        |c| if c.net.ntp_off {
            vec!["off".into()]
        } else {
            show_list(&c.net.ntp, ",")
        }
    ),
    opt!("hostname", [], net.hostname),
    opt!("vlan", [], net.vlan),
    opt!("bond", ["bond_setup"], net.bond),
    opt!("network_layout", [], net.layout),
    Setting {
        name: "ovirt.reg.ca_pin",
        aliases: &[],
        flag: false,
        reset: Some(|c| c.reg.ca_pins.clear()),
        secret: false,
        token: None,
        apply: |c, v| {
            c.reg.ca_pins.push(v.parse()?);
            Ok(())
        },
        show: |c| c.reg.ca_pins.iter().map(|p| p.to_string()).collect(),
    },
    flag!("ovirt.reg.insecure_tofu", reg.insecure_tofu),
    opt!("ovirt.reg.domain", [], reg.domain),
    flag!(
        "ovirt.reg.insecure_token_on_cmdline",
        reg.insecure_token_on_cmdline
    ),
    custom!(
        "ovirt.reg.token_file",
        |c, v| {
            c.reg.token_file = Some(parse_abs_path(v)?);
            Ok(())
        },
        |c| c.reg.token_file.iter().cloned().collect()
    ),
    token!("ovirt.reg.token", reg.token),
    token!("vdsm_reg.ticket", reg.ticket),
    custom!(
        "ovirt.reg.vds_port",
        |c, v| {
            c.reg.vds_port = parse_port(v)?;
            Ok(())
        },
        |c| vec![c.reg.vds_port.to_string()]
    ),
    val!("ovirt.reg.timeout", reg.timeout),
    val!("ovirt.reg.approval_timeout", reg.approval_timeout),
    val!("ovirt.reg.retry_base", reg.retry_base),
    val!("ovirt.reg.retry_cap", reg.retry_cap),
    val!("ovirt.reg.key", reg.key),
    custom!(
        "ovirt.reg.store",
        |c, v| {
            // `none`: a host without a config store (store::NO_STORE).
            c.reg.store = Some(if v == "none" {
                v.to_string()
            } else {
                parse_abs_path(v)
                    .map_err(|_| "an absolute path (a directory or a block device), or none")?
            });
            Ok(())
        },
        |c| c.reg.store.iter().cloned().collect()
    ),
    flag!("ovirt.reg.debug", reg.debug),
    flag!("ovirt.reg.poweroff", reg.poweroff),
    opt!("ovirt.reg.nic", [], net.nic),
    val!("ovirt.reg.bridge", net.bridge),
    val!("ovirt.reg.link_timeout", net.link_timeout),
    val!("ovirt.reg.netconf", net.netconf),
];

/// The setting a name (or alias) refers to.
pub fn lookup(name: &str) -> Option<&'static Setting> {
    SETTINGS
        .iter()
        .find(|s| s.name == name || s.aliases.contains(&name))
}

/// `management_server=auto`: find the engine by DNS SRV.
pub const ENGINE_AUTO: &str = "auto";

/// `management_server=HOST[:PORT]`, or `auto` (no address: discovery).
fn parse_engine(v: &str) -> Result<(Option<EngineAddr>, bool), Expected> {
    if v.eq_ignore_ascii_case(ENGINE_AUTO) {
        return Ok((None, true));
    }
    v.parse().map(|e| (Some(e), false)).map_err(|_| {
        "HOST[:PORT], e.g. engine.example.com:443 or [fd00::1]:8443, or auto (DNS SRV)"
    })
}

/// `ntp=a,b` or `ntp=off` (alone: a server cannot be called "off", not even "off.").
fn parse_ntp(v: &str) -> Result<(Vec<Host>, bool), Expected> {
    const EXPECTED: Expected = "a comma-separated list of NTP servers (names or addresses), or off";
    let items: Vec<&str> = v.split(',').filter(|s| !s.is_empty()).collect();
    if items == ["off"] {
        return Ok((Vec::new(), true));
    }
    let servers: Vec<Host> = items
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .map_err(|_| EXPECTED)?;
    if servers.iter().any(|h| h.bare() == "off") {
        return Err(EXPECTED);
    }
    Ok((servers, false))
}

/// A crypt(3) hash: `$id$salt$hash` (MD5, SHA-256/512, yescrypt…) or 13-character DES.
fn parse_crypt_hash(v: &str) -> Result<&str, Expected> {
    let crypt_char = |b: u8| b.is_ascii_alphanumeric() || b"./$=,-".contains(&b);
    let modular = v.starts_with('$') && v.matches('$').count() >= 3;
    let des = v.len() == 13;
    if (modular || des) && v.bytes().all(crypt_char) {
        Ok(v)
    } else {
        Err("a crypt(3) password hash such as $6$salt$hash (never a plain password)")
    }
}

/// Why a token on the kernel command line is refused, and what to do instead.
const TOKEN_ON_CMDLINE: Expected = "the token in a file, not on the kernel command line: \
     /proc/cmdline is readable by every local user; use ovirt.reg.token_file=PATH \
     (a root-owned 0600 file), or add ovirt.reg.insecure_token_on_cmdline to accept it";

/// A token: printable, no spaces, bounded.
fn parse_token(v: &str) -> Result<&str, Expected> {
    if !v.is_empty() && v.len() <= 512 && v.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(v)
    } else {
        Err("a token of 1 to 512 printable characters without spaces")
    }
}

/// The result of reading every source: the config, where each value came from, what was
/// wrong and what deserves a warning.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Loaded {
    pub config: Config,
    pub sources: BTreeMap<&'static str, Source>,
    pub errors: Vec<SettingError>,
    pub warnings: Vec<String>,
}

impl Loaded {
    /// Apply one source's settings. Later calls take precedence. Within a source the last
    /// value wins, except repeatable settings, which accumulate (and replace those of a
    /// lower source).
    pub fn apply_layer(&mut self, source: Source, raw: &[RawSetting]) {
        let mut seen = HashSet::new();
        for r in raw {
            let Some(setting) = lookup(&r.name) else {
                self.warn_unknown(&r.name, source);
                continue;
            };
            if let Some(reset) = setting.reset {
                if seen.insert(setting.name) {
                    reset(&mut self.config);
                }
            }
            self.apply_one(setting, r, source);
        }
        if source == Source::Cmdline {
            self.check_secrets_on_cmdline();
        }
    }

    fn apply_one(&mut self, setting: &'static Setting, raw: &RawSetting, source: Source) {
        let value = match (&raw.value, setting.flag) {
            (Some(v), _) => v.as_str(),
            (None, true) => "1",
            (None, false) => {
                self.error(setting, "", "a value (NAME=VALUE)", source);
                return;
            }
        };
        match (setting.apply)(&mut self.config, value) {
            Ok(()) => {
                self.sources.insert(setting.name, source);
            }
            Err(expected) => self.error(setting, value, &expected, source),
        }
    }

    /// Secrets on the kernel command line, once the whole line is read (the flag may come
    /// after the token). `/proc/cmdline` is readable by every local user and kept in boot
    /// loader configs: a token there is refused (the boot fails closed at `configured`)
    /// unless the operator accepted that with `ovirt.reg.insecure_token_on_cmdline`; other
    /// secrets (a password hash) and accepted tokens are warned about.
    fn check_secrets_on_cmdline(&mut self) {
        let inline = |s: &&Setting| s.secret && self.source_of(s.name) == Source::Cmdline;
        let given: Vec<&'static Setting> = SETTINGS.iter().filter(inline).collect();
        for setting in given {
            match setting.token {
                Some(forget) if !self.config.reg.insecure_token_on_cmdline => {
                    forget(&mut self.config);
                    self.sources.remove(setting.name);
                    self.error(setting, "", TOKEN_ON_CMDLINE, Source::Cmdline);
                }
                _ => self.warnings.push(format!(
                    "{} was given on the kernel command line, which every local user can read; put it in a file instead",
                    setting.name
                )),
            }
        }
    }

    fn error(&mut self, setting: &Setting, value: &str, expected: &str, source: Source) {
        let value = if setting.secret {
            crate::secret::REDACTED.to_string()
        } else {
            value.to_string()
        };
        self.errors.push(SettingError {
            name: setting.name.to_string(),
            value,
            expected: expected.to_string(),
            source,
        });
    }

    /// Unknown arguments are ignored (the kernel command line is shared with everyone),
    /// but an unknown name in our own namespace is almost certainly a typo.
    fn warn_unknown(&mut self, name: &str, source: Source) {
        if name.starts_with("ovirt.reg.") {
            let name = crate::escape::controls(name);
            self.warnings
                .push(format!("unknown setting {name} (from {source}) ignored"));
        }
    }

    /// The settings that did not come from the defaults, as kernel arguments (secrets
    /// left out), quoted as the kernel expects.
    pub fn to_kargs(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in SETTINGS
            .iter()
            .filter(|s| !s.secret && self.sources.contains_key(s.name))
        {
            for v in (s.show)(&self.config) {
                out.push(if v.contains(char::is_whitespace) {
                    format!("{}=\"{v}\"", s.name)
                } else {
                    format!("{}={v}", s.name)
                });
            }
        }
        out
    }

    /// What a run needs and no source gave, one line per setting naming the expected
    /// form: the engine (unless registration is disabled) and a way to trust its CA.
    /// `config check` reports these with the errors; the run would fail on them later.
    pub fn missing(&self) -> Vec<String> {
        let reg = &self.config.reg;
        let mut out = Vec::new();
        if reg.vdsm_disabled {
            return out;
        }
        // A value given but refused is reported as such, not again as missing.
        let refused = |name: &str| self.errors.iter().any(|e| e.name == name);
        // Without management_server the engine is found by DNS SRV, which needs a real pin:
        // insecure_tofu does not extend to an engine DNS named.
        let discovers = reg.engine.is_none() && !refused("management_server");
        let pin_refused = refused("ovirt.reg.ca_pin") || refused("management_server_fingerprint");
        let pinned = !reg.ca_pins.is_empty() || reg.ca_sha1.is_some();
        if discovers && !pinned && !pin_refused {
            out.push(
                "ovirt.reg.ca_pin: missing: expected sha256:<64 hex digits> (SHA-256 of the engine CA \
                 certificate in DER) or management_server_fingerprint=: without management_server= \
                 the engine is found by DNS SRV, which needs a pin (ovirt.reg.insecure_tofu is not \
                 enough), or give management_server=HOST[:PORT]"
                    .to_string(),
            );
        } else if !discovers && !pinned && !reg.insecure_tofu && !pin_refused {
            out.push(
                "ovirt.reg.ca_pin: missing: expected sha256:<64 hex digits> (SHA-256 of the engine CA \
                 certificate in DER), or management_server_fingerprint=, or ovirt.reg.insecure_tofu"
                    .to_string(),
            );
        }
        out
    }

    /// Every error on one line, `; `-separated.
    pub fn error_summary(&self) -> String {
        let list: Vec<String> = self.errors.iter().map(|e| e.to_string()).collect();
        list.join("; ")
    }

    /// Where a setting's value came from (default when never set).
    pub fn source_of(&self, name: &str) -> Source {
        self.sources.get(name).copied().unwrap_or(Source::Default)
    }
}
