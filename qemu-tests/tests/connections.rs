//! The simulator's connections: HTTP/1.1 keep-alive as the web server in front of an engine
//! does it (several requests on one TLS connection, bounded in count and idle time, the
//! client's `Connection: close` honoured), and the switch that closes after every answer.
//! Loopback only; every wait is bounded.

use std::time::{Duration, Instant};

use qemu_tests::client::Client;
use qemu_tests::{Handle, SimConfig, Simulator};

const VERSION: &str = "/ovirt-engine/services/host-register?version=1&command=get-version";
const CA: &str = "/ovirt-engine/services/host-register?version=1&command=get-pki-trust";

fn start(config: SimConfig) -> (Handle, Client) {
    let sim = Simulator::start(config).expect("simulator starts");
    let client = Client::https(sim.addr(), &sim.ca_pem()).unwrap();
    (sim, client)
}

/// The connection numbers the request events carry, in order.
fn connections_of_requests(sim: &Handle) -> Vec<u64> {
    sim.requests()
        .iter()
        .map(|e| e.connection.expect("a request event names its connection"))
        .collect()
}

#[test]
fn two_requests_share_one_tls_connection() {
    let (sim, client) = start(SimConfig::default());
    let mut conn = client.connect().unwrap();
    let first = conn.get(VERSION).unwrap();
    assert_eq!(
        (first.status, first.header("connection")),
        (200, Some("keep-alive"))
    );
    assert_eq!(first.body, b"2");
    let second = conn.get(CA).unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(second.text(), sim.ca_pem());
    assert_eq!(sim.tls_connections(), 1);
    assert_eq!(connections_of_requests(&sim), [1, 1]);
}

#[test]
fn close_each_needs_a_new_connection_for_the_second_request() {
    let config = SimConfig {
        close_each: true,
        ..SimConfig::default()
    };
    let (sim, client) = start(config);
    let mut conn = client.connect().unwrap();
    let first = conn.get(VERSION).unwrap();
    assert_eq!(
        (first.status, first.header("connection")),
        (200, Some("close"))
    );
    let e = conn.get(VERSION).unwrap_err();
    assert!(format!("{e:#}").contains("closed"), "{e:#}");
    let mut again = client.connect().unwrap();
    assert_eq!(again.get(VERSION).unwrap().body, b"2");
    assert_eq!(sim.tls_connections(), 2);
    assert_eq!(connections_of_requests(&sim), [1, 2]);
}

#[test]
fn the_clients_connection_close_is_honoured() {
    // `Client::get` sends `Connection: close`: one connection per request.
    let (sim, client) = start(SimConfig::default());
    for _ in 0..2 {
        let r = client.get(VERSION).unwrap();
        assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    }
    assert_eq!(sim.tls_connections(), 2);
}

#[test]
fn a_connection_serves_a_bounded_number_of_requests() {
    let config = SimConfig {
        keep_alive_requests: 3,
        ..SimConfig::default()
    };
    let (sim, client) = start(config);
    let mut conn = client.connect().unwrap();
    let said: Vec<Option<String>> = (0..3)
        .map(|_| {
            conn.get(VERSION)
                .unwrap()
                .header("connection")
                .map(String::from)
        })
        .collect();
    assert_eq!(
        said,
        [
            Some("keep-alive".into()),
            Some("keep-alive".into()),
            Some("close".into())
        ]
    );
    assert!(conn.get(VERSION).is_err(), "a fourth request on it");
    assert_eq!(sim.tls_connections(), 1);
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let config = SimConfig {
        keep_alive_idle: Duration::from_millis(300),
        ..SimConfig::default()
    };
    let (sim, client) = start(config);
    let mut conn = client.connect().unwrap();
    conn.get(VERSION).unwrap();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(800));
    assert!(conn.get(VERSION).is_err(), "closed while idle");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(connections_of_requests(&sim), [1]);
}

#[test]
fn a_refusing_engine_answers_no_kept_alive_connection() {
    let (sim, client) = start(SimConfig::default());
    let mut conn = client.connect().unwrap();
    conn.get(VERSION).unwrap();
    sim.set_fault("refuse:secs=2".parse().unwrap());
    assert!(conn.get(VERSION).is_err(), "an engine down answers nothing");
    assert_eq!(sim.requests().len(), 1);
}
