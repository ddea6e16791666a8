//! Which NIC carries the management network.
//!
//! BOOTIF (what the PXE firmware booted from) wins, then `ovirt.reg.nic=`, then the
//! interface named by dracut's `ip=…:IFACE:…`, else the first physical NIC with carrier.
//! A NIC named by the operator is authoritative: it need not look physical (so veths in
//! tests and unusual drivers work). "Physical" means a `device` link in sysfs, looked up
//! under the root so tests can say which of their veths count as hardware.

use anyhow::{bail, Result};
use log::{info, warn};
use std::time::{Duration, Instant};

use super::netlink::{Link, LinkChange, Netlink};
use crate::config::NetworkConfig;
use crate::paths::{Root, SYS_CLASS_NET};
use crate::values::{BootIf, Mac};

/// Link state polling while waiting: the first look comes soon (a virtio or bridge link
/// has carrier a few milliseconds after it is set up), then the gaps double up to the last
/// one, so a slow switch port costs at most one netlink dump per 100 ms.
pub struct Poll {
    gap: Duration,
}

impl Default for Poll {
    fn default() -> Poll {
        Poll { gap: Poll::FIRST }
    }
}

impl Poll {
    const FIRST: Duration = Duration::from_millis(5);
    const LAST: Duration = Duration::from_millis(100);

    /// Sleep before the next look, never past `until`.
    pub fn sleep(&mut self, until: Instant) {
        let left = until.saturating_duration_since(Instant::now());
        std::thread::sleep(self.gap.min(left));
        self.gap = (self.gap * 2).min(Self::LAST);
    }
}

/// Link kinds that are never the boot NIC: software devices stacked on top of one (a
/// bridge or VLAN we created carries the NIC's MAC too).
const STACKED_KINDS: &[&str] = &["bridge", "bond", "vlan", "macvlan", "ipvlan", "team"];

/// What the configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Name(String),
    Mac(Mac),
    /// The first physical NIC with carrier.
    FirstWithLink,
}

/// The NIC request, in precedence order. `vlan=ID:NIC` names the VLAN's parent outright.
pub fn wanted(cfg: &NetworkConfig) -> Wanted {
    if let Some(parent) = cfg.vlan.as_ref().and_then(|v| v.nic.as_ref()) {
        return Wanted::Name(parent.0.clone());
    }
    match &cfg.bootif {
        Some(BootIf::Mac(m)) => return Wanted::Mac(*m),
        Some(BootIf::Name(n)) => return Wanted::Name(n.0.clone()),
        Some(BootIf::Link) => return Wanted::FirstWithLink,
        None => {}
    }
    let from_ip = cfg.ip.as_ref().and_then(|ip| ip.interface.as_ref());
    match cfg.nic.as_ref().or(from_ip) {
        Some(n) => Wanted::Name(n.0.clone()),
        None => Wanted::FirstWithLink,
    }
}

/// True for a NIC backed by a device (PCI, USB, virtio…), not a software interface.
pub fn is_physical(root: &Root, name: &str) -> bool {
    root.join(SYS_CLASS_NET).join(name).join("device").exists()
}

fn candidate(link: &Link, bridge: &str) -> bool {
    link.name != bridge
        && link.name != "lo"
        && !link
            .kind
            .as_deref()
            .is_some_and(|k| STACKED_KINDS.contains(&k))
}

/// Find the NIC, waiting up to `timeout` for it to appear and (for the link search) for
/// carrier. Only the chosen NIC is left changed; the flag says whether it was set up here.
pub fn choose(
    nl: &mut Netlink,
    root: &Root,
    want: &Wanted,
    bridge: &str,
    timeout: Duration,
) -> Result<(Link, bool)> {
    let until = Instant::now() + timeout;
    match want {
        Wanted::FirstWithLink => first_with_link(nl, root, bridge, until),
        named => wait_named(nl, named, bridge, until).map(|l| (l, false)),
    }
}

/// A NIC named (or MAC-addressed) by the operator; it may appear late (driver loading).
fn wait_named(nl: &mut Netlink, want: &Wanted, bridge: &str, until: Instant) -> Result<Link> {
    let mut poll = Poll::default();
    loop {
        let found = nl.links()?.into_iter().find(|l| {
            candidate(l, bridge)
                && match want {
                    Wanted::Name(n) => &l.name == n,
                    Wanted::Mac(m) => l.mac == Some(*m),
                    Wanted::FirstWithLink => false,
                }
        });
        if let Some(link) = found {
            info!("management NIC {}: {}", link.name, describe(want));
            return Ok(link);
        }
        if Instant::now() >= until {
            bail!("no network interface matches {}", describe(want));
        }
        poll.sleep(until);
    }
}

fn describe(want: &Wanted) -> String {
    match want {
        Wanted::Name(n) => format!("the name {n}"),
        Wanted::Mac(m) => format!("the MAC address {m} (BOOTIF)"),
        Wanted::FirstWithLink => "a physical NIC with link".into(),
    }
}

/// The first physical NIC (lowest ifindex) with carrier. Carrier is only reported for a
/// link that is up, so down NICs are brought up to look, and put back down unless chosen.
fn first_with_link(
    nl: &mut Netlink,
    root: &Root,
    bridge: &str,
    until: Instant,
) -> Result<(Link, bool)> {
    let mut raised: Vec<u32> = Vec::new();
    let result = poll_for_link(nl, root, bridge, until, &mut raised);
    let keep = result.as_ref().map(|l| l.index).ok();
    let kept_raised = keep.is_some_and(|k| raised.contains(&k));
    for index in raised.into_iter().filter(|i| Some(*i) != keep) {
        let down = LinkChange {
            up: Some(false),
            ..Default::default()
        };
        if let Err(e) = nl.set_link(index, &down) {
            warn!("putting link {index} back down: {e:#}");
        }
    }
    result.map(|l| (l, kept_raised))
}

fn poll_for_link(
    nl: &mut Netlink,
    root: &Root,
    bridge: &str,
    until: Instant,
    raised: &mut Vec<u32>,
) -> Result<Link> {
    let mut poll = Poll::default();
    loop {
        let links = nl.links()?;
        let ours = links.iter().find(|l| l.name == bridge).map(|l| l.index);
        let mut nics: Vec<Link> = links
            .into_iter()
            .filter(|l| candidate(l, bridge) && is_physical(root, &l.name))
            .collect();
        // A NIC already in our bridge first: a second run keeps the NIC the first chose.
        nics.sort_by_key(|l| (ours.is_none() || l.master != ours, l.index));
        if let Some(link) = nics.iter().find(|l| l.has_carrier()) {
            info!("management NIC {}: first physical NIC with link", link.name);
            return Ok(link.clone());
        }
        let down: Vec<u32> = nics
            .iter()
            .filter(|l| !l.is_up() && !raised.contains(&l.index))
            .map(|l| l.index)
            .collect();
        for index in down {
            let up = LinkChange {
                up: Some(true),
                ..Default::default()
            };
            nl.set_link(index, &up)?;
            raised.push(index);
        }
        if Instant::now() >= until {
            let names: Vec<&str> = nics.iter().map(|l| l.name.as_str()).collect();
            bail!(
                "no physical NIC has link (looked at: {}); set BOOTIF= or ovirt.reg.nic=, or raise ovirt.reg.link_timeout=",
                if names.is_empty() { "none found".to_string() } else { names.join(", ") }
            );
        }
        poll.sleep(until);
    }
}

/// Wait until `name` reports carrier, up to `until`.
pub fn wait_carrier(nl: &mut Netlink, name: &str, until: Instant) -> Result<()> {
    let mut poll = Poll::default();
    loop {
        if nl.link(name)?.is_some_and(|l| l.has_carrier()) {
            return Ok(());
        }
        if Instant::now() >= until {
            bail!("{name} has no link (no carrier); check the cable or the switch port");
        }
        poll.sleep(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::values::IfName;

    fn cfg() -> NetworkConfig {
        Config::default().net
    }

    #[test]
    fn bootif_wins_then_nic_then_ip_interface() {
        let mut c = cfg();
        assert_eq!(wanted(&c), Wanted::FirstWithLink);
        c.ip = Some("::::h:eth9:dhcp".parse().unwrap());
        assert_eq!(wanted(&c), Wanted::Name("eth9".into()));
        c.nic = Some(IfName("eth2".into()));
        assert_eq!(wanted(&c), Wanted::Name("eth2".into()));
        c.bootif = Some("01-52-54-00-12-34-56".parse().unwrap());
        assert_eq!(
            wanted(&c),
            Wanted::Mac("52:54:00:12:34:56".parse().unwrap())
        );
        c.bootif = Some("link".parse().unwrap());
        assert_eq!(wanted(&c), Wanted::FirstWithLink);
        c.vlan = Some("100".parse().unwrap());
        assert_eq!(wanted(&c), Wanted::FirstWithLink, "vlan=ID names no NIC");
        c.vlan = Some("100:eth7".parse().unwrap());
        assert_eq!(wanted(&c), Wanted::Name("eth7".into()));
    }

    #[test]
    fn stacked_devices_are_never_the_nic() {
        let l = |name: &str, kind: Option<&str>| Link {
            name: name.into(),
            kind: kind.map(str::to_string),
            ..Default::default()
        };
        assert!(candidate(&l("eth0", None), "ovirtmgmt"));
        assert!(candidate(&l("veth0", Some("veth")), "ovirtmgmt"));
        assert!(!candidate(&l("ovirtmgmt", None), "ovirtmgmt"));
        assert!(!candidate(&l("br0", Some("bridge")), "ovirtmgmt"));
        assert!(!candidate(&l("eth0.5", Some("vlan")), "ovirtmgmt"));
        assert!(!candidate(&l("lo", None), "ovirtmgmt"));
    }

    #[test]
    fn physical_means_a_device_link_under_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        std::fs::create_dir_all(root.join("/sys/class/net/eth0/device")).unwrap();
        std::fs::create_dir_all(root.join("/sys/class/net/virt0")).unwrap();
        assert!(is_physical(&root, "eth0"));
        assert!(!is_physical(&root, "virt0"));
    }
}
