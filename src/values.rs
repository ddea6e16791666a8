//! Typed values of the configuration settings.
//!
//! Each type parses the text form used on the kernel command line (`FromStr`, whose error
//! is the expected form, for messages like "management_server=x:y: expected HOST[:PORT]")
//! and prints it back in canonical form (`Display`), which is also how it is serialised.

use serde::{Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

/// What a value should have looked like; shown to the operator.
pub type Expected = &'static str;

/// An expected form that names the offending part of the value (a slave given twice, an
/// unsupported bond option); most values need only the fixed [`Expected`].
pub type Expectation = std::borrow::Cow<'static, str>;

mod bond;
pub use bond::{Bond, BondOptions};

macro_rules! serialize_as_display {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}

serialize_as_display!(
    Host,
    EngineAddr,
    Mac,
    BootIf,
    Netmask,
    IpSetting,
    Hostname,
    Vlan,
    Bond,
    Sha1Fingerprint,
    Sha256Pin,
    Seconds,
    IfName
);

/// Split `text` at `sep`, but not inside `[...]` (IPv6 literals).
pub fn split_outside_brackets(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if c == sep && depth == 0 => {
                out.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// An IP address, optionally in brackets (`[fd00::1]`).
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let inner = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
    match inner {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => text.parse().ok(),
    }
}

/// A comma-separated list of IP addresses (`dns=`).
pub fn parse_ip_list(text: &str) -> Result<Vec<IpAddr>, Expected> {
    const EXPECTED: Expected = "a comma-separated list of IP addresses, e.g. 10.0.0.2,10.0.0.3";
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| parse_ip(s.trim()).ok_or(EXPECTED))
        .collect()
}

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`.
pub fn parse_bool(text: &str) -> Result<bool, Expected> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Ok(true),
        "0" | "false" | "no" | "off" | "n" => Ok(false),
        _ => Err("1, true, yes or 0, false, no"),
    }
}

/// A TCP port, 1..=65535.
pub fn parse_port(text: &str) -> Result<u16, Expected> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err("a port number from 1 to 65535"),
    }
}

/// An absolute path.
pub fn parse_abs_path(text: &str) -> Result<String, Expected> {
    // A '"' cannot be written on the kernel command line; control characters have no place
    // in a path an operator types.
    if text.starts_with('/') && !text.contains('"') && !text.contains(char::is_control) {
        Ok(text.to_string())
    } else {
        Err("an absolute path, e.g. /etc/ovirt-node-reg/token")
    }
}

/// A host name (RFC 1123) or FQDN, in the one form every consumer takes: the kernel
/// (`sethostname`), `/etc/hostname`, NetworkManager, the engine (the host's name, the
/// certificate's `DNS:` name). The rule, for every name we read (`hostname=`, `ip=`'s host
/// name field, DHCP's host and domain names, `/etc/hostname`, `management_server=`, `ntp=`):
/// dot-separated labels of 1 to 63 ASCII letters, digits and `-`, not starting or ending
/// with `-`, at most 253 characters in all; one trailing dot (an absolute name) is accepted
/// and dropped; case is kept. See docs/ARCHITECTURE.md, "One host-name rule".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostname(pub String);

impl FromStr for Hostname {
    type Err = Expected;
    fn from_str(text: &str) -> Result<Self, Expected> {
        const EXPECTED: Expected =
            "a host name such as node1.example.com (letters, digits, '-', '.')";
        let name = text.strip_suffix('.').unwrap_or(text);
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(EXPECTED);
        }
        Ok(Hostname(name.to_string()))
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host: IP address or DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(Hostname),
}

impl FromStr for Host {
    type Err = Expected;
    fn from_str(text: &str) -> Result<Self, Expected> {
        if let Some(ip) = parse_ip(text) {
            return Ok(Host::Ip(ip));
        }
        // All-numeric dotted text that is not an IPv4 address is a typo, not a name.
        if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err("an IPv4 address such as 10.0.0.1 or a host name");
        }
        text.parse()
            .map(Host::Name)
            .map_err(|_| "an IP address or a host name")
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(a) => write!(f, "{a}"),
            Host::Name(n) => write!(f, "{n}"),
        }
    }
}

impl Host {
    /// The host without IPv6 brackets, as legacy files (vdsm-reg.conf) hold it.
    pub fn bare(&self) -> String {
        match self {
            Host::Ip(a) => a.to_string(),
            Host::Name(n) => n.0.clone(),
        }
    }
}

/// `management_server=HOST[:PORT]`; IPv6 as `[fd00::1]:8443` (or bare `fd00::1`, no port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineAddr {
    pub host: Host,
    pub port: Option<u16>,
}

/// The engine's HTTPS port when none is given (engine >= 3.1, docs/ovirt-protocol.md §6.5).
pub const DEFAULT_ENGINE_PORT: u16 = 443;

impl FromStr for EngineAddr {
    type Err = Expected;
    fn from_str(text: &str) -> Result<Self, Expected> {
        const EXPECTED: Expected = "HOST[:PORT], e.g. engine.example.com:443 or [fd00::1]:8443";
        let (host, port) = split_host_port(text).ok_or(EXPECTED)?;
        let host = host.parse::<Host>().map_err(|_| EXPECTED)?;
        let port = port.map(parse_port).transpose().map_err(|_| EXPECTED)?;
        Ok(EngineAddr { host, port })
    }
}

/// `host:port`, `[v6]:port`, `[v6]`, bare `v6` (more than one colon), or `host`.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if text.starts_with('[') {
        let end = text.find(']')?;
        let rest = &text[end + 1..];
        return match rest.strip_prefix(':') {
            Some(port) => Some((&text[..=end], Some(port))),
            None if rest.is_empty() => Some((text, None)),
            None => None,
        };
    }
    match text.matches(':').count() {
        0 => Some((text, None)),
        1 => text.split_once(':').map(|(h, p)| (h, Some(p))),
        _ => Some((text, None)),
    }
}

impl fmt::Display for EngineAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = Expected;
    fn from_str(text: &str) -> Result<Self, Expected> {
        let parts: Vec<&str> = text.split([':', '-']).collect();
        parse_octets(&parts).ok_or("a MAC address such as 52:54:00:12:34:56")
    }
}

fn parse_octets(parts: &[&str]) -> Option<Mac> {
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (slot, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *slot = u8::from_str_radix(p, 16).ok()?;
    }
    Some(Mac(mac))
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl Mac {
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }
}

/// A network interface name (1..=15 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfName(pub String);

impl FromStr for IfName {
    type Err = Expected;
    fn from_str(text: &str) -> Result<Self, Expected> {
        let ok = !text.is_empty()
            && text.len() <= 15
            && text != "."
            && text != ".."
            // The kernel allows more, but ':' ',' '[' ']' separate fields of ip=/bond=/vlan=
            // and '"' is command-line quoting; real names use only these.
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@+".contains(&b));
        if ok {
            Ok(IfName(text.to_string()))
        } else {
            Err("an interface name such as eth0 (at most 15 letters, digits, '-', '_', '.', '@', '+')")
        }
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `BOOTIF=`: the management NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootIf {
    /// pxelinux `IPAPPEND 2` (`01-52-54-00-12-34-56`, hardware type 01) or a plain MAC.
    Mac(Mac),
    /// `link`: the first NIC with carrier.
    Link,
    Name(IfName),
}

impl FromStr for BootIf {
    type Err = Expected;
    fn from_str(text: &str) -> Result<Self, Expected> {
        const EXPECTED: Expected =
            "a pxelinux MAC (01-52-54-00-12-34-56), a MAC (52:54:00:12:34:56), an interface name or 'link'";
        if text == "link" {
            return Ok(BootIf::Link);
        }
        let parts: Vec<&str> = text.split([':', '-']).collect();
        // pxelinux prefixes the ARP hardware type; 01 is Ethernet, the only one we can use.
        if parts.len() == 7 {
            return match parts[0] {
                "01" => parse_octets(&parts[1..]).map(BootIf::Mac).ok_or(EXPECTED),
                _ => Err(
                    "a pxelinux BOOTIF with hardware type 01 (Ethernet), e.g. 01-52-54-00-12-34-56",
                ),
            };
        }
        if let Some(mac) = parse_octets(&parts) {
            // A NIC's own address is never multicast (low bit of the first octet); such a
            // value is a pxelinux BOOTIF with an octet missing.
            return if mac.0[0] & 1 == 0 {
                Ok(BootIf::Mac(mac))
            } else {
                Err(EXPECTED)
            };
        }
        if text.contains(['-', ':']) && text.split([':', '-']).count() > 2 {
            return Err(EXPECTED);
        }
        text.parse().map(BootIf::Name).map_err(|_| EXPECTED)
    }
}

impl fmt::Display for BootIf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootIf::Mac(m) => write!(f, "01-{}", m.to_string().replace(':', "-")),
            BootIf::Link => f.write_str("link"),
            BootIf::Name(n) => write!(f, "{n}"),
        }
    }
}

/// A netmask: dotted IPv4 mask (`255.255.255.0`) or prefix length (`24`, `64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Netmask {
    pub prefix: u8,
    /// Given in dotted form: printed back the same way.
    pub dotted: bool,
}

impl FromStr for Netmask {
    type Err = Expected;
    fn from_str(text: &str) -> Result<Self, Expected> {
        const EXPECTED: Expected =
            "a netmask such as 255.255.255.0 or a prefix length from 0 to 128";
        if let Ok(prefix) = text.parse::<u8>() {
            return if prefix <= 128 {
                Ok(Netmask {
                    prefix,
                    dotted: false,
                })
            } else {
                Err(EXPECTED)
            };
        }
        let bits = u32::from(text.parse::<Ipv4Addr>().map_err(|_| EXPECTED)?);
        // A mask is ones then zeros: its inverse plus one is a power of two.
        if (!bits).wrapping_add(1) & !bits != 0 {
            return Err("a contiguous netmask such as 255.255.255.0");
        }
        Ok(Netmask {
            prefix: bits.count_ones() as u8,
            dotted: true,
        })
    }
}

impl Netmask {
    /// The IPv4 dotted form, when the prefix fits IPv4.
    pub fn to_ipv4(&self) -> Option<Ipv4Addr> {
        match self.prefix {
            0 => Some(Ipv4Addr::UNSPECIFIED),
            p @ 1..=32 => Some(Ipv4Addr::from(u32::MAX << (32 - p))),
            _ => None,
        }
    }
}

impl fmt::Display for Netmask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.dotted, self.to_ipv4()) {
            (true, Some(mask)) => write!(f, "{mask}"),
            _ => write!(f, "{}", self.prefix),
        }
    }
}

/// How `ip=` asks the interface to be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpMethod {
    Static,
    Dhcp,
    Dhcp6,
    Auto6,
    Ibft,
    Off,
}

impl IpMethod {
    fn from_word(w: &str) -> Option<IpMethod> {
        Some(match w {
            "dhcp" | "on" | "any" => IpMethod::Dhcp,
            "dhcp6" => IpMethod::Dhcp6,
            "auto6" => IpMethod::Auto6,
            "ibft" => IpMethod::Ibft,
            "off" | "none" => IpMethod::Off,
            _ => return None,
        })
    }

    fn word(&self) -> &'static str {
        match self {
            IpMethod::Static => "none",
            IpMethod::Dhcp => "dhcp",
            IpMethod::Dhcp6 => "dhcp6",
            IpMethod::Auto6 => "auto6",
            IpMethod::Ibft => "ibft",
            IpMethod::Off => "off",
        }
    }
}

/// `ip=` in its pxelinux (`client:server:gw:netmask`) and dracut
/// (`client:[peer]:gw:netmask:hostname:iface:method[:mtu[:mac]]`, `iface:method[:mtu[:mac]]`,
/// `dhcp`) forms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpSetting {
    pub method: Option<IpMethod>,
    pub address: Option<IpAddr>,
    pub peer: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
    pub netmask: Option<Netmask>,
    pub hostname: Option<Hostname>,
    pub interface: Option<IfName>,
    pub mtu: Option<u16>,
    pub mac: Option<Mac>,
}

const IP_EXPECTED: Expected = "dhcp, off, CLIENT:SERVER:GATEWAY:NETMASK (pxelinux) or \
     CLIENT:[PEER]:GATEWAY:NETMASK:HOSTNAME:IFACE:none|dhcp[:MTU[:MAC]] (dracut)";

impl FromStr for IpSetting {
    type Err = Expected;
    fn from_str(text: &str) -> Result<Self, Expected> {
        if let Some(method) = IpMethod::from_word(text) {
            return Ok(IpSetting {
                method: Some(method),
                ..Default::default()
            });
        }
        let fields = split_outside_brackets(text, ':');
        // `iface:method…` has a method word second; the static forms have an address there.
        let iface_form = fields.len() >= 2 && IpMethod::from_word(fields[1]).is_some();
        if iface_form && !fields[0].is_empty() && parse_ip(fields[0]).is_none() {
            return parse_iface_form(&fields);
        }
        if fields.len() < 4 {
            return Err(IP_EXPECTED);
        }
        parse_static_form(&fields)
    }
}

/// `iface:method[:mtu[:mac]]`
fn parse_iface_form(fields: &[&str]) -> Result<IpSetting, Expected> {
    let interface = Some(fields[0].parse::<IfName>().map_err(|_| IP_EXPECTED)?);
    let method = IpMethod::from_word(fields[1]).ok_or(IP_EXPECTED)?;
    let (mtu, mac) = parse_mtu_mac(&fields[2..])?;
    Ok(IpSetting {
        method: Some(method),
        interface,
        mtu,
        mac,
        ..Default::default()
    })
}

/// pxelinux `client:server:gw:netmask` and dracut `client:peer:gw:netmask:host:iface:method…`.
fn parse_static_form(f: &[&str]) -> Result<IpSetting, Expected> {
    let ip = |s: &str| -> Result<Option<IpAddr>, Expected> {
        if s.is_empty() {
            Ok(None)
        } else {
            parse_ip(s).map(Some).ok_or(IP_EXPECTED)
        }
    };
    let opt = |i: usize| f.get(i).copied().filter(|s| !s.is_empty());
    let method = match opt(6) {
        Some(w) => IpMethod::from_word(w).ok_or(IP_EXPECTED)?,
        None => IpMethod::Off,
    };
    let (mtu, mac) = parse_mtu_mac(f.get(7..).unwrap_or(&[]))?;
    let address = ip(f[0])?;
    let setting = IpSetting {
        // A client address with method none/off means static addressing (dracut).
        method: Some(if method == IpMethod::Off && address.is_some() {
            IpMethod::Static
        } else {
            method
        }),
        address,
        peer: ip(f[1])?,
        gateway: ip(f[2])?,
        netmask: opt(3)
            .map(str::parse)
            .transpose()
            .map_err(|_| IP_EXPECTED)?,
        hostname: opt(4)
            .map(str::parse)
            .transpose()
            .map_err(|_| IP_EXPECTED)?,
        interface: opt(5)
            .map(str::parse)
            .transpose()
            .map_err(|_| IP_EXPECTED)?,
        mtu,
        mac,
    };
    Ok(setting)
}

/// The optional `[:mtu[:mac]]` tail; the MAC itself contains colons.
fn parse_mtu_mac(rest: &[&str]) -> Result<(Option<u16>, Option<Mac>), Expected> {
    let mtu = match rest.first() {
        None | Some(&"") => None,
        // IPv4 needs at least 68 bytes (RFC 791); smaller is a typo.
        Some(m) => Some(
            m.parse::<u16>()
                .ok()
                .filter(|m| *m >= 68)
                .ok_or(IP_EXPECTED)?,
        ),
    };
    let mac = match rest.get(1..) {
        None | Some([]) => None,
        Some(parts) => Some(parts.join(":").parse::<Mac>().map_err(|_| IP_EXPECTED)?),
    };
    Ok((mtu, mac))
}

impl fmt::Display for IpSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = self.method.unwrap_or(IpMethod::Static);
        let no_addressing = self.address.is_none()
            && self.peer.is_none()
            && self.gateway.is_none()
            && self.netmask.is_none()
            && self.hostname.is_none();
        let no_link = self.mtu.is_none() && self.mac.is_none();
        match (&self.interface, no_addressing) {
            (Some(iface), true) => {
                write!(f, "{iface}:{}", method.word())?;
                return self.fmt_mtu_mac(f);
            }
            (None, true) if no_link => return f.write_str(method.word()),
            _ => {}
        }
        let ip = |a: &Option<IpAddr>| match a {
            Some(IpAddr::V6(v6)) => format!("[{v6}]"),
            Some(a) => a.to_string(),
            None => String::new(),
        };
        let s = |o: Option<String>| o.unwrap_or_default();
        write!(
            f,
            "{}:{}:{}:{}:{}:{}:{}",
            ip(&self.address),
            ip(&self.peer),
            ip(&self.gateway),
            s(self.netmask.map(|m| m.to_string())),
            s(self.hostname.as_ref().map(|h| h.to_string())),
            s(self.interface.as_ref().map(|i| i.to_string())),
            method.word()
        )?;
        self.fmt_mtu_mac(f)
    }
}

impl IpSetting {
    /// The optional `[:mtu[:mac]]` tail.
    fn fmt_mtu_mac(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mtu.is_some() || self.mac.is_some() {
            write!(
                f,
                ":{}",
                self.mtu.map(|m| m.to_string()).unwrap_or_default()
            )?;
        }
        if let Some(mac) = self.mac {
            write!(f, ":{mac}")?;
        }
        Ok(())
    }
}

/// `ipv6=`: `dhcp`, `auto` (router advertisements), `static`, `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ipv6Mode {
    Dhcp,
    Auto,
    Static,
    Off,
}

impl FromStr for Ipv6Mode {
    type Err = Expected;
    fn from_str(text: &str) -> Result<Self, Expected> {
        match text {
            "dhcp" => Ok(Ipv6Mode::Dhcp),
            "auto" => Ok(Ipv6Mode::Auto),
            "static" => Ok(Ipv6Mode::Static),
            "off" | "none" => Ok(Ipv6Mode::Off),
            _ => Err("dhcp, auto, static or off"),
        }
    }
}

impl fmt::Display for Ipv6Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(|v| v.as_str()).unwrap_or(""))
    }
}

/// `vlan=ID` (2.x) or `vlan=ID:NIC` (3.x).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vlan {
    pub id: u16,
    pub nic: Option<IfName>,
}

impl FromStr for Vlan {
    type Err = Expected;
    fn from_str(text: &str) -> Result<Self, Expected> {
        const EXPECTED: Expected =
            "a VLAN id from 1 to 4094, optionally ID:NIC, e.g. 100 or 100:eth0";
        let (id, nic) = match text.split_once(':') {
            Some((id, nic)) => (id, Some(nic.parse().map_err(|_| EXPECTED)?)),
            None => (text, None),
        };
        match id.parse::<u16>() {
            Ok(id) if (1..=4094).contains(&id) => Ok(Vlan { id, nic }),
            _ => Err(EXPECTED),
        }
    }
}

impl fmt::Display for Vlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.nic {
            Some(nic) => write!(f, "{}:{nic}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

/// Hex digits of a fingerprint, with or without `:` separators, case-insensitive.
fn parse_hex_fingerprint(text: &str, len: usize) -> Option<Vec<u8>> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    if hex.len() != len * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..len)
        .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok())
        .collect()
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Legacy `management_server_fingerprint`: SHA-1 of the engine CA, colon hex (openssl style).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha1Fingerprint(pub [u8; 20]);

impl FromStr for Sha1Fingerprint {
    type Err = Expected;
    fn from_str(text: &str) -> Result<Self, Expected> {
        let bytes = parse_hex_fingerprint(text, 20)
            .ok_or("a SHA-1 fingerprint: 20 hex bytes separated by ':', e.g. 8F:3A:…:C2 (case-insensitive)")?;
        let mut out = [0u8; 20];
        out.copy_from_slice(&bytes);
        Ok(Sha1Fingerprint(out))
    }
}

impl fmt::Display for Sha1Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&colon_hex(&self.0))
    }
}

/// `ovirt.reg.ca_pin=sha256:<hex>`: SHA-256 of the engine CA certificate (DER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256Pin(pub [u8; 32]);

impl FromStr for Sha256Pin {
    type Err = Expected;
    fn from_str(text: &str) -> Result<Self, Expected> {
        const EXPECTED: Expected =
            "sha256:<64 hex digits> (SHA-256 of the engine CA certificate in DER)";
        let hex = text
            .strip_prefix("sha256:")
            .or_else(|| text.strip_prefix("SHA256:"))
            .ok_or(EXPECTED)?;
        let bytes = parse_hex_fingerprint(hex, 32).ok_or(EXPECTED)?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Ok(Sha256Pin(out))
    }
}

impl fmt::Display for Sha256Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A duration in whole seconds: `300`, `300s`, `5m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seconds(pub u64);

/// Longer than this is a typo, not a wish (and keeps arithmetic far from overflow).
const MAX_SECONDS: u64 = 7 * 24 * 3600;

impl FromStr for Seconds {
    type Err = Expected;
    fn from_str(text: &str) -> Result<Self, Expected> {
        const EXPECTED: Expected = "a duration such as 300, 300s, 5m or 1h (at most 7 days)";
        let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => text.split_at(i),
            None => (text, "s"),
        };
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return Err(EXPECTED),
        };
        match digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
        {
            Some(secs) if secs <= MAX_SECONDS => Ok(Seconds(secs)),
            _ => Err(EXPECTED),
        }
    }
}

impl Seconds {
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

/// Generates a simple keyword enum with `FromStr`, `Display` and `Serialize`.
macro_rules! keyword_enum {
    ($(#[$m:meta])* $name:ident, $expected:literal, { $($variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl FromStr for $name {
            type Err = Expected;
            fn from_str(text: &str) -> Result<Self, Expected> {
                match text { $($word => Ok($name::$variant),)+ _ => Err($expected) }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($name::$variant => $word),+ })
            }
        }

        serialize_as_display!($name);
    };
}

keyword_enum!(
    /// `ovirt.reg.key=`: the host key type.
    KeyType, "ecdsa or rsa", { Ecdsa => "ecdsa", Rsa => "rsa" }
);
keyword_enum!(
    /// `ovirt.reg.netconf=`: the format of the persisted network configuration.
    NetConf, "keyfile or ifcfg", { Keyfile => "keyfile", Ifcfg => "ifcfg" }
);
keyword_enum!(
    /// `network_layout=` (oVirt Node 3.x).
    NetworkLayout, "bridged or direct", { Bridged => "bridged", Direct => "direct" }
);

#[cfg(test)]
mod tests;
