//! A small rtnetlink (NETLINK_ROUTE) client: links, IPv4 addresses, the default route.
//!
//! Hand-written rather than netlink-packet-route: we need a dozen message shapes, and the
//! generic crates add their whole attribute zoo to a binary with a size budget. Requests
//! are built by pure functions (unit-tested byte for byte); every request that changes
//! something asks for an ACK, and every receive has a timeout, so no call can hang.
//! Constants are from linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h.

use anyhow::{bail, Context, Result};
use rustix::net::{
    netlink::SocketAddrNetlink, recv, sendto, socket, sockopt, AddressFamily, RecvFlags, SendFlags,
    SocketType,
};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::time::Duration;

pub use crate::values::BondOptions;
use crate::values::Mac;

// Message types and flags (linux/netlink.h, linux/rtnetlink.h).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
/// The kinds of request sent here, each named once: a dump; a request the kernel
/// acknowledges; a new object that must not exist yet; one that replaces what is there.
const DUMP: u16 = NLM_F_REQUEST | NLM_F_DUMP;
const ACKED: u16 = NLM_F_REQUEST | NLM_F_ACK;
const CREATE: u16 = ACKED | NLM_F_CREATE | NLM_F_EXCL;
const REPLACE: u16 = ACKED | NLM_F_CREATE | NLM_F_REPLACE;

/// The rtnetlink message types used here (linux/rtnetlink.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
enum Rtm {
    NewLink = 16,
    GetLink = 18,
    SetLink = 19,
    NewAddr = 20,
    DelAddr = 21,
    GetAddr = 22,
    NewRoute = 24,
    GetRoute = 26,
}

// Address families (linux/socket.h) and interface flags (linux/if.h).
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
pub const IFF_UP: u32 = 0x1;
pub const IFF_LOWER_UP: u32 = 0x1_0000;

// Link attributes (linux/if_link.h).
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_CARRIER: u16 = 33;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_BR_FORWARD_DELAY: u16 = 1;
const IFLA_BR_STP_STATE: u16 = 5;
const IFLA_VLAN_ID: u16 = 1;
const IFLA_BOND_MODE: u16 = 1;
const IFLA_BOND_MIIMON: u16 = 3;
const IFLA_BOND_UPDELAY: u16 = 4;
const IFLA_BOND_DOWNDELAY: u16 = 5;
const IFLA_BOND_XMIT_HASH_POLICY: u16 = 14;
const IFLA_BOND_AD_LACP_RATE: u16 = 21;

// Address and route attributes (linux/if_addr.h, linux/rtnetlink.h).
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
/// Route origin: the boot-time configuration (`ip=`), as the kernel's own ipconfig marks it.
pub const RTPROT_BOOT: u8 = 3;
pub const RTPROT_DHCP: u8 = 16;

/// "No such device": the answer to a lookup of a link that does not exist.
const ENODEV: i32 = 19;

/// How long one request may wait for the kernel's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most messages one dump may return before we call it runaway.
const MAX_DUMP_MESSAGES: usize = 100_000;

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<Mac>,
    pub flags: u32,
    pub master: Option<u32>,
    pub carrier: bool,
    /// `IFLA_INFO_KIND`: "bridge", "veth", "vlan", "bond"…; `None` for plain hardware.
    pub kind: Option<String>,
    /// The bridge's forward delay (clock ticks), when this is a bridge.
    pub forward_delay: Option<u32>,
}

impl Link {
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }

    /// Carrier as the driver reports it: IFF_LOWER_UP, else IFLA_CARRIER.
    pub fn has_carrier(&self) -> bool {
        self.flags & IFF_LOWER_UP != 0 || (self.is_up() && self.carrier)
    }
}

/// A link to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewLink<'a> {
    /// STP off and forward delay 0, so the port forwards at once (vdsm's `DELAY=0`).
    Bridge {
        name: &'a str,
        mac: Option<Mac>,
    },
    Vlan {
        name: &'a str,
        parent: u32,
        id: u16,
    },
    Bond {
        name: &'a str,
        options: &'a BondOptions,
    },
}

/// A default route found in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRoute {
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

// ---------------------------------------------------------------------------------------
// Message building (pure).

/// A netlink request under construction: header, fixed part, attributes.
pub struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn new(ty: Rtm, flags: u16) -> Request {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&(ty as u16).to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        Request { buf }
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self.pad();
        self
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.bytes(data)
    }

    fn attr_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(ty, &data)
    }

    fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    /// A nested attribute whose content `f` appends.
    fn nest(&mut self, ty: u16, f: impl FnOnce(&mut Request)) -> &mut Self {
        let start = self.buf.len();
        self.attr(ty, &[]);
        f(self);
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// The finished message with its length and sequence number.
    pub fn finish(&mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        std::mem::take(&mut self.buf)
    }
}

/// `struct ifinfomsg`: family, pad, type, index, flags, change.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[0] = AF_UNSPEC;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

/// `struct ifaddrmsg`: family, prefix length, flags, scope, index.
fn ifaddrmsg(prefix: u8, index: u32) -> [u8; 8] {
    let mut m = [AF_INET, prefix, 0, RT_SCOPE_UNIVERSE, 0, 0, 0, 0];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m
}

/// `struct rtmsg` for an IPv4 unicast route in the main table.
fn rtmsg(protocol: u8) -> [u8; 12] {
    [
        AF_INET,
        0,
        0,
        0,
        RT_TABLE_MAIN,
        protocol,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ]
}

pub fn get_links_request() -> Request {
    let mut r = Request::new(Rtm::GetLink, DUMP);
    r.bytes(&ifinfomsg(0, 0, 0));
    r
}

/// RTM_GETLINK for one link by name, acknowledged (the answer ends with the ACK).
pub fn get_link_request(name: &str) -> Request {
    let mut r = Request::new(Rtm::GetLink, ACKED);
    r.bytes(&ifinfomsg(0, 0, 0));
    r.attr_str(IFLA_IFNAME, name);
    r
}

pub fn new_link_request(link: &NewLink) -> Request {
    let mut r = Request::new(Rtm::NewLink, CREATE);
    r.bytes(&ifinfomsg(0, 0, 0));
    match link {
        NewLink::Bridge { name, mac } => {
            r.attr_str(IFLA_IFNAME, name);
            if let Some(mac) = mac {
                r.attr(IFLA_ADDRESS, &mac.0);
            }
            r.nest(IFLA_LINKINFO, |r| {
                r.attr_str(IFLA_INFO_KIND, "bridge");
                r.nest(IFLA_INFO_DATA, bridge_data);
            });
        }
        NewLink::Vlan { name, parent, id } => {
            r.attr_str(IFLA_IFNAME, name).attr_u32(IFLA_LINK, *parent);
            r.nest(IFLA_LINKINFO, |r| {
                r.attr_str(IFLA_INFO_KIND, "vlan");
                r.nest(IFLA_INFO_DATA, |r| {
                    r.attr(IFLA_VLAN_ID, &id.to_ne_bytes());
                });
            });
        }
        NewLink::Bond { name, options } => {
            r.attr_str(IFLA_IFNAME, name);
            r.nest(IFLA_LINKINFO, |r| {
                r.attr_str(IFLA_INFO_KIND, "bond");
                r.nest(IFLA_INFO_DATA, |r| bond_data(r, options));
            });
        }
    }
    r
}

fn bridge_data(r: &mut Request) {
    r.attr_u32(IFLA_BR_FORWARD_DELAY, 0)
        .attr_u32(IFLA_BR_STP_STATE, 0);
}

fn bond_data(r: &mut Request, o: &BondOptions) {
    if let Some(v) = o.mode {
        r.attr(IFLA_BOND_MODE, &[v]);
    }
    for (ty, v) in [
        (IFLA_BOND_MIIMON, o.miimon),
        (IFLA_BOND_UPDELAY, o.updelay),
        (IFLA_BOND_DOWNDELAY, o.downdelay),
    ] {
        if let Some(v) = v {
            r.attr_u32(ty, v);
        }
    }
    if let Some(v) = o.xmit_hash_policy {
        r.attr(IFLA_BOND_XMIT_HASH_POLICY, &[v]);
    }
    if let Some(v) = o.lacp_rate {
        r.attr(IFLA_BOND_AD_LACP_RATE, &[v]);
    }
}

/// Set the forward delay of an existing bridge to 0.
pub fn bridge_fix_request(index: u32) -> Request {
    let mut r = Request::new(Rtm::NewLink, ACKED);
    r.bytes(&ifinfomsg(index, 0, 0));
    r.nest(IFLA_LINKINFO, |r| {
        r.attr_str(IFLA_INFO_KIND, "bridge");
        r.nest(IFLA_INFO_DATA, bridge_data);
    });
    r
}

/// What to change on an existing link; `None` leaves it alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub up: Option<bool>,
    /// Master ifindex; 0 releases the link from its master.
    pub master: Option<u32>,
    pub mac: Option<Mac>,
}

pub fn set_link_request(index: u32, c: &LinkChange) -> Request {
    let (flags, change) = match c.up {
        Some(true) => (IFF_UP, IFF_UP),
        Some(false) => (0, IFF_UP),
        None => (0, 0),
    };
    let mut r = Request::new(Rtm::SetLink, ACKED);
    r.bytes(&ifinfomsg(index, flags, change));
    if let Some(m) = c.master {
        r.attr_u32(IFLA_MASTER, m);
    }
    if let Some(mac) = c.mac {
        r.attr(IFLA_ADDRESS, &mac.0);
    }
    r
}

pub fn get_addrs_request() -> Request {
    let mut r = Request::new(Rtm::GetAddr, DUMP);
    r.bytes(&ifaddrmsg(0, 0));
    r
}

pub fn get_addrs6_request() -> Request {
    let mut m = ifaddrmsg(0, 0);
    m[0] = AF_INET6;
    let mut r = Request::new(Rtm::GetAddr, DUMP);
    r.bytes(&m);
    r
}

pub fn new_addr_request(index: u32, addr: Ipv4Addr, prefix: u8) -> Request {
    let mut r = Request::new(Rtm::NewAddr, REPLACE);
    r.bytes(&ifaddrmsg(prefix, index));
    r.attr(IFA_LOCAL, &addr.octets())
        .attr(IFA_ADDRESS, &addr.octets());
    if prefix <= 30 {
        r.attr(IFA_BROADCAST, &broadcast(addr, prefix).octets());
    }
    r
}

pub fn del_addr_request(index: u32, addr: Ipv4Addr, prefix: u8) -> Request {
    let mut r = Request::new(Rtm::DelAddr, ACKED);
    r.bytes(&ifaddrmsg(prefix, index));
    r.attr(IFA_LOCAL, &addr.octets());
    r
}

/// The directed broadcast address of `addr/prefix`.
pub fn broadcast(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    Ipv4Addr::from(u32::from(addr) | host_bits)
}

pub fn get_routes_request() -> Request {
    let mut r = Request::new(Rtm::GetRoute, DUMP);
    r.bytes(&rtmsg(0));
    r
}

pub fn default_route_request(gateway: Ipv4Addr, oif: u32, protocol: u8) -> Request {
    let mut r = Request::new(Rtm::NewRoute, REPLACE);
    r.bytes(&rtmsg(protocol));
    r.attr(RTA_GATEWAY, &gateway.octets())
        .attr_u32(RTA_OIF, oif);
    r
}

// ---------------------------------------------------------------------------------------
// Parsing (never panics: every slice access is checked).

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One netlink message: type, flags, sequence number and payload.
pub(crate) struct Message<'a> {
    pub(crate) ty: u16,
    pub(crate) seq: u32,
    pub(crate) payload: &'a [u8],
}

/// The messages in one datagram; stops at the first malformed header.
pub(crate) fn messages(mut buf: &[u8]) -> Vec<Message<'_>> {
    let mut out = Vec::new();
    while let (Some(len), Some(ty), Some(seq)) = (u32_at(buf, 0), u16_at(buf, 4), u32_at(buf, 8)) {
        let len = len as usize;
        let Some(payload) = buf.get(16..len) else {
            break;
        };
        out.push(Message { ty, seq, payload });
        buf = buf.get(align4(len)..).unwrap_or(&[]);
    }
    out
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Attributes `(type, data)` in `buf`; the nested flag bits are masked off.
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while let (Some(len), Some(ty)) = (u16_at(buf, 0), u16_at(buf, 2)) {
        let len = usize::from(len);
        let Some(data) = buf.get(4..len) else {
            break;
        };
        out.push((ty & 0x3fff, data));
        buf = buf.get(align4(len)..).unwrap_or(&[]);
    }
    out
}

fn c_string(data: &[u8]) -> String {
    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

pub(crate) fn parse_link(payload: &[u8]) -> Option<Link> {
    let mut link = Link {
        index: u32_at(payload, 4)?,
        flags: u32_at(payload, 8)?,
        ..Default::default()
    };
    for (ty, data) in attrs(payload.get(16..)?) {
        match ty {
            IFLA_IFNAME => link.name = c_string(data),
            IFLA_ADDRESS => link.mac = <[u8; 6]>::try_from(data).ok().map(Mac),
            IFLA_MASTER => link.master = u32_at(data, 0).filter(|m| *m != 0),
            IFLA_CARRIER => link.carrier = data.first() == Some(&1),
            IFLA_LINKINFO => parse_linkinfo(data, &mut link),
            _ => {}
        }
    }
    Some(link)
}

fn parse_linkinfo(data: &[u8], link: &mut Link) {
    for (ty, d) in attrs(data) {
        match ty {
            IFLA_INFO_KIND => link.kind = Some(c_string(d)),
            IFLA_INFO_DATA if link.kind.as_deref() == Some("bridge") => {
                link.forward_delay = attrs(d)
                    .into_iter()
                    .find(|(t, _)| *t == IFLA_BR_FORWARD_DELAY)
                    .and_then(|(_, v)| u32_at(v, 0));
            }
            _ => {}
        }
    }
}

/// A reader of one address message: `(ifindex, address, prefix)`.
type AddrParser<A> = fn(&[u8]) -> Option<(u32, A, u8)>;

/// `(ifindex, address, prefix)` of an IPv4 address message.
pub(crate) fn parse_addr(payload: &[u8]) -> Option<(u32, Ipv4Addr, u8)> {
    if *payload.first()? != AF_INET {
        return None;
    }
    let prefix = *payload.get(1)?;
    let index = u32_at(payload, 4)?;
    let mut addr = None;
    for (ty, data) in attrs(payload.get(8..)?) {
        let a = <[u8; 4]>::try_from(data).ok().map(Ipv4Addr::from);
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on p2p links.
        if ty == IFA_LOCAL || (ty == IFA_ADDRESS && addr.is_none()) {
            addr = a.or(addr);
        }
    }
    Some((index, addr?, prefix))
}

/// `(ifindex, address, prefix)` of an IPv6 address message.
pub(crate) fn parse_addr6(payload: &[u8]) -> Option<(u32, Ipv6Addr, u8)> {
    if *payload.first()? != AF_INET6 {
        return None;
    }
    let prefix = *payload.get(1)?;
    let index = u32_at(payload, 4)?;
    let addr = attrs(payload.get(8..)?)
        .into_iter()
        .filter(|(ty, _)| *ty == IFA_ADDRESS || *ty == IFA_LOCAL)
        .find_map(|(_, d)| <[u8; 16]>::try_from(d).ok().map(Ipv6Addr::from))?;
    Some((index, addr, prefix))
}

pub(crate) fn parse_default_route(payload: &[u8]) -> Option<DefaultRoute> {
    let (family, dst_len, table) = (*payload.first()?, *payload.get(1)?, *payload.get(4)?);
    if family != AF_INET || dst_len != 0 || table != RT_TABLE_MAIN {
        return None;
    }
    let mut route = DefaultRoute {
        gateway: None,
        oif: None,
    };
    for (ty, data) in attrs(payload.get(12..)?) {
        match ty {
            RTA_GATEWAY => route.gateway = <[u8; 4]>::try_from(data).ok().map(Ipv4Addr::from),
            RTA_OIF => route.oif = u32_at(data, 0),
            RTA_DST => return None,
            _ => {}
        }
    }
    Some(route)
}

// ---------------------------------------------------------------------------------------
// The socket.

/// An open NETLINK_ROUTE socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink> {
        // Protocol 0 is NETLINK_ROUTE.
        let fd = socket(AddressFamily::NETLINK, SocketType::RAW, None)
            .context("opening a NETLINK_ROUTE socket")?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0)).context("binding netlink")?;
        sockopt::set_socket_timeout(&fd, sockopt::Timeout::Recv, Some(REPLY_TIMEOUT))
            .context("setting the netlink receive timeout")?;
        Ok(Netlink { fd, seq: 1 })
    }

    /// Send one request and collect the payloads of its answer (a dump or an ACK).
    fn exchange(&mut self, req: &mut Request, what: &str) -> Result<Vec<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let msg = req.finish(seq);
        sendto(
            &self.fd,
            &msg,
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )
        .with_context(|| format!("netlink: sending {what}"))?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let (n, _) = recv(&self.fd, &mut buf[..], RecvFlags::empty())
                .with_context(|| format!("netlink: no answer to {what}"))?;
            for m in messages(buf.get(..n).unwrap_or(&[])) {
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => return ack_result(m.payload, what).map(|()| out),
                    ty => out.push((ty, m.payload.to_vec())),
                }
            }
            if out.len() > MAX_DUMP_MESSAGES {
                bail!("netlink: {what}: runaway answer");
            }
        }
    }

    /// A request that changes something: Ok once the kernel ACKs it.
    fn change(&mut self, mut req: Request, what: &str) -> Result<()> {
        self.exchange(&mut req, what).map(|_| ())
    }

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let answer = self.exchange(&mut get_links_request(), "link dump")?;
        Ok(answer
            .iter()
            .filter(|(ty, _)| *ty == Rtm::NewLink as u16)
            .filter_map(|(_, p)| parse_link(p))
            .collect())
    }

    /// One link by name (`None`: no such link). A request for one link, not a dump: for it
    /// the kernel first runs that link's pending link-state pass, which it otherwise batches
    /// (at most one pass a second), so a port's carrier reaches its bridge now.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        let what = format!("looking up link {name}");
        match self.exchange(&mut get_link_request(name), &what) {
            Ok(answer) => Ok(answer
                .iter()
                .filter(|(ty, _)| *ty == Rtm::NewLink as u16)
                .find_map(|(_, p)| parse_link(p))),
            Err(e)
                if e.downcast_ref::<Refused>()
                    .is_some_and(|r| r.errno == ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub fn create(&mut self, link: &NewLink) -> Result<()> {
        self.change(new_link_request(link), &format!("creating {link:?}"))
    }

    pub fn set_link(&mut self, index: u32, c: &LinkChange) -> Result<()> {
        self.change(
            set_link_request(index, c),
            &format!("changing link {index}: {c:?}"),
        )
    }

    pub fn fix_bridge(&mut self, index: u32) -> Result<()> {
        self.change(
            bridge_fix_request(index),
            "setting the bridge forward delay",
        )
    }

    /// IPv4 addresses of link `index`, with prefix lengths.
    pub fn addrs(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
        self.addr_dump(get_addrs_request(), "address dump", index, parse_addr)
    }

    /// IPv6 addresses of link `index`, with prefix lengths.
    pub fn addrs6(&mut self, index: u32) -> Result<Vec<(Ipv6Addr, u8)>> {
        self.addr_dump(
            get_addrs6_request(),
            "IPv6 address dump",
            index,
            parse_addr6,
        )
    }

    /// The addresses of link `index` in the answer to the dump `req`, read by `parse`.
    fn addr_dump<A>(
        &mut self,
        mut req: Request,
        what: &str,
        index: u32,
        parse: AddrParser<A>,
    ) -> Result<Vec<(A, u8)>> {
        let answer = self.exchange(&mut req, what)?;
        Ok(answer
            .iter()
            .filter_map(|(_, p)| parse(p))
            .filter(|(i, _, _)| *i == index)
            .map(|(_, a, p)| (a, p))
            .collect())
    }

    pub fn add_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        self.change(
            new_addr_request(index, addr, prefix),
            &format!("adding {addr}/{prefix}"),
        )
    }

    pub fn del_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        self.change(
            del_addr_request(index, addr, prefix),
            &format!("removing {addr}/{prefix}"),
        )
    }

    pub fn default_routes(&mut self) -> Result<Vec<DefaultRoute>> {
        let answer = self.exchange(&mut get_routes_request(), "route dump")?;
        Ok(answer
            .iter()
            .filter_map(|(_, p)| parse_default_route(p))
            .collect())
    }

    pub fn add_default_route(&mut self, gateway: Ipv4Addr, oif: u32, protocol: u8) -> Result<()> {
        self.change(
            default_route_request(gateway, oif, protocol),
            &format!("adding the default route via {gateway}"),
        )
    }
}

/// An `NLMSG_ERROR` payload: error 0 is the ACK.
pub(crate) fn ack_result(payload: &[u8], what: &str) -> Result<()> {
    let code = u32_at(payload, 0).map(|c| c as i32).unwrap_or(-1);
    if code == 0 {
        return Ok(());
    }
    // checked: i32::MIN has no positive counterpart.
    let errno = code.checked_neg().unwrap_or(i32::MAX);
    Err(Refused {
        what: what.to_string(),
        errno,
    }
    .into())
}

/// The kernel refused a request (an `NLMSG_ERROR` with an errno).
#[derive(Debug)]
pub struct Refused {
    what: String,
    errno: i32,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let err = std::io::Error::from_raw_os_error(self.errno);
        write!(f, "netlink: {}: {err}", self.what)
    }
}

impl std::error::Error for Refused {}

#[cfg(test)]
mod tests;
