//! Early-boot networking: choose the NIC, build the management bridge over netlink,
//! address it (our own DHCPv4 client, or static `ip=`), write resolv.conf and the host
//! name, and persist the network configuration for the installed system.
//!
//! Every step looks before it changes, so running again on a configured machine changes
//! nothing (`NetReport::changes` stays empty). Everything is bounded by the caller's
//! deadline, and by `ovirt.reg.link_timeout` for waiting on links.

pub mod config_files;
pub mod dhcp;
pub mod dns;
pub mod netlink;
pub mod nic;
pub mod srv;

use anyhow::{bail, Context, Result};
use log::{info, warn};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::NetworkConfig;
use crate::paths::{Root, ETC_HOSTNAME, KERNEL_HOSTNAME, RESOLV_CONF, SYS_CLASS_NET};
use crate::store::{Batch, Store};
use crate::values::{IpMethod, Ipv6Mode, Mac};
use config_files::{Addressing, Layout};
use dhcp::Lease;
use netlink::{Link, LinkChange, Netlink, NewLink};

/// What the network step found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetReport {
    /// The physical NIC (the first bond slave with `bond=`).
    pub nic: String,
    /// The interface enslaved to the bridge: the NIC, a VLAN or a bond.
    pub port: String,
    pub bridge: String,
    pub mac: Option<String>,
    /// `dhcp`, `static` or `off`.
    pub method: String,
    /// `address/prefix` on the bridge.
    pub address: Option<String>,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<IpAddr>,
    pub search: Option<String>,
    pub hostname: Option<String>,
    pub lease: Option<Lease>,
    /// Global IPv6 addresses on the bridge (router advertisements, with `ipv6=`).
    pub ipv6: Vec<String>,
    /// What this run changed, in order; empty when everything was already in place.
    pub changes: Vec<String>,
}

/// Bring the management network up; see the module comment.
pub fn bring_up(
    root: &Root,
    cfg: &NetworkConfig,
    store: Option<&Store>,
    deadline: Duration,
) -> Result<NetReport> {
    let until = Instant::now() + deadline;
    let link_until = (Instant::now() + cfg.link_timeout.duration()).min(until);
    let addressing = addressing(cfg)?;
    warn_ignored(cfg);
    let mut nl = Netlink::open()?;
    let mut run = Run {
        nl: &mut nl,
        changes: Vec::new(),
    };
    let port = run.build_port(root, cfg, link_until)?;
    let bridge = run.ensure_bridge(&cfg.bridge.0, port.link.mac)?;
    run.enslave(&port.link, &bridge)?;
    nic::wait_carrier(run.nl, &port.link.name, link_until)?;
    nic::wait_carrier(run.nl, &bridge.name, link_until)?;
    let hostname = explicit_hostname(cfg);
    let (address, lease) = run.address(&bridge, addressing, hostname.as_deref(), until)?;
    let ipv6 = wait_ipv6(run.nl, &bridge, cfg.ipv6, until)?;
    let mut report = NetReport {
        nic: port.nics.first().map(|n| n.0.clone()).unwrap_or_default(),
        port: port.link.name.clone(),
        bridge: bridge.name.clone(),
        mac: bridge.mac.map(|m| m.to_string()),
        method: method_name(&addressing).into(),
        address: address.map(|(a, p, _)| format!("{a}/{p}")),
        gateway: address.and_then(|(_, _, g)| g),
        dns: Vec::new(),
        search: lease.as_ref().and_then(|l| l.domain.clone()),
        hostname: None,
        lease,
        ipv6,
        changes: run.changes,
    };
    write_resolver(root, cfg, &mut report)?;
    write_hostname(root, store, hostname, &mut report)?;
    let layout = Layout {
        bridge: bridge.name.clone(),
        mac: bridge.mac,
        nics: port.nics,
        bond: cfg
            .bond
            .as_ref()
            .map(|b| (b.name.0.clone(), b.options.clone())),
        vlan: port.vlan,
        addressing,
        dns: cfg.dns.clone(),
        ipv6: cfg.ipv6,
    };
    persist_layout(root, store, &layout, cfg.netconf, &mut report)?;
    info!(
        "network up: {} on {} ({}), address {}",
        report.bridge,
        report.port,
        report.method,
        report.address.as_deref().unwrap_or("none")
    );
    Ok(report)
}

/// Settings we parse but do not act on yet: said once, so nobody wonders.
fn warn_ignored(cfg: &NetworkConfig) {
    if cfg.layout == Some(crate::values::NetworkLayout::Direct) {
        warn!(
            "network_layout=direct is not supported: building the {} bridge",
            cfg.bridge
        );
    }
    if let Some(mtu) = cfg.ip.as_ref().and_then(|ip| ip.mtu) {
        warn!("ip=…:{mtu}: the MTU is not applied; the NIC keeps its default");
    }
}

/// The keyfiles or ifcfg files for the next boot, each written only when it differs, and
/// persisted together in one store transaction.
fn persist_layout(
    root: &Root,
    store: Option<&Store>,
    layout: &Layout,
    format: crate::values::NetConf,
    report: &mut NetReport,
) -> Result<()> {
    let mut batch = store.map(Store::batch);
    for file in config_files::network_files(layout, format) {
        if config_files::write(root, batch.as_mut(), &file)? {
            report
                .changes
                .push(format!("wrote {}", file.path.display()));
        }
    }
    batch.map_or(Ok(()), Batch::commit)
}

/// An address on the bridge: `(address, prefix, gateway)`.
type Addressed = Option<(Ipv4Addr, u8, Option<Ipv4Addr>)>;

/// How long to wait for a router advertisement to give the bridge an IPv6 address.
const IPV6_WAIT: Duration = Duration::from_secs(10);

/// With `ipv6=`, the bridge's global IPv6 addresses. Taking an address from router
/// advertisements (SLAAC) is the kernel's default on a host that does not forward, so we
/// only wait for one, bounded; none is a warning, not a failure: IPv4 may be all we need.
fn wait_ipv6(
    nl: &mut Netlink,
    bridge: &Link,
    mode: Option<Ipv6Mode>,
    until: Instant,
) -> Result<Vec<String>> {
    if matches!(mode, None | Some(Ipv6Mode::Off)) {
        return Ok(Vec::new());
    }
    let stop = (Instant::now() + IPV6_WAIT).min(until);
    let mut poll = nic::Poll::default();
    loop {
        let global: Vec<String> = nl
            .addrs6(bridge.index)?
            .into_iter()
            .filter(|(a, _)| !is_link_local(a))
            .map(|(a, p)| format!("{a}/{p}"))
            .collect();
        if !global.is_empty() || Instant::now() >= stop {
            if global.is_empty() {
                warn!(
                    "no IPv6 address on {} from router advertisements",
                    bridge.name
                );
            }
            return Ok(global);
        }
        poll.sleep(stop);
    }
}

fn is_link_local(a: &std::net::Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

fn method_name(a: &Addressing) -> &'static str {
    match a {
        Addressing::Dhcp => "dhcp",
        Addressing::Static { .. } => "static",
        Addressing::Off => "off",
    }
}

/// How to address the bridge, from `ip=`, `netmask=` and `gateway=`.
pub fn addressing(cfg: &NetworkConfig) -> Result<Addressing> {
    let Some(ip) = &cfg.ip else {
        return Ok(Addressing::Dhcp);
    };
    match ip.method {
        None | Some(IpMethod::Dhcp) if ip.address.is_none() => Ok(Addressing::Dhcp),
        Some(IpMethod::Off) if ip.address.is_none() => Ok(Addressing::Off),
        Some(IpMethod::Dhcp6) | Some(IpMethod::Auto6) | Some(IpMethod::Ibft) => {
            bail!("ip={ip}: only dhcp, off and static IPv4 are supported here; use ipv6= for IPv6")
        }
        _ => static_addressing(cfg),
    }
}

fn static_addressing(cfg: &NetworkConfig) -> Result<Addressing> {
    let ip = cfg.ip.as_ref().context("no ip= setting")?;
    let address = match ip.address {
        Some(IpAddr::V4(a)) => a,
        Some(IpAddr::V6(_)) => bail!("ip={ip}: a static IPv6 address is not supported yet"),
        None => bail!("ip={ip}: no client address"),
    };
    // pxelinux/dracut fields first; the anaconda-style netmask=/gateway= fill the gaps.
    let prefix = match ip.netmask.or(cfg.netmask) {
        Some(m) if m.prefix <= 32 => m.prefix,
        Some(m) => bail!("netmask {m} is not an IPv4 netmask"),
        None => bail!("ip={ip}: a static address needs a netmask (in ip= or netmask=)"),
    };
    let gateway = match ip.gateway.or(cfg.gateway) {
        Some(IpAddr::V4(g)) if !g.is_unspecified() => Some(g),
        Some(IpAddr::V4(_)) | None => None,
        Some(IpAddr::V6(g)) => bail!("gateway {g}: an IPv6 gateway needs an IPv6 address"),
    };
    Ok(Addressing::Static {
        address,
        prefix,
        gateway,
    })
}

/// `hostname=`, else the host name field of dracut's `ip=`.
fn explicit_hostname(cfg: &NetworkConfig) -> Option<String> {
    cfg.hostname
        .as_ref()
        .or(cfg.ip.as_ref().and_then(|ip| ip.hostname.as_ref()))
        .map(|h| h.0.clone())
}

/// Physical NICs with their MACs.
type Nics = Vec<(String, Option<Mac>)>;

/// The bridge port and what it is made of.
struct Port {
    link: Link,
    nics: Nics,
    vlan: Option<(String, u16, String)>,
}

/// One run's netlink socket and its list of changes.
struct Run<'a> {
    nl: &'a mut Netlink,
    changes: Vec<String>,
}

impl Run<'_> {
    fn set(&mut self, link: &Link, change: LinkChange, what: String) -> Result<()> {
        self.nl.set_link(link.index, &change)?;
        self.note(what);
        Ok(())
    }

    /// A change made: logged and listed in the result.
    fn note(&mut self, what: String) {
        info!("{what}");
        self.changes.push(what);
    }

    fn up(&mut self, link: &Link) -> Result<()> {
        if link.is_up() {
            return Ok(());
        }
        let up = LinkChange {
            up: Some(true),
            ..Default::default()
        };
        self.set(link, up, format!("set {} up", link.name))
    }

    fn must_link(&mut self, name: &str) -> Result<Link> {
        self.nl
            .link(name)?
            .with_context(|| format!("{name} vanished"))
    }

    /// The NIC, bond or VLAN to enslave, created when configured and missing.
    fn build_port(&mut self, root: &Root, cfg: &NetworkConfig, until: Instant) -> Result<Port> {
        let (mut link, nics) = match &cfg.bond {
            Some(bond) => self.build_bond(root, bond, until)?,
            None => {
                let want = nic::wanted(cfg);
                let left = until.saturating_duration_since(Instant::now());
                let (nic, raised) = nic::choose(self.nl, root, &want, &cfg.bridge.0, left)?;
                if raised {
                    self.changes.push(format!("set {} up", nic.name));
                }
                let nics = vec![(nic.name.clone(), nic.mac)];
                (nic, nics)
            }
        };
        let mut vlan = None;
        if let Some(v) = &cfg.vlan {
            if let Some(parent) = &v.nic {
                link = self
                    .nl
                    .link(&parent.0)?
                    .with_context(|| format!("vlan={v}: no interface {parent}"))?;
            }
            self.up(&link)?;
            let vl = self.ensure_vlan(&link, v.id)?;
            vlan = Some((vl.name.clone(), v.id, link.name.clone()));
            link = vl;
        }
        self.up(&link)?;
        let link = self.must_link(&link.name)?;
        Ok(Port { link, nics, vlan })
    }

    fn build_bond(
        &mut self,
        root: &Root,
        bond: &crate::values::Bond,
        until: Instant,
    ) -> Result<(Link, Nics)> {
        let options = bond.applied;
        let name = bond.name.0.as_str();
        let existing = self.nl.link(name)?;
        match existing.as_ref().map(|l| l.kind.as_deref()) {
            Some(Some("bond")) => self.check_bond_mode(root, bond, &options)?,
            Some(_) => bail!("bond={bond}: {name} exists and is not a bond"),
            None => {
                self.nl.create(&NewLink::Bond {
                    name,
                    options: &options,
                })?;
                self.changes.push(format!("created bond {name}"));
            }
        }
        let master = self.must_link(name)?;
        let mut nics = Vec::new();
        for slave in &bond.slaves {
            let want = nic::Wanted::Name(slave.0.clone());
            let left = until.saturating_duration_since(Instant::now());
            let (s, _) = nic::choose(self.nl, root, &want, name, left)?;
            if s.master != Some(master.index) {
                // The kernel only enslaves a link that is down.
                let change = LinkChange {
                    up: Some(false),
                    ..Default::default()
                };
                self.nl.set_link(s.index, &change)?;
                let join = LinkChange {
                    master: Some(master.index),
                    ..Default::default()
                };
                self.set(&s, join, format!("enslaved {} to {name}", s.name))?;
                let s = self.must_link(&s.name)?;
                self.up(&s)?;
            }
            nics.push((s.name.clone(), s.mac));
        }
        self.up(&master)?;
        Ok((self.must_link(name)?, nics))
    }

    /// A bond we did not create (the bonding module makes an empty `bond0` when loaded
    /// without `max_bonds=0`) may be in another mode: set ours while it has no slaves
    /// (the kernel only allows that then), refuse to change one that is in use.
    fn check_bond_mode(
        &mut self,
        root: &Root,
        bond: &crate::values::Bond,
        options: &netlink::BondOptions,
    ) -> Result<()> {
        let Some(want) = options.mode else {
            return Ok(());
        };
        let dir = root.join(format!("{SYS_CLASS_NET}/{}/bonding", bond.name));
        let mode_file = dir.join("mode");
        let current = std::fs::read_to_string(&mode_file)
            .with_context(|| format!("reading {}", mode_file.display()))?;
        // sysfs shows "active-backup 1": the number is the mode.
        let have = current
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u8>().ok());
        if have == Some(want) {
            return Ok(());
        }
        let slaves = std::fs::read_to_string(dir.join("slaves")).unwrap_or_default();
        if !slaves.trim().is_empty() {
            bail!(
                "bond={bond}: {} is in use in mode {} with slaves {}; refusing to change it",
                bond.name,
                current.trim(),
                slaves.trim()
            );
        }
        let link = self.must_link(&bond.name.0)?;
        let down = LinkChange {
            up: Some(false),
            ..Default::default()
        };
        self.nl.set_link(link.index, &down)?;
        std::fs::write(&mode_file, want.to_string())
            .with_context(|| format!("setting mode {want} in {}", mode_file.display()))?;
        self.note(format!("set {} to mode {want}", bond.name));
        Ok(())
    }

    fn ensure_vlan(&mut self, parent: &Link, id: u16) -> Result<Link> {
        let name = vlan_name(&parent.name, id);
        match self.nl.link(&name)? {
            Some(l) if l.kind.as_deref() == Some("vlan") => return Ok(l),
            Some(_) => bail!("{name} exists and is not a VLAN"),
            None => {}
        }
        self.nl.create(&NewLink::Vlan {
            name: &name,
            parent: parent.index,
            id,
        })?;
        self.changes.push(format!("created VLAN {name}"));
        self.must_link(&name)
    }

    /// The bridge, created with the port's MAC or corrected to it.
    fn ensure_bridge(&mut self, name: &str, mac: Option<Mac>) -> Result<Link> {
        let Some(br) = self.nl.link(name)? else {
            self.nl.create(&NewLink::Bridge { name, mac })?;
            self.changes.push(format!("created bridge {name}"));
            return self.must_link(name);
        };
        if br.kind.as_deref() != Some("bridge") {
            bail!("{name} exists and is not a bridge; choose another name with ovirt.reg.bridge=");
        }
        if br.forward_delay.is_some_and(|d| d != 0) {
            self.nl.fix_bridge(br.index)?;
            self.changes
                .push(format!("set the forward delay of {name} to 0"));
        }
        if mac.is_some() && br.mac != mac {
            let change = LinkChange {
                mac,
                ..Default::default()
            };
            self.set(&br, change, format!("gave {name} the NIC's MAC"))?;
        }
        self.must_link(name)
    }

    fn enslave(&mut self, port: &Link, bridge: &Link) -> Result<()> {
        if port.master != Some(bridge.index) {
            let change = LinkChange {
                master: Some(bridge.index),
                ..Default::default()
            };
            self.set(
                port,
                change,
                format!("added {} to {}", port.name, bridge.name),
            )?;
        }
        // A bridge port must not keep addresses of its own: an address (and the routes the
        // kernel keeps with it) that an earlier DHCP client left on the NIC would shadow the
        // bridge's and make the engine unreachable. Removing the last one flushes its routes.
        for (addr, prefix) in self.nl.addrs(port.index)? {
            self.nl.del_addr(port.index, addr, prefix)?;
            self.note(format!(
                "removed {addr}/{prefix} from {} (now a port of {})",
                port.name, bridge.name
            ));
        }
        let port = self.must_link(&port.name)?;
        self.up(&port)?;
        let bridge = self.must_link(&bridge.name)?;
        self.up(&bridge)
    }

    /// Address the bridge as configured: a DHCP lease, the static address, or nothing.
    fn address(
        &mut self,
        bridge: &Link,
        addressing: Addressing,
        hostname: Option<&str>,
        until: Instant,
    ) -> Result<(Addressed, Option<Lease>)> {
        match addressing {
            Addressing::Dhcp => {
                let mac = bridge.mac.context("the bridge has no MAC address")?;
                let lease = dhcp::acquire(&bridge.name, mac, hostname, until)?;
                let (a, p, gw) = (lease.address, lease.prefix, lease.router);
                self.apply_address(bridge, a, p, gw, netlink::RTPROT_DHCP)?;
                Ok((Some((a, p, gw)), Some(lease)))
            }
            Addressing::Static {
                address,
                prefix,
                gateway,
            } => {
                self.apply_address(bridge, address, prefix, gateway, netlink::RTPROT_BOOT)?;
                Ok((Some((address, prefix, gateway)), None))
            }
            Addressing::Off => Ok((None, None)),
        }
    }

    /// Address and default route on the bridge, each only when missing.
    fn apply_address(
        &mut self,
        bridge: &Link,
        addr: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        protocol: u8,
    ) -> Result<()> {
        if !self.nl.addrs(bridge.index)?.contains(&(addr, prefix)) {
            self.nl.add_addr(bridge.index, addr, prefix)?;
            self.changes
                .push(format!("added {addr}/{prefix} to {}", bridge.name));
        }
        let Some(gw) = gateway else {
            return Ok(());
        };
        let present = self
            .nl
            .default_routes()?
            .iter()
            .any(|r| r.gateway == Some(gw) && r.oif == Some(bridge.index));
        if !present {
            self.nl.add_default_route(gw, bridge.index, protocol)?;
            self.changes
                .push(format!("default route via {gw} on {}", bridge.name));
        }
        Ok(())
    }
}

/// `eth0.100`, or `vlan100` when that would pass the kernel's 15-byte name limit.
pub fn vlan_name(parent: &str, id: u16) -> String {
    let name = format!("{parent}.{id}");
    if name.len() <= 15 {
        name
    } else {
        format!("vlan{id}")
    }
}

/// resolv.conf from `dns=`, else from the lease; left alone when there is neither.
fn write_resolver(root: &Root, cfg: &NetworkConfig, report: &mut NetReport) -> Result<()> {
    report.dns = if cfg.dns.is_empty() {
        let from_lease = report.lease.as_ref().map(|l| l.dns.clone());
        from_lease
            .unwrap_or_default()
            .into_iter()
            .map(IpAddr::V4)
            .collect()
    } else {
        cfg.dns.clone()
    };
    if report.dns.is_empty() {
        return Ok(());
    }
    let file = config_files::File {
        path: PathBuf::from(RESOLV_CONF),
        text: config_files::resolv_conf(&report.dns, report.search.as_deref()),
        mode: 0o644,
    };
    // Not persisted: in the installed system NetworkManager writes it from the profile.
    if config_files::write_resolv_conf(root, &file)? {
        report.changes.push(format!("wrote {RESOLV_CONF}"));
    }
    Ok(())
}

/// `/etc/hostname` and, on the real root, the kernel's host name. An operator's name is
/// persisted; a DHCP one is not (the next boot asks DHCP again).
fn write_hostname(
    root: &Root,
    store: Option<&Store>,
    explicit: Option<String>,
    report: &mut NetReport,
) -> Result<()> {
    let from_dhcp = report.lease.as_ref().and_then(|l| l.hostname.clone());
    let persist = explicit.is_some();
    let Some(name) = explicit.or(from_dhcp) else {
        return Ok(());
    };
    let file = config_files::File {
        path: PathBuf::from(ETC_HOSTNAME),
        text: format!("{name}\n"),
        mode: 0o644,
    };
    let mut batch = store.filter(|_| persist).map(Store::batch);
    if config_files::write(root, batch.as_mut(), &file)? {
        report.changes.push(format!("wrote {ETC_HOSTNAME}"));
    }
    batch.map_or(Ok(()), Batch::commit)?;
    if root.is_system() {
        set_kernel_hostname(root, &name, report)?;
    }
    report.hostname = Some(name);
    Ok(())
}

fn set_kernel_hostname(root: &Root, name: &str, report: &mut NetReport) -> Result<()> {
    let current =
        std::fs::read_to_string(root.join(Path::new(KERNEL_HOSTNAME))).unwrap_or_default();
    if current.trim() == name {
        return Ok(());
    }
    match rustix::system::sethostname(name.as_bytes()) {
        Ok(()) => report.changes.push(format!("set the host name to {name}")),
        Err(e) => warn!("setting the host name to {name}: {e}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
