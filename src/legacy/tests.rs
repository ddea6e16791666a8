use super::*;
use crate::cmdline;
use crate::config::Loaded;

fn from_cmdline(text: &str) -> Loaded {
    let mut l = Loaded::default();
    cmdline::apply(&mut l, text);
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    l
}

fn from_default_ovirt(text: &str) -> Loaded {
    let mut l = Loaded::default();
    apply_default_ovirt(&mut l, text);
    l
}

#[test]
fn default_ovirt_written_like_ovirt_early() {
    let l = from_cmdline(
        "management_server=engine.example.com:443 BOOTIF=01-52-54-00-12-34-56 ip=10.0.0.5:10.0.0.1:10.0.0.1:255.255.255.0 \
         dns=10.0.0.2,10.0.0.3 hostname=node1.example.com rhevm_admin_password=$1$s$secrethash",
    );
    let text = render_default_ovirt("", &default_ovirt_vars(&l));
    for line in [
        "OVIRT_MANAGEMENT_SERVER=\"engine.example.com:443\"",
        "OVIRT_BOOTIF=\"01-52-54-00-12-34-56\"",
        "OVIRT_IP_ADDRESS=\"10.0.0.5\"",
        "OVIRT_IP_GATEWAY=\"10.0.0.1\"",
        "OVIRT_IP_NETMASK=\"255.255.255.0\"",
        "OVIRT_DNS=\"10.0.0.2,10.0.0.3\"",
        "OVIRT_HOSTNAME=\"node1.example.com\"",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    assert!(
        !text.contains("secrethash") && !text.contains("PASSWORD"),
        "no secret in a 0644 file:\n{text}"
    );
}

#[test]
fn default_ovirt_round_trip_keeps_other_lines() {
    let existing = "# managed by ovirt-node\nOVIRT_INIT=\"\"\nOVIRT_HOSTNAME=old.example.com\nOVIRT_KEYBOARD_LAYOUT='us'\n";
    let pin1 = format!("sha256:{}", "1a".repeat(32));
    let pin2 = format!("sha256:{}", "2b".repeat(32));
    let l = from_cmdline(&format!(
        "hostname=new.example.com ovirt.reg.ca_pin={pin1} ovirt.reg.ca_pin={pin2} ip=dhcp"
    ));
    let text = render_default_ovirt(existing, &default_ovirt_vars(&l));
    assert!(text.starts_with("# managed by ovirt-node\nOVIRT_INIT=\"\"\nOVIRT_HOSTNAME=\"new.example.com\"\nOVIRT_KEYBOARD_LAYOUT='us'\n"), "{text}");
    assert!(
        text.contains("OVIRT_IP_ADDRESS=\"\"\n"),
        "ip=dhcp clears the address: {text}"
    );
    let back = from_default_ovirt(&text);
    assert!(back.errors.is_empty(), "{:?}", back.errors);
    assert_eq!(back.config.net.hostname, l.config.net.hostname);
    assert_eq!(back.config.reg.ca_pins, l.config.reg.ca_pins);
    assert_eq!(back.config.net.ip, l.config.net.ip);
    assert_eq!(back.source_of("hostname"), Source::DefaultOvirt);
}

#[test]
fn default_ovirt_static_ip_round_trip() {
    let l = from_cmdline("ip=10.1.2.3::10.1.2.1:255.255.255.0:node1:eth0:none management_server=[fd00::1]:8443 vlan=100:eth0 bond=bond0:eth0,eth1:mode=4");
    let text = render_default_ovirt("", &default_ovirt_vars(&l));
    let back = from_default_ovirt(&text);
    assert!(back.errors.is_empty(), "{:?}\n{text}", back.errors);
    let ip = back.config.net.ip.unwrap();
    assert_eq!(ip.address, l.config.net.ip.as_ref().unwrap().address);
    assert_eq!(ip.gateway, l.config.net.ip.as_ref().unwrap().gateway);
    assert_eq!(ip.netmask.unwrap().prefix, 24);
    assert_eq!(back.config.reg.engine, l.config.reg.engine);
    assert_eq!(back.config.net.vlan, l.config.net.vlan);
    assert_eq!(back.config.net.bond, l.config.net.bond);
}

#[test]
fn shell_quoting() {
    let vars = vec![("OVIRT_X".to_string(), "a \"b\" $c `d` \\e".to_string())];
    let text = render_default_ovirt("", &vars);
    assert_eq!(text, "OVIRT_X=\"a \\\"b\\\" \\$c \\`d\\` \\\\e\"\n");
    assert_eq!(crate::conffile::shell_values(&text), vars);
    assert_eq!(
        crate::conffile::shell_values("export A=1\n# c\nB='x y'\nnot a var\n C=\"q\""),
        vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "x y".to_string()),
            ("C".to_string(), "q".to_string()),
        ]
    );
}

#[test]
fn default_ovirt_bad_value_is_reported_with_its_source() {
    let l = from_default_ovirt(
        "OVIRT_MANAGEMENT_SERVER=\"engine:99999\"\nOVIRT_HOSTNAME=\"ok.example.com\"\n",
    );
    assert_eq!(l.errors.len(), 1);
    assert!(
        l.errors[0]
            .to_string()
            .ends_with("(from /etc/default/ovirt)"),
        "{}",
        l.errors[0]
    );
    assert!(l.config.net.hostname.is_some());
}

#[test]
fn tokens_never_come_from_default_ovirt_but_the_flag_does() {
    let l = from_default_ovirt("OVIRT_REG_TOKEN=\"abc\"\nOVIRT_VDSM_REG_TICKET=\"def\"\n");
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    assert_eq!((&l.config.reg.token, &l.config.reg.ticket), (&None, &None));

    let l = from_cmdline("ovirt.reg.insecure_token_on_cmdline ovirt.reg.token=s3cr3t");
    let text = render_default_ovirt("", &default_ovirt_vars(&l));
    assert!(
        text.contains("OVIRT_REG_INSECURE_TOKEN_ON_CMDLINE=\"1\"\n"),
        "{text}"
    );
    assert!(
        !text.contains("s3cr3t") && !text.contains("OVIRT_REG_TOKEN"),
        "{text}"
    );
    // Like every setting the file keeps, the flag holds on the next boot too.
    let mut next = from_default_ovirt(&text);
    cmdline::apply(&mut next, "ovirt.reg.token=s3cr3t");
    assert!(next.errors.is_empty(), "{:?}", next.errors);
    assert_eq!(next.config.reg.token.as_ref().unwrap().expose(), "s3cr3t");
}

/// The file vdsm ships (VREG15 `vdsm-reg.conf.in`), with the build-time values.
const SHIPPED_VDSM_REG_CONF: &str = "[vars]
reg_req_interval=5
vdsm_conf_file=/etc/vdsm/vdsm.conf
pidfile=/var/run/vdsm-reg.pid
logger_conf=/etc/vdsm-reg/logger.conf
vdc_host_name=None
vdc_host_port=443
vdc_reg_uri=/OvirtEngineWeb/register
upgrade_iso_file=/data/updates/ovirt-node-image.iso
upgrade_mount_point=/live
ticket=
fingerprint=None
";

#[test]
fn vdsm_reg_conf_shipped_file_means_unset() {
    let mut l = Loaded::default();
    apply_vdsm_reg_conf(&mut l, SHIPPED_VDSM_REG_CONF);
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    assert_eq!(l.config.reg.engine, None, "vdc_host_name=None is unset");
    assert_eq!(l.config.reg.ca_sha1, None);
    assert_eq!(l.config.reg.ticket, None);
    assert_eq!(l.config.engine_port(), 443);
}

#[test]
fn vdsm_reg_conf_written_like_vdsm_config() {
    let fp = "8F:3A:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:C2";
    let l = from_cmdline(&format!(
        "management_server=engine.example.com management_server_fingerprint={fp}"
    ));
    let text = render_vdsm_reg_conf(SHIPPED_VDSM_REG_CONF, &l.config);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&"vdc_host_name=engine.example.com"),
        "{text}"
    );
    assert!(
        lines.contains(&"vdc_host_port=443"),
        "port defaulted to 443: {text}"
    );
    assert_eq!(
        lines.last(),
        Some(&format!("fingerprint={fp}").as_str()),
        "fingerprint line moved to the end"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("fingerprint"))
            .count(),
        1
    );
    assert_eq!(
        lines.len(),
        SHIPPED_VDSM_REG_CONF.lines().count(),
        "other keys kept:\n{text}"
    );
    let mut back = Loaded::default();
    apply_vdsm_reg_conf(&mut back, &text);
    assert_eq!(back.config.reg.engine, l.config.reg.engine);
    assert_eq!(back.config.reg.ca_sha1, l.config.reg.ca_sha1);
    assert_eq!(back.source_of("management_server"), Source::VdsmRegConf);
}

#[test]
fn vdsm_reg_conf_configparser_spacing_and_ipv6() {
    // vdsm-reg itself rewrites the file with ConfigParser: `key = value`.
    let existing = "[vars]\nvdc_host_name = old.example.com\nvdc_host_port = 8443\nticket = abc\n\n[other]\nvdc_host_name = x\n";
    let mut l = Loaded::default();
    apply_vdsm_reg_conf(&mut l, existing);
    assert_eq!(
        l.config.reg.engine.as_ref().unwrap().to_string(),
        "old.example.com"
    );
    assert_eq!(l.config.engine_port(), 8443);
    assert_eq!(l.config.reg.ticket.as_ref().unwrap().expose(), "abc");
    let new = from_cmdline("management_server=[fd00::1]:8443");
    let text = render_vdsm_reg_conf(existing, &new.config);
    assert!(
        text.starts_with("[vars]\nvdc_host_name=fd00::1\nvdc_host_port=8443\nticket = abc\n"),
        "{text}"
    );
    assert!(
        text.contains("[other]\nvdc_host_name = x"),
        "other sections untouched: {text}"
    );
    let mut back = Loaded::default();
    apply_vdsm_reg_conf(&mut back, &text);
    assert_eq!(
        back.config.reg.engine.as_ref().unwrap().host,
        new.config.reg.engine.unwrap().host
    );
    assert_eq!(back.config.engine_port(), 8443);
}

#[test]
fn vdsm_reg_conf_created_when_missing_and_host_ip_fallback() {
    let l = from_cmdline("management_server=10.0.0.9:444");
    assert_eq!(
        render_vdsm_reg_conf("", &l.config),
        "[vars]\nvdc_host_name=10.0.0.9\nvdc_host_port=444\n"
    );
    let mut l = Loaded::default();
    apply_vdsm_reg_conf(&mut l, "[vars]\nvdc_host_name=None\nvdc_host_ip=10.0.0.7\n");
    assert_eq!(l.config.reg.engine.unwrap().to_string(), "10.0.0.7");
}

#[test]
fn precedence_cmdline_over_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = crate::paths::Root::new(dir.path());
    let put = |p: &str, t: &str| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    };
    put(
        crate::paths::VDSM_REG_CONF,
        "[vars]\nvdc_host_name=from-conf\nvdc_host_port=1111\n",
    );
    put(
        crate::paths::DEFAULT_OVIRT,
        "OVIRT_MANAGEMENT_SERVER=\"from-default\"\nOVIRT_HOSTNAME=\"h.example.com\"\n",
    );
    put("/cmdline", "management_server=from-cmdline\n");
    let l = crate::sources::load(&root, &root.join("/cmdline")).unwrap();
    assert_eq!(
        l.config.reg.engine.as_ref().unwrap().to_string(),
        "from-cmdline"
    );
    assert_eq!(l.source_of("management_server"), Source::Cmdline);
    assert_eq!(
        l.config.engine_port(),
        1111,
        "port from vdsm-reg.conf where nothing higher sets one"
    );
    assert_eq!(l.source_of("hostname"), Source::DefaultOvirt);
    assert_eq!(l.source_of("ovirt.reg.timeout"), Source::Default);
    assert!(crate::sources::load(&root, &root.join("/missing"))
        .unwrap_err()
        .to_string()
        .contains("kernel command line"));
}

#[test]
fn default_ovirt_ip_values_stay_in_their_field() {
    // Found by the fuzz target `default_ovirt`: the netmask `00::5` spilled into the later
    // fields of the `ip=` built from the three variables and named the interface `5`.
    let l = from_default_ovirt("OVIRT_IP_ADDRESS=fd00::5\nOVIRT_IP_NETMASK=00::5\n");
    assert_eq!(l.config.net.ip, None);
    let names: Vec<&str> = l.errors.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["OVIRT_IP_NETMASK"], "{:?}", l.errors);
    let l = from_default_ovirt("OVIRT_IP_ADDRESS=10.0.0.5\nOVIRT_IP_GATEWAY=10.0.0.1:x:eth0\n");
    assert_eq!(l.config.net.ip, None);
    assert_eq!(
        l.errors[0].to_string(),
        "OVIRT_IP_GATEWAY=10.0.0.1:x:eth0: expected an IP address (from /etc/default/ovirt)"
    );
    // Brackets are accepted, as on the command line.
    let l = from_default_ovirt(
        "OVIRT_IP_ADDRESS=[fd00::5]\nOVIRT_IP_GATEWAY=[fd00::1]\nOVIRT_IP_NETMASK=64\n",
    );
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    let ip = l.config.net.ip.unwrap();
    assert_eq!(ip.gateway, Some("fd00::1".parse().unwrap()));
    assert_eq!((ip.netmask.unwrap().prefix, ip.interface), (64, None));
    crate::fuzzing::default_ovirt(b"OVIRT_IP_ADDRESS=fd00::5\nOVIRT_IP_NETMASK=00::5\n");
}

#[test]
fn vdsm_reg_conf_every_copy_of_a_key_is_rewritten() {
    // Found by the fuzz target `vdsm_reg_conf`: with a key or `[vars]` twice the writer
    // changed the first copy and the reader took the last; a fingerprint appended after
    // another section was not read back at all.
    let fp = "8F:3A:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:C2";
    let new = from_cmdline(&format!(
        "management_server=engine.example.com:8443 management_server_fingerprint={fp}"
    ));
    for existing in [
        "[vars]\nvdc_host_name = old\nvdc_host_name = older\nfingerprint=None\n",
        "[vars]\nvdc_host_name=old\n[loggers]\nkeys=root\n[vars]\nvdc_host_port = 80\n",
        "[vars]\nvdc_host_name=old\n[other]\na=b\n",
    ] {
        let text = render_vdsm_reg_conf(existing, &new.config);
        let mut back = Loaded::default();
        apply_vdsm_reg_conf(&mut back, &text);
        let engine = |l: &Loaded| l.config.reg.engine.as_ref().map(|e| e.host.clone());
        assert_eq!(engine(&back), engine(&new), "{text}");
        assert_eq!(back.config.engine_port(), 8443, "{text}");
        assert_eq!(back.config.reg.ca_sha1, new.config.reg.ca_sha1, "{text}");
    }
    crate::fuzzing::vdsm_reg_conf(b"[vars]\nvdc_host_name=a:8443\n[vars]\nvdc_host_port=x\n");
}

#[test]
fn default_ovirt_every_assignment_is_rewritten() {
    // Found by the fuzz target `default_ovirt`: with a variable assigned twice, the writer
    // replaced the first assignment and the reader took the last, so the command line's new
    // value was written but never read back.
    let l = from_cmdline("hostname=node2.example.com");
    let existing = "OVIRT_HOSTNAME=a.example.com\n# x\nexport OVIRT_HOSTNAME='b.example.com'\n";
    let text = render_default_ovirt(existing, &default_ovirt_vars(&l));
    assert_eq!(
        text,
        "OVIRT_HOSTNAME=\"node2.example.com\"\n# x\nOVIRT_HOSTNAME=\"node2.example.com\"\n"
    );
    assert_eq!(
        from_default_ovirt(&text).config.net.hostname,
        l.config.net.hostname
    );
    crate::fuzzing::default_ovirt(format!("hostname=node2.example.com\0{existing}").as_bytes());
}

#[test]
fn vdsm_reg_conf_none_with_a_port_is_unset() {
    // Found by the fuzz target `vdsm_reg_conf`: `None:71` named an engine `None`, which the
    // writer puts back as `vdc_host_name=None`, read as unset.
    let text = "[vars]\nvdc_host_name = None:71\nvdc_host_ip = 10.0.0.9\n";
    let mut l = Loaded::default();
    apply_vdsm_reg_conf(&mut l, text);
    assert_eq!(l.config.reg.engine.unwrap().to_string(), "10.0.0.9");
    crate::fuzzing::vdsm_reg_conf(b"[vars]\n[vars]\nvdc_host_name =None:71\n");
}
