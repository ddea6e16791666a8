//! A DHCPv4 client (RFC 2131, options RFC 2132): DISCOVER, OFFER, REQUEST, ACK.
//!
//! Hand-written: the four messages and eight options we use are a few hundred lines, where
//! dhcproto would add ~200 KB (hickory-proto, ICU) to a size-budgeted binary.
//!
//! It runs over an ordinary UDP socket — bound to 0.0.0.0:68 and to the one interface
//! (SO_BINDTODEVICE), allowed to broadcast — rather than a raw socket: we set the BROADCAST
//! flag (RFC 2131 §4.1), so servers and relays answer to 255.255.255.255, which the kernel
//! delivers to an interface that has no address yet. Every wait is bounded; retransmission
//! backs off exponentially (4 s … 16 s in the RFC; we start at 1 s because a boot is
//! waiting) with up to a second of random jitter; malformed or foreign packets are ignored.

use anyhow::{bail, Context, Result};
use log::{debug, info, warn};
use rustix::net::{socket, sockopt, AddressFamily, SocketType};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::retry::Jitter;
use crate::values::Mac;

const CLIENT_PORT: u16 = 68;
const SERVER_PORT: u16 = 67;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Fixed BOOTP header, before the magic cookie.
const HEADER: usize = 236;
/// BOOTP's minimum message size; some relays drop shorter ones.
const MIN_LEN: usize = 300;
const FLAG_BROADCAST: u16 = 0x8000;

// Message types (option 53).
const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;

// Option codes (RFC 2132). Framing:
const OPT_PAD: u8 = 0;
const OPT_END: u8 = 255;
// The exchange itself:
const OPT_REQUESTED_IP: u8 = 50;
const OPT_OVERLOAD: u8 = 52;
const OPT_MSG_TYPE: u8 = 53;
const OPT_PARAMS: u8 = 55;
const OPT_MAX_SIZE: u8 = 57;
const OPT_CLIENT_ID: u8 = 61;
/// What a lease carries: asked for (option 55) in every DISCOVER and REQUEST.
const LEASE_OPTIONS: [u8; 7] = [
    OPT_SUBNET_MASK,
    OPT_ROUTER,
    OPT_DNS,
    OPT_HOSTNAME,
    OPT_DOMAIN,
    OPT_LEASE_TIME,
    OPT_SERVER_ID,
];
const OPT_SUBNET_MASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_HOSTNAME: u8 = 12;
const OPT_DOMAIN: u8 = 15;
const OPT_LEASE_TIME: u8 = 51;
const OPT_SERVER_ID: u8 = 54;

const FIRST_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_TIMEOUT: Duration = Duration::from_secs(16);
/// REQUESTs sent for one OFFER before starting over with a DISCOVER.
const REQUEST_TRIES: u32 = 3;

/// What the server gave us.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub hostname: Option<String>,
    pub domain: Option<String>,
    /// Seconds; `None` when the server sent none (treated as infinite by RFC 2131).
    pub lease_secs: Option<u32>,
    pub server: Ipv4Addr,
}

/// A parsed server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    /// Options in order; repeated options are concatenated (RFC 3396).
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Reply {
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    pub fn msg_type(&self) -> Option<u8> {
        self.option(OPT_MSG_TYPE).and_then(|v| v.first().copied())
    }

    fn ipv4(&self, code: u8) -> Option<Ipv4Addr> {
        self.ipv4_list(code).into_iter().next()
    }

    fn ipv4_list(&self, code: u8) -> Vec<Ipv4Addr> {
        self.option(code)
            .unwrap_or(&[])
            .chunks_exact(4)
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect()
    }

    fn text(&self, code: u8) -> Option<String> {
        let v = self.option(code)?;
        let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
        std::str::from_utf8(&v[..end]).ok().map(str::to_string)
    }

    /// A host or domain name option, in the form `values::Hostname` keeps; an invalid one
    /// is as good as none.
    fn name(&self, code: u8) -> Option<String> {
        let name = self.text(code)?.parse::<crate::values::Hostname>().ok()?;
        Some(name.0)
    }

    /// The lease this ACK describes, checked.
    pub fn lease(&self, from: Ipv4Addr) -> Result<Lease> {
        if self.yiaddr.is_unspecified() || self.yiaddr.is_broadcast() || self.yiaddr.is_multicast()
        {
            bail!("DHCP server offered the unusable address {}", self.yiaddr);
        }
        let prefix = match self.ipv4(OPT_SUBNET_MASK) {
            Some(mask) => {
                mask_prefix(mask).with_context(|| format!("DHCP server sent the netmask {mask}"))?
            }
            None => classful_prefix(self.yiaddr),
        };
        let lease_secs = self
            .option(OPT_LEASE_TIME)
            .and_then(|v| Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?)));
        Ok(Lease {
            address: self.yiaddr,
            prefix,
            router: self.ipv4(OPT_ROUTER).filter(|r| !r.is_unspecified()),
            dns: self.ipv4_list(OPT_DNS),
            // The one host-name rule, as for hostname=: nothing odd reaches /etc or the kernel.
            hostname: self.name(OPT_HOSTNAME),
            domain: self.name(OPT_DOMAIN),
            lease_secs: lease_secs.filter(|s| *s != u32::MAX),
            server: self.ipv4(OPT_SERVER_ID).unwrap_or(from),
        })
    }
}

/// Prefix length of a contiguous mask.
pub fn mask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    ((!bits).wrapping_add(1) & !bits == 0).then_some(bits.count_ones() as u8)
}

/// RFC 2131 §2.2 leaves a missing mask to the client; the class default is what others use.
fn classful_prefix(addr: Ipv4Addr) -> u8 {
    match addr.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// A client message: the header fields that vary and the options after the type.
pub struct Message<'a> {
    pub msg_type: u8,
    pub xid: u32,
    pub secs: u16,
    pub mac: Mac,
    pub hostname: Option<&'a str>,
    /// For a REQUEST in the SELECTING state: (requested address, server id).
    pub selecting: Option<(Ipv4Addr, Ipv4Addr)>,
}

impl Message<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut p = vec![0u8; HEADER];
        p[0] = 1; // BOOTREQUEST
        p[1] = 1; // Ethernet
        p[2] = 6;
        p[4..8].copy_from_slice(&self.xid.to_be_bytes());
        p[8..10].copy_from_slice(&self.secs.to_be_bytes());
        p[10..12].copy_from_slice(&FLAG_BROADCAST.to_be_bytes());
        p[28..34].copy_from_slice(&self.mac.0);
        p.extend_from_slice(&MAGIC);
        self.options(&mut p);
        p.push(OPT_END);
        if p.len() < MIN_LEN {
            p.resize(MIN_LEN, OPT_PAD);
        }
        p
    }

    fn options(&self, p: &mut Vec<u8>) {
        let mut opt = |code: u8, data: &[u8]| {
            p.push(code);
            p.push(data.len().min(255) as u8);
            p.extend_from_slice(&data[..data.len().min(255)]);
        };
        opt(OPT_MSG_TYPE, &[self.msg_type]);
        let mut client_id = vec![1u8];
        client_id.extend_from_slice(&self.mac.0);
        opt(OPT_CLIENT_ID, &client_id);
        opt(OPT_MAX_SIZE, &1500u16.to_be_bytes());
        if let Some((addr, server)) = self.selecting {
            opt(OPT_REQUESTED_IP, &addr.octets());
            opt(OPT_SERVER_ID, &server.octets());
        }
        if let Some(h) = self.hostname {
            opt(OPT_HOSTNAME, h.as_bytes());
        }
        opt(OPT_PARAMS, &LEASE_OPTIONS);
    }
}

/// Parse a server's reply; `None` for anything that is not a well-formed BOOTREPLY.
pub fn parse_reply(p: &[u8]) -> Option<Reply> {
    if p.len() < HEADER + 4 || p[0] != 2 || p[1] != 1 || p[2] != 6 || p[HEADER..HEADER + 4] != MAGIC
    {
        return None;
    }
    let mut options = Vec::new();
    parse_options(&p[HEADER + 4..], &mut options)?;
    // Option overload (RFC 2132 §9.3): more options in the `file` and/or `sname` fields.
    let overload = options
        .iter()
        .find(|(c, _)| *c == OPT_OVERLOAD)
        .and_then(|(_, v)| v.first().copied())
        .unwrap_or(0);
    if overload & 1 != 0 {
        parse_options(&p[108..236], &mut options)?;
    }
    if overload & 2 != 0 {
        parse_options(&p[44..108], &mut options)?;
    }
    Some(Reply {
        xid: u32::from_be_bytes(p[4..8].try_into().ok()?),
        yiaddr: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
        chaddr: p[28..34].try_into().ok()?,
        options,
    })
}

/// Append the options in `buf` to `out`, concatenating repeats; `None` when truncated.
fn parse_options(buf: &[u8], out: &mut Vec<(u8, Vec<u8>)>) -> Option<()> {
    let mut i = 0;
    while let Some(&code) = buf.get(i) {
        match code {
            OPT_PAD => i += 1,
            OPT_END => return Some(()),
            _ => {
                let len = usize::from(*buf.get(i + 1)?);
                let data = buf.get(i + 2..i + 2 + len)?;
                match out.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, v)) => v.extend_from_slice(data),
                    None => out.push((code, data.to_vec())),
                }
                i += 2 + len;
            }
        }
    }
    Some(())
}

// ---------------------------------------------------------------------------------------
// The exchange.

/// A UDP socket on port 68 of `ifname` only, allowed to broadcast.
fn open_socket(ifname: &str) -> Result<UdpSocket> {
    let fd: OwnedFd =
        socket(AddressFamily::INET, SocketType::DGRAM, None).context("opening the DHCP socket")?;
    sockopt::set_socket_reuseaddr(&fd, true).context("SO_REUSEADDR")?;
    sockopt::set_socket_broadcast(&fd, true).context("SO_BROADCAST")?;
    bind_to_device(&fd, ifname)?;
    rustix::net::bind(&fd, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT))
        .context("binding UDP port 68 (is another DHCP client running?)")?;
    Ok(UdpSocket::from(fd))
}

/// SO_BINDTODEVICE: our broadcasts leave through, and replies come from, this interface
/// only. rustix has no wrapper for it.
fn bind_to_device(fd: &OwnedFd, ifname: &str) -> Result<()> {
    let name = ifname.as_bytes();
    // SAFETY: a valid open socket and a pointer/length pair to a live byte slice.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("binding the DHCP socket to {ifname}"));
    }
    Ok(())
}

/// A random transaction id, so replies meant for other clients are told apart.
fn random_xid() -> u32 {
    let mut b = [0u8; 4];
    match rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::INSECURE) {
        Ok(4) => u32::from_ne_bytes(b),
        // Kernel older than 5.6: the clock and pid still differ between hosts.
        _ => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            std::process::id() ^ now.subsec_nanos() ^ now.as_secs() as u32
        }
    }
}

/// Obtain a lease on `ifname` (whose MAC is `mac`) before `until`.
pub fn acquire(ifname: &str, mac: Mac, hostname: Option<&str>, until: Instant) -> Result<Lease> {
    let sock = open_socket(ifname)?;
    let mut client = Client {
        sock,
        mac,
        hostname,
        start: Instant::now(),
        until,
        rng: Jitter::from_os(),
        discovers: 0,
        problem: None,
    };
    let lease = client.run().with_context(|| format!("DHCP on {ifname}"))?;
    info!(
        "DHCP lease on {ifname}: {}/{} from {} for {}",
        lease.address,
        lease.prefix,
        lease.server,
        lease
            .lease_secs
            .map_or("ever".to_string(), |s| format!("{s} s"))
    );
    Ok(lease)
}

struct Client<'a> {
    sock: UdpSocket,
    mac: Mac,
    hostname: Option<&'a str>,
    start: Instant,
    until: Instant,
    rng: Jitter,
    discovers: u32,
    /// Why the last offer came to nothing, for the final error.
    problem: Option<String>,
}

impl Client<'_> {
    fn run(&mut self) -> Result<Lease> {
        loop {
            let Some((offer, from)) = self.discover()? else {
                if let Some(problem) = &self.problem {
                    bail!("no usable DHCP lease before the deadline: {problem}");
                }
                bail!(
                    "no DHCP offer after {} s ({} DISCOVERs sent); is a DHCP server reachable on this network?",
                    self.start.elapsed().as_secs(),
                    self.discovers
                );
            };
            if let Some(lease) = self.request(&offer, from)? {
                return Ok(lease);
            }
            if Instant::now() >= self.until {
                let problem = self.problem.take().unwrap_or_default();
                bail!("no usable DHCP lease before the deadline: {problem}");
            }
            // A server that NAKs at once must not turn this into a packet storm.
            let left = self.until.saturating_duration_since(Instant::now());
            std::thread::sleep(FIRST_TIMEOUT.min(left));
        }
    }

    /// DISCOVER until an OFFER comes, with backoff; `None` at the deadline.
    fn discover(&mut self) -> Result<Option<(Reply, Ipv4Addr)>> {
        let xid = random_xid();
        let mut timeout = FIRST_TIMEOUT;
        while Instant::now() < self.until {
            self.send(DISCOVER, xid, None)?;
            self.discovers += 1;
            let wait = timeout + self.rng.up_to(Duration::from_secs(1));
            if let Some(r) = self.wait(xid, &[OFFER], wait)? {
                return Ok(Some(r));
            }
            timeout = (timeout * 2).min(MAX_TIMEOUT);
        }
        Ok(None)
    }

    /// REQUEST the offered address; `None` on NAK or silence (start over).
    fn request(&mut self, offer: &Reply, from: Ipv4Addr) -> Result<Option<Lease>> {
        let server = offer.ipv4(OPT_SERVER_ID).unwrap_or(from);
        let xid = offer.xid;
        let mut timeout = FIRST_TIMEOUT;
        for _ in 0..REQUEST_TRIES {
            if Instant::now() >= self.until {
                break;
            }
            self.send(REQUEST, xid, Some((offer.yiaddr, server)))?;
            match self.wait(xid, &[ACK, NAK], timeout)? {
                // A bad ACK is like a NAK: start over, and say why if nothing better comes.
                Some((r, from)) if r.msg_type() == Some(ACK) => match r.lease(from) {
                    Ok(lease) => return Ok(Some(lease)),
                    Err(e) => {
                        warn!("{e:#}");
                        self.problem = Some(format!("{e:#}"));
                        return Ok(None);
                    }
                },
                Some(_) => {
                    info!("DHCP server {server} refused {} (NAK)", offer.yiaddr);
                    self.problem = Some(format!(
                        "the server {server} refused {} (NAK)",
                        offer.yiaddr
                    ));
                    return Ok(None);
                }
                None => timeout = (timeout * 2).min(MAX_TIMEOUT),
            }
        }
        self.problem = Some(format!(
            "the server {server} offered {} but never acknowledged it",
            offer.yiaddr
        ));
        Ok(None)
    }

    fn send(&self, msg_type: u8, xid: u32, selecting: Option<(Ipv4Addr, Ipv4Addr)>) -> Result<()> {
        let msg = Message {
            msg_type,
            xid,
            secs: self.start.elapsed().as_secs().min(u64::from(u16::MAX)) as u16,
            mac: self.mac,
            hostname: self.hostname,
            selecting,
        };
        let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT);
        self.sock
            .send_to(&msg.encode(), to)
            .context("sending a DHCP message")?;
        Ok(())
    }

    /// The first reply of one of `types` to `xid` within `wait` (and before the deadline).
    fn wait(&self, xid: u32, types: &[u8], wait: Duration) -> Result<Option<(Reply, Ipv4Addr)>> {
        let until = (Instant::now() + wait).min(self.until);
        let mut buf = [0u8; 1500];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .context("setting the DHCP receive timeout")?;
            let (n, from) = match self.sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if is_timeout(&e) => return Ok(None),
                Err(e) => return Err(e).context("receiving DHCP replies"),
            };
            let from = match from.ip() {
                std::net::IpAddr::V4(a) => a,
                std::net::IpAddr::V6(_) => continue,
            };
            match parse_reply(buf.get(..n).unwrap_or(&[])) {
                Some(r) if r.xid == xid && r.chaddr == self.mac.0 => {
                    if r.msg_type().is_some_and(|t| types.contains(&t)) {
                        return Ok(Some((r, from)));
                    }
                }
                _ => debug!("ignoring a DHCP packet from {from} that is not for us"),
            }
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests;
