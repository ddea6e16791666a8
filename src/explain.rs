//! What each setting means for the run, for `config show`: the value interpreted (a MAC
//! address, not `01-52-54-…`; `ip=` split into its fields; the engine as host and port;
//! durations in seconds) as JSON for tools and as one line for people.
//!
//! Above `config` and `net`: the network's own rules (`net::addressing`, `nic::wanted`)
//! say what the node will do, so the explanation cannot drift from the behaviour. Secrets
//! are explained as "set" only, never shown.

use serde::Serialize;
use serde_json::{json, Value};
use std::net::IpAddr;

use crate::config::{Config, Loaded, Source, SETTINGS};
use crate::net::config_files::Addressing;
use crate::net::nic::{self, Wanted};
use crate::values::{
    Bond, BootIf, EngineAddr, Host, IpMethod, IpSetting, KeyType, NetConf, Netmask, NetworkLayout,
    Seconds, Vlan, DEFAULT_ENGINE_PORT,
};

/// One setting's interpretation: `interpreted` is `null` when the setting is not set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meaning {
    pub interpreted: Value,
    pub text: String,
}

fn meaning(interpreted: Value, text: impl Into<String>) -> Meaning {
    Meaning {
        interpreted,
        text: text.into(),
    }
}

/// Not set: what happens instead.
fn unset(text: &str) -> Meaning {
    meaning(Value::Null, format!("not set: {text}"))
}

/// What a setting is for, in a few words (the `--explain` form starts with it).
pub fn about(name: &str) -> &'static str {
    match name {
        "management_server" => "the engine to register with",
        "management_port" => "the engine's HTTPS port (legacy)",
        "management_server_fingerprint" => "legacy SHA-1 pin of the engine CA",
        "rhevm_admin_password" => "root password hash (legacy)",
        "ovirt_vdsm_disable" => "skip registration",
        "ssh_pwauth" => "sshd password log-in",
        "BOOTIF" => "the NIC the node booted from",
        "ip" => "addressing of the management network",
        "netmask" => "netmask for a static ip=",
        "gateway" => "default gateway for a static ip=",
        "ipv6" => "IPv6 on the management network",
        "dns" => "name servers",
        "ntp" => "time servers",
        "hostname" => "this node's host name",
        "vlan" => "VLAN of the management network",
        "bond" => "bond under the management bridge",
        "network_layout" => "management network layout",
        "ovirt.reg.ca_pin" => "SHA-256 pins of the engine CA",
        "ovirt.reg.insecure_tofu" => "trust the first engine CA seen",
        "ovirt.reg.domain" => "where DNS SRV looks for the engine",
        "ovirt.reg.insecure_token_on_cmdline" => "accept a token on the kernel command line",
        "ovirt.reg.token_file" => "file holding the enrolment token",
        "ovirt.reg.token" => "enrolment token",
        "vdsm_reg.ticket" => "enrolment token (legacy ticket)",
        "ovirt.reg.vds_port" => "vdsm's port, sent to the engine",
        "ovirt.reg.timeout" => "deadline of the whole run",
        "ovirt.reg.approval_timeout" => "how long to wait for approval",
        "ovirt.reg.retry_base" => "first retry delay",
        "ovirt.reg.retry_cap" => "longest retry delay",
        "ovirt.reg.key" => "type of the host keys",
        "ovirt.reg.store" => "the config store",
        "ovirt.reg.debug" => "debug logging",
        "ovirt.reg.poweroff" => "power off at the end (process 1 only)",
        "ovirt.reg.nic" => "the management NIC by name",
        "ovirt.reg.bridge" => "name of the management bridge",
        "ovirt.reg.link_timeout" => "how long to wait for a link",
        "ovirt.reg.netconf" => "format of the persisted network files",
        _ => "",
    }
}

/// The interpretation of setting `name` in `loaded` (its current value, or what happens
/// without one).
pub fn setting(name: &str, loaded: &Loaded) -> Meaning {
    let c = &loaded.config;
    let secret = SETTINGS.iter().any(|s| s.name == name && s.secret);
    if secret {
        return secret_meaning(name, c);
    }
    registration(name, c)
        .or_else(|| network(name, c))
        .unwrap_or_else(|| unset(""))
}

/// The engine, trust and run settings.
fn registration(name: &str, c: &Config) -> Option<Meaning> {
    match name {
        "management_server" => Some(engine(c)),
        "management_port" => Some(management_port(c)),
        "management_server_fingerprint" => Some(match &c.reg.ca_sha1 {
            Some(f) => meaning(
                json!({ "algorithm": "sha1", "fingerprint": f.to_string() }),
                format!("the engine CA's SHA-1 must be {f}"),
            ),
            None => unset("no SHA-1 pin"),
        }),
        "ovirt_vdsm_disable" => Some(flag(
            c.reg.vdsm_disabled,
            "the node is not registered (the run stops at step configured)",
            "the node registers with the engine",
        )),
        "ssh_pwauth" => Some(match c.reg.ssh_pwauth {
            Some(on) => meaning(
                json!({ "on": on }),
                format!(
                    "password log-in {}; passed on as OVIRT_SSH_PWAUTH in /etc/default/ovirt",
                    if on { "allowed" } else { "refused" }
                ),
            ),
            None => unset("sshd keeps its own default"),
        }),
        "ovirt.reg.ca_pin" => Some(pins(c)),
        "ovirt.reg.domain" => Some(discovery_domain(c)),
        "ovirt.reg.insecure_tofu" => Some(flag(
            c.reg.insecure_tofu,
            "INSECURE: without a pin the first CA seen is trusted and pinned in the store",
            "an engine CA that matches no pin is refused",
        )),
        "ovirt.reg.insecure_token_on_cmdline" => Some(flag(
            c.reg.insecure_token_on_cmdline,
            "INSECURE: a token on the kernel command line (readable by every local user) is accepted",
            "a token on the kernel command line is refused",
        )),
        "ovirt.reg.token_file" => Some(match &c.reg.token_file {
            Some(p) => meaning(
                json!({ "path": p }),
                format!("the token is read from {p} (root-owned, 0600 or 0400, else refused)"),
            ),
            None => unset("no token file"),
        }),
        "ovirt.reg.vds_port" => Some(meaning(
            json!({ "port": c.reg.vds_port }),
            format!("vdsm's port {}, sent to the engine as vdsPort", c.reg.vds_port),
        )),
        "ovirt.reg.timeout" => Some(seconds(c.reg.timeout)),
        "ovirt.reg.approval_timeout" => Some(seconds(c.reg.approval_timeout)),
        "ovirt.reg.retry_base" => Some(seconds(c.reg.retry_base)),
        "ovirt.reg.retry_cap" => Some(seconds(c.reg.retry_cap)),
        "ovirt.reg.key" => Some(match c.reg.key {
            KeyType::Ecdsa => meaning(json!({ "type": "ecdsa", "bits": 256 }), "ECDSA P-256 host keys"),
            KeyType::Rsa => meaning(json!({ "type": "rsa", "bits": 2048 }), "RSA-2048 host keys"),
        }),
        "ovirt.reg.store" => Some(match &c.reg.store {
            Some(p) if p == "none" => meaning(
                json!({ "none": true }),
                "no config store: files are written in place (a host whose root file system is persistent)",
            ),
            Some(p) => meaning(
                json!({ "path": p }),
                format!("the config store is {p} (a directory, or a block device mounted at /config)"),
            ),
            None => unset("the filesystem labelled CONFIG"),
        }),
        "ovirt.reg.debug" => Some(flag(c.reg.debug, "debug messages are logged", "no debug messages")),
        "ovirt.reg.poweroff" => Some(flag(
            c.reg.poweroff,
            "process 1 powers off at the end when there is no root= or init= to hand over to",
            "process 1 stays up when there is nothing to hand over to",
        )),
        _ => None,
    }
}

/// The management network's settings.
fn network(name: &str, c: &Config) -> Option<Meaning> {
    match name {
        "BOOTIF" => Some(match &c.net.bootif {
            Some(b) => bootif(b),
            None => unset("the NIC comes from ovirt.reg.nic, the interface of ip=, else the first NIC with carrier"),
        }),
        "ip" => Some(match &c.net.ip {
            Some(ip) => ip_setting(ip),
            None => unset("DHCP (IPv4) on the management bridge"),
        }),
        "netmask" => Some(match c.net.netmask {
            Some(m) => netmask(m),
            None => unset("the netmask of ip="),
        }),
        "gateway" => Some(match c.net.gateway {
            Some(g) => meaning(
                json!({ "address": g.to_string(), "family": family(&g) }),
                format!("default route via {g} (when ip= gives no gateway)"),
            ),
            None => unset("the gateway of ip=, or DHCP's"),
        }),
        "ipv6" => Some(match c.net.ipv6 {
            Some(mode) => meaning(
                json!({ "mode": mode.to_string() }),
                format!("IPv6 {mode}: the bridge waits a little for a global address from router advertisements"),
            ),
            None => unset("no IPv6 configuration"),
        }),
        "dns" if c.net.dns.is_empty() => Some(unset("the name servers of the DHCP lease")),
        "dns" => Some({
            let list = addresses(&c.net.dns);
            meaning(
                json!({ "servers": list }),
                format!("name servers {}", list.join(", ")),
            )
        }),
        "ntp" => Some(ntp(c)),
        "hostname" => Some(match &c.net.hostname {
            Some(h) => meaning(
                json!({ "hostname": h.to_string() }),
                format!("host name {h}"),
            ),
            None => unset("the host name of ip=, else DHCP's"),
        }),
        "vlan" => Some(match &c.net.vlan {
            Some(v) => vlan(v, &c.net.bridge.0),
            None => unset("no VLAN: the bridge is on the NIC (or bond) itself"),
        }),
        "bond" => Some(match &c.net.bond {
            Some(b) => bond(b),
            None => unset("no bond"),
        }),
        "network_layout" => Some(match c.net.layout {
            Some(NetworkLayout::Bridged) | None => meaning(
                json!({ "layout": "bridged", "supported": true }),
                format!(
                    "bridged: the management bridge {} over the NIC",
                    c.net.bridge
                ),
            ),
            Some(NetworkLayout::Direct) => meaning(
                json!({ "layout": "direct", "supported": false }),
                "direct is not supported: the bridge is built anyway",
            ),
        }),
        "ovirt.reg.link_timeout" => Some(seconds(c.net.link_timeout)),
        "ovirt.reg.nic" => Some(match &c.net.nic {
            Some(n) => meaning(
                json!({ "interface": n.to_string() }),
                format!("the management NIC is {n} (unless BOOTIF or vlan=ID:NIC name one)"),
            ),
            None => unset("see BOOTIF"),
        }),
        "ovirt.reg.bridge" => Some(meaning(
            json!({ "name": c.net.bridge.to_string() }),
            format!("the management bridge is called {}", c.net.bridge),
        )),
        "ovirt.reg.netconf" => Some(match c.net.netconf {
            NetConf::Keyfile => meaning(json!({ "format": "keyfile" }), "NetworkManager keyfiles"),
            NetConf::Ifcfg => meaning(json!({ "format": "ifcfg" }), "ifcfg files (initscripts)"),
        }),
        _ => None,
    }
}

fn secret_meaning(name: &str, c: &Config) -> Meaning {
    let set = match name {
        "rhevm_admin_password" => c.reg.admin_password.is_some(),
        "ovirt.reg.token" => c.reg.token.is_some(),
        "vdsm_reg.ticket" => c.reg.ticket.is_some(),
        _ => false,
    };
    let what = match name {
        "rhevm_admin_password" => "accepted for compatibility, not applied and never written",
        _ => "sent to the engine with the certificate requests only",
    };
    if set {
        meaning(
            json!({ "set": true }),
            format!("set ({}; value not shown): {what}", crate::secret::REDACTED),
        )
    } else {
        meaning(json!({ "set": false }), "not set")
    }
}

fn flag(on: bool, when_on: &str, when_off: &str) -> Meaning {
    let text = if on {
        format!("on: {when_on}")
    } else {
        format!("off: {when_off}")
    };
    meaning(json!({ "on": on }), text)
}

fn family(a: &IpAddr) -> &'static str {
    if a.is_ipv4() {
        "ipv4"
    } else {
        "ipv6"
    }
}

fn addresses(list: &[IpAddr]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// Where the engine port comes from: `management_server`, `management_port`, the default.
fn port_from(c: &Config) -> &'static str {
    match (&c.reg.engine, c.reg.management_port) {
        (Some(EngineAddr { port: Some(_), .. }), _) => "management_server",
        (_, Some(_)) => "management_port",
        _ => "default",
    }
}

fn host_kind(h: &Host) -> &'static str {
    match h {
        Host::Ip(a) => family(a),
        Host::Name(_) => "dns",
    }
}

/// `ovirt.reg.domain=`: used only when the engine is found by DNS SRV.
fn discovery_domain(c: &Config) -> Meaning {
    let used = if c.reg.engine.is_some() {
        "not used: management_server names the engine"
    } else {
        "the engine is looked up there"
    };
    match &c.reg.domain {
        Some(d) => meaning(
            json!({ "domain": d.to_string(), "used": c.reg.engine.is_none() }),
            format!("DNS SRV _ovirt-engine._tcp.{d} and _ovirt._tcp.{d}: {used}"),
        ),
        None => unset(
            "DNS SRV discovery uses the DHCP lease's domain (resolv.conf's search), else the \
             host name's domain",
        ),
    }
}

fn engine(c: &Config) -> Meaning {
    let Some(e) = &c.reg.engine else {
        let text = "the engine is found by DNS SRV (_ovirt-engine._tcp, then _ovirt._tcp, \
                    under ovirt.reg.domain): the targets in priority and weight order, the \
                    first whose CA matches a pin";
        return match c.reg.engine_auto {
            true => meaning(json!({ "discover": "dns-srv" }), text),
            false => unset(text),
        };
    };
    let port = c.engine_port();
    let url = format!(
        "https://{}:{port}{}",
        e.host,
        crate::protocol::HOST_REGISTER
    );
    let kind = match host_kind(&e.host) {
        "dns" => "DNS name",
        "ipv4" => "IPv4 address",
        _ => "IPv6 address",
    };
    let from = match port_from(c) {
        "default" => "the default".to_string(),
        setting => format!("from {setting}"),
    };
    meaning(
        json!({
            "host": e.host.bare(),
            "host_kind": host_kind(&e.host),
            "port": port,
            "port_from": port_from(c),
            "url": url,
        }),
        format!(
            "engine {} ({kind}), port {port} ({from}): {url}",
            e.host.bare()
        ),
    )
}

fn management_port(c: &Config) -> Meaning {
    let Some(p) = c.reg.management_port else {
        return unset(&format!(
            "the port in management_server, else {DEFAULT_ENGINE_PORT}"
        ));
    };
    let used = port_from(c) == "management_port";
    let text = if used {
        format!("port {p}")
    } else {
        format!(
            "port {p}, not used: management_server gives port {}",
            c.engine_port()
        )
    };
    meaning(json!({ "port": p, "used": used }), text)
}

fn bootif(b: &BootIf) -> Meaning {
    match b {
        BootIf::Mac(m) => meaning(
            json!({ "kind": "mac", "mac": m.to_string() }),
            format!("the NIC with MAC {m} (pxelinux BOOTIF, Ethernet)"),
        ),
        BootIf::Link => meaning(json!({ "kind": "link" }), "the first NIC with carrier"),
        BootIf::Name(n) => meaning(
            json!({ "kind": "name", "interface": n.to_string() }),
            format!("the NIC named {n}"),
        ),
    }
}

fn method_word(m: IpMethod) -> &'static str {
    match m {
        IpMethod::Static => "static",
        IpMethod::Dhcp => "dhcp",
        IpMethod::Dhcp6 => "dhcp6",
        IpMethod::Auto6 => "auto6",
        IpMethod::Ibft => "ibft",
        IpMethod::Off => "off",
    }
}

/// `ip=` field by field; what the network step makes of it is in [`effective`].
fn ip_setting(ip: &IpSetting) -> Meaning {
    let method = ip.method.unwrap_or(IpMethod::Static);
    let mask = ip.netmask.and_then(|m| m.to_ipv4()).map(|m| m.to_string());
    let interpreted = json!({
        "method": method_word(method),
        "address": ip.address.map(|a| a.to_string()),
        "prefix": ip.netmask.map(|m| m.prefix),
        "netmask": mask,
        "peer": ip.peer.map(|a| a.to_string()),
        "gateway": ip.gateway.map(|a| a.to_string()),
        "hostname": ip.hostname.as_ref().map(|h| h.to_string()),
        "interface": ip.interface.as_ref().map(|i| i.to_string()),
        "mtu": ip.mtu,
        "mac": ip.mac.map(|m| m.to_string()),
    });
    let mut parts = vec![match (method, ip.address) {
        (_, Some(a)) => match ip.netmask {
            Some(m) => format!("static {a}/{}", m.prefix),
            None => format!("static {a} (prefix from netmask=)"),
        },
        (IpMethod::Dhcp, None) => "DHCP (IPv4)".to_string(),
        (IpMethod::Dhcp6, None) => "DHCPv6 (not supported here: use ipv6=)".to_string(),
        (IpMethod::Auto6, None) => {
            "IPv6 router advertisements (not supported here: use ipv6=)".to_string()
        }
        (IpMethod::Ibft, None) => "from the iBFT (not supported here)".to_string(),
        (IpMethod::Off, None) | (IpMethod::Static, None) => "no address".to_string(),
    }];
    if let Some(g) = ip.gateway {
        parts.push(format!("gateway {g}"));
    }
    if let Some(p) = ip.peer {
        parts.push(format!("peer {p}"));
    }
    if let Some(h) = &ip.hostname {
        parts.push(format!("host name {h}"));
    }
    if let Some(i) = &ip.interface {
        parts.push(format!("interface {i}"));
    }
    if let Some(mtu) = ip.mtu {
        parts.push(format!(
            "MTU {mtu} (not applied: the NIC keeps its default)"
        ));
    }
    if let Some(m) = ip.mac {
        parts.push(format!("MAC {m}"));
    }
    meaning(interpreted, parts.join(", "))
}

fn netmask(m: Netmask) -> Meaning {
    let dotted = m.to_ipv4().map(|d| d.to_string());
    let text = match &dotted {
        Some(d) => format!("prefix /{} ({d}), when ip= gives none", m.prefix),
        None => format!("prefix /{} (IPv6 only), when ip= gives none", m.prefix),
    };
    meaning(json!({ "prefix": m.prefix, "netmask": dotted }), text)
}

fn ntp(c: &Config) -> Meaning {
    if c.net.ntp_off {
        return meaning(
            json!({ "off": true, "servers": [] }),
            "off: no SNTP; the clock is checked against the engine's Date",
        );
    }
    if c.net.ntp.is_empty() {
        return unset("the clock is checked against the engine's Date");
    }
    let list: Vec<String> = c.net.ntp.iter().map(|h| h.to_string()).collect();
    meaning(
        json!({ "off": false, "servers": list }),
        format!("SNTP to {}, else the engine's Date", list.join(", ")),
    )
}

fn vlan(v: &Vlan, bridge: &str) -> Meaning {
    let on = match &v.nic {
        Some(n) => format!("on {n}"),
        None => "on the management NIC".to_string(),
    };
    meaning(
        json!({ "id": v.id, "parent": v.nic.as_ref().map(|n| n.to_string()) }),
        format!("tagged VLAN {} {on}, under the bridge {bridge}", v.id),
    )
}

fn bond(b: &Bond) -> Meaning {
    let o = &b.applied;
    let slaves: Vec<String> = b.slaves.iter().map(|s| s.to_string()).collect();
    let default = b.options.is_empty();
    let mut parts = vec![format!("{} of {}", b.name, slaves.join(", "))];
    if let Some(mode) = o.mode_name() {
        parts.push(format!("mode {mode}"));
    }
    let timers = [
        ("MII monitoring every", o.miimon),
        ("up delay", o.updelay),
        ("down delay", o.downdelay),
    ];
    for (what, ms) in timers {
        if let Some(ms) = ms {
            parts.push(format!("{what} {ms} ms"));
        }
    }
    if let Some(p) = o.xmit_hash_policy_name() {
        parts.push(format!("hash policy {p}"));
    }
    if let Some(r) = o.lacp_rate_name() {
        parts.push(format!("LACP rate {r}"));
    }
    let mut text = parts.join(", ");
    if default {
        text += " (vdsm's default)";
    }
    meaning(
        json!({
            "name": b.name.to_string(),
            "slaves": slaves,
            "mode": o.mode_name(),
            "mode_number": o.mode,
            "miimon_ms": o.miimon,
            "updelay_ms": o.updelay,
            "downdelay_ms": o.downdelay,
            "xmit_hash_policy": o.xmit_hash_policy_name(),
            "lacp_rate": o.lacp_rate_name(),
            "vdsm_default": default,
        }),
        text,
    )
}

fn pins(c: &Config) -> Meaning {
    if c.reg.ca_pins.is_empty() {
        return unset(if c.reg.ca_sha1.is_some() {
            "the SHA-1 pin is checked"
        } else if c.reg.insecure_tofu {
            "the first CA seen is trusted (ovirt.reg.insecure_tofu)"
        } else {
            "no pin: the node refuses the engine and prints the ovirt.reg.ca_pin= to add"
        });
    }
    let list: Vec<String> = c.reg.ca_pins.iter().map(|p| p.to_string()).collect();
    let text = match list.as_slice() {
        [one] => format!("the engine CA's SHA-256 must be {one}"),
        _ => format!(
            "the engine CA's SHA-256 must be one of {} pins (rollover)",
            list.len()
        ),
    };
    meaning(json!({ "algorithm": "sha256", "pins": list }), text)
}

/// A duration in seconds, with minutes or hours when they are whole.
fn seconds(s: Seconds) -> Meaning {
    let n = s.0;
    let human = match n {
        n if n >= 3600 && n % 3600 == 0 => format!(" ({} h)", n / 3600),
        n if n >= 60 && n % 60 == 0 => format!(" ({} min)", n / 60),
        _ => String::new(),
    };
    let unit = if n == 1 { "second" } else { "seconds" };
    meaning(json!({ "seconds": n }), format!("{n} {unit}{human}"))
}

/// What the run will do with the settings together: the engine it talks to, the NIC it
/// builds the bridge on, how the bridge is addressed, how the engine CA is trusted.
pub fn effective(loaded: &Loaded) -> Vec<(&'static str, Meaning)> {
    let c = &loaded.config;
    vec![
        ("engine", engine(c)),
        ("management_nic", management_nic(c)),
        ("addressing", addressing(c)),
        ("trust", trust(c)),
    ]
}

fn management_nic(c: &Config) -> Meaning {
    let port = match nic::wanted(&c.net) {
        Wanted::Mac(m) => json!({ "kind": "mac", "mac": m.to_string() }),
        Wanted::Name(n) => json!({ "kind": "name", "interface": n }),
        Wanted::FirstWithLink => json!({ "kind": "link" }),
    };
    let nic_text = match nic::wanted(&c.net) {
        Wanted::Mac(m) => format!("the NIC with MAC {m}"),
        Wanted::Name(n) => format!("the NIC {n}"),
        Wanted::FirstWithLink => "the first NIC with carrier".to_string(),
    };
    let under = match &c.net.bond {
        Some(b) => format!("bond {}", b.name),
        None => nic_text,
    };
    let text = match &c.net.vlan {
        Some(v) => format!("bridge {} over VLAN {} on {under}", c.net.bridge, v.id),
        None => format!("bridge {} over {under}", c.net.bridge),
    };
    meaning(
        json!({
            "bridge": c.net.bridge.to_string(),
            "nic": port,
            "bond": c.net.bond.as_ref().map(|b| b.name.to_string()),
            "vlan": c.net.vlan.as_ref().map(|v| v.id),
        }),
        text,
    )
}

fn addressing(c: &Config) -> Meaning {
    match crate::net::addressing(&c.net) {
        Ok(Addressing::Dhcp) => meaning(json!({ "method": "dhcp" }), "DHCP (IPv4)"),
        Ok(Addressing::Off) => meaning(json!({ "method": "off" }), "no address"),
        Ok(Addressing::Static {
            address,
            prefix,
            gateway,
        }) => {
            let via = match gateway {
                Some(g) => format!(", default route via {g}"),
                None => ", no default route".to_string(),
            };
            meaning(
                json!({
                    "method": "static",
                    "address": address.to_string(),
                    "prefix": prefix,
                    "gateway": gateway.map(|g| g.to_string()),
                }),
                format!("static {address}/{prefix}{via}"),
            )
        }
        Err(e) => meaning(
            json!({ "method": null, "error": format!("{e:#}") }),
            format!("refused at step network_up: {e:#}"),
        ),
    }
}

fn trust(c: &Config) -> Meaning {
    let (how, text) = if !c.reg.ca_pins.is_empty() || c.reg.ca_sha1.is_some() {
        ("pinned", "the engine CA must match a pin")
    } else if c.reg.insecure_tofu {
        (
            "tofu",
            "INSECURE: the first engine CA seen is trusted and pinned",
        )
    } else {
        (
            "none",
            "no pin: the engine is refused (add ovirt.reg.ca_pin=sha256:…)",
        )
    };
    meaning(json!({ "mode": how }), text)
}

/// A value as printed: control characters escaped, `-` when unset.
fn shown(values: &[String]) -> String {
    let value = values.join(" ");
    if value.is_empty() {
        "-".to_string()
    } else {
        crate::escape::controls(&value).into_owned()
    }
}

/// Errors and warnings, one line each, after the settings.
fn problems(loaded: &Loaded) -> String {
    let mut out = String::new();
    for e in &loaded.errors {
        out += &format!("error: {e}\n");
    }
    for w in &loaded.warnings {
        out += &format!("warning: {}\n", crate::escape::controls(w));
    }
    out
}

/// `config show`: every setting with its value and source; under each one that was given,
/// what it means; then what the run will do.
pub fn text(loaded: &Loaded) -> String {
    let mut out = String::from("# effective configuration (kernel command line > /etc/default/ovirt > vdsm-reg.conf > defaults)\n");
    for s in SETTINGS {
        let source = loaded.source_of(s.name);
        let value = shown(&(s.show)(&loaded.config));
        out += &format!("{:<32} = {value:<40} ({source})\n", s.name);
        if source != Source::Default {
            let m = setting(s.name, loaded);
            out += &format!("{:<32}   → {}\n", "", crate::escape::controls(&m.text));
        }
    }
    out += &format!(
        "{:<32} = {}\n",
        "(effective engine port)",
        loaded.config.engine_port()
    );
    for (name, m) in effective(loaded) {
        let label = format!("({})", name.replace('_', " "));
        out += &format!("{label:<32} = {}\n", crate::escape::controls(&m.text));
    }
    out + &problems(loaded)
}

/// `config show --explain`: one line per setting, `NAME = VALUE (SOURCE): ABOUT: MEANING`.
pub fn explained(loaded: &Loaded) -> String {
    let mut out = String::new();
    for s in SETTINGS {
        let value = shown(&(s.show)(&loaded.config));
        let m = setting(s.name, loaded);
        let line = format!(
            "{} = {value} ({}): {}: {}",
            s.name,
            loaded.source_of(s.name),
            about(s.name),
            m.text
        );
        out += &crate::escape::controls(&line);
        out.push('\n');
    }
    for (name, m) in effective(loaded) {
        let line = format!("({}): {}", name.replace('_', " "), m.text);
        out += &crate::escape::controls(&line);
        out.push('\n');
    }
    out + &problems(loaded)
}

/// `config show --json` (its keys are documented in README.md and only ever added to).
pub fn json(loaded: &Loaded) -> Value {
    let settings: serde_json::Map<String, Value> = SETTINGS
        .iter()
        .map(|s| {
            let m = setting(s.name, loaded);
            let entry = json!({
                "values": (s.show)(&loaded.config),
                "source": loaded.source_of(s.name),
                "about": about(s.name),
                "interpreted": m.interpreted,
                "meaning": m.text,
            });
            (s.name.to_string(), entry)
        })
        .collect();
    let effective: serde_json::Map<String, Value> = effective(loaded)
        .into_iter()
        .map(|(name, m)| {
            (
                name.to_string(),
                json!({ "interpreted": m.interpreted, "meaning": m.text }),
            )
        })
        .collect();
    json!({
        "settings": settings,
        "effective": effective,
        "config": loaded.config,
        "engine_port": loaded.config.engine_port(),
        "errors": loaded.errors,
        "warnings": loaded.warnings,
    })
}

#[cfg(test)]
mod tests;
