use super::*;

#[test]
fn brackets_protect_ipv6_colons() {
    assert_eq!(
        split_outside_brackets("[fd00::1]::[fd00::2]:64", ':'),
        vec!["[fd00::1]", "", "[fd00::2]", "64"]
    );
    assert_eq!(split_outside_brackets("a", ':'), vec!["a"]);
}

#[test]
fn netmask_forms() {
    let m: Netmask = "255.255.252.0".parse().unwrap();
    assert_eq!((m.prefix, m.to_string()), (22, "255.255.252.0".to_string()));
    let m: Netmask = "24".parse().unwrap();
    assert_eq!(m.to_ipv4(), Some(Ipv4Addr::new(255, 255, 255, 0)));
    assert_eq!("64".parse::<Netmask>().unwrap().to_ipv4(), None);
    assert!("129".parse::<Netmask>().is_err());
    assert_eq!("0.0.0.0".parse::<Netmask>().unwrap().prefix, 0);
}

#[test]
fn seconds_units_and_bounds() {
    assert_eq!("90".parse::<Seconds>().unwrap(), Seconds(90));
    assert_eq!("2m".parse::<Seconds>().unwrap(), Seconds(120));
    assert_eq!(
        "1h".parse::<Seconds>().unwrap().duration(),
        Duration::from_secs(3600)
    );
    assert!("8d".parse::<Seconds>().is_err());
    assert!("169h".parse::<Seconds>().is_err(), "more than 7 days");
    assert!("".parse::<Seconds>().is_err());
}

#[test]
fn hosts() {
    assert_eq!("10.0.0.1".parse::<Host>().unwrap().bare(), "10.0.0.1");
    assert_eq!(
        "[fd00::1]".parse::<Host>().unwrap().to_string(),
        "[fd00::1]"
    );
    assert!("1.2.3".parse::<Host>().is_err());
    assert!("a..b".parse::<Host>().is_err());
    assert!(
        format!("{}.com", "a".repeat(64)).parse::<Host>().is_err(),
        "label over 63"
    );
}

#[test]
fn one_hostname_rule() {
    let l63 = "a".repeat(63);
    let long = [&l63[..], &l63, &l63, &"b".repeat(61)].join("."); // 253 characters
    assert_eq!(long.len(), 253);
    for (given, kept) in [
        ("node1", "node1"),
        ("node1.example.com", "node1.example.com"),
        ("Node-1.Example.COM", "Node-1.Example.COM"),
        ("node1.example.com.", "node1.example.com"),
        ("3com.example", "3com.example"),
        ("123", "123"),
        ("x--y", "x--y"),
        (&l63, &l63),
        (&long, &long),
        (&format!("{long}."), &long),
    ] {
        assert_eq!(
            given.parse::<Hostname>().map(|h| h.0).as_deref(),
            Ok(kept),
            "{given:?}"
        );
    }
    for refused in [
        "",
        ".",
        "..",
        "a..b",
        ".a",
        "a.b..",
        "-a",
        "a-",
        "a.-b.c",
        "a_b",
        "a b",
        "a\n",
        "é.example",
        "*.example.com",
        "(none)",
        "a:80",
        &format!("{l63}a"),
        &format!("{long}a"),
        &format!("a.{long}"),
    ] {
        assert!(refused.parse::<Hostname>().is_err(), "{refused:?}");
    }
}
