//! The configuration files the real oVirt Node reads and writes, kept compatible:
//!
//! * `/etc/default/ovirt`: shell variables `OVIRT_<NAME>="value"`, written by the node's
//!   early boot from the kernel command line (docs/ovirt-protocol.md §1.1, §1.3).
//! * `/etc/vdsm-reg/vdsm-reg.conf`: INI section `[vars]` of vdsm-reg (§2.2, §2.3).
//!
//! Both are read and updated through `conffile`, line by line: unknown lines and comments
//! are kept as they are. This module knows which keys mean which settings.

use std::net::IpAddr;

use crate::conffile::{self, IniFile, ShellFile, Style};
use crate::config::{Config, Loaded, RawSetting, SettingError, Source, SETTINGS};
use crate::values::{parse_ip, IpMethod, IpSetting, Netmask};

// ---------------------------------------------------------------- /etc/default/ovirt

/// `OVIRT_<NAME>` for a setting: `management_server` → `OVIRT_MANAGEMENT_SERVER`,
/// `ovirt_vdsm_disable` → `OVIRT_VDSM_DISABLE`, `ovirt.reg.ca_pin` → `OVIRT_REG_CA_PIN`.
pub fn ovirt_var(setting: &str) -> String {
    let bare = setting
        .strip_prefix("ovirt.")
        .or_else(|| setting.strip_prefix("ovirt_"))
        .unwrap_or(setting);
    format!("OVIRT_{}", bare.replace('.', "_").to_ascii_uppercase())
}

/// Settings the node keeps in other variables (`ip=` is split in three, like ovirt-early).
const IP_ADDRESS: &str = "OVIRT_IP_ADDRESS";
const IP_GATEWAY: &str = "OVIRT_IP_GATEWAY";
const IP_NETMASK: &str = "OVIRT_IP_NETMASK";

/// Read `/etc/default/ovirt` into `loaded`.
pub fn apply_default_ovirt(loaded: &mut Loaded, text: &str) {
    let vars = conffile::shell_values(text);
    let get = |k: &str| conffile::last(&vars, k);
    let mut raw = Vec::new();
    for s in SETTINGS
        .iter()
        .filter(|s| !s.secret && !matches!(s.name, "ip" | "netmask" | "gateway"))
    {
        if let Some(v) = get(&ovirt_var(s.name)) {
            for part in split_repeated(s, v) {
                raw.push(RawSetting::new(s.name, Some(part)));
            }
        }
    }
    match ip_from_vars(get(IP_ADDRESS), get(IP_GATEWAY), get(IP_NETMASK)) {
        Ok(ip) => raw.extend(ip),
        Err(e) => loaded.errors.push(e),
    }
    loaded.apply_layer(Source::DefaultOvirt, &raw);
}

/// A repeatable setting is kept as space-separated values in one variable.
fn split_repeated<'a>(s: &crate::config::Setting, v: &'a str) -> Vec<&'a str> {
    if s.reset.is_some() {
        v.split_whitespace().collect()
    } else {
        vec![v]
    }
}

/// `OVIRT_IP_ADDRESS` empty means DHCP (ovirt-early clears it for `ip=dhcp`). An address
/// becomes `ip=ADDRESS::GATEWAY:NETMASK`, from checked values only: `ip=` is split at colons,
/// so an odd value would spill into the next fields (a netmask `00::5` named interface `5`).
fn ip_from_vars(
    addr: Option<&str>,
    gw: Option<&str>,
    mask: Option<&str>,
) -> Result<Vec<RawSetting>, SettingError> {
    let mut raw = Vec::new();
    match addr {
        Some("") => raw.push(RawSetting::new("ip", Some("dhcp"))),
        Some("off") => raw.push(RawSetting::new("ip", Some("off"))),
        Some(a) => {
            let v = format!(
                "{}::{}:{}",
                ip_field(IP_ADDRESS, a)?,
                gw.filter(|g| !g.is_empty())
                    .map(|g| ip_field(IP_GATEWAY, g))
                    .transpose()?
                    .unwrap_or_default(),
                mask.filter(|m| !m.is_empty())
                    .map(netmask_field)
                    .transpose()?
                    .unwrap_or_default()
            );
            raw.push(RawSetting::new("ip", Some(&v)));
            return Ok(raw);
        }
        None => {}
    }
    if let Some(g) = gw.filter(|g| !g.is_empty()) {
        raw.push(RawSetting::new("gateway", Some(g)));
    }
    if let Some(m) = mask.filter(|m| !m.is_empty()) {
        raw.push(RawSetting::new("netmask", Some(m)));
    }
    Ok(raw)
}

/// An address as one field of `ip=` (IPv6 in brackets).
fn ip_field(var: &str, value: &str) -> Result<String, SettingError> {
    match parse_ip(value) {
        Some(IpAddr::V6(a)) => Ok(format!("[{a}]")),
        Some(IpAddr::V4(a)) => Ok(a.to_string()),
        None => Err(file_error(var, value, "an IP address")),
    }
}

fn netmask_field(value: &str) -> Result<String, SettingError> {
    value
        .parse::<Netmask>()
        .map(|_| value.to_string())
        .map_err(|e| file_error(IP_NETMASK, value, e))
}

fn file_error(var: &str, value: &str, expected: &str) -> SettingError {
    SettingError {
        name: var.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
        source: Source::DefaultOvirt,
    }
}

/// The variables to store for the settings that came from the kernel command line
/// (what ovirt-early saves); secrets are never written to this world-readable file.
pub fn default_ovirt_vars(loaded: &Loaded) -> Vec<(String, String)> {
    let c = &loaded.config;
    let mut out = Vec::new();
    for s in SETTINGS
        .iter()
        .filter(|s| !s.secret && saved(loaded.source_of(s.name)))
    {
        match s.name {
            "ip" | "netmask" | "gateway" => {}
            _ => out.push((ovirt_var(s.name), (s.show)(c).join(" "))),
        }
    }
    out.extend(ip_vars(c, loaded));
    out
}

/// Settings given for this run (the command line, `setup`'s answers), saved in the file.
fn saved(source: Source) -> bool {
    matches!(source, Source::Cmdline | Source::Setup)
}

/// `OVIRT_IP_ADDRESS/GATEWAY/NETMASK` from `ip=` (its fields first) or `gateway=`/`netmask=`.
fn ip_vars(c: &Config, loaded: &Loaded) -> Vec<(String, String)> {
    let from_cmdline = |n: &str| saved(loaded.source_of(n));
    let ip = c.net.ip.as_ref().filter(|_| from_cmdline("ip"));
    let mut out = Vec::new();
    if let Some(ip) = ip {
        out.push((IP_ADDRESS.to_string(), ip_address_value(ip)));
    }
    let gw = ip
        .and_then(|i| i.gateway)
        .or(c.net.gateway.filter(|_| from_cmdline("gateway")));
    if let Some(gw) = gw {
        out.push((IP_GATEWAY.to_string(), gw.to_string()));
    }
    let mask = ip
        .and_then(|i| i.netmask)
        .or(c.net.netmask.filter(|_| from_cmdline("netmask")));
    if let Some(mask) = mask {
        out.push((IP_NETMASK.to_string(), mask.to_string()));
    }
    out
}

fn ip_address_value(ip: &IpSetting) -> String {
    match (ip.method, ip.address) {
        (_, Some(a)) => a.to_string(),
        (Some(IpMethod::Off), None) => "off".to_string(),
        _ => String::new(),
    }
}

/// Update `existing` (the current file, possibly empty) with `vars`: every assignment of the
/// same name is replaced in place (the reader, like the shell, takes the last one), others
/// are appended; every other line is kept.
pub fn render_default_ovirt(existing: &str, vars: &[(String, String)]) -> String {
    let mut file = ShellFile::new(existing);
    for (name, value) in vars {
        file.set(name, value);
    }
    file.text()
}

// ---------------------------------------------------------------- vdsm-reg.conf

/// vdsm-reg.conf's one section.
const VARS: &str = "vars";

/// Read `vdsm-reg.conf` into `loaded`. The string `None` means unset, as in vdsm-reg;
/// `vdc_host_ip` is used only when `vdc_host_name` is unset.
pub fn apply_vdsm_reg_conf(loaded: &mut Loaded, text: &str) {
    let vars = conffile::ini_values(text, VARS);
    let get = |k: &str| conffile::last(&vars, k).filter(|v| !v.is_empty() && *v != "None");
    let mut raw = Vec::new();
    // `None:71` is no engine either: the host part is what the writer puts in
    // `vdc_host_name`, so an engine named `None` could not be written and read back.
    let host_of = |k| get(k).filter(|v| v.split(':').next() != Some("None"));
    if let Some(host) = host_of("vdc_host_name").or(host_of("vdc_host_ip")) {
        let host = if host.contains(':') && parse_ip(host).is_some() {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        raw.push(RawSetting::new("management_server", Some(&host)));
    }
    let map = [
        ("vdc_host_port", "management_port"),
        ("fingerprint", "management_server_fingerprint"),
        ("ticket", "vdsm_reg.ticket"),
        ("vdc_reg_port", "ovirt.reg.vds_port"),
    ];
    for (key, setting) in map {
        if let Some(v) = get(key) {
            raw.push(RawSetting::new(setting, Some(v)));
        }
    }
    loaded.apply_layer(Source::VdsmRegConf, &raw);
}

/// Update `vdsm-reg.conf` the way vdsm-config does (docs/ovirt-protocol.md §2.3):
/// `vdc_host_name=` and `vdc_host_port=` rewritten without spaces around `=` (the boot
/// hook's `sed` patterns need that, §2.2), any `fingerprint=` line of `[vars]` removed and
/// the new one appended. Unlike vdsm-config's
/// `sed`, a missing key is added to `[vars]` instead of silently not written.
pub fn render_vdsm_reg_conf(existing: &str, config: &Config) -> String {
    let Some(engine) = &config.reg.engine else {
        return existing.to_string();
    };
    let mut file = IniFile::new(existing, Style::Tight);
    file.set(VARS, "vdc_host_name", &engine.host.bare());
    file.set(VARS, "vdc_host_port", &config.engine_port().to_string());
    if let Some(fp) = &config.reg.ca_sha1 {
        // Removed and added again (vdsm-config's `sed` and `echo >>`), but inside `[vars]`:
        // appended after another section it would not be read back.
        file.remove(VARS, "fingerprint");
        file.set(VARS, "fingerprint", &fp.to_string());
    }
    file.text()
}

#[cfg(test)]
mod tests;
