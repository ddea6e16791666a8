//! The files the network step writes: `/etc/resolv.conf`, `/etc/hostname`, and the
//! persisted network configuration the installed system reads on the next boot —
//! NetworkManager keyfiles (default) or legacy initscripts ifcfg files
//! (`ovirt.reg.netconf=ifcfg`, the layout of docs/ovirt-protocol.md §1.3 and §2.8).
//!
//! Building the text is pure (tested field by field); writing goes through a store
//! transaction (`Batch::write`) when there is a store, else the one atomic write, and only
//! when the content differs, so a second run changes nothing.

use anyhow::Result;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::conffile::shell_quote;
use crate::paths::{Root, IFCFG_DIR, NM_CONNECTIONS_DIR};
use crate::store::{Batch, Persisted};
use crate::values::{Ipv6Mode, Mac, NetConf};

/// Largest file of ours we read back to compare.
const MAX_FILE: u64 = 1 << 20;

/// How the bridge gets its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    Dhcp,
    Static {
        address: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
    },
    Off,
}

/// The management network as the next boot should build it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub bridge: String,
    /// The bridge's MAC (the NIC's), so the DHCP lease follows the machine.
    pub mac: Option<Mac>,
    /// The physical NICs: the one NIC, or the bond's slaves; with their MACs.
    pub nics: Vec<(String, Option<Mac>)>,
    /// Bond name and options (`mode=4`, …).
    pub bond: Option<(String, Vec<String>)>,
    /// VLAN interface name, id and parent.
    pub vlan: Option<(String, u16, String)>,
    pub addressing: Addressing,
    /// `dns=` given by the operator: overrides what DHCP says.
    pub dns: Vec<IpAddr>,
    pub ipv6: Option<Ipv6Mode>,
}

impl Layout {
    /// The interface enslaved to the bridge.
    pub fn port(&self) -> &str {
        if let Some((name, _, _)) = &self.vlan {
            return name;
        }
        if let Some((name, _)) = &self.bond {
            return name;
        }
        self.nics.first().map_or("", |(n, _)| n.as_str())
    }
}

/// A file to write: absolute in-root path, content, mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: PathBuf,
    pub text: String,
    pub mode: u32,
}

/// `/etc/resolv.conf` for these name servers and search domain.
pub fn resolv_conf(dns: &[IpAddr], search: Option<&str>) -> String {
    let mut s = String::from("# Written by ovirt-node-reg\n");
    if let Some(d) = search {
        let _ = writeln!(s, "search {d}");
    }
    for ns in dns {
        let _ = writeln!(s, "nameserver {ns}");
    }
    s
}

/// The persisted network configuration in the chosen format.
pub fn network_files(layout: &Layout, format: NetConf) -> Vec<File> {
    match format {
        NetConf::Keyfile => keyfiles(layout),
        NetConf::Ifcfg => ifcfg_files(layout),
    }
}

// ---------------------------------------------------------------------------------------
// NetworkManager keyfiles.

fn keyfile_path(id: &str) -> PathBuf {
    Path::new(NM_CONNECTIONS_DIR).join(format!("{id}.nmconnection"))
}

/// A stable UUID for a connection id, so rewriting a profile never makes a new one:
/// SHA-256 of the id, shaped as an RFC 4122 name-based UUID.
pub fn connection_uuid(id: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("ovirt-node-reg:{id}").as_bytes(),
    );
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The `[connection]` section.
fn nm_connection(id: &str, kind: &str, ifname: &str, master: Option<(&str, &str)>) -> String {
    let mut s = format!(
        "[connection]\nid={id}\nuuid={}\ntype={kind}\ninterface-name={ifname}\nautoconnect=true\n",
        connection_uuid(id)
    );
    if let Some((master, slave_type)) = master {
        let _ = writeln!(s, "master={master}\nslave-type={slave_type}");
    }
    s
}

fn keyfiles(l: &Layout) -> Vec<File> {
    let mut files = vec![bridge_keyfile(l)];
    let bridge = Some((l.bridge.as_str(), "bridge"));
    let port_id = format!("{}-port-{}", l.bridge, l.port());
    let port = match (&l.vlan, &l.bond) {
        (Some((name, id, parent)), _) => format!(
            "{}\n[vlan]\nid={id}\nparent={parent}\n",
            nm_connection(&port_id, "vlan", name, bridge)
        ),
        (None, Some((name, options))) => bond_keyfile(&port_id, name, options, bridge),
        (None, None) => {
            ethernet_keyfile(&port_id, l.port(), l.nics.first().and_then(|n| n.1), bridge)
        }
    };
    files.push(keyfile(&port_id, port));
    // A VLAN on a bond: the bond gets its own profile (not a bridge port).
    if let (Some(_), Some((name, options))) = (&l.vlan, &l.bond) {
        let id = format!("{}-bond-{name}", l.bridge);
        files.push(keyfile(&id, bond_keyfile(&id, name, options, None)));
    }
    if let Some((bond, _)) = &l.bond {
        for (nic, mac) in &l.nics {
            let id = format!("{}-slave-{nic}", l.bridge);
            let text = ethernet_keyfile(&id, nic, *mac, Some((bond.as_str(), "bond")));
            files.push(keyfile(&id, text));
        }
    }
    files
}

fn keyfile(id: &str, text: String) -> File {
    // NetworkManager ignores keyfiles that others can read (they may hold secrets).
    File {
        path: keyfile_path(id),
        text,
        mode: 0o600,
    }
}

fn ethernet_keyfile(
    id: &str,
    ifname: &str,
    mac: Option<Mac>,
    master: Option<(&str, &str)>,
) -> String {
    let mut s = nm_connection(id, "ethernet", ifname, master);
    s.push_str("\n[ethernet]\n");
    if let Some(mac) = mac {
        let _ = writeln!(s, "mac-address={}", mac.to_string().to_uppercase());
    }
    s
}

fn bond_keyfile(id: &str, name: &str, options: &[String], master: Option<(&str, &str)>) -> String {
    let mut s = nm_connection(id, "bond", name, master);
    s.push_str("\n[bond]\n");
    for o in effective_bond_options(options) {
        let _ = writeln!(s, "{o}");
    }
    s
}

/// vdsm's default when `bond=` gives no options (docs/ovirt-protocol.md §2.8).
fn effective_bond_options(options: &[String]) -> Vec<String> {
    if options.is_empty() {
        vec!["mode=802.3ad".into(), "miimon=150".into()]
    } else {
        options.to_vec()
    }
}

fn bridge_keyfile(l: &Layout) -> File {
    let mut s = nm_connection(&l.bridge, "bridge", &l.bridge, None);
    // ethernet.cloned-mac-address is how NM pins a bridge's MAC (bridge.mac-address is
    // deprecated). No forward-delay: with STP off the kernel forwards at once, and NM
    // rejects values below 2.
    s.push_str("\n[bridge]\nstp=false\n");
    if let Some(mac) = l.mac {
        let _ = write!(
            s,
            "\n[ethernet]\ncloned-mac-address={}\n",
            mac.to_string().to_uppercase()
        );
    }
    s.push_str(&nm_ipv4(l));
    s.push_str(&nm_ipv6(l.ipv6));
    keyfile(&l.bridge, s)
}

fn nm_ipv4(l: &Layout) -> String {
    let mut s = String::from("\n[ipv4]\n");
    match l.addressing {
        Addressing::Dhcp => s.push_str("method=auto\n"),
        Addressing::Off => s.push_str("method=disabled\n"),
        Addressing::Static {
            address,
            prefix,
            gateway,
        } => {
            let _ = write!(s, "method=manual\naddress1={address}/{prefix}");
            if let Some(gw) = gateway {
                let _ = write!(s, ",{gw}");
            }
            s.push('\n');
        }
    }
    let v4: Vec<String> = l
        .dns
        .iter()
        .filter(|a| a.is_ipv4())
        .map(|a| format!("{a};"))
        .collect();
    if !v4.is_empty() {
        let _ = writeln!(s, "dns={}", v4.concat());
        if l.addressing == Addressing::Dhcp {
            s.push_str("ignore-auto-dns=true\n");
        }
    }
    s
}

fn nm_ipv6(mode: Option<Ipv6Mode>) -> String {
    let method = match mode {
        Some(Ipv6Mode::Auto) => "auto",
        Some(Ipv6Mode::Dhcp) => "dhcp",
        // Static IPv6 addresses are not configurable on the command line yet.
        Some(Ipv6Mode::Static) => "auto",
        Some(Ipv6Mode::Off) => "disabled",
        None => "ignore",
    };
    format!("\n[ipv6]\nmethod={method}\n")
}

// ---------------------------------------------------------------------------------------
// Legacy ifcfg.

fn ifcfg_path(dev: &str) -> PathBuf {
    Path::new(IFCFG_DIR).join(format!("ifcfg-{dev}"))
}

fn ifcfg(dev: &str, lines: &[(&str, String)]) -> File {
    let mut text = String::from("# Written by ovirt-node-reg\n");
    for (k, v) in lines {
        let _ = writeln!(text, "{k}={v}");
    }
    File {
        path: ifcfg_path(dev),
        text,
        mode: 0o644,
    }
}

fn ifcfg_files(l: &Layout) -> Vec<File> {
    let mut files = vec![ifcfg_bridge(l)];
    let port = l.port().to_string();
    let bridged = |dev: &str| (dev == port).then(|| ("BRIDGE", l.bridge.clone()));
    if let Some((name, _, _)) = &l.vlan {
        let mut lines = vec![
            ("DEVICE", name.clone()),
            ("VLAN", "yes".into()),
            ("ONBOOT", "yes".into()),
            ("BOOTPROTO", "none".into()),
        ];
        lines.extend(bridged(name));
        files.push(ifcfg(name, &lines));
    }
    if let Some((name, options)) = &l.bond {
        let mut lines = vec![
            ("DEVICE", name.clone()),
            ("ONBOOT", "yes".into()),
            ("BOOTPROTO", "none".into()),
            (
                "BONDING_OPTS",
                shell_quote(&effective_bond_options(options).join(" ")),
            ),
        ];
        lines.extend(bridged(name));
        files.push(ifcfg(name, &lines));
    }
    for (nic, mac) in &l.nics {
        let mut lines = vec![("DEVICE", nic.clone())];
        if let Some(mac) = mac {
            lines.push(("HWADDR", mac.to_string().to_uppercase()));
        }
        lines.push(("ONBOOT", "yes".into()));
        lines.push(("BOOTPROTO", "none".into()));
        if let Some((bond, _)) = &l.bond {
            lines.push(("MASTER", bond.clone()));
            lines.push(("SLAVE", "yes".into()));
        }
        lines.extend(bridged(nic));
        files.push(ifcfg(nic, &lines));
    }
    files
}

fn ifcfg_bridge(l: &Layout) -> File {
    let mut lines = vec![
        ("DEVICE", l.bridge.clone()),
        ("TYPE", "Bridge".to_string()),
        ("ONBOOT", "yes".into()),
        ("DELAY", "0".into()),
        ("STP", "off".into()),
    ];
    match l.addressing {
        Addressing::Dhcp => lines.push(("BOOTPROTO", "dhcp".into())),
        Addressing::Off => lines.push(("BOOTPROTO", "none".into())),
        Addressing::Static {
            address,
            prefix,
            gateway,
        } => {
            lines.push(("BOOTPROTO", "static".into()));
            lines.push(("IPADDR", address.to_string()));
            lines.push(("NETMASK", prefix_mask(prefix).to_string()));
            if let Some(gw) = gateway {
                lines.push(("GATEWAY", gw.to_string()));
            }
        }
    }
    if !l.dns.is_empty() {
        // Our name servers, not the DHCP server's (network.py configure_dns).
        lines.push(("PEERDNS", "no".into()));
        for (key, ns) in DNS_KEYS.iter().zip(&l.dns) {
            lines.push((key, ns.to_string()));
        }
    }
    ipv6_lines(l.ipv6, &mut lines);
    ifcfg(&l.bridge, &lines)
}

/// initscripts reads at most DNS1..DNS3 (resolv.conf's own limit).
const DNS_KEYS: [&str; 3] = ["DNS1", "DNS2", "DNS3"];

fn ipv6_lines(mode: Option<Ipv6Mode>, lines: &mut Vec<(&str, String)>) {
    let (init, autoconf, dhcp) = match mode {
        Some(Ipv6Mode::Auto) | Some(Ipv6Mode::Static) => ("yes", "yes", "no"),
        Some(Ipv6Mode::Dhcp) => ("yes", "no", "yes"),
        Some(Ipv6Mode::Off) | None => ("no", "no", "no"),
    };
    lines.push(("IPV6INIT", init.into()));
    lines.push(("IPV6_AUTOCONF", autoconf.into()));
    lines.push(("DHCPV6C", dhcp.into()));
}

/// The dotted netmask of a prefix length.
pub fn prefix_mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(prefix.min(32)))
            .unwrap_or(0),
    )
}

// ---------------------------------------------------------------------------------------
// Writing.

/// Write `file` if its content or mode differs; through the store's `batch` when there is
/// one (which also persists a file that an earlier run without the store left unpersisted),
/// persisted when it commits. Returns true when something was written or persisted.
pub fn write(root: &Root, batch: Option<&mut Batch>, file: &File) -> Result<bool> {
    if let Some(batch) = batch {
        let done = batch.write(&file.path, file.text.as_bytes(), file.mode)?;
        return Ok(done != Persisted::Unchanged);
    }
    write_live(root, file, false)
}

/// [`write`] for `/etc/resolv.conf`, never persisted: a symlink there (a resolver's stub in
/// /run) is replaced by the file, as a rename always did; what it points to is never opened.
/// Early boot owns the resolver while it runs; NetworkManager writes it in the real root.
pub fn write_resolv_conf(root: &Root, file: &File) -> Result<bool> {
    write_live(root, file, true)
}

/// Write `file` in the root, beneath it and through no symlink, unless it is already right.
fn write_live(root: &Root, file: &File, over_link: bool) -> Result<bool> {
    let fs = root.fs();
    let current = match fs.metadata(&file.path)? {
        Some(m) if m.is_file() && m.mode() & 0o7777 == file.mode => {
            fs.read(&file.path, MAX_FILE)?
        }
        _ => None,
    };
    if current.as_deref() == Some(file.text.as_bytes()) {
        return Ok(false);
    }
    if over_link {
        fs.write_replacing_link(&file.path, file.text.as_bytes(), file.mode)?;
    } else {
        fs.write_atomic(&file.path, file.text.as_bytes(), file.mode)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
