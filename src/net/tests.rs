use super::*;
use crate::config::Config;

fn cfg(ip: Option<&str>) -> NetworkConfig {
    let mut c = Config::default().net;
    c.ip = ip.map(|s| s.parse().unwrap());
    c
}

#[test]
fn dhcp_by_default_and_for_ip_dhcp() {
    assert_eq!(addressing(&cfg(None)).unwrap(), Addressing::Dhcp);
    assert_eq!(addressing(&cfg(Some("dhcp"))).unwrap(), Addressing::Dhcp);
    assert_eq!(
        addressing(&cfg(Some("eth0:dhcp"))).unwrap(),
        Addressing::Dhcp
    );
    assert_eq!(addressing(&cfg(Some("off"))).unwrap(), Addressing::Off);
}

#[test]
fn pxelinux_static_form() {
    let a = addressing(&cfg(Some("10.0.0.5:10.0.0.9:10.0.0.1:255.255.255.0"))).unwrap();
    assert_eq!(
        a,
        Addressing::Static {
            address: "10.0.0.5".parse().unwrap(),
            prefix: 24,
            gateway: Some("10.0.0.1".parse().unwrap()),
        }
    );
}

#[test]
fn dracut_static_form_and_separate_netmask_gateway() {
    let mut c = cfg(Some("10.0.0.5::::node1:eth0:none"));
    c.netmask = Some("255.255.0.0".parse().unwrap());
    c.gateway = Some("10.0.0.254".parse().unwrap());
    assert_eq!(
        addressing(&c).unwrap(),
        Addressing::Static {
            address: "10.0.0.5".parse().unwrap(),
            prefix: 16,
            gateway: Some("10.0.0.254".parse().unwrap()),
        }
    );
    assert_eq!(explicit_hostname(&c).as_deref(), Some("node1"));
    c.hostname = Some("other.example".parse().unwrap());
    assert_eq!(
        explicit_hostname(&c).as_deref(),
        Some("other.example"),
        "hostname= wins"
    );
    // ip= fields win over netmask=/gateway=.
    let mut c = cfg(Some("10.0.0.5::10.0.0.1:24:::none"));
    c.netmask = Some("16".parse().unwrap());
    c.gateway = Some("10.0.0.254".parse().unwrap());
    let Addressing::Static {
        prefix, gateway, ..
    } = addressing(&c).unwrap()
    else {
        panic!("static expected");
    };
    assert_eq!((prefix, gateway), (24, Some("10.0.0.1".parse().unwrap())));
}

#[test]
fn unsupported_forms_are_errors() {
    let no_mask = addressing(&cfg(Some("10.0.0.5::10.0.0.1:"))).unwrap_err();
    assert!(format!("{no_mask:#}").contains("netmask"), "{no_mask:#}");
    assert!(addressing(&cfg(Some("[fd00::5]::[fd00::1]:64"))).is_err());
    assert!(addressing(&cfg(Some("eth0:dhcp6"))).is_err());
    assert!(addressing(&cfg(Some("ibft"))).is_err());
}

#[test]
fn vlan_names_fit_the_kernel_limit() {
    assert_eq!(vlan_name("eth0", 100), "eth0.100");
    assert_eq!(vlan_name("enp0s31f6xyzab", 4094), "vlan4094");
}
