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
