use super::*;
use std::collections::VecDeque;

/// Answers given in order (`None`: Ctrl-D), everything said kept.
struct Script {
    answers: VecDeque<Option<&'static str>>,
    said: String,
    hidden_reads: usize,
}

impl Script {
    fn new(answers: &[Option<&'static str>]) -> Script {
        Script {
            answers: answers.iter().copied().collect(),
            said: String::new(),
            hidden_reads: 0,
        }
    }
}

impl Term for Script {
    fn line(&mut self, hidden: bool) -> Result<String, Stop> {
        self.hidden_reads += usize::from(hidden);
        match self.answers.pop_front() {
            Some(Some(a)) => Ok(a.to_string()),
            Some(None) | None => Err(Stop::Eof),
        }
    }
    fn say(&mut self, text: &str) {
        self.said += text;
    }
}

fn test_ca() -> CaCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    CaCert::from_der(cert.der().to_vec()).unwrap()
}

fn loaded(cmdline: &str) -> Loaded {
    let mut l = Loaded::default();
    crate::cmdline::apply(&mut l, cmdline);
    l
}

#[test]
fn a_whole_session_and_its_settings() {
    let ca = test_ca();
    let mut fetched = Vec::new();
    let mut fetch = |e: &EngineAddr| {
        fetched.push(e.to_string());
        Ok(ca.clone())
    };
    let mut t = Script::new(&[
        Some("engine.example.com"),
        Some("70000"), // re-asked with the reason
        Some("8443"),
        Some("maybe"), // only yes or no
        Some("yes"),
        Some("y"),
        Some("secret one"),
        Some("secret two"), // differ: asked again
        Some("secret one"),
        Some("secret one"),
        Some(""), // ssh_pwauth: defaults to yes with a password
        Some("y"),
        Some("eth1"),
        Some("100"),
        Some("192.0.2.10/24"),
        Some("192.0.2.1"),
        Some("y"),
    ]);
    let base = loaded("ro");
    let a = converse(&mut t, &base, &mut fetch).unwrap();
    assert_eq!(fetched, ["engine.example.com:8443"]);
    assert!(
        t.said.contains(
            "\"70000\" is not accepted: expected a port number from 1 to 65535; try again"
        ),
        "{}",
        t.said
    );
    assert!(t.said.contains(&ca.sha256_pin().to_string()));
    assert!(t.said.contains(&ca.sha1().to_string()));
    assert!(t.said.contains("the two passwords differ"));
    assert_eq!(t.hidden_reads, 4, "passwords are read without echo");
    assert!(
        !t.said.contains("secret one"),
        "the password is never shown"
    );
    let hash = a.root_hash.clone().unwrap();
    assert!(crypt::verify(b"secret one", hash.expose()));
    assert!(!t.said.contains(hash.expose()), "nor its hash");
    assert_eq!(a.ssh_pwauth, Some(true));
    let applied = a.applied(&base);
    let c = &applied.config;
    assert_eq!(
        c.reg.engine.as_ref().unwrap().to_string(),
        "engine.example.com:8443"
    );
    assert_eq!(c.reg.ca_pins, vec![ca.sha256_pin()]);
    assert_eq!(c.net.nic.as_ref().unwrap().0, "eth1");
    assert_eq!(c.net.vlan.as_ref().unwrap().id, 100);
    let ip = c.net.ip.as_ref().unwrap();
    assert_eq!(
        (ip.address, ip.gateway, ip.netmask.map(|m| m.prefix)),
        (parse_ip("192.0.2.10"), parse_ip("192.0.2.1"), Some(24))
    );
    assert_eq!(applied.source_of("ovirt.reg.ca_pin"), Source::Setup);
    assert!(applied.errors.is_empty(), "{:?}", applied.errors);
    // What /etc/default/ovirt gets: the answers, never the hash.
    let vars = crate::legacy::default_ovirt_vars(&applied);
    let text = crate::legacy::render_default_ovirt("", &vars);
    assert!(
        text.contains("OVIRT_MANAGEMENT_SERVER=\"engine.example.com:8443\""),
        "{text}"
    );
    assert!(
        text.contains(&format!("OVIRT_REG_CA_PIN=\"{}\"", ca.sha256_pin())),
        "{text}"
    );
    assert!(
        text.contains("OVIRT_SSH_PWAUTH=\"1\"") && text.contains("OVIRT_IP_ADDRESS=\"192.0.2.10\""),
        "{text}"
    );
    assert!(!text.contains("$6$"), "{text}");
}

#[test]
fn no_pins_nothing_and_eof_stops() {
    let ca = test_ca();
    let mut fetch = |_: &EngineAddr| Ok(ca.clone());
    let base = loaded("management_server=e.example.com:8443");
    let mut t = Script::new(&[Some(""), Some(""), Some("no")]);
    assert_eq!(
        converse(&mut t, &base, &mut fetch),
        Err(Stop::Declined("the engine CA was not confirmed"))
    );
    assert!(
        t.said
            .contains("Engine address (host name or IP address) [e.example.com]"),
        "{}",
        t.said
    );
    assert!(t.said.contains("Engine port [8443]"), "{}", t.said);
    let mut t = Script::new(&[Some("e"), None]);
    assert_eq!(converse(&mut t, &base, &mut fetch), Err(Stop::Eof));
}

#[test]
fn bad_answers_are_bounded_and_fetch_errors_re_ask() {
    let ca = test_ca();
    let mut tries = 0;
    let mut fetch = |_: &EngineAddr| {
        tries += 1;
        if tries == 1 {
            anyhow::bail!("connection refused")
        }
        Ok(ca.clone())
    };
    let mut t = Script::new(&[
        Some("a.example"),
        Some("1"),
        Some("b.example"),
        Some(""),
        Some("no"),
    ]);
    assert!(matches!(
        converse(&mut t, &loaded(""), &mut fetch),
        Err(Stop::Declined(_))
    ));
    assert!(
        t.said
            .contains("cannot get the engine CA: connection refused"),
        "{}",
        t.said
    );
    assert!(
        t.said.contains("Engine port [1]"),
        "the last answer is the next default"
    );

    let mut t = Script::new(&[Some("bad host!"); 6]);
    assert_eq!(
        converse(&mut t, &loaded(""), &mut |_: &EngineAddr| Ok(test_ca())),
        Err(Stop::TooManyTries(
            "Engine address (host name or IP address)".into()
        ))
    );
    assert_eq!(t.said.matches("is not accepted").count(), MAX_TRIES);
}

#[test]
fn flags_need_a_matching_pin() {
    let ca = test_ca();
    let other = test_ca();
    let base = loaded("");
    let opts = |pin: Option<String>| Options {
        engine: Some("127.0.0.1:8443".into()),
        ca_pin: pin,
        ..Options::default()
    };
    let mut fetch = |_: &EngineAddr| Ok(ca.clone());
    let a = from_flags(&opts(Some(ca.sha256_pin().to_string())), &base, &mut fetch).unwrap();
    assert_eq!(a.pin, ca.sha256_pin());
    let e = from_flags(
        &opts(Some(other.sha256_pin().to_string())),
        &base,
        &mut fetch,
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    // --yes or not: no pin at all is refused, naming what to compare.
    let e = from_flags(
        &Options {
            yes: true,
            ..opts(None)
        },
        &base,
        &mut fetch,
    )
    .unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains(&ca.sha256_pin().to_string()) && e.contains("--ca-pin"),
        "{e}"
    );
    // A pin already configured vouches for it.
    let pinned = loaded(&format!("ovirt.reg.ca_pin={}", ca.sha256_pin()));
    assert!(from_flags(&opts(None), &pinned, &mut fetch).is_ok());
}

#[test]
fn flags_are_checked_before_anything_is_fetched() {
    let base = loaded("");
    let mut fetch = |_: &EngineAddr| -> Result<CaCert> { panic!("nothing fetched for bad flags") };
    let bad = [
        (
            Options {
                engine: Some("e:0".into()),
                ..Options::default()
            },
            "--engine e:0",
        ),
        (
            Options {
                engine: Some("e".into()),
                ca_pin: Some("sha1:ab".into()),
                ..Options::default()
            },
            "--ca-pin",
        ),
        (
            Options {
                engine: Some("e".into()),
                root_password_hash: Some(Secret::new("$1$s$TOPSECRET")),
                ..Options::default()
            },
            "--root-password-hash: expected",
        ),
        (
            Options {
                engine: Some("e".into()),
                vlan: Some("5000".into()),
                ..Options::default()
            },
            "--vlan 5000",
        ),
        (
            Options {
                engine: Some("e".into()),
                address: Some("10.0.0.5".into()),
                ..Options::default()
            },
            "--address 10.0.0.5",
        ),
        (
            Options {
                engine: Some("e".into()),
                gateway: Some("10.0.0.1".into()),
                ..Options::default()
            },
            "--gateway needs",
        ),
    ];
    for (opts, expected) in bad {
        let e = from_flags(&opts, &base, &mut fetch)
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{e}");
        assert!(!e.contains("TOPSECRET"), "{e}");
    }
}

#[test]
fn ip_values() {
    assert_eq!(
        ip_value("192.0.2.10/24", Some("192.0.2.1")).unwrap(),
        "192.0.2.10::192.0.2.1:24"
    );
    assert_eq!(ip_value("fd00::10/64", None).unwrap(), "[fd00::10]:::64");
    assert_eq!(ip_value("dhcp", None).unwrap(), "dhcp");
    assert!(ip_value("192.0.2.10/33", None).is_err());
    assert!(ip_value("192.0.2.10/24", Some("fd00::1")).is_err());
}

#[test]
fn an_answer_replaces_a_bad_value_and_its_error() {
    let mut base = Loaded::default();
    crate::legacy::apply_default_ovirt(
        &mut base,
        "OVIRT_MANAGEMENT_SERVER=\"bad host!\"\nOVIRT_VLAN=\"9999\"\n",
    );
    assert_eq!(base.errors.len(), 2, "{:?}", base.errors);
    let ca = test_ca();
    let a = Answers {
        engine: "e.example.com:443".parse().unwrap(),
        pin: ca.sha256_pin(),
        root_hash: None,
        ssh_pwauth: None,
        nic: None,
        vlan: None,
        ip: None,
    };
    let applied = a.applied(&base);
    let names: Vec<&str> = applied.errors.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["vlan"],
        "the engine's error is gone, the VLAN's stays"
    );
}
