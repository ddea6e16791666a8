use super::*;

/// Header fields of a finished request: (length, type, flags, seq).
fn header(m: &[u8]) -> (u32, u16, u16, u32) {
    (
        u32_at(m, 0).unwrap(),
        u16_at(m, 4).unwrap(),
        u16_at(m, 6).unwrap(),
        u32_at(m, 8).unwrap(),
    )
}

/// The attributes after a fixed part of `fixed` bytes.
fn top_attrs(m: &[u8], fixed: usize) -> Vec<(u16, Vec<u8>)> {
    attrs(&m[16 + fixed..])
        .into_iter()
        .map(|(t, d)| (t, d.to_vec()))
        .collect()
}

fn find(attrs: &[(u16, Vec<u8>)], ty: u16) -> Vec<u8> {
    attrs
        .iter()
        .find(|(t, _)| *t == ty)
        .unwrap_or_else(|| panic!("attribute {ty} missing"))
        .1
        .clone()
}

fn nested(data: &[u8]) -> Vec<(u16, Vec<u8>)> {
    attrs(data)
        .into_iter()
        .map(|(t, d)| (t, d.to_vec()))
        .collect()
}

#[test]
fn bridge_creation_message() {
    let mac: Mac = "52:54:00:aa:bb:cc".parse().unwrap();
    let m = new_link_request(&NewLink::Bridge {
        name: "ovirtmgmt",
        mac: Some(mac),
    })
    .finish(7);
    let (len, ty, flags, seq) = header(&m);
    assert_eq!(len as usize, m.len());
    assert_eq!(m.len() % 4, 0);
    assert_eq!((ty, seq), (Rtm::NewLink as u16, 7));
    assert_eq!(flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    let a = top_attrs(&m, 16);
    assert_eq!(find(&a, IFLA_IFNAME), b"ovirtmgmt\0");
    assert_eq!(find(&a, IFLA_ADDRESS), mac.0);
    let info = nested(&find(&a, IFLA_LINKINFO));
    assert_eq!(find(&info, IFLA_INFO_KIND), b"bridge\0");
    let data = nested(&find(&info, IFLA_INFO_DATA));
    assert_eq!(find(&data, IFLA_BR_FORWARD_DELAY), 0u32.to_ne_bytes());
    assert_eq!(find(&data, IFLA_BR_STP_STATE), 0u32.to_ne_bytes());
}

#[test]
fn vlan_creation_message() {
    let m = new_link_request(&NewLink::Vlan {
        name: "eth0.100",
        parent: 3,
        id: 100,
    })
    .finish(1);
    let a = top_attrs(&m, 16);
    assert_eq!(find(&a, IFLA_IFNAME), b"eth0.100\0");
    assert_eq!(find(&a, IFLA_LINK), 3u32.to_ne_bytes());
    let info = nested(&find(&a, IFLA_LINKINFO));
    assert_eq!(find(&info, IFLA_INFO_KIND), b"vlan\0");
    let data = nested(&find(&info, IFLA_INFO_DATA));
    assert_eq!(find(&data, IFLA_VLAN_ID), 100u16.to_ne_bytes());
}

#[test]
fn bond_creation_message_and_options() {
    let opts = BondOptions::parse(&[
        "mode=802.3ad".into(),
        "miimon=100".into(),
        "xmit_hash_policy=layer3+4".into(),
        "lacp_rate=fast".into(),
    ])
    .unwrap();
    let m = new_link_request(&NewLink::Bond {
        name: "bond0",
        options: &opts,
    })
    .finish(1);
    let a = top_attrs(&m, 16);
    assert_eq!(find(&a, IFLA_IFNAME), b"bond0\0");
    let info = nested(&find(&a, IFLA_LINKINFO));
    assert_eq!(find(&info, IFLA_INFO_KIND), b"bond\0");
    let data = nested(&find(&info, IFLA_INFO_DATA));
    assert_eq!(find(&data, IFLA_BOND_MODE), [4]);
    assert_eq!(find(&data, IFLA_BOND_MIIMON), 100u32.to_ne_bytes());
    assert_eq!(find(&data, IFLA_BOND_XMIT_HASH_POLICY), [1]);
    assert_eq!(find(&data, IFLA_BOND_AD_LACP_RATE), [1]);
    assert!(data.iter().all(|(t, _)| *t != IFLA_BOND_UPDELAY));
}

#[test]
fn set_link_message() {
    let mac: Mac = "52:54:00:00:00:01".parse().unwrap();
    let c = LinkChange {
        up: Some(true),
        master: Some(9),
        mac: Some(mac),
    };
    let m = set_link_request(4, &c).finish(2);
    let (_, ty, flags, _) = header(&m);
    assert_eq!(
        (ty, flags),
        (Rtm::SetLink as u16, NLM_F_REQUEST | NLM_F_ACK)
    );
    assert_eq!(u32_at(&m, 16 + 4), Some(4), "ifindex");
    assert_eq!(u32_at(&m, 16 + 8), Some(IFF_UP), "flags");
    assert_eq!(u32_at(&m, 16 + 12), Some(IFF_UP), "change mask");
    let a = top_attrs(&m, 16);
    assert_eq!(find(&a, IFLA_MASTER), 9u32.to_ne_bytes());
    assert_eq!(find(&a, IFLA_ADDRESS), mac.0);
    // Down touches only the UP bit; no change leaves the flags alone.
    let down = set_link_request(
        4,
        &LinkChange {
            up: Some(false),
            ..Default::default()
        },
    )
    .finish(3);
    assert_eq!(
        (u32_at(&down, 24), u32_at(&down, 28)),
        (Some(0), Some(IFF_UP))
    );
}

#[test]
fn address_and_route_messages() {
    let m = new_addr_request(5, Ipv4Addr::new(10, 0, 0, 5), 24).finish(1);
    assert_eq!(&m[16..20], &[AF_INET, 24, 0, RT_SCOPE_UNIVERSE]);
    assert_eq!(u32_at(&m, 20), Some(5));
    let a = top_attrs(&m, 8);
    assert_eq!(find(&a, IFA_LOCAL), [10, 0, 0, 5]);
    assert_eq!(find(&a, IFA_BROADCAST), [10, 0, 0, 255]);
    assert_eq!(
        parse_addr(&m[16..]),
        Some((5, Ipv4Addr::new(10, 0, 0, 5), 24))
    );

    let r = default_route_request(Ipv4Addr::new(10, 0, 0, 1), 5, RTPROT_DHCP).finish(1);
    let (_, ty, flags, _) = header(&r);
    assert_eq!(ty, Rtm::NewRoute as u16);
    assert!(
        flags & NLM_F_REPLACE != 0,
        "replaces a default route elsewhere"
    );
    assert_eq!(
        &r[16..24],
        &[AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_DHCP, 0, RTN_UNICAST]
    );
    assert_eq!(
        parse_default_route(&r[16..]),
        Some(DefaultRoute {
            gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
            oif: Some(5)
        })
    );
}

#[test]
fn broadcast_addresses() {
    assert_eq!(
        broadcast(Ipv4Addr::new(10, 1, 2, 3), 8),
        Ipv4Addr::new(10, 255, 255, 255)
    );
    assert_eq!(
        broadcast(Ipv4Addr::new(192, 168, 1, 9), 30),
        Ipv4Addr::new(192, 168, 1, 11)
    );
    assert_eq!(
        broadcast(Ipv4Addr::new(1, 2, 3, 4), 32),
        Ipv4Addr::new(1, 2, 3, 4)
    );
    assert_eq!(broadcast(Ipv4Addr::new(1, 2, 3, 4), 0), Ipv4Addr::BROADCAST);
}

/// A kernel-style RTM_NEWLINK answer for a bridge, parsed back.
#[test]
fn parses_a_link_message() {
    let mut r = Request::new(Rtm::NewLink, 0);
    r.bytes(&ifinfomsg(7, IFF_UP | IFF_LOWER_UP, 0));
    r.attr_str(IFLA_IFNAME, "ovirtmgmt")
        .attr(IFLA_ADDRESS, &[0x52, 0x54, 0, 1, 2, 3])
        .attr_u32(IFLA_MASTER, 0)
        .attr(IFLA_CARRIER, &[1]);
    r.nest(IFLA_LINKINFO, |r| {
        r.attr_str(IFLA_INFO_KIND, "bridge");
        r.nest(IFLA_INFO_DATA, |r| {
            r.attr_u32(IFLA_BR_FORWARD_DELAY, 1500);
        });
    });
    let m = r.finish(1);
    let msgs = messages(&m);
    assert_eq!(msgs.len(), 1);
    let link = parse_link(msgs[0].payload).unwrap();
    assert_eq!(link.index, 7);
    assert_eq!(link.name, "ovirtmgmt");
    assert_eq!(link.mac, Some(Mac([0x52, 0x54, 0, 1, 2, 3])));
    assert_eq!(link.master, None, "master 0 means none");
    assert!(link.is_up() && link.has_carrier());
    assert_eq!(link.kind.as_deref(), Some("bridge"));
    assert_eq!(link.forward_delay, Some(1500));
}

/// Truncated or garbage input never panics and never yields a bogus message.
#[test]
fn malformed_input_is_ignored() {
    let m = new_link_request(&NewLink::Bridge {
        name: "br0",
        mac: None,
    })
    .finish(1);
    for cut in 0..m.len() {
        let msgs = messages(&m[..cut]);
        for msg in msgs {
            let _ = parse_link(msg.payload);
        }
        let _ = attrs(&m[cut..]);
        let _ = parse_addr(&m[cut..]);
        let _ = parse_default_route(&m[cut..]);
    }
    // A length field smaller than the header stops parsing instead of looping.
    let mut bad = m.clone();
    bad[0..4].copy_from_slice(&8u32.to_ne_bytes());
    assert!(messages(&bad).is_empty());
    let zero_attr = [0u8, 0, 1, 0, 9, 9, 9, 9];
    assert!(attrs(&zero_attr).is_empty());
}

#[test]
fn one_link_is_looked_up_by_name_with_an_ack() {
    let m = get_link_request("eth0").finish(3);
    let (_, ty, flags, seq) = header(&m);
    assert_eq!((ty, seq), (Rtm::GetLink as u16, 3));
    assert_eq!(flags, NLM_F_REQUEST | NLM_F_ACK, "not a dump");
    assert!(
        m.windows(5).any(|w| w == b"eth0\0"),
        "IFLA_IFNAME carries the name"
    );
}

#[test]
fn a_refusal_keeps_its_errno() {
    let e = ack_result(&(-19i32).to_ne_bytes(), "looking up link x").unwrap_err();
    assert_eq!(e.downcast_ref::<Refused>().map(|r| r.errno), Some(ENODEV));
    assert!(format!("{e:#}").contains("looking up link x"), "{e:#}");
}

#[test]
fn ack_and_errors() {
    assert!(ack_result(&0i32.to_ne_bytes(), "x").is_ok());
    let e = ack_result(&(-17i32).to_ne_bytes(), "creating br0").unwrap_err();
    assert!(format!("{e}").contains("creating br0"), "{e}");
    assert!(ack_result(&[], "short").is_err());
}

/// Random mutations of real messages: the parsers never panic.
#[test]
fn mutated_messages_never_panic() {
    let mut seeds = vec![
        new_link_request(&NewLink::Bridge {
            name: "ovirtmgmt",
            mac: Some(Mac([2, 0, 0, 0, 0, 1])),
        })
        .finish(1),
        new_addr_request(3, Ipv4Addr::new(10, 0, 0, 5), 24).finish(2),
        default_route_request(Ipv4Addr::new(10, 0, 0, 1), 3, RTPROT_DHCP).finish(3),
    ];
    seeds.push(seeds.concat());
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..20_000 {
        let mut m = seeds[round % seeds.len()].clone();
        for _ in 0..(next() % 6) {
            let i = (next() as usize) % m.len();
            m[i] = next() as u8;
        }
        for msg in messages(&m) {
            let _ = parse_link(msg.payload);
            let _ = parse_addr(msg.payload);
            let _ = parse_default_route(msg.payload);
            let _ = ack_result(msg.payload, "fuzz");
        }
    }
    assert!(ack_result(&i32::MIN.to_ne_bytes(), "x").is_err());
}

#[test]
fn parses_an_ipv6_address_message() {
    let mut r = Request::new(Rtm::NewAddr, 0);
    r.bytes(&[AF_INET6, 64, 0, 0, 9, 0, 0, 0]);
    let a: Ipv6Addr = "fd77::5054:ff:fe77:1".parse().unwrap();
    r.attr(IFA_ADDRESS, &a.octets());
    let m = r.finish(1);
    assert_eq!(parse_addr6(&m[16..]), Some((9, a, 64)));
    assert_eq!(parse_addr(&m[16..]), None, "not IPv4");
    assert_eq!(get_addrs6_request().finish(1)[16], AF_INET6);
}
