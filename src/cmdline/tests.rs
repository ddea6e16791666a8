//! Every kernel argument of docs/ovirt-protocol.md §1 and docs/design.md §6, with real examples.

use super::*;
use crate::config::Source;
use crate::values::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn load(text: &str) -> Loaded {
    let mut l = Loaded::default();
    apply(&mut l, text);
    l
}

fn ok(text: &str) -> crate::config::Config {
    let l = load(text);
    assert!(
        l.errors.is_empty(),
        "{text}: unexpected errors {:?}",
        l.errors
    );
    l.config
}

fn error_of(text: &str) -> String {
    let l = load(text);
    assert_eq!(
        l.errors.len(),
        1,
        "{text}: expected one error, got {:?}",
        l.errors
    );
    l.errors[0].to_string()
}

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}

#[test]
fn splits_like_the_kernel() {
    let names = |t: &str| {
        split(t)
            .into_iter()
            .map(|r| (r.name, r.value))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(r#"ro  quiet hostname="a b" "ntp=x y" flag -- management_server=ignored"#),
        vec![
            ("ro".into(), None),
            ("quiet".into(), None),
            ("hostname".into(), Some("a b".into())),
            ("ntp".into(), Some("x y".into())),
            ("flag".into(), None),
        ]
    );
    assert_eq!(names("a=b=c\n"), vec![("a".into(), Some("b=c".into()))]);
    assert_eq!(
        names("x=\"unterminated value"),
        vec![("x".into(), Some("unterminated value".into()))]
    );
    assert!(split("   \n").is_empty());
}

#[test]
fn management_server_forms() {
    let c = ok("management_server=engine.example.com");
    assert_eq!(
        c.reg.engine.as_ref().unwrap().host,
        Host::Name(Hostname("engine.example.com".into()))
    );
    assert_eq!(c.engine_port(), 443, "port 443 when none is given (VREG15)");
    assert_eq!(
        ok("management_server=engine.example.com:8443").engine_port(),
        8443
    );
    let c = ok("management_server=[fd00::1]:8443");
    assert_eq!(
        c.reg.engine.as_ref().unwrap().host,
        Host::Ip(IpAddr::V6("fd00::1".parse::<Ipv6Addr>().unwrap()))
    );
    assert_eq!(c.engine_port(), 8443);
    assert_eq!(c.reg.engine.unwrap().to_string(), "[fd00::1]:8443");
    assert_eq!(
        ok("management_server=fd00::2").engine_port(),
        443,
        "bare IPv6 has no port"
    );
    assert_eq!(
        ok("management_server=10.0.0.1:443")
            .reg
            .engine
            .unwrap()
            .host,
        Host::Ip(v4("10.0.0.1"))
    );
}

#[test]
fn management_server_aliases_and_port() {
    for alias in ["managment_server", "ovirt_managment_server"] {
        let l = load(&format!("{alias}=engine:444"));
        assert_eq!(l.config.engine_port(), 444);
        assert_eq!(l.source_of("management_server"), Source::Cmdline);
    }
    assert_eq!(
        ok("management_server=engine management_port=8443").engine_port(),
        8443
    );
    assert_eq!(
        ok("management_port=8443 management_server=engine:443").engine_port(),
        443,
        "explicit HOST:PORT wins"
    );
}

#[test]
fn management_server_malformed() {
    for bad in [
        "engine:0",
        "engine:99999",
        "engine:port",
        "[fd00::1",
        "[fd00::1]x",
        "999.1.1.1",
        "-bad-.example",
        "a b",
        "",
    ] {
        let e = error_of(&format!("management_server=\"{bad}\""));
        assert!(
            e.contains("management_server=") && e.contains("expected HOST[:PORT]"),
            "{bad}: {e}"
        );
    }
    assert!(error_of("management_server").contains("expected a value"));
}

#[test]
fn fingerprints_and_pins() {
    let sha1 = "8F:3A:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:C2";
    let c = ok(&format!(
        "management_server_fingerprint={}",
        sha1.to_lowercase()
    ));
    assert_eq!(
        c.reg.ca_sha1.unwrap().to_string(),
        sha1,
        "case-insensitive, printed upper-case"
    );
    assert!(error_of("management_server_fingerprint=8F:3A").contains("SHA-1 fingerprint"));
    let h1 = "ab".repeat(32);
    let h2 = "CD".repeat(32);
    let c = ok(&format!(
        "ovirt.reg.ca_pin=sha256:{h1} ovirt.reg.ca_pin=sha256:{h2}"
    ));
    assert_eq!(c.reg.ca_pins.len(), 2, "repeatable for CA rollover");
    assert_eq!(
        c.reg.ca_pins[1].to_string(),
        format!("sha256:{}", h2.to_lowercase())
    );
    assert!(error_of(&format!("ovirt.reg.ca_pin={h1}")).contains("sha256:<64 hex digits>"));
    assert!(error_of("ovirt.reg.ca_pin=sha256:abcd").contains("ovirt.reg.ca_pin=sha256:abcd"));
}

#[test]
fn bootif_forms() {
    let mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    assert_eq!(
        ok("BOOTIF=01-52-54-00-12-34-56").net.bootif,
        Some(BootIf::Mac(mac)),
        "pxelinux IPAPPEND 2"
    );
    assert_eq!(
        ok("BOOTIF=52-54-00-12-34-56").net.bootif,
        Some(BootIf::Mac(mac))
    );
    assert_eq!(
        ok("BOOTIF=52:54:00:12:34:56").net.bootif,
        Some(BootIf::Mac(mac))
    );
    assert_eq!(
        ok("BOOTIF=01-00-16-3e-12-34-57")
            .net
            .bootif
            .unwrap()
            .to_string(),
        "01-00-16-3e-12-34-57"
    );
    assert_eq!(ok("BOOTIF=link").net.bootif, Some(BootIf::Link));
    assert_eq!(
        ok("BOOTIF=enp1s0").net.bootif,
        Some(BootIf::Name(IfName("enp1s0".into())))
    );
    assert!(error_of("BOOTIF=06-52-54-00-12-34-56").contains("hardware type 01"));
    assert!(error_of("BOOTIF=01-52-54-00-12-34").contains("BOOTIF=01-52-54-00-12-34"));
    assert!(error_of("BOOTIF=averyveryverylongname").contains("interface name"));
}

#[test]
fn ip_pxelinux_and_dracut_forms() {
    let ip = ok("ip=10.0.0.5:10.0.0.1:10.0.0.1:255.255.255.0")
        .net
        .ip
        .unwrap();
    assert_eq!(
        (ip.method, ip.address, ip.gateway),
        (
            Some(IpMethod::Static),
            Some(v4("10.0.0.5")),
            Some(v4("10.0.0.1"))
        )
    );
    assert_eq!(ip.netmask.unwrap().prefix, 24);

    let ip = ok("ip=10.1.2.3::10.1.2.1:255.255.255.0:node1:eth0:none")
        .net
        .ip
        .unwrap();
    assert_eq!(ip.method, Some(IpMethod::Static));
    assert_eq!(ip.peer, None);
    assert_eq!(ip.hostname, Some(Hostname("node1".into())));
    assert_eq!(ip.interface, Some(IfName("eth0".into())));
    assert_eq!(
        ip.to_string(),
        "10.1.2.3::10.1.2.1:255.255.255.0:node1:eth0:none"
    );

    assert_eq!(ok("ip=dhcp").net.ip.unwrap().method, Some(IpMethod::Dhcp));
    assert_eq!(ok("ip=off").net.ip.unwrap().method, Some(IpMethod::Off));
    let ip = ok("ip=eth1:dhcp:9000:52:54:00:12:34:56").net.ip.unwrap();
    assert_eq!((ip.method, ip.mtu), (Some(IpMethod::Dhcp), Some(9000)));
    assert_eq!(ip.mac.unwrap().to_string(), "52:54:00:12:34:56");
    let ip = ok("ip=[fd00::5]::[fd00::1]:64:node1:eth0:none")
        .net
        .ip
        .unwrap();
    assert_eq!(ip.address, Some(IpAddr::V6("fd00::5".parse().unwrap())));
    assert_eq!(ip.netmask.unwrap().prefix, 64);
}

#[test]
fn ip_malformed() {
    for bad in [
        "10.0.0.5",
        "10.0.0.5:x:10.0.0.1:255.255.255.0",
        "10.0.0.5::10.0.0.1:255.0.255.0",
        "eth0:bogus",
        "1:2",
    ] {
        let e = error_of(&format!("ip={bad}"));
        assert!(e.starts_with(&format!("ip={bad}: expected")), "{e}");
    }
}

#[test]
fn netmask_gateway_dns_ntp_hostname() {
    let c = ok("netmask=255.255.255.0 gateway=10.0.0.1 dns=10.0.0.2,10.0.0.3 ntp=pool.ntp.org,10.0.0.9 hostname=node1.example.com");
    assert_eq!(c.net.netmask.unwrap().to_string(), "255.255.255.0");
    assert_eq!(c.net.gateway, Some(v4("10.0.0.1")));
    assert_eq!(c.net.dns, vec![v4("10.0.0.2"), v4("10.0.0.3")]);
    assert_eq!(c.net.ntp.len(), 2);
    assert_eq!(c.net.hostname.unwrap().0, "node1.example.com");
    assert!(ok("ntp=off").net.ntp_off);
    assert!(ok("ntp=off,").net.ntp_off);
    assert!(error_of("ntp=pool.ntp.org,off").contains("or off"));
    assert!(error_of("netmask=255.0.255.0").contains("contiguous"));
    assert!(error_of("dns=10.0.0.2,nope")
        .contains("dns=10.0.0.2,nope: expected a comma-separated list"));
    assert!(error_of("hostname=bad_name!").contains("host name"));
    assert!(error_of("gateway=x").contains("gateway=x"));
}

#[test]
fn vlan_bond_layout_ipv6_pwauth() {
    let c = ok("vlan=100:eth0 bond=bond0:eth0,eth1:mode=4,miimon=100 network_layout=bridged ipv6=auto ssh_pwauth=1");
    assert_eq!(c.net.vlan.as_ref().unwrap().id, 100);
    let bond = c.net.bond.unwrap();
    assert_eq!(
        (bond.name.0.as_str(), bond.slaves.len(), bond.options.len()),
        ("bond0", 2, 2)
    );
    assert_eq!(c.net.layout, Some(NetworkLayout::Bridged));
    assert_eq!(c.net.ipv6, Some(Ipv6Mode::Auto));
    assert_eq!(c.reg.ssh_pwauth, Some(true));
    assert_eq!(ok("vlan=7").net.vlan.unwrap().nic, None);
    assert_eq!(
        ok("bond_setup=bond1:eth2").net.bond.unwrap().name.0,
        "bond1"
    );
    assert!(error_of("vlan=4095").contains("1 to 4094"));
    assert!(error_of("bond=bond0").contains("NAME:SLAVE"));
    assert_eq!(
        error_of("bond=bond0:eth0,eth1,eth0"),
        "bond=bond0:eth0,eth1,eth0: expected each slave once (eth0 given more than once) (from kernel command line)"
    );
    assert!(
        error_of("bond_setup=bond0:eth0,eth1:mode=9").contains("expected mode= one of balance-rr")
    );
    assert!(error_of("bond=bond0:eth0:miimon=-100")
        .contains("miimon= a whole number of milliseconds from 0 to 60000"));
    assert!(error_of("bond=bond0:eth0:arp_interval=100").contains("arp_interval is not supported"));
    assert!(error_of("ipv6=maybe").contains("dhcp, auto"));
    assert!(error_of("ssh_pwauth=perhaps").contains("ssh_pwauth=perhaps"));
}

#[test]
fn flags_and_reg_settings() {
    let c = ok("ovirt_vdsm_disable ovirt.reg.insecure_tofu ovirt.reg.debug ovirt.reg.timeout=5m ovirt.reg.key=rsa \
                ovirt.reg.store=/config ovirt.reg.token_file=/etc/token ovirt.reg.nic=eth1 ovirt.reg.bridge=rhevm \
                ovirt.reg.link_timeout=45 ovirt.reg.netconf=ifcfg ovirt.reg.retry_base=2s ovirt.reg.retry_cap=1h");
    assert!(c.reg.vdsm_disabled && c.reg.insecure_tofu && c.reg.debug);
    assert_eq!(c.reg.timeout, Seconds(300));
    assert_eq!(c.reg.key, KeyType::Rsa);
    assert_eq!(c.reg.store.as_deref(), Some("/config"));
    assert_eq!(c.net.bridge.0, "rhevm");
    assert_eq!(c.net.link_timeout, Seconds(45));
    assert_eq!(c.net.netconf, NetConf::Ifcfg);
    assert_eq!(
        (c.reg.retry_base, c.reg.retry_cap),
        (Seconds(2), Seconds(3600))
    );
    assert!(!ok("ovirt.reg.debug=0").reg.debug);
    assert!(error_of("ovirt.reg.timeout=forever").contains("duration"));
    assert!(error_of("ovirt.reg.timeout=99999999999999999999h").contains("duration"));
    assert!(error_of("ovirt.reg.key=dsa").contains("ecdsa or rsa"));
    assert!(error_of("ovirt.reg.store=relative").contains("absolute path"));
}

#[test]
fn secrets_are_warned_about_and_never_printed() {
    // The flag may come after the token: the check runs once the whole line is read.
    let l = load("rhevm_admin_password=$1$salt$abcdefgh ovirt.reg.token=s3cr3t-token ovirt.reg.insecure_token_on_cmdline");
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    assert_eq!(
        l.config.reg.token.as_ref().unwrap().expose(),
        "s3cr3t-token"
    );
    assert_eq!(
        l.config.reg.admin_password.as_ref().unwrap().expose(),
        "$1$salt$abcdefgh"
    );
    assert_eq!(l.warnings.len(), 2, "{:?}", l.warnings);
    assert!(
        l.warnings[0].contains("rhevm_admin_password")
            && l.warnings[0].contains("every local user")
    );
    let shown = format!("{:?} {}", l, serde_json::to_string(&l).unwrap());
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("abcdefgh"),
        "{shown}"
    );
    assert!(ok("engine_admin_password=$6$x$y")
        .reg
        .admin_password
        .is_some());
    let l = load("rhevm_admin_password=plaintext-password");
    assert_eq!(l.errors.len(), 1);
    assert!(
        !l.errors[0].to_string().contains("plaintext"),
        "a rejected secret is not echoed: {}",
        l.errors[0]
    );
    assert!(!l.to_kargs().iter().any(|k| k.contains("s3cr3t")));
}

#[test]
fn token_inline_is_refused_without_the_flag() {
    for (arg, name) in [
        ("ovirt.reg.token=s3cr3t-token", "ovirt.reg.token"),
        ("vdsm_reg.ticket=s3cr3t-token", "vdsm_reg.ticket"),
    ] {
        let l = load(&format!("management_server=engine {arg}"));
        assert_eq!(l.errors.len(), 1, "{:?}", l.errors);
        let e = &l.errors[0];
        let text = e.to_string();
        assert_eq!((e.name.as_str(), e.source), (name, Source::Cmdline));
        assert!(
            text.starts_with(&format!("{name}=<redacted>: expected ")),
            "{text}"
        );
        for why_and_what in [
            "/proc/cmdline is readable by every local user",
            "ovirt.reg.token_file=PATH (a root-owned 0600 file)",
            "ovirt.reg.insecure_token_on_cmdline",
        ] {
            assert!(text.contains(why_and_what), "{text}");
        }
        let shown = format!(
            "{l:?} {} {}",
            serde_json::to_string(&l).unwrap(),
            l.error_summary()
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(
            (&l.config.reg.token, &l.config.reg.ticket),
            (&None, &None),
            "never used"
        );
        assert_eq!(l.source_of(name), Source::Default);
        assert!(
            l.warnings.is_empty(),
            "the error says it all: {:?}",
            l.warnings
        );
        crate::fuzzing::cmdline(arg.as_bytes());
    }
    let l = load("ovirt.reg.insecure_token_on_cmdline=0 ovirt.reg.token=abc");
    assert_eq!(
        l.errors.len(),
        1,
        "an explicit 0 does not accept: {:?}",
        l.errors
    );
    let l = load("vdsm_reg.ticket=abc ovirt.reg.insecure_token_on_cmdline");
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    assert_eq!(l.config.reg.ticket.as_ref().unwrap().expose(), "abc");
    assert_eq!(l.warnings.len(), 1, "still warned about: {:?}", l.warnings);
    assert!(
        l.warnings[0].contains("vdsm_reg.ticket") && l.warnings[0].contains("every local user")
    );
    assert!(l
        .to_kargs()
        .contains(&"ovirt.reg.insecure_token_on_cmdline=1".to_string()));
}

#[test]
fn control_characters_in_errors_are_escaped() {
    let l = load(
        "hostname=a\x1b[2Jb ovirt.reg.store=/a\x07b \"gateway=1\n[INFO] forged\" ovirt.reg.x\x1by",
    );
    let summary = l.error_summary();
    assert_eq!(l.errors.len(), 3, "{summary}");
    assert!(
        summary.contains("hostname=a\\x1b[2Jb: expected")
            && summary.contains("ovirt.reg.store=/a\\x07b: expected an absolute path")
            && summary.contains("gateway=1\\n[INFO] forged: expected"),
        "{summary}"
    );
    assert!(!summary.contains(|c: char| c.is_control()), "{summary:?}");
    assert_eq!(
        l.errors[0].value, "a\x1b[2Jb",
        "the raw value stays for --json"
    );
    assert_eq!(
        l.warnings,
        vec!["unknown setting ovirt.reg.x\\x1by (from kernel command line) ignored".to_string()]
    );
}

#[test]
fn last_wins_except_repeatable_unknown_ignored() {
    let l =
        load("hostname=a hostname=b quiet splash=silent console=ttyS0,115200 ovirt.reg.tiemout=5");
    assert_eq!(l.config.net.hostname.unwrap().0, "b");
    assert!(l.errors.is_empty());
    assert_eq!(
        l.warnings,
        vec!["unknown setting ovirt.reg.tiemout (from kernel command line) ignored".to_string()]
    );
}

#[test]
fn one_bad_value_does_not_stop_the_others() {
    let l =
        load("management_server=engine:70000 hostname=node1 BOOTIF=zz-zz-zz-zz-zz-zz dns=10.0.0.2");
    assert_eq!(l.errors.len(), 2, "{:?}", l.errors);
    assert_eq!(l.errors[0].name, "management_server");
    assert_eq!(l.errors[1].name, "BOOTIF");
    assert_eq!(l.config.net.hostname.unwrap().0, "node1");
    assert_eq!(l.config.net.dns.len(), 1);
}

#[test]
fn real_pxe_command_line() {
    let text = "initrd=initrd.img ro rd.live.image BOOTIF=01-52-54-00-12-34-56 ip=dhcp \
                management_server=engine.example.com:443 ovirt.reg.ca_pin=sha256:"
        .to_string()
        + &"0f".repeat(32)
        + " console=ttyS0";
    let c = ok(&text);
    assert_eq!(c.engine_port(), 443);
    assert_eq!(c.net.ip.unwrap().method, Some(IpMethod::Dhcp));
    assert_eq!(c.reg.ca_pins.len(), 1);
}

#[test]
fn kargs_round_trip() {
    let text = "management_server=[fd00::1]:8443 BOOTIF=01-52-54-00-12-34-56 ip=10.1.2.3::10.1.2.1:255.255.255.0:node1:eth0:none \
                dns=10.0.0.2 ntp=off vlan=5:eth0 bond=bond0:eth0,eth1:mode=4 ovirt.reg.timeout=90 ovirt.reg.debug \
                ovirt.reg.store=\"/with space\"";
    let first = load(text);
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let again = load(&first.to_kargs().join(" "));
    assert_eq!(first.config, again.config);
    crate::fuzzing::cmdline(text.as_bytes());
}

#[test]
fn fuzz_finds_survive() {
    for input in [
        &b"ip=6:on"[..],
        b"ip=eth0:dhcp:1500",
        b"ip=:::::eth0:dhcp",
        b"ip=:::::::000",
        b"ntp=off,",
        b"ntp=off.,he",
        b"ntp=,off",
        b"ip=:::::::1500",
        b"ip=::::::off::52:54:00:12:34:56",
        b"ip=10.0.0.1:::::eth0:dhcp",
        &b"\xff\xfe=\"=\"\"\x00 ip=[::1]:[:"[..],
        b"ip=:::::::::",
        b"management_server=[",
        b"BOOTIF=---",
        b"ovirt.reg.ca_pin=sha256:",
    ] {
        crate::fuzzing::cmdline(input);
    }
}

#[test]
fn management_server_auto_and_the_discovery_domain() {
    let c = ok("management_server=auto ovirt.reg.domain=example.test");
    assert!(c.discovers_engine() && c.reg.engine_auto);
    assert_eq!(c.reg.domain.unwrap().to_string(), "example.test");
    let c = ok("management_server=auto management_server=e.example.com");
    assert!(
        !c.discovers_engine() && !c.reg.engine_auto,
        "the last one wins"
    );
    assert!(ok("").discovers_engine(), "none given: DNS SRV");
}
