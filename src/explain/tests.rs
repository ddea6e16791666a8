use super::*;
use crate::config::{Loaded, SETTINGS};

fn load(cmdline: &str) -> Loaded {
    let l = crate::sources::from_cmdline(cmdline);
    assert!(l.errors.is_empty(), "{}", l.error_summary());
    l
}

fn of(cmdline: &str, name: &str) -> Meaning {
    setting(name, &load(cmdline))
}

#[test]
fn bootif_is_a_mac() {
    let m = of("BOOTIF=01-52-54-00-ab-cd-ef", "BOOTIF");
    assert_eq!(
        m.interpreted,
        json!({ "kind": "mac", "mac": "52:54:00:ab:cd:ef" })
    );
    assert_eq!(
        m.text,
        "the NIC with MAC 52:54:00:ab:cd:ef (pxelinux BOOTIF, Ethernet)"
    );
    assert_eq!(of("BOOTIF=link", "BOOTIF").interpreted["kind"], "link");
    assert_eq!(of("BOOTIF=eth1", "BOOTIF").interpreted["interface"], "eth1");
}

#[test]
fn dracut_static_ip_is_split() {
    let m = of(
        "ip=192.0.2.10::192.0.2.1:255.255.255.0:node1.example.com:eth0:none:9000:52:54:00:12:34:56",
        "ip",
    );
    assert_eq!(
        m.interpreted,
        json!({
            "method": "static", "address": "192.0.2.10", "prefix": 24,
            "netmask": "255.255.255.0", "peer": null, "gateway": "192.0.2.1",
            "hostname": "node1.example.com", "interface": "eth0", "mtu": 9000,
            "mac": "52:54:00:12:34:56",
        })
    );
    assert!(m.text.starts_with("static 192.0.2.10/24, gateway 192.0.2.1, host name node1.example.com, interface eth0, MTU 9000 (not applied"), "{}", m.text);
}

#[test]
fn other_ip_forms() {
    let pxe = of("ip=192.0.2.10:192.0.2.5:192.0.2.1:24", "ip");
    assert_eq!(pxe.interpreted["peer"], "192.0.2.5");
    assert_eq!(pxe.interpreted["prefix"], 24);
    let iface = of("ip=eth1:dhcp:1500", "ip");
    assert_eq!(
        (
            &iface.interpreted["method"],
            &iface.interpreted["interface"],
            &iface.interpreted["mtu"]
        ),
        (&json!("dhcp"), &json!("eth1"), &json!(1500))
    );
    assert_eq!(of("ip=dhcp", "ip").text, "DHCP (IPv4)");
    assert!(of("ip=dhcp6", "ip").text.contains("not supported"));
    assert_eq!(of("", "ip").interpreted, Value::Null);
    // The network step's own rule: a static address takes netmask= and gateway= too.
    let l = load("ip=192.0.2.10:::::eth0:none netmask=255.255.0.0 gateway=192.0.2.254");
    let (_, addressing) = effective(&l)
        .into_iter()
        .find(|(n, _)| *n == "addressing")
        .unwrap();
    assert_eq!(
        addressing.text,
        "static 192.0.2.10/16, default route via 192.0.2.254"
    );
    let l = load("ip=192.0.2.10:::::eth0:none");
    let (_, addressing) = effective(&l)
        .into_iter()
        .find(|(n, _)| *n == "addressing")
        .unwrap();
    assert!(
        addressing.text.contains("needs a netmask"),
        "{}",
        addressing.text
    );
}

#[test]
fn engine_is_host_and_port() {
    let m = of("management_server=[fd00::1]:8443", "management_server");
    assert_eq!(m.interpreted["host"], "fd00::1");
    assert_eq!(m.interpreted["host_kind"], "ipv6");
    assert_eq!(m.interpreted["port"], 8443);
    assert_eq!(m.interpreted["port_from"], "management_server");
    assert_eq!(
        m.interpreted["url"],
        "https://[fd00::1]:8443/ovirt-engine/services/host-register"
    );
    let l = load("management_server=engine.example.com management_port=8443");
    assert_eq!(
        setting("management_server", &l).interpreted["port_from"],
        "management_port"
    );
    assert_eq!(setting("management_server", &l).interpreted["port"], 8443);
    let l = load("management_server=e.example.com:444 management_port=8443");
    let p = setting("management_port", &l);
    assert_eq!(p.interpreted["used"], false);
    assert!(p.text.contains("not used"), "{}", p.text);
    assert_eq!(
        of("management_server=e", "management_server").interpreted["port_from"],
        "default"
    );
}

#[test]
fn pins_and_durations_are_normalised() {
    let hex = "AB".repeat(32);
    let m = of(
        &format!("ovirt.reg.ca_pin=SHA256:{hex}"),
        "ovirt.reg.ca_pin",
    );
    assert_eq!(
        m.interpreted["pins"][0],
        format!("sha256:{}", "ab".repeat(32))
    );
    let sha1 = "ab:".repeat(19) + "ab";
    let m = of(
        &format!("management_server_fingerprint={sha1}"),
        "management_server_fingerprint",
    );
    assert_eq!(m.interpreted["fingerprint"], sha1.to_uppercase());
    let m = of("ovirt.reg.timeout=5m", "ovirt.reg.timeout");
    assert_eq!(m.interpreted, json!({ "seconds": 300 }));
    assert_eq!(m.text, "300 seconds (5 min)");
    assert_eq!(
        of("ovirt.reg.retry_cap=2h", "ovirt.reg.retry_cap").text,
        "7200 seconds (2 h)"
    );
    assert_eq!(of("", "ovirt.reg.retry_base").text, "1 second");
}

#[test]
fn bonds_and_vlans_are_interpreted() {
    let m = of(
        "bond=bond0:eth0,eth1:mode=4,miimon=100,lacp_rate=fast",
        "bond",
    );
    assert_eq!(m.interpreted["mode"], "802.3ad");
    assert_eq!(m.interpreted["mode_number"], 4);
    assert_eq!(m.interpreted["slaves"], json!(["eth0", "eth1"]));
    assert_eq!(m.interpreted["lacp_rate"], "fast");
    assert_eq!(
        m.text,
        "bond0 of eth0, eth1, mode 802.3ad, MII monitoring every 100 ms, LACP rate fast"
    );
    let d = of("bond=bond1:eth2", "bond");
    assert_eq!(d.interpreted["vdsm_default"], true);
    assert!(
        d.text
            .ends_with("MII monitoring every 150 ms (vdsm's default)"),
        "{}",
        d.text
    );
    let v = of("vlan=100:eth0", "vlan");
    assert_eq!(v.interpreted, json!({ "id": 100, "parent": "eth0" }));
    assert_eq!(
        v.text,
        "tagged VLAN 100 on eth0, under the bridge ovirtmgmt"
    );
    let l = load("vlan=100 bond=bond0:eth0,eth1");
    let (_, nic) = effective(&l)
        .into_iter()
        .find(|(n, _)| *n == "management_nic")
        .unwrap();
    assert_eq!(nic.text, "bridge ovirtmgmt over VLAN 100 on bond bond0");
}

#[test]
fn secrets_are_only_set_or_not() {
    let l = load("ovirt.reg.token=TOPSECRET ovirt.reg.insecure_token_on_cmdline rhevm_admin_password=$6$salt$HASHSECRET");
    for name in ["ovirt.reg.token", "rhevm_admin_password"] {
        let m = setting(name, &l);
        assert_eq!(m.interpreted, json!({ "set": true }));
        assert!(m.text.contains("<redacted>"), "{}", m.text);
    }
    let all = json(&l).to_string() + &text(&l) + &explained(&l);
    assert!(
        !all.contains("TOPSECRET") && !all.contains("HASHSECRET"),
        "{all}"
    );
}

#[test]
fn every_setting_is_explained() {
    let l = load("");
    for s in SETTINGS {
        assert!(!about(s.name).is_empty(), "{} has no description", s.name);
        assert!(
            !setting(s.name, &l).text.is_empty(),
            "{} has no meaning",
            s.name
        );
    }
    assert_eq!(
        explained(&l).lines().count(),
        SETTINGS.len() + effective(&l).len()
    );
}

#[test]
fn discovery_by_dns_srv_is_explained() {
    let l = load("management_server=auto ovirt.reg.domain=example.test");
    let m = setting("management_server", &l);
    assert_eq!(m.interpreted, json!({ "discover": "dns-srv" }));
    assert!(m.text.contains("found by DNS SRV"), "{}", m.text);
    let d = setting("ovirt.reg.domain", &l);
    assert!(
        d.text.contains("_ovirt-engine._tcp.example.test") && d.text.ends_with("looked up there"),
        "{}",
        d.text
    );
    let l = load("management_server=e.example.com ovirt.reg.domain=example.test");
    let d = setting("ovirt.reg.domain", &l);
    assert!(
        d.text
            .ends_with("not used: management_server names the engine"),
        "{}",
        d.text
    );
    assert_eq!(
        setting("management_server", &load("")).interpreted,
        Value::Null
    );
}
