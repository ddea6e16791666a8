use super::*;

const MAC: Mac = Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

/// A server reply as a server would build it.
fn reply(xid: u32, msg_type: u8, yiaddr: [u8; 4], options: &[(u8, &[u8])]) -> Vec<u8> {
    let mut p = vec![0u8; HEADER];
    p[0] = 2;
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[16..20].copy_from_slice(&yiaddr);
    p[28..34].copy_from_slice(&MAC.0);
    p.extend_from_slice(&MAGIC);
    p.extend_from_slice(&[OPT_MSG_TYPE, 1, msg_type]);
    for (code, data) in options {
        p.push(*code);
        p.push(data.len() as u8);
        p.extend_from_slice(data);
    }
    p.push(OPT_END);
    p
}

fn options_of(p: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    parse_options(&p[HEADER + 4..], &mut out).unwrap();
    out
}

#[test]
fn discover_layout() {
    let m = Message {
        msg_type: DISCOVER,
        xid: 0x1234_5678,
        secs: 3,
        mac: MAC,
        hostname: Some("node1"),
        selecting: None,
    }
    .encode();
    assert_eq!(m.len(), MIN_LEN, "padded to the BOOTP minimum");
    assert_eq!(
        &m[0..4],
        &[1, 1, 6, 0],
        "BOOTREQUEST, Ethernet, 6-byte address, 0 hops"
    );
    assert_eq!(&m[4..8], &[0x12, 0x34, 0x56, 0x78]);
    assert_eq!(&m[8..10], &[0, 3], "secs");
    assert_eq!(
        &m[10..12],
        &[0x80, 0],
        "BROADCAST flag: answers reach us before we have an address"
    );
    assert_eq!(
        &m[12..28],
        &[0; 16],
        "ciaddr, yiaddr, siaddr, giaddr are zero"
    );
    assert_eq!(&m[28..34], &MAC.0);
    assert_eq!(&m[HEADER..HEADER + 4], &MAGIC);
    let o = options_of(&m);
    assert_eq!(
        o[0],
        (OPT_MSG_TYPE, vec![DISCOVER]),
        "message type comes first"
    );
    let get = |c: u8| o.iter().find(|(k, _)| *k == c).map(|(_, v)| v.clone());
    assert_eq!(
        get(OPT_CLIENT_ID),
        Some(vec![1, 0x52, 0x54, 0, 0x12, 0x34, 0x56])
    );
    assert_eq!(get(OPT_HOSTNAME), Some(b"node1".to_vec()));
    assert_eq!(get(OPT_REQUESTED_IP), None);
    let params = get(OPT_PARAMS).unwrap();
    for want in [
        OPT_SUBNET_MASK,
        OPT_ROUTER,
        OPT_DNS,
        OPT_HOSTNAME,
        OPT_LEASE_TIME,
    ] {
        assert!(params.contains(&want), "asks for option {want}");
    }
}

#[test]
fn request_names_the_offer_and_the_server() {
    let m = Message {
        msg_type: REQUEST,
        xid: 9,
        secs: 0,
        mac: MAC,
        hostname: None,
        selecting: Some((Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 1))),
    }
    .encode();
    let o = options_of(&m);
    let get = |c: u8| o.iter().find(|(k, _)| *k == c).map(|(_, v)| v.clone());
    assert_eq!(get(OPT_MSG_TYPE), Some(vec![REQUEST]));
    assert_eq!(get(OPT_REQUESTED_IP), Some(vec![10, 0, 0, 5]));
    assert_eq!(get(OPT_SERVER_ID), Some(vec![10, 0, 0, 1]));
    assert_eq!(get(OPT_HOSTNAME), None);
}

#[test]
fn ack_becomes_a_lease() {
    let p = reply(
        7,
        ACK,
        [10, 0, 0, 5],
        &[
            (OPT_SUBNET_MASK, &[255, 255, 255, 0]),
            (OPT_ROUTER, &[10, 0, 0, 1, 10, 0, 0, 2]),
            (OPT_DNS, &[10, 0, 0, 53, 10, 0, 0, 54]),
            (OPT_HOSTNAME, b"node1"),
            (OPT_DOMAIN, b"example.test\0"),
            (OPT_LEASE_TIME, &3600u32.to_be_bytes()),
            (OPT_SERVER_ID, &[10, 0, 0, 1]),
        ],
    );
    let r = parse_reply(&p).unwrap();
    assert_eq!((r.xid, r.msg_type(), r.chaddr), (7, Some(ACK), MAC.0));
    let lease = r.lease(Ipv4Addr::new(10, 0, 0, 99)).unwrap();
    assert_eq!(
        lease,
        Lease {
            address: Ipv4Addr::new(10, 0, 0, 5),
            prefix: 24,
            router: Some(Ipv4Addr::new(10, 0, 0, 1)),
            dns: vec![Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(10, 0, 0, 54)],
            hostname: Some("node1".into()),
            domain: Some("example.test".into()),
            lease_secs: Some(3600),
            server: Ipv4Addr::new(10, 0, 0, 1),
        }
    );
}

#[test]
fn lease_defaults_and_refusals() {
    // No mask: class default; no server id: the sender; infinite lease: None.
    let p = reply(1, ACK, [172, 16, 0, 9], &[(OPT_LEASE_TIME, &[0xff; 4])]);
    let l = parse_reply(&p)
        .unwrap()
        .lease(Ipv4Addr::new(172, 16, 0, 1))
        .unwrap();
    assert_eq!(
        (l.prefix, l.server, l.lease_secs),
        (16, Ipv4Addr::new(172, 16, 0, 1), None)
    );
    // Odd names from the network are dropped, not written to /etc.
    let p = reply(1, ACK, [10, 0, 0, 5], &[(OPT_HOSTNAME, b"bad name;rm -rf")]);
    assert_eq!(
        parse_reply(&p)
            .unwrap()
            .lease(Ipv4Addr::LOCALHOST)
            .unwrap()
            .hostname,
        None
    );
    // Names in the one form the host-name rule keeps: an absolute name loses its dot.
    let p = reply(
        1,
        ACK,
        [10, 0, 0, 5],
        &[(OPT_HOSTNAME, b"node1."), (OPT_DOMAIN, b"example.com.")],
    );
    let l = parse_reply(&p).unwrap().lease(Ipv4Addr::LOCALHOST).unwrap();
    assert_eq!(
        (l.hostname.as_deref(), l.domain.as_deref()),
        (Some("node1"), Some("example.com"))
    );
    let p = reply(1, ACK, [0, 0, 0, 0], &[]);
    assert!(parse_reply(&p).unwrap().lease(Ipv4Addr::LOCALHOST).is_err());
    let p = reply(
        1,
        ACK,
        [10, 0, 0, 5],
        &[(OPT_SUBNET_MASK, &[255, 0, 255, 0])],
    );
    assert!(parse_reply(&p).unwrap().lease(Ipv4Addr::LOCALHOST).is_err());
}

#[test]
fn split_and_overloaded_options() {
    // RFC 3396: a repeated option is one long option.
    let mut p = reply(
        1,
        OFFER,
        [10, 0, 0, 5],
        &[(OPT_DNS, &[1, 1, 1, 1]), (OPT_DNS, &[8, 8, 8, 8])],
    );
    let r = parse_reply(&p).unwrap();
    assert_eq!(r.option(OPT_DNS), Some(&[1, 1, 1, 1, 8, 8, 8, 8][..]));
    // RFC 2132 §9.3: the router in the `file` field.
    let end = p.len() - 1;
    p.truncate(end);
    p.extend_from_slice(&[OPT_OVERLOAD, 1, 1, OPT_END]);
    p[108..114].copy_from_slice(&[OPT_ROUTER, 4, 10, 0, 0, 1]);
    p[114] = OPT_END;
    let r = parse_reply(&p).unwrap();
    assert_eq!(r.option(OPT_ROUTER), Some(&[10, 0, 0, 1][..]));
}

#[test]
fn not_a_reply_is_ignored() {
    let good = reply(1, OFFER, [10, 0, 0, 5], &[(OPT_ROUTER, &[10, 0, 0, 1])]);
    assert!(parse_reply(&good).is_some());
    let mut request = good.clone();
    request[0] = 1;
    assert!(
        parse_reply(&request).is_none(),
        "BOOTREQUESTs are not answers"
    );
    let mut cookie = good.clone();
    cookie[HEADER] = 0;
    assert!(parse_reply(&cookie).is_none());
    // Every truncation: no panic; an option cut in half is refused.
    for cut in 0..good.len() {
        let _ = parse_reply(&good[..cut]);
    }
    let mut cut_option = good[..good.len() - 1].to_vec();
    cut_option.extend_from_slice(&[OPT_DNS, 8, 1, 2]);
    assert!(parse_reply(&cut_option).is_none());
}

#[test]
fn masks() {
    assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
    assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
    assert_eq!(mask_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
    assert_eq!(mask_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
    assert_eq!(classful_prefix(Ipv4Addr::new(10, 1, 1, 1)), 8);
    assert_eq!(classful_prefix(Ipv4Addr::new(192, 168, 1, 1)), 24);
}

/// A small deterministic PRNG for the robustness test (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Random bytes and random mutations of a valid reply: parsing never panics, and whatever
/// parses either yields a checked lease or an error.
#[test]
fn random_and_mutated_packets_never_panic() {
    let good = reply(
        1,
        ACK,
        [10, 0, 0, 5],
        &[
            (OPT_SUBNET_MASK, &[255, 255, 255, 0]),
            (OPT_ROUTER, &[10, 0, 0, 1]),
            (OPT_DNS, &[10, 0, 0, 53]),
            (OPT_HOSTNAME, b"node1"),
            (OPT_OVERLOAD, &[3]),
        ],
    );
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..20_000 {
        let mut p = if round % 2 == 0 {
            good.clone()
        } else {
            let len = (rng.next() % 600) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        };
        for _ in 0..(rng.next() % 8) {
            if !p.is_empty() {
                let i = (rng.next() as usize) % p.len();
                p[i] = rng.next() as u8;
            }
        }
        if let Some(r) = parse_reply(&p) {
            let _ = r.msg_type();
            if let Ok(l) = r.lease(Ipv4Addr::LOCALHOST) {
                assert!(l.prefix <= 32);
                assert!(!l.address.is_unspecified());
            }
        }
    }
}
