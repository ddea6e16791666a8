//! The network step against real kernel interfaces, in network namespaces these tests
//! create: veth pairs whose far ends live in a "server" namespace running dnsmasq (a real
//! DHCP server). The code under test runs on a thread moved into the node namespace
//! (setns is per thread for network namespaces), so nothing touches the host's own
//! network. Needs root, `ip` (iproute2) and `dnsmasq` (Debian dnsmasq-base); without
//! them the tests fail and say so.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod common;

use ovirt_node_reg::config::{Config, NetworkConfig};
use ovirt_node_reg::net::{bring_up, NetReport};
use ovirt_node_reg::paths::Root;
use ovirt_node_reg::store::Store;
use ovirt_node_reg::values::{NetConf, Seconds};

const DNSMASQ: &str = "dnsmasq";

fn require_tools() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests create network namespaces and must run as root: the privileged tier, \
         `cargo test --features privileged`"
    );
    assert!(
        common::tool_present("ip"),
        "`ip` (iproute2) is missing: these tests need it to build namespaces; run build-support/setup.sh"
    );
    assert!(
        common::tool_present(DNSMASQ),
        "dnsmasq is missing: install Debian's dnsmasq-base (build-support/setup.sh)"
    );
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip_out(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted (with its interfaces) when dropped, even on failure.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "onr-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.0];
        full.extend_from_slice(args);
        ip(&full);
    }

    fn out(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.0];
        full.extend_from_slice(args);
        ip_out(&full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A node namespace and a server namespace joined by veth pairs.
struct Lab {
    node: Netns,
    server: Netns,
    root: tempfile::TempDir,
    dnsmasq: Option<Child>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        require_tools();
        Lab {
            node: Netns::new(&format!("{tag}n")),
            server: Netns::new(&format!("{tag}s")),
            root: tempfile::tempdir().unwrap(),
            dnsmasq: None,
        }
    }

    /// veth `nic` (in the node, with `mac`) to `peer` (in the server, up when `link`).
    fn nic(&self, nic: &str, mac: &str, peer: &str, link: bool) {
        ip(&[
            "link",
            "add",
            nic,
            "netns",
            &self.node.0,
            "address",
            mac,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            &self.server.0,
        ]);
        if link {
            self.server.ip(&["link", "set", peer, "up"]);
        }
    }

    /// Say that `nic` is hardware (a `device` link in sysfs under the test root).
    fn physical(&self, nic: &str) {
        fs::create_dir_all(self.root().join(format!("/sys/class/net/{nic}/device"))).unwrap();
    }

    fn root(&self) -> Root {
        Root::new(self.root.path())
    }

    /// dnsmasq on `peer` (10.77.0.1/24), handing out 10.77.0.55 and "node1" to `mac`.
    fn dhcp_server(&mut self, peer: &str, mac: &str) {
        self.dhcp_server_with(peer, mac, &[]);
    }

    fn dhcp_server_with(&mut self, peer: &str, mac: &str, extra: &[&str]) {
        self.server
            .ip(&["addr", "add", "10.77.0.1/24", "dev", peer]);
        let dir = self.root.path().join("dnsmasq");
        fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.server.0, DNSMASQ])
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--port=0",
                "--user=root",
                "--bind-interfaces",
                "--dhcp-authoritative",
                "--log-dhcp",
            ])
            .arg(format!("--interface={peer}"))
            .arg("--dhcp-range=10.77.0.50,10.77.0.99,255.255.255.0,1h")
            .arg("--dhcp-option=option:router,10.77.0.1")
            .arg("--dhcp-option=option:dns-server,10.77.0.53,10.77.0.54")
            .arg("--dhcp-option=option:domain-name,example.test")
            .arg(format!("--dhcp-host={mac},10.77.0.55,node1"))
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-facility={}", dir.join("log").display()))
            .args(extra);
        // Once it listens (it writes its pid file then), within 10 s.
        self.dnsmasq = Some(common::start_dnsmasq(&mut cmd, &dir.join("pid")));
    }

    /// `bring_up` on a thread inside the node namespace.
    fn run(&self, cfg: &NetworkConfig, deadline: Duration) -> anyhow::Result<NetReport> {
        self.run_with(cfg, None, deadline)
    }

    fn run_with(
        &self,
        cfg: &NetworkConfig,
        store: Option<&Store>,
        deadline: Duration,
    ) -> anyhow::Result<NetReport> {
        let ns = fs::File::open(format!("/run/netns/{}", self.node.0)).unwrap();
        let root = self.root();
        std::thread::scope(|s| {
            s.spawn(move || {
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&ns),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("entering the node namespace");
                bring_up(&root, cfg, store, deadline)
            })
            .join()
            .expect("bring_up panicked")
        })
    }

    fn file(&self, path: &str) -> String {
        fs::read_to_string(self.root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    fn mode(&self, path: &str) -> u32 {
        fs::metadata(self.root().join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn net_cfg() -> NetworkConfig {
    let mut c = Config::default().net;
    c.link_timeout = Seconds(5);
    c
}

/// `key=value` lines of an INI-like file, keyed as `section.key` (`key` for ifcfg).
fn fields(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = format!("{s}.");
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((format!("{section}{k}"), v.to_string()));
        }
    }
    out
}

fn field<'a>(f: &'a [(String, String)], key: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

const MAC0: &str = "52:54:00:77:00:01";

#[test]
fn dhcp_lease_on_the_bridge_then_a_second_run_changes_nothing() {
    let mut lab = Lab::new("dhcp");
    lab.nic("nic0", MAC0, "srv0", true);
    lab.physical("nic0");
    lab.dhcp_server("srv0", MAC0);
    let cfg = net_cfg();

    let r = lab.run(&cfg, Duration::from_secs(30)).expect("bring_up");
    assert_eq!(r.nic, "nic0");
    assert_eq!(r.port, "nic0");
    assert_eq!(r.bridge, "ovirtmgmt");
    assert_eq!(
        r.mac.as_deref(),
        Some(MAC0),
        "the bridge carries the NIC's MAC"
    );
    assert_eq!(r.method, "dhcp");
    assert_eq!(r.address.as_deref(), Some("10.77.0.55/24"));
    assert_eq!(r.gateway, Some("10.77.0.1".parse().unwrap()));
    assert_eq!(
        r.dns,
        vec![
            "10.77.0.53".parse::<std::net::IpAddr>().unwrap(),
            "10.77.0.54".parse().unwrap()
        ]
    );
    assert_eq!(r.search.as_deref(), Some("example.test"));
    assert_eq!(r.hostname.as_deref(), Some("node1"));
    let lease = r.lease.as_ref().expect("a lease");
    assert_eq!(
        lease.server,
        "10.77.0.1".parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert_eq!(lease.lease_secs, Some(3600));

    // What the kernel says.
    let addr = lab
        .node
        .out(&["-o", "-4", "addr", "show", "dev", "ovirtmgmt"]);
    assert!(addr.contains("10.77.0.55/24"), "{addr}");
    let route = lab.node.out(&["route", "show", "default"]);
    assert!(route.contains("via 10.77.0.1 dev ovirtmgmt"), "{route}");
    let nic = lab.node.out(&["-o", "link", "show", "nic0"]);
    assert!(nic.contains("master ovirtmgmt"), "{nic}");
    let br = lab.node.out(&["-d", "link", "show", "ovirtmgmt"]);
    assert!(br.contains(MAC0) && br.contains("forward_delay 0"), "{br}");

    // Files.
    assert_eq!(
        lab.file("/etc/resolv.conf"),
        "# Written by ovirt-node-reg\nsearch example.test\nnameserver 10.77.0.53\nnameserver 10.77.0.54\n"
    );
    assert_eq!(lab.file("/etc/hostname"), "node1\n");
    let kf = "/etc/NetworkManager/system-connections/ovirtmgmt.nmconnection";
    assert_eq!(
        lab.mode(kf),
        0o600,
        "NetworkManager ignores keyfiles others can read"
    );
    let f = fields(&lab.file(kf));
    assert_eq!(field(&f, "connection.id"), Some("ovirtmgmt"));
    assert_eq!(field(&f, "connection.type"), Some("bridge"));
    assert_eq!(field(&f, "connection.interface-name"), Some("ovirtmgmt"));
    assert_eq!(field(&f, "bridge.stp"), Some("false"));
    assert_eq!(
        field(&f, "ethernet.cloned-mac-address"),
        Some("52:54:00:77:00:01".to_uppercase().as_str())
    );
    assert_eq!(field(&f, "ipv4.method"), Some("auto"));
    assert_eq!(
        field(&f, "ipv4.dns"),
        None,
        "no dns= given: DNS comes from DHCP"
    );
    let pf = "/etc/NetworkManager/system-connections/ovirtmgmt-port-nic0.nmconnection";
    assert_eq!(lab.mode(pf), 0o600);
    let p = fields(&lab.file(pf));
    assert_eq!(field(&p, "connection.type"), Some("ethernet"));
    assert_eq!(field(&p, "connection.interface-name"), Some("nic0"));
    assert_eq!(field(&p, "connection.master"), Some("ovirtmgmt"));
    assert_eq!(field(&p, "connection.slave-type"), Some("bridge"));
    assert_eq!(
        field(&p, "ethernet.mac-address"),
        Some("52:54:00:77:00:01".to_uppercase().as_str())
    );
    assert_ne!(field(&f, "connection.uuid"), field(&p, "connection.uuid"));

    // Idempotent: everything is in place, nothing changes.
    let before = lab.file(kf);
    let again = lab
        .run(&cfg, Duration::from_secs(30))
        .expect("second bring_up");
    assert_eq!(
        again.changes,
        Vec::<String>::new(),
        "second run changed things"
    );
    assert_eq!(again.address, r.address);
    assert_eq!(lab.file(kf), before);
}

#[test]
fn static_ip_with_ifcfg_files_and_dns_override() {
    let lab = Lab::new("stat");
    lab.nic("nic0", MAC0, "srv0", true);
    let mut cfg = net_cfg();
    cfg.nic = Some("nic0".parse().unwrap());
    cfg.ip = Some(
        "10.77.0.9:10.77.0.1:10.77.0.1:255.255.255.0"
            .parse()
            .unwrap(),
    );
    cfg.dns = vec!["10.77.0.2".parse().unwrap(), "10.77.0.3".parse().unwrap()];
    cfg.hostname = Some("static1.example.test".parse().unwrap());
    cfg.netconf = NetConf::Ifcfg;
    // What an earlier DHCP client (dracut's network-legacy) leaves behind on the NIC.
    lab.node
        .ip(&["addr", "add", "10.77.0.77/24", "dev", "nic0"]);
    lab.node.ip(&["link", "set", "nic0", "up"]);
    lab.node
        .ip(&["route", "add", "default", "via", "10.77.0.1", "dev", "nic0"]);

    let r = lab.run(&cfg, Duration::from_secs(20)).expect("bring_up");
    let on_nic = lab.node.out(&["-o", "-4", "addr", "show", "dev", "nic0"]);
    assert!(
        on_nic.trim().is_empty(),
        "the port keeps no address: {on_nic}"
    );
    assert_eq!(r.method, "static");
    assert_eq!(r.address.as_deref(), Some("10.77.0.9/24"));
    assert!(r.lease.is_none());
    let addr = lab
        .node
        .out(&["-o", "-4", "addr", "show", "dev", "ovirtmgmt"]);
    assert!(addr.contains("10.77.0.9/24"), "{addr}");
    let route = lab.node.out(&["route", "show", "default"]);
    assert!(route.contains("via 10.77.0.1 dev ovirtmgmt"), "{route}");

    assert_eq!(
        lab.file("/etc/resolv.conf"),
        "# Written by ovirt-node-reg\nnameserver 10.77.0.2\nnameserver 10.77.0.3\n"
    );
    assert_eq!(lab.file("/etc/hostname"), "static1.example.test\n");
    let b = fields(&lab.file("/etc/sysconfig/network-scripts/ifcfg-ovirtmgmt"));
    for (k, v) in [
        ("DEVICE", "ovirtmgmt"),
        ("TYPE", "Bridge"),
        ("ONBOOT", "yes"),
        ("DELAY", "0"),
        ("BOOTPROTO", "static"),
        ("IPADDR", "10.77.0.9"),
        ("NETMASK", "255.255.255.0"),
        ("GATEWAY", "10.77.0.1"),
        ("PEERDNS", "no"),
        ("DNS1", "10.77.0.2"),
        ("DNS2", "10.77.0.3"),
    ] {
        assert_eq!(field(&b, k), Some(v), "ifcfg-ovirtmgmt {k}");
    }
    let n = fields(&lab.file("/etc/sysconfig/network-scripts/ifcfg-nic0"));
    for (k, v) in [
        ("DEVICE", "nic0"),
        ("HWADDR", "52:54:00:77:00:01".to_uppercase().as_str()),
        ("ONBOOT", "yes"),
        ("BOOTPROTO", "none"),
        ("BRIDGE", "ovirtmgmt"),
    ] {
        assert_eq!(field(&n, k), Some(v), "ifcfg-nic0 {k}");
    }
    assert!(
        !lab.root().join("/etc/NetworkManager").exists(),
        "ifcfg mode writes no keyfiles"
    );
    let again = lab.run(&cfg, Duration::from_secs(20)).expect("second run");
    assert_eq!(again.changes, Vec::<String>::new());
}

#[test]
fn bootif_picks_its_nic_among_several_and_leaves_the_others_alone() {
    let lab = Lab::new("boot");
    for (i, nic) in ["nic0", "nic1", "nic2"].iter().enumerate() {
        lab.nic(
            nic,
            &format!("52:54:00:77:01:0{i}"),
            &format!("srv{i}"),
            true,
        );
    }
    let mut cfg = net_cfg();
    // pxelinux IPAPPEND 2 form; none of the veths is "physical": BOOTIF is authoritative.
    cfg.bootif = Some("01-52-54-00-77-01-01".parse().unwrap());
    cfg.ip = Some("10.77.1.5:::255.255.255.0".parse().unwrap());

    let r = lab.run(&cfg, Duration::from_secs(20)).expect("bring_up");
    assert_eq!(r.nic, "nic1");
    assert_eq!(r.mac.as_deref(), Some("52:54:00:77:01:01"));
    assert_eq!(r.gateway, None);
    let nic1 = lab.node.out(&["-o", "link", "show", "nic1"]);
    assert!(nic1.contains("master ovirtmgmt"), "{nic1}");
    for other in ["nic0", "nic2"] {
        let l = lab.node.out(&["-o", "link", "show", other]);
        assert!(
            !l.contains("master") && l.contains("state DOWN"),
            "{other} was touched: {l}"
        );
    }
}

#[test]
fn first_physical_nic_with_link_wins_and_raised_nics_go_back_down() {
    let lab = Lab::new("link");
    lab.nic("nic0", "52:54:00:77:02:00", "srv0", false); // no carrier
    lab.nic("nic1", "52:54:00:77:02:01", "srv1", true);
    lab.nic("virt0", "52:54:00:77:02:02", "srv2", true); // has link, not hardware
    lab.physical("nic0");
    lab.physical("nic1");
    let mut cfg = net_cfg();
    cfg.ip = Some("off".parse().unwrap());

    let r = lab.run(&cfg, Duration::from_secs(20)).expect("bring_up");
    assert_eq!(r.nic, "nic1");
    assert_eq!(r.method, "off");
    assert_eq!(r.address, None);
    let nic0 = lab.node.out(&["-o", "link", "show", "nic0"]);
    assert!(
        !nic0.contains("master") && !nic0.contains("<BROADCAST,MULTICAST,UP"),
        "{nic0}"
    );

    // nic0 gets link later: a second run keeps the NIC already in the bridge.
    lab.server.ip(&["link", "set", "srv0", "up"]);
    lab.node.ip(&["link", "set", "nic0", "up"]);
    let again = lab.run(&cfg, Duration::from_secs(20)).expect("second run");
    assert_eq!(again.nic, "nic1");
    assert_eq!(again.changes, Vec::<String>::new());
    let nic0 = lab.node.out(&["-o", "link", "show", "nic0"]);
    assert!(!nic0.contains("master"), "{nic0}");
}

#[test]
fn no_dhcp_server_is_a_clear_error_within_the_bound() {
    let lab = Lab::new("nodh");
    lab.nic("nic0", MAC0, "srv0", true);
    let mut cfg = net_cfg();
    cfg.nic = Some("nic0".parse().unwrap());
    let started = Instant::now();
    let err = lab
        .run(&cfg, Duration::from_secs(4))
        .expect_err("no DHCP server: must fail");
    let took = started.elapsed();
    let msg = format!("{err:#}");
    assert!(msg.contains("no DHCP offer"), "{msg}");
    assert!(msg.contains("ovirtmgmt"), "names the interface: {msg}");
    assert!(
        took < Duration::from_secs(8),
        "took {took:?} for a 4 s bound"
    );
}

#[test]
fn unknown_nic_is_a_clear_error_within_the_link_timeout() {
    let lab = Lab::new("nonic");
    let mut cfg = net_cfg();
    cfg.link_timeout = Seconds(1);
    cfg.bootif = Some("01-52-54-00-77-09-09".parse().unwrap());
    let started = Instant::now();
    let err = lab
        .run(&cfg, Duration::from_secs(20))
        .expect_err("must fail");
    assert!(format!("{err:#}").contains("52:54:00:77:09:09"), "{err:#}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

const IN_MOUNT_NS: &str = "OVIRT_NODE_REG_NET_TEST_IN_MOUNT_NS";

/// Run the named test again in a private mount namespace (persisting bind-mounts files).
fn in_mount_ns(name: &str) -> bool {
    if std::env::var_os(IN_MOUNT_NS).is_some() {
        return true;
    }
    require_tools();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_MOUNT_NS, "1")
        .output()
        .expect("running `unshare` (util-linux), needed for the store test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // "1 passed" also proves the filter matched.
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} in a mount namespace:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// Takes the store's bind mounts off again, so the temporary root can be deleted.
struct Unmount<'a>(&'a Store);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        for path in self.0.list().unwrap_or_default() {
            let _ = self.0.unmount(&path);
        }
    }
}

#[test]
fn network_files_are_persisted_in_the_store() {
    if !in_mount_ns("network_files_are_persisted_in_the_store") {
        return;
    }
    let lab = Lab::new("stor");
    lab.nic("nic0", MAC0, "srv0", true);
    let root = lab.root();
    fs::create_dir_all(root.join("/config")).unwrap();
    let store = Store::open(&root, Some("/config")).unwrap();
    let _unmount = Unmount(&store);
    let mut cfg = net_cfg();
    cfg.nic = Some("nic0".parse().unwrap());
    cfg.ip = Some("10.77.0.9:::255.255.255.0".parse().unwrap());
    cfg.dns = vec!["10.77.0.2".parse().unwrap()];
    cfg.hostname = Some("stored1.example.test".parse().unwrap());

    // A first run without the store (say, it was not found): files written, not persisted.
    lab.run(&cfg, Duration::from_secs(20))
        .expect("bring_up without a store");
    assert!(store.list().unwrap().is_empty());
    // With the store, the same content is persisted, and that counts as a change.
    let r = lab
        .run_with(&cfg, Some(&store), Duration::from_secs(20))
        .expect("bring_up");
    assert!(
        r.changes
            .iter()
            .any(|c| c.contains("ovirtmgmt.nmconnection")),
        "{:?}",
        r.changes
    );
    let listed: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    for path in [
        "/etc/NetworkManager/system-connections/ovirtmgmt.nmconnection",
        "/etc/NetworkManager/system-connections/ovirtmgmt-port-nic0.nmconnection",
    ] {
        assert!(
            listed.iter().any(|l| l == path),
            "{path} not persisted: {listed:?}"
        );
        let stored = store.dir().join(path.trim_start_matches('/'));
        let mode = fs::metadata(&stored).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{path} in the store");
    }
    assert!(listed.iter().any(|l| l == "/etc/hostname"), "{listed:?}");
    assert!(
        !listed.iter().any(|l| l == "/etc/resolv.conf"),
        "resolv.conf belongs to NetworkManager in the real root"
    );
    let kf = fields(&lab.file("/etc/NetworkManager/system-connections/ovirtmgmt.nmconnection"));
    assert_eq!(field(&kf, "ipv4.address1"), Some("10.77.0.9/24"));
    assert_eq!(field(&kf, "ipv4.dns"), Some("10.77.0.2;"));

    let again = lab
        .run_with(&cfg, Some(&store), Duration::from_secs(20))
        .expect("second run");
    assert_eq!(again.changes, Vec::<String>::new());
}

#[test]
fn ipv6_auto_takes_an_address_from_router_advertisements() {
    let mut lab = Lab::new("ra");
    lab.nic("nic0", MAC0, "srv0", true);
    lab.server
        .ip(&["-6", "addr", "add", "fd77::1/64", "dev", "srv0", "nodad"]);
    lab.dhcp_server_with(
        "srv0",
        MAC0,
        &["--enable-ra", "--dhcp-range=fd77::,ra-only,64"],
    );
    let mut cfg = net_cfg();
    cfg.nic = Some("nic0".parse().unwrap());
    cfg.ipv6 = Some("auto".parse().unwrap());

    let r = lab.run(&cfg, Duration::from_secs(30)).expect("bring_up");
    assert_eq!(r.address.as_deref(), Some("10.77.0.55/24"));
    assert!(
        r.ipv6
            .iter()
            .any(|a| a.starts_with("fd77:") && a.ends_with("/64")),
        "no SLAAC address: {:?}",
        r.ipv6
    );
    let kf = fields(&lab.file("/etc/NetworkManager/system-connections/ovirtmgmt.nmconnection"));
    assert_eq!(field(&kf, "ipv6.method"), Some("auto"));
}

/// A hostile DHCP server on `peer` in the server namespace: for every DISCOVER it sends
/// garbage, an OFFER for someone else's transaction, then a real OFFER; every REQUEST gets
/// a NAK. Runs until `stop` is set (checked every 100 ms).
fn naking_server(
    ns: &str,
    peer: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let ns = fs::File::open(format!("/run/netns/{ns}")).unwrap();
    let peer = peer.to_string();
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("entering the server namespace");
        let sock = std::net::UdpSocket::bind("0.0.0.0:67").expect("binding port 67");
        sock.set_broadcast(true).unwrap();
        bind_to_device(&sock, &peer);
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::SeqCst) {
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let req = &buf[..n];
            let to = "255.255.255.255:68";
            let Some(kind) = msg_type(req) else { continue };
            if kind == 1 {
                sock.send_to(&[0xde, 0xad, 0xbe, 0xef], to).unwrap();
                let mut other = answer(req, 2);
                other[4] ^= 0xff;
                sock.send_to(&other, to).unwrap();
                sock.send_to(&answer(req, 2), to).unwrap();
            } else if kind == 3 {
                sock.send_to(&answer(req, 6), to).unwrap();
            }
        }
    })
}

fn bind_to_device(sock: &std::net::UdpSocket, dev: &str) {
    use std::os::fd::AsRawFd;
    // SAFETY: a live socket and a pointer/length pair to a live byte slice.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            dev.as_ptr().cast(),
            dev.len() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_BINDTODEVICE {dev}");
}

/// Option 53 of a client message.
fn msg_type(p: &[u8]) -> Option<u8> {
    let mut i = 240;
    while i + 1 < p.len() {
        match p[i] {
            0 => i += 1,
            255 => return None,
            53 => return p.get(i + 2).copied(),
            _ => i += 2 + usize::from(p[i + 1]),
        }
    }
    None
}

/// A BOOTREPLY to `req` of DHCP type `kind`, offering 10.77.0.66 from 10.77.0.1.
fn answer(req: &[u8], kind: u8) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 2;
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&req[4..8]);
    p[10] = 0x80;
    if kind != 6 {
        p[16..20].copy_from_slice(&[10, 77, 0, 66]);
    }
    p[28..34].copy_from_slice(&req[28..34]);
    p.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind, 54, 4, 10, 77, 0, 1]);
    p.extend_from_slice(&[1, 4, 255, 255, 255, 0, 255]);
    p
}

#[test]
fn a_server_that_only_naks_is_a_clear_error_within_the_bound() {
    let lab = Lab::new("nak");
    lab.nic("nic0", MAC0, "srv0", true);
    lab.server
        .ip(&["addr", "add", "10.77.0.1/24", "dev", "srv0"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = naking_server(&lab.server.0, "srv0", stop.clone());
    let mut cfg = net_cfg();
    cfg.nic = Some("nic0".parse().unwrap());

    let started = Instant::now();
    let result = lab.run(&cfg, Duration::from_secs(4));
    stop.store(true, Ordering::SeqCst);
    server.join().expect("fake server");
    let msg = format!("{:#}", result.expect_err("only NAKs: must fail"));
    assert!(msg.contains("refused 10.77.0.66 (NAK)"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let addr = lab
        .node
        .out(&["-o", "-4", "addr", "show", "dev", "ovirtmgmt"]);
    assert!(
        !addr.contains("10.77.0.66"),
        "a NAKed address was configured: {addr}"
    );
}
