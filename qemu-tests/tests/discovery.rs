//! Engine discovery by DNS SRV in QEMU: the guest is given no engine, only
//! `management_server=auto ovirt.reg.domain=example.test`, the CA pin and `dns=10.0.2.100`.
//! QEMU's user-mode network (`restrict=on`) serves no SRV record and forwards only TCP
//! (`guestfwd`), so a dnsmasq on host loopback answers at the guest's `10.0.2.100:53` over
//! TCP alone: the node's UDP question goes unanswered and it asks again over TCP
//! (docs/ovirt-protocol.md §7.3). The SRV target `engine.example.test` is the simulator's
//! guestfwd address by the image's `/etc/hosts` (the target's address is the system
//! resolver's business, and the guest has no UDP DNS). Needs `dnsmasq` (Debian
//! dnsmasq-base, build-support/setup.sh); without it the test fails and says so.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qemu_tests::qemu::GUEST_ENGINE_ADDR;
use qemu_tests::scenario::Scenario;
use qemu_tests::SimConfig;

const DOMAIN: &str = "example.test";
const SRV: &str = "_ovirt-engine._tcp.example.test";
const ENGINE: &str = "engine.example.test";

/// dnsmasq on `127.0.0.1:<port>` of the host answering only from `records` (no upstream, no
/// /etc/hosts); killed when dropped.
struct Dns {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Dns {
    fn start(records: &[String]) -> Dns {
        // A free port (the kernel's pick, released for dnsmasq: a race nobody else runs).
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        // dnsmasq started by root writes its log as nobody.
        std::fs::set_permissions(
            log.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .unwrap();
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--log-queries",
                "--pid-file=",
            ])
            .arg(format!("--local=/{DOMAIN}/"))
            .arg(format!("--port={port}"))
            .arg(format!("--log-facility={}", log.path().display()))
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq runs (install Debian's dnsmasq-base: build-support/setup.sh)");
        let dns = Dns { child, port, log };
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "dnsmasq did not listen within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        dns
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A v2 engine with a token: the node finds it by DNS SRV over TCP, trusts it by the pin,
/// enrols and reaches `done`; the status and the banner say where the engine came from.
#[test]
fn a_node_finds_its_engine_by_dns_srv_over_guestfwd_and_reaches_done() {
    let s = Scenario::with(
        "a_node_finds_its_engine_by_dns_srv_over_guestfwd_and_reaches_done",
        SimConfig {
            protocol_version: 2,
            extra_names: vec![GUEST_ENGINE_ADDR.into(), ENGINE.into()],
            ..SimConfig::default()
        },
    );
    let port = s.sim.port();
    // A dead target of a lower priority number first: tried, refused, skipped.
    let dns = Dns::start(&[
        format!("--srv-host={SRV},dead.{DOMAIN},1,0,0"),
        format!("--srv-host={SRV},{ENGINE},{port},1,0"),
    ]);
    let hosts = format!("{GUEST_ENGINE_ADDR} {ENGINE} dead.{DOMAIN}\n");
    let mut node = s
        .machine("discovery")
        .uuid("4c4c4544-0042-3510-8052-b4c04f4e5301")
        .token()
        .dns(dns.port)
        .file("/etc/hosts", hosts.as_bytes(), 0o644)
        .args(&format!(
            "ip=dhcp dns={GUEST_ENGINE_ADDR} management_server=auto ovirt.reg.domain={DOMAIN}"
        ))
        .build();
    let boot = node.boot();
    node.assert_done(&boot);
    let engine = format!("{ENGINE}:{port}");
    let banner = node.banner(&boot);
    assert!(
        banner.ends_with(&format!("(engine {engine} from DNS SRV {SRV})")),
        "{banner}"
    );
    let st = node.status(&boot);
    assert_eq!(st["engine"], engine.as_str(), "{st}");
    assert_eq!(st["engine_source"], format!("DNS SRV {SRV}"), "{st}");
    assert!(
        boot.log
            .contains(&format!("engine dead.{DOMAIN}:1 from DNS SRV {SRV}")),
        "the dead target is tried first\n{}",
        boot.tail()
    );
    assert!(
        dns.log().contains(&format!("query[SRV] {SRV}")),
        "{}",
        dns.log()
    );
    assert_eq!(s.count("register"), 1);
    node.assert_registered_once(&boot);
    node.assert_certs(&boot);
    boot.pass();
}
