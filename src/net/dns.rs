//! A minimal DNS client for one question: the SRV records of a name (engine discovery,
//! docs/ovirt-protocol.md §7). It runs in the unprivileged network worker; the answer is
//! hostile input, read strictly and with a bound on every length and on every compression
//! pointer followed (fuzz target `dns`).
//!
//! Transport (docs/ovirt-protocol.md §7.3): UDP first; TCP with its two-byte length prefix
//! when the answer is truncated (TC) or when UDP brings no answer at all. The second case is
//! what makes a server reachable over TCP only work (QEMU's `guestfwd` forwards TCP alone):
//! no setting is needed, at the price of one UDP timeout per server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::srv::Srv;

/// RR type SRV (RFC 2782) and class IN.
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;
/// Header flag bits (RFC 1035 §4.1.1).
const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const OPCODE_MASK: u16 = 0x7800;
const HEADER_LEN: usize = 12;
/// A name is at most 255 octets on the wire, a label at most 63 (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;
/// Compression pointers followed while reading one name: a name has at most 127 labels,
/// and no honest server chains more than a few pointers.
const MAX_POINTERS: usize = 16;
/// Records read from one answer: more is not an engine list.
const MAX_RECORDS: usize = 64;
/// How long one UDP try waits for its answer, and one TCP exchange at most.
const UDP_WAIT: Duration = Duration::from_secs(2);
const TCP_WAIT: Duration = Duration::from_secs(5);
/// Datagrams read on one UDP socket before giving up on it (stray or forged answers).
const MAX_DATAGRAMS: usize = 8;
/// Servers asked, as resolv.conf's MAXNS.
pub const MAX_SERVERS: usize = 3;

/// What a server said about the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The SRV records of the name (possibly none: the name exists without them).
    Records(Vec<Srv>),
    /// NXDOMAIN: the name does not exist.
    NoSuchName,
    /// TC set: the same question must be asked over TCP.
    Truncated,
}

/// The query for `name`'s SRV records with id `id`, recursion desired. `name` must be a
/// dotted name of valid labels (the caller built it from a checked domain).
pub fn query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&FLAG_RD.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question, no records
    encode_name(&mut q, name)?;
    q.extend_from_slice(&TYPE_SRV.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

fn encode_name(out: &mut Vec<u8>, name: &str) -> Result<(), String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() + 2 > MAX_NAME {
        return Err(format!("{name}: longer than a DNS name may be"));
    }
    for label in name.split('.') {
        if label.is_empty()
            || label.len() > MAX_LABEL
            || !label.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!("{name}: not a DNS name (empty, long or odd label)"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Ok(())
}

/// Read the answer to [`query`]`(id, name)`: the id, the QR bit, the opcode and the one
/// question must match, the RCODE must be NOERROR or NXDOMAIN; the SRV records of `name`
/// are returned, other records (CNAME, additional data) are skipped. Every length is
/// checked against the message.
pub fn parse_answer(msg: &[u8], id: u16, name: &str) -> Result<Answer, String> {
    let mut r = Reader { msg, pos: 0 };
    let got_id = r.u16()?;
    let flags = r.u16()?;
    let (qd, an) = (r.u16()?, r.u16()?);
    let _authority_and_additional = (r.u16()?, r.u16()?);
    if got_id != id || flags & FLAG_QR == 0 || flags & OPCODE_MASK != 0 {
        return Err("not an answer to our query (id, QR or opcode differ)".into());
    }
    if flags & FLAG_TC != 0 {
        return Ok(Answer::Truncated);
    }
    match flags & 0x000f {
        0 => {}
        3 => return Ok(Answer::NoSuchName),
        2 => return Err("the server failed (SERVFAIL)".into()),
        5 => return Err("the server refused the query (REFUSED)".into()),
        code => return Err(format!("the server answered with error code {code}")),
    }
    if qd != 1 {
        return Err(format!("{qd} questions in the answer, expected ours alone"));
    }
    let wanted = labels_of(name);
    let qname = r.name()?;
    if !same_name(&qname, &wanted) || r.u16()? != TYPE_SRV || r.u16()? != CLASS_IN {
        return Err("the answer is for another question".into());
    }
    let mut records = Vec::new();
    for _ in 0..an {
        let owner = r.name()?;
        let (rtype, class) = (r.u16()?, r.u16()?);
        let _ttl = r.u32()?;
        let len = usize::from(r.u16()?);
        let end = r.pos.checked_add(len).filter(|e| *e <= msg.len());
        let end = end.ok_or("a record runs past the end of the message")?;
        if rtype == TYPE_SRV && class == CLASS_IN && same_name(&owner, &wanted) {
            if records.len() == MAX_RECORDS {
                return Err(format!("more than {MAX_RECORDS} SRV records"));
            }
            records.push(srv_rdata(msg, r.pos, end)?);
        }
        r.pos = end;
    }
    Ok(Answer::Records(records))
}

/// SRV RDATA (RFC 2782): priority, weight, port, then the target name, which must end
/// exactly where the record does.
fn srv_rdata(msg: &[u8], start: usize, end: usize) -> Result<Srv, String> {
    let mut r = Reader { msg, pos: start };
    let (priority, weight, port) = (r.u16()?, r.u16()?, r.u16()?);
    let target = r.name()?;
    if r.pos != end {
        return Err("an SRV record's length does not match its content".into());
    }
    Ok(Srv {
        priority,
        weight,
        port,
        target: text_of(&target),
    })
}

/// A name as dotted text; "." for the root. A label byte that is not a printable ASCII
/// character or is a dot is written `\DDD` (RFC 1035 §5.1), so the text is never ambiguous
/// and the parent's host-name rule refuses it.
fn text_of(labels: &[Vec<u8>]) -> String {
    if labels.is_empty() {
        return ".".into();
    }
    let mut out = String::new();
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("\\{b:03}"));
            }
        }
    }
    out
}

fn labels_of(name: &str) -> Vec<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.split('.')
        .filter(|l| !l.is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect()
}

/// DNS names compare without regard to ASCII case (RFC 1035 §2.3.3).
fn same_name(a: &[Vec<u8>], b: &[Vec<u8>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.msg.len());
        let end = end.ok_or("the message ends too early")?;
        let b = &self.msg[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A name at the current position, following compression pointers (RFC 1035 §4.1.4):
    /// each must point before the label that holds it, at most [`MAX_POINTERS`] are
    /// followed, and the whole name is at most 255 octets. The position moves past the name
    /// as written here (past the first pointer, if any).
    fn name(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let mut labels = Vec::new();
        let mut at = self.pos;
        let mut resume = None;
        let mut pointers = 0;
        let mut wire_len = 1;
        loop {
            let len = *self
                .msg
                .get(at)
                .ok_or("a name runs past the end of the message")?;
            match len & 0xc0 {
                0x00 if len == 0 => break,
                0x00 => {
                    let len = usize::from(len);
                    let label = self
                        .msg
                        .get(at + 1..at + 1 + len)
                        .ok_or("a label runs past the end of the message")?;
                    wire_len += len + 1;
                    if wire_len > MAX_NAME {
                        return Err("a name longer than 255 octets".into());
                    }
                    labels.push(label.to_vec());
                    at += 1 + len;
                }
                0xc0 => {
                    let low = *self.msg.get(at + 1).ok_or("a pointer cut short")?;
                    let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                    pointers += 1;
                    if target >= at || pointers > MAX_POINTERS {
                        return Err("a compression pointer forward or in a loop".into());
                    }
                    resume.get_or_insert(at + 2);
                    at = target;
                }
                _ => return Err("a label of an unknown type".into()),
            }
        }
        self.pos = resume.unwrap_or(at + 1);
        Ok(labels)
    }
}

/// Ask `servers` in turn for `name`'s SRV records, before `until`. The first server that
/// answers (records, or no such name) decides; one that fails or stays silent passes the
/// question on to the next. The error names every server's failure.
/// `tcp_only` (resolv.conf's `options use-vc`) skips UDP.
pub fn lookup(
    servers: &[SocketAddr],
    name: &str,
    until: Instant,
    tcp_only: bool,
) -> Result<Answer, String> {
    let mut failures = Vec::new();
    for server in servers.iter().take(MAX_SERVERS) {
        if Instant::now() >= until {
            failures.push(format!("{server}: no time left"));
            break;
        }
        let answer = if tcp_only {
            over_tcp(*server, name, until)
        } else {
            ask(*server, name, until)
        };
        match answer {
            Ok(Answer::Truncated) => failures.push(format!("{server}: truncated over TCP")),
            Ok(answer) => return Ok(answer),
            Err(e) => failures.push(format!("{server}: {e}")),
        }
    }
    if failures.is_empty() {
        return Err("no DNS server to ask".into());
    }
    Err(failures.join("; "))
}

/// One server: UDP, then TCP when the answer is truncated or UDP brought nothing.
fn ask(server: SocketAddr, name: &str, until: Instant) -> Result<Answer, String> {
    let udp = match over_udp(server, name, until) {
        Ok(Answer::Truncated) => "truncated over UDP".to_string(),
        Ok(answer) => return Ok(answer),
        Err(e) => e,
    };
    log::debug!("DNS {server}: {udp}; asking over TCP");
    match over_tcp(server, name, until) {
        Ok(Answer::Truncated) => Err("truncated over TCP too".into()),
        Ok(answer) => Ok(answer),
        Err(e) => Err(format!("UDP: {udp}; TCP: {e}")),
    }
}

fn left(until: Instant, most: Duration) -> Result<Duration, String> {
    let left = until.saturating_duration_since(Instant::now()).min(most);
    if left < Duration::from_millis(1) {
        return Err("out of time".into());
    }
    Ok(left)
}

fn over_udp(server: SocketAddr, name: &str, until: Instant) -> Result<Answer, String> {
    let id = random_id();
    let q = query(id, name)?;
    let bind = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(bind).map_err(|e| format!("opening a UDP socket: {e}"))?;
    sock.connect(server).map_err(|e| format!("UDP: {e}"))?;
    sock.send(&q).map_err(|e| format!("UDP: {e}"))?;
    let stop = Instant::now() + left(until, UDP_WAIT)?;
    let mut buf = [0u8; 65535];
    let mut last = "no answer".to_string();
    for _ in 0..MAX_DATAGRAMS {
        sock.set_read_timeout(Some(left(stop, UDP_WAIT)?))
            .map_err(|e| e.to_string())?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if is_timeout(&e) => return Err(format!("no answer over UDP: {last}")),
            Err(e) => return Err(format!("UDP: {e}")),
        };
        // A datagram that is not the answer to our query (another id, a forgery that got
        // the id wrong) is ignored, and the real answer waited for.
        match parse_answer(&buf[..n], id, name) {
            Ok(answer) => return Ok(answer),
            Err(e) => last = e,
        }
    }
    Err(format!("no valid answer over UDP: {last}"))
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// DNS over TCP: each message preceded by its length in two bytes (RFC 1035 §4.2.2).
fn over_tcp(server: SocketAddr, name: &str, until: Instant) -> Result<Answer, String> {
    let id = random_id();
    let q = query(id, name)?;
    let stop = Instant::now() + left(until, TCP_WAIT)?;
    let mut s = TcpStream::connect_timeout(&server, left(stop, TCP_WAIT)?)
        .map_err(|e| format!("connecting over TCP: {e}"))?;
    let io = |e: std::io::Error| format!("over TCP: {e}");
    s.set_write_timeout(Some(left(stop, TCP_WAIT)?))
        .map_err(io)?;
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).map_err(io)?;
    let mut head = [0u8; 2];
    read_full(&mut s, &mut head, stop)?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(head))];
    read_full(&mut s, &mut msg, stop)?;
    parse_answer(&msg, id, name)
}

/// Fill `buf` before `stop`: the timeout is set again before every read, so a server that
/// trickles its answer a byte at a time still cannot hold us past `stop`.
fn read_full(s: &mut TcpStream, buf: &mut [u8], stop: Instant) -> Result<(), String> {
    let mut got = 0;
    while got < buf.len() {
        s.set_read_timeout(Some(left(stop, TCP_WAIT)?))
            .map_err(|e| format!("over TCP: {e}"))?;
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err("the server closed the TCP connection mid-answer".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err("no answer over TCP in time".into()),
            Err(e) => return Err(format!("over TCP: {e}")),
        }
    }
    Ok(())
}

/// What the resolver configuration says: its servers (port 53), its first search domain
/// and whether to use TCP alone (`options use-vc`). Unknown lines are ignored, as the C
/// library does; at most [`MAX_SERVERS`] servers are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub servers: Vec<SocketAddr>,
    pub search: Option<String>,
    pub tcp_only: bool,
}

impl ResolvConf {
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    let ip = words
                        .next()
                        .and_then(|w| w.parse::<std::net::IpAddr>().ok());
                    if let (Some(ip), true) = (ip, conf.servers.len() < MAX_SERVERS) {
                        conf.servers.push(SocketAddr::new(ip, 53));
                    }
                }
                // The last `search` or `domain` line wins, as in the C library.
                Some("search" | "domain") => conf.search = words.next().map(str::to_string),
                Some("options") => conf.tcp_only |= words.any(|w| w == "use-vc" || w == "tcp"),
                _ => {}
            }
        }
        conf
    }
}

/// A query id nobody off the path can guess (RFC 5452 §4.3).
fn random_id() -> u16 {
    let mut b = [0u8; 2];
    match rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::INSECURE) {
        Ok(2) => u16::from_ne_bytes(b),
        _ => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            (std::process::id() ^ now.subsec_nanos()) as u16
        }
    }
}

#[cfg(test)]
mod tests;
