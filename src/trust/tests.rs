use super::*;
use qemu_tests::ca::{self, CertificateAuthority};

fn test_ca() -> CertificateAuthority {
    CertificateAuthority::generate("test-engine-ca").unwrap()
}

fn key() -> SshKey {
    let line = test_ca().ssh_public_key(Some("ovirt-engine"));
    SshKey::parse(&line).unwrap()
}

#[test]
fn pem_round_trip_and_fingerprints() {
    let authority = test_ca();
    let ca = CaCert::from_pem(authority.pem().as_bytes()).unwrap();
    assert_eq!(ca.der(), authority.der());
    assert_eq!(
        ca.sha256_pin().to_string(),
        format!("sha256:{}", ca::sha256_hex(authority.der()))
    );
    assert!(ca
        .sha1()
        .to_string()
        .eq_ignore_ascii_case(&ca::sha1_colon(authority.der())));
    assert_eq!(CaCert::from_pem(ca.pem().as_bytes()).unwrap(), ca);
}

#[test]
fn bad_pem_is_rejected() {
    let good = test_ca().pem();
    let two = format!("{good}{good}");
    let not_b64 = "-----BEGIN CERTIFICATE-----\n!!!notbase64!!!\n-----END CERTIFICATE-----\n";
    let not_cert = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    let cut = &good[..good.len() / 2];
    for bad in [
        "",
        "hello",
        two.as_str(),
        not_b64,
        not_cert,
        cut,
        "-----BEGIN CERTIFICATE-----",
    ] {
        let e = CaCert::from_pem(bad.as_bytes()).unwrap_err();
        assert!(matches!(e, http::Error::Malformed(_)), "{bad:?}: {e:?}");
    }
    assert!(CaCert::from_pem(&[0xff, 0x00, 0x30]).is_err());
}

fn pins() -> (CaCert, Pins) {
    let ca = CaCert::from_pem(test_ca().pem().as_bytes()).unwrap();
    (ca, Pins::default())
}

#[test]
fn sha256_pin_any_of_several() {
    let (ca, mut p) = pins();
    let other = CaCert::from_pem(test_ca().pem().as_bytes()).unwrap();
    p.sha256 = vec![other.sha256_pin(), ca.sha256_pin()];
    assert_eq!(verify(&ca, &p), Ok(Verified::Sha256(ca.sha256_pin())));
}

#[test]
fn legacy_sha1_fingerprint_case_insensitive() {
    let (ca, mut p) = pins();
    let lower = ca.sha1().to_string().to_lowercase();
    p.sha1 = Some(lower.parse().unwrap());
    assert_eq!(verify(&ca, &p), Ok(Verified::Sha1(ca.sha1())));
}

#[test]
fn mismatch_reports_both_fingerprints_and_the_pins() {
    let (ca, mut p) = pins();
    let other = CaCert::from_pem(test_ca().pem().as_bytes()).unwrap();
    p.sha256 = vec![other.sha256_pin()];
    p.sha1 = Some(other.sha1());
    p.insecure_tofu = true;
    let e = verify(&ca, &p).unwrap_err();
    let msg = e.to_string();
    for part in [
        ca.sha256_pin().to_string(),
        ca.sha1().to_string(),
        other.sha256_pin().to_string(),
        other.sha1().to_string(),
    ] {
        assert!(msg.contains(&part), "{msg} lacks {part}");
    }
    assert_eq!(Error::Trust(e).class(), Class::Fatal);
}

#[test]
fn no_pin_refuses_and_says_which_pin_to_add() {
    let (ca, p) = pins();
    let e = verify(&ca, &p).unwrap_err();
    assert_eq!(
        e,
        TrustError::NoPin {
            sha256: ca.sha256_pin(),
            sha1: ca.sha1()
        }
    );
    assert!(e
        .to_string()
        .contains(&format!("ovirt.reg.ca_pin={}", ca.sha256_pin())));
}

#[test]
fn first_use_only_when_asked_then_the_stored_pin_holds() {
    let (ca, mut p) = pins();
    p.insecure_tofu = true;
    assert_eq!(verify(&ca, &p), Ok(Verified::FirstUse(ca.sha256_pin())));
    p.stored = Some(ca.sha256_pin());
    assert_eq!(verify(&ca, &p), Ok(Verified::Stored(ca.sha256_pin())));
    let other = CaCert::from_pem(test_ca().pem().as_bytes()).unwrap();
    assert!(matches!(
        verify(&other, &p),
        Err(TrustError::Mismatch { .. })
    ));
}

#[test]
fn explicit_pin_wins_over_the_stored_one() {
    let (ca, mut p) = pins();
    let other = CaCert::from_pem(test_ca().pem().as_bytes()).unwrap();
    p.stored = Some(other.sha256_pin());
    p.sha256 = vec![ca.sha256_pin()];
    assert_eq!(verify(&ca, &p), Ok(Verified::Sha256(ca.sha256_pin())));
}

#[test]
fn ssh_key_line_validation() {
    let line = test_ca().ssh_public_key(Some("ovirt-engine"));
    let k = SshKey::parse(&line).unwrap();
    assert_eq!(format!("{}\n", k.line()), line);
    // Another comment is replaced by our marker.
    let (t, rest) = line.split_once(' ').unwrap();
    let blob = rest.split_whitespace().next().unwrap();
    let other = SshKey::parse(&format!("{t} {blob} engine@somewhere\r\n")).unwrap();
    assert_eq!(other.line(), k.line());
    let two_lines = format!("{line}{line}");
    let options = format!("command=\"/bin/sh\" {line}");
    let wrong_type = format!("ssh-rsa {blob} ovirt-engine");
    for bad in [
        "",
        "\n",
        two_lines.as_str(),
        options.as_str(),
        wrong_type.as_str(),
        "ssh-rsa !!!! ovirt-engine",
        "ssh-rsa AAAA ovirt-engine",
        "ssh-dss AAAAB3NzaC1kc3M= ovirt-engine",
        "<html>500</html>",
    ] {
        assert!(SshKey::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn authorized_keys_replaces_only_engine_lines() {
    let k = key();
    let existing = "ssh-ed25519 AAAAC3Nza admin@laptop\n\
                    ssh-rsa AAAAold ovirt-engine\n\
                    # a comment\n\
                    ssh-rsa AAAAother ovirt-engine-backup\n\
                    ssh-rsa AAAAolder ovirt-engine  \n";
    let out = update_authorized_keys(existing, &k);
    assert_eq!(
        out,
        format!(
            "ssh-ed25519 AAAAC3Nza admin@laptop\n# a comment\n\
             ssh-rsa AAAAother ovirt-engine-backup\n{}\n",
            k.line()
        )
    );
    assert_eq!(update_authorized_keys(&out, &k), out, "idempotent");
    assert_eq!(update_authorized_keys("", &k), format!("{}\n", k.line()));
    // A last line without a newline is kept whole.
    assert_eq!(
        update_authorized_keys("ssh-rsa AAAAx me", &k),
        format!("ssh-rsa AAAAx me\n{}\n", k.line())
    );
}

#[test]
fn fetch_error_class_and_message() {
    let e = Error::Fetch {
        what: "engine CA",
        endpoint: "engine:443".into(),
        tried: vec![
            (
                CA_SOURCES[0],
                http::Error::Status {
                    code: 404,
                    retry_after: None,
                },
            ),
            (CA_SOURCES[2], http::Error::Malformed("junk".into())),
        ],
    };
    assert!(matches!(e.class(), Class::Transient { .. }));
    let msg = e.to_string();
    assert!(msg.contains("command=get-pki-trust: HTTP 404"), "{msg}");
    assert!(msg.contains("/ca.crt: malformed answer: junk"), "{msg}");
    let all_404 = Error::Fetch {
        what: "engine CA",
        endpoint: "engine:443".into(),
        tried: vec![(
            CA_SOURCES[0],
            http::Error::Status {
                code: 404,
                retry_after: None,
            },
        )],
    };
    assert_eq!(all_404.class(), Class::Fatal);
}
