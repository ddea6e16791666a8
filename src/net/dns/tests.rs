use super::*;
use std::net::{TcpListener, UdpSocket};

const NAME: &str = "_ovirt-engine._tcp.example.test";

/// An answer to `query(id, NAME)`: the question (at offset 12), then `records`, each
/// `(owner, type, rdata)`; an owner of `None` is a pointer to the question's name.
fn answer(id: u16, flags: u16, records: &[(Option<&str>, u16, Vec<u8>)]) -> Vec<u8> {
    let mut m = query(id, NAME).unwrap();
    m[2..4].copy_from_slice(&(flags | FLAG_QR).to_be_bytes());
    m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    for (owner, rtype, rdata) in records {
        match owner {
            Some(name) => encode_name(&mut m, name).unwrap(),
            None => m.extend_from_slice(&[0xc0, 12]),
        }
        m.extend_from_slice(&rtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&300u32.to_be_bytes());
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(rdata);
    }
    m
}

fn srv_rdata_of(priority: u16, weight: u16, port: u16, target: &str) -> Vec<u8> {
    let mut r = Vec::new();
    for v in [priority, weight, port] {
        r.extend_from_slice(&v.to_be_bytes());
    }
    if target == "." {
        r.push(0);
    } else {
        encode_name(&mut r, target).unwrap();
    }
    r
}

fn records(a: Answer) -> Vec<Srv> {
    match a {
        Answer::Records(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_query_is_one_srv_question_with_recursion() {
    let q = query(0x1234, NAME).unwrap();
    assert_eq!(&q[..12], &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(q[12], 13);
    assert_eq!(&q[13..26], b"_ovirt-engine");
    assert_eq!(&q[q.len() - 5..], &[0, 0, 33, 0, 1]);
    assert!(query(1, "a..b").is_err());
    assert!(query(1, &"a".repeat(64)).is_err());
    assert!(query(1, &["a"; 128].join(".")).is_err());
}

#[test]
fn srv_records_are_read_and_others_skipped() {
    let msg = answer(
        7,
        0x0180,
        &[
            (
                None,
                TYPE_SRV,
                srv_rdata_of(10, 60, 443, "engine1.example.test"),
            ),
            (
                Some("other.example.test"),
                TYPE_SRV,
                srv_rdata_of(0, 0, 1, "x.example.test"),
            ),
            (None, 5, vec![0]),
            (
                Some("_OVIRT-ENGINE._TCP.Example.Test"),
                TYPE_SRV,
                srv_rdata_of(20, 0, 8443, "."),
            ),
        ],
    );
    let got = records(parse_answer(&msg, 7, NAME).unwrap());
    assert_eq!(
        got,
        [
            Srv {
                priority: 10,
                weight: 60,
                port: 443,
                target: "engine1.example.test".into()
            },
            Srv {
                priority: 20,
                weight: 0,
                port: 8443,
                target: ".".into()
            },
        ]
    );
}

#[test]
fn a_compressed_target_is_followed() {
    // The target "engine.example.test" as "engine" + a pointer to "example.test" inside the
    // question's name (offset 12 + 14 + 5 = 31).
    let mut rdata = srv_rdata_of(1, 2, 3, ".");
    rdata.pop();
    rdata.extend_from_slice(&[6]);
    rdata.extend_from_slice(b"engine");
    rdata.extend_from_slice(&[0xc0, 31]);
    let msg = answer(1, 0, &[(None, TYPE_SRV, rdata)]);
    let got = records(parse_answer(&msg, 1, NAME).unwrap());
    assert_eq!(got[0].target, "engine.example.test");
}

#[test]
fn header_and_rcode_are_checked() {
    let ok = answer(9, 0, &[]);
    assert_eq!(parse_answer(&ok, 9, NAME), Ok(Answer::Records(vec![])));
    assert!(parse_answer(&ok, 8, NAME)
        .unwrap_err()
        .contains("not an answer"));
    let mut not_answer = ok.clone();
    not_answer[2] &= 0x7f;
    assert!(parse_answer(&not_answer, 9, NAME).is_err());
    assert_eq!(
        parse_answer(&answer(9, FLAG_TC, &[]), 9, NAME),
        Ok(Answer::Truncated)
    );
    assert_eq!(
        parse_answer(&answer(9, 3, &[]), 9, NAME),
        Ok(Answer::NoSuchName)
    );
    assert!(parse_answer(&answer(9, 2, &[]), 9, NAME)
        .unwrap_err()
        .contains("SERVFAIL"));
    assert!(parse_answer(&answer(9, 5, &[]), 9, NAME)
        .unwrap_err()
        .contains("REFUSED"));
    assert!(parse_answer(&answer(9, 4, &[]), 9, NAME)
        .unwrap_err()
        .contains("code 4"));
    assert!(parse_answer(&ok, 9, "_ovirt._tcp.example.test")
        .unwrap_err()
        .contains("another question"));
    let mut two_questions = ok;
    two_questions[5] = 2;
    assert!(parse_answer(&two_questions, 9, NAME).is_err());
}

#[test]
fn hostile_lengths_and_pointers_are_errors() {
    let good = answer(
        1,
        0,
        &[(None, TYPE_SRV, srv_rdata_of(1, 1, 1, "a.example"))],
    );
    for cut in 0..good.len() {
        assert!(parse_answer(&good[..cut], 1, NAME).is_err(), "cut at {cut}");
    }
    // RDLENGTH one more than the SRV content, then one less.
    let mut long = srv_rdata_of(1, 1, 1, "a.example");
    long.push(0);
    assert!(parse_answer(&answer(1, 0, &[(None, TYPE_SRV, long)]), 1, NAME).is_err());
    let mut short = srv_rdata_of(1, 1, 1, "a.example");
    short.pop();
    let msg = answer(1, 0, &[(None, TYPE_SRV, short)]);
    assert!(parse_answer(&msg, 1, NAME).is_err());
    // A target that is a pointer to itself, then one pointing forward.
    let mut rdata = srv_rdata_of(1, 1, 1, ".");
    rdata.pop();
    rdata.extend_from_slice(&[0xc0, 0]);
    let msg = answer(1, 0, &[(None, TYPE_SRV, rdata)]);
    let at = msg.len() - 2;
    for target in [at, at + 1] {
        let mut m = msg.clone();
        m[at] = 0xc0 | (target >> 8) as u8;
        m[at + 1] = target as u8;
        assert!(
            parse_answer(&m, 1, NAME).unwrap_err().contains("pointer"),
            "{target}"
        );
    }
    // An extended label type (0x40) is refused.
    let mut odd = answer(1, 0, &[]);
    odd[12] = 0x41;
    assert!(parse_answer(&odd, 1, NAME).is_err());
}

#[test]
fn odd_label_bytes_are_escaped_never_passed_on() {
    let mut rdata = srv_rdata_of(1, 1, 1, ".");
    rdata.pop();
    rdata.extend_from_slice(&[4, b'a', b'.', 0x1b, b'\\', 0]);
    let msg = answer(1, 0, &[(None, TYPE_SRV, rdata)]);
    let got = records(parse_answer(&msg, 1, NAME).unwrap());
    assert_eq!(got[0].target, "a\\046\\027\\092");
}

#[test]
fn a_name_over_255_octets_is_refused() {
    // Five 63-octet labels: 320 octets on the wire.
    let mut rdata = srv_rdata_of(1, 1, 1, ".");
    rdata.pop();
    for _ in 0..5 {
        rdata.push(63);
        rdata.extend_from_slice(&[b'a'; 63]);
    }
    rdata.push(0);
    let msg = answer(1, 0, &[(None, TYPE_SRV, rdata)]);
    assert!(parse_answer(&msg, 1, NAME).unwrap_err().contains("255"));
}

/// A server on loopback that answers every UDP query truncated and every TCP query in
/// full, or (`udp` false) leaves UDP unanswered.
fn fake_server(udp: bool) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let sock = UdpSocket::bind(addr).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if udp {
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                let _ = n;
                sock.send_to(&answer(id.wrapping_add(1), 0, &[]), from)
                    .unwrap();
                sock.send_to(&answer(id, FLAG_TC, &[]), from).unwrap();
            }
        }
    });
    std::thread::spawn(move || {
        for conn in tcp.incoming().take(4) {
            let mut c = conn.unwrap();
            let mut head = [0u8; 2];
            c.read_exact(&mut head).unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(head))];
            c.read_exact(&mut q).unwrap();
            let id = u16::from_be_bytes([q[0], q[1]]);
            let a = answer(
                id,
                0,
                &[(
                    None,
                    TYPE_SRV,
                    srv_rdata_of(0, 5, 443, "engine.example.test"),
                )],
            );
            // Written in two pieces, as a stream may deliver it.
            c.write_all(&(a.len() as u16).to_be_bytes()[..1]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            c.write_all(&(a.len() as u16).to_be_bytes()[1..]).unwrap();
            c.write_all(&a).unwrap();
        }
    });
    addr
}

#[test]
fn truncated_over_udp_is_asked_again_over_tcp() {
    let server = fake_server(true);
    let until = Instant::now() + Duration::from_secs(10);
    let got = records(lookup(&[server], NAME, until, false).unwrap());
    assert_eq!(got[0].target, "engine.example.test");
}

#[test]
fn silence_over_udp_falls_back_to_tcp_within_the_deadline() {
    let server = fake_server(false);
    let start = Instant::now();
    let got = records(lookup(&[server], NAME, start + Duration::from_secs(10), false).unwrap());
    assert_eq!(got[0].port, 443);
    let took = start.elapsed();
    assert!(
        took >= UDP_WAIT && took < UDP_WAIT + Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn a_dead_server_fails_in_bounded_time_naming_it() {
    // A bound UDP port nobody answers, and no TCP listener there.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let start = Instant::now();
    let e = lookup(&[addr], NAME, start + Duration::from_millis(500), false).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(e.contains(&addr.to_string()), "{e}");
    assert_eq!(
        lookup(&[], NAME, start, false).unwrap_err(),
        "no DNS server to ask"
    );
}

#[test]
fn tcp_only_asks_no_udp_question() {
    let server = fake_server(false);
    let start = Instant::now();
    let got = records(lookup(&[server], NAME, start + Duration::from_secs(10), true).unwrap());
    assert_eq!(got[0].target, "engine.example.test");
    assert!(start.elapsed() < UDP_WAIT, "{:?}", start.elapsed());
}

#[test]
fn resolv_conf_gives_servers_domain_and_tcp() {
    let conf = ResolvConf::parse(
        "# Written by ovirt-node-reg\nsearch lab.example.test other.test\nnameserver 10.0.2.100\n\
         nameserver fd00::53\nnameserver bogus\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n\
         options ndots:1 use-vc\n",
    );
    let servers: Vec<String> = conf.servers.iter().map(ToString::to_string).collect();
    assert_eq!(servers, ["10.0.2.100:53", "[fd00::53]:53", "1.1.1.1:53"]);
    assert_eq!(conf.search.as_deref(), Some("lab.example.test"));
    assert!(conf.tcp_only);
    assert_eq!(
        ResolvConf::parse("domain a.test\nsearch b.test\n")
            .search
            .as_deref(),
        Some("b.test")
    );
    assert_eq!(ResolvConf::parse(""), ResolvConf::default());
}
