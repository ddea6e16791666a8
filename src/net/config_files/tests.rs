use super::*;

fn mac() -> Mac {
    "52:54:00:12:34:56".parse().unwrap()
}

fn layout() -> Layout {
    Layout {
        bridge: "ovirtmgmt".into(),
        mac: Some(mac()),
        nics: vec![("eth0".into(), Some(mac()))],
        bond: None,
        vlan: None,
        addressing: Addressing::Dhcp,
        dns: Vec::new(),
        ipv6: None,
    }
}

/// `section.key` → value.
fn fields(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = format!("{s}.");
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((format!("{section}{k}"), v.to_string()));
        }
    }
    out
}

fn get<'a>(f: &'a [(String, String)], key: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn file<'a>(files: &'a [File], path: &str) -> &'a File {
    files
        .iter()
        .find(|f| f.path == Path::new(path))
        .unwrap_or_else(|| {
            panic!(
                "{path} not written; have {:?}",
                files.iter().map(|f| &f.path).collect::<Vec<_>>()
            )
        })
}

const NM: &str = "/etc/NetworkManager/system-connections";
const IFCFG: &str = "/etc/sysconfig/network-scripts";

#[test]
fn static_keyfile_with_dns_and_ipv6() {
    let mut l = layout();
    l.addressing = Addressing::Static {
        address: "10.0.0.5".parse().unwrap(),
        prefix: 24,
        gateway: Some("10.0.0.1".parse().unwrap()),
    };
    l.dns = vec!["10.0.0.2".parse().unwrap(), "fd00::53".parse().unwrap()];
    l.ipv6 = Some(Ipv6Mode::Auto);
    let files = network_files(&l, NetConf::Keyfile);
    assert_eq!(files.len(), 2, "bridge and its port");
    let b = file(&files, &format!("{NM}/ovirtmgmt.nmconnection"));
    assert_eq!(b.mode, 0o600);
    let f = fields(&b.text);
    assert_eq!(get(&f, "ipv4.method"), Some("manual"));
    assert_eq!(get(&f, "ipv4.address1"), Some("10.0.0.5/24,10.0.0.1"));
    assert_eq!(get(&f, "ipv4.dns"), Some("10.0.0.2;"));
    assert_eq!(
        get(&f, "ipv4.ignore-auto-dns"),
        None,
        "static: nothing to ignore"
    );
    assert_eq!(get(&f, "ipv6.method"), Some("auto"));
    assert_eq!(
        get(&f, "connection.uuid"),
        Some(connection_uuid("ovirtmgmt").as_str())
    );
}

#[test]
fn dhcp_keyfile_with_dns_override_ignores_the_servers() {
    let mut l = layout();
    l.dns = vec!["10.0.0.2".parse().unwrap()];
    let f = fields(&network_files(&l, NetConf::Keyfile)[0].text);
    assert_eq!(get(&f, "ipv4.method"), Some("auto"));
    assert_eq!(get(&f, "ipv4.ignore-auto-dns"), Some("true"));
    assert_eq!(get(&f, "ipv6.method"), Some("ignore"));
}

#[test]
fn vlan_keyfiles() {
    let mut l = layout();
    l.vlan = Some(("eth0.100".into(), 100, "eth0".into()));
    let files = network_files(&l, NetConf::Keyfile);
    let p = fields(
        &file(
            &files,
            &format!("{NM}/ovirtmgmt-port-eth0.100.nmconnection"),
        )
        .text,
    );
    assert_eq!(get(&p, "connection.type"), Some("vlan"));
    assert_eq!(get(&p, "connection.interface-name"), Some("eth0.100"));
    assert_eq!(get(&p, "connection.master"), Some("ovirtmgmt"));
    assert_eq!(get(&p, "connection.slave-type"), Some("bridge"));
    assert_eq!(get(&p, "vlan.id"), Some("100"));
    assert_eq!(get(&p, "vlan.parent"), Some("eth0"));
}

#[test]
fn bond_keyfiles() {
    let mut l = layout();
    l.bond = Some(("bond0".into(), vec![]));
    l.nics = vec![("eth0".into(), Some(mac())), ("eth1".into(), None)];
    let files = network_files(&l, NetConf::Keyfile);
    assert_eq!(files.len(), 4, "bridge, bond, two slaves");
    let b = fields(&file(&files, &format!("{NM}/ovirtmgmt-port-bond0.nmconnection")).text);
    assert_eq!(get(&b, "connection.type"), Some("bond"));
    assert_eq!(get(&b, "connection.master"), Some("ovirtmgmt"));
    assert_eq!(get(&b, "bond.mode"), Some("802.3ad"));
    assert_eq!(get(&b, "bond.miimon"), Some("150"));
    let s = fields(&file(&files, &format!("{NM}/ovirtmgmt-slave-eth1.nmconnection")).text);
    assert_eq!(get(&s, "connection.master"), Some("bond0"));
    assert_eq!(get(&s, "connection.slave-type"), Some("bond"));
    assert_eq!(get(&s, "connection.interface-name"), Some("eth1"));
}

#[test]
fn vlan_on_bond_keyfiles() {
    let mut l = layout();
    l.bond = Some(("bond0".into(), vec!["mode=1".into()]));
    l.vlan = Some(("bond0.7".into(), 7, "bond0".into()));
    let files = network_files(&l, NetConf::Keyfile);
    let v = fields(&file(&files, &format!("{NM}/ovirtmgmt-port-bond0.7.nmconnection")).text);
    assert_eq!(get(&v, "vlan.parent"), Some("bond0"));
    let b = fields(&file(&files, &format!("{NM}/ovirtmgmt-bond-bond0.nmconnection")).text);
    assert_eq!(
        get(&b, "connection.master"),
        None,
        "the bond is the VLAN's parent, not a port"
    );
    assert_eq!(get(&b, "bond.mode"), Some("1"));
}

#[test]
fn ifcfg_dhcp_bridge_and_nic() {
    let files = network_files(&layout(), NetConf::Ifcfg);
    let b = file(&files, &format!("{IFCFG}/ifcfg-ovirtmgmt"));
    let f = fields(&b.text);
    for (k, v) in [
        ("DEVICE", "ovirtmgmt"),
        ("TYPE", "Bridge"),
        ("ONBOOT", "yes"),
        ("DELAY", "0"),
        ("BOOTPROTO", "dhcp"),
        ("IPV6INIT", "no"),
    ] {
        assert_eq!(get(&f, k), Some(v), "{k}");
    }
    assert_eq!(get(&f, "IPADDR"), None);
    assert_eq!(get(&f, "PEERDNS"), None);
    let n = fields(&file(&files, &format!("{IFCFG}/ifcfg-eth0")).text);
    assert_eq!(
        get(&n, "HWADDR"),
        Some("52:54:00:12:34:56".to_uppercase().as_str())
    );
    assert_eq!(get(&n, "BRIDGE"), Some("ovirtmgmt"));
}

#[test]
fn ifcfg_vlan_and_bond() {
    let mut l = layout();
    l.bond = Some(("bond0".into(), vec!["mode=4".into(), "miimon=100".into()]));
    l.nics = vec![("eth0".into(), Some(mac())), ("eth1".into(), None)];
    l.vlan = Some(("bond0.7".into(), 7, "bond0".into()));
    let files = network_files(&l, NetConf::Ifcfg);
    let v = fields(&file(&files, &format!("{IFCFG}/ifcfg-bond0.7")).text);
    assert_eq!(get(&v, "VLAN"), Some("yes"));
    assert_eq!(get(&v, "BRIDGE"), Some("ovirtmgmt"));
    let b = fields(&file(&files, &format!("{IFCFG}/ifcfg-bond0")).text);
    assert_eq!(get(&b, "BONDING_OPTS"), Some("\"mode=4 miimon=100\""));
    assert_eq!(get(&b, "BRIDGE"), None, "the VLAN is the port");
    let s = fields(&file(&files, &format!("{IFCFG}/ifcfg-eth1")).text);
    assert_eq!(get(&s, "MASTER"), Some("bond0"));
    assert_eq!(get(&s, "SLAVE"), Some("yes"));
    assert_eq!(get(&s, "BRIDGE"), None);
    assert_eq!(get(&s, "HWADDR"), None);
}

#[test]
fn ifcfg_keeps_three_name_servers() {
    let mut l = layout();
    l.dns = ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let f = fields(&network_files(&l, NetConf::Ifcfg)[0].text);
    assert_eq!(get(&f, "DNS3"), Some("3.3.3.3"));
    assert!(!f.iter().any(|(_, v)| v == "4.4.4.4"));
}

#[test]
fn resolv_conf_text() {
    let dns: Vec<IpAddr> = vec!["10.0.0.53".parse().unwrap(), "fd00::53".parse().unwrap()];
    assert_eq!(
        resolv_conf(&dns, Some("example.test")),
        "# Written by ovirt-node-reg\nsearch example.test\nnameserver 10.0.0.53\nnameserver fd00::53\n"
    );
}

#[test]
fn uuids_are_stable_and_distinct() {
    let a = connection_uuid("ovirtmgmt");
    assert_eq!(a, connection_uuid("ovirtmgmt"));
    assert_ne!(a, connection_uuid("ovirtmgmt-port-eth0"));
    assert_eq!(a.len(), 36);
    assert_eq!(&a[14..15], "5", "name-based version");
}

#[test]
fn prefix_masks() {
    assert_eq!(prefix_mask(24), Ipv4Addr::new(255, 255, 255, 0));
    assert_eq!(prefix_mask(0), Ipv4Addr::new(0, 0, 0, 0));
    assert_eq!(prefix_mask(32), Ipv4Addr::new(255, 255, 255, 255));
}

#[test]
fn write_only_when_different() {
    let d = tempfile::tempdir().unwrap();
    let root = Root::new(d.path());
    let f = File {
        path: "/etc/x.conf".into(),
        text: "a\n".into(),
        mode: 0o600,
    };
    assert!(write(&root, None, &f).unwrap());
    assert!(
        !write(&root, None, &f).unwrap(),
        "same content and mode: untouched"
    );
    let g = File {
        mode: 0o644,
        ..f.clone()
    };
    assert!(write(&root, None, &g).unwrap(), "mode differs: rewritten");
}
