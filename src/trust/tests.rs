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
    // Junk is permanent like a 404: nothing a retry could change.
    assert_eq!(e.class(), Class::Fatal);
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

/// Set in the child that runs a mount test inside its own mount namespace.
#[cfg(feature = "privileged")]
const IN_NS: &str = "OVIRT_NODE_REG_TRUST_TEST_IN_NS";

/// Persisting bind-mounts, so the test re-executes itself in a private mount namespace
/// (`unshare`, as root) and nothing leaks into the machine: the privileged tier.
#[cfg(feature = "privileged")]
fn in_mount_ns(name: &str, body: impl FnOnce()) {
    if std::env::var_os(IN_NS).is_some() {
        return body();
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "{name} mounts: it needs root (the privileged tier, `cargo test --features privileged`)"
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_NS, "1")
        .output()
        .expect("running `unshare` (util-linux), needed as root for the mount tests");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn store_fixture() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let root = paths::Root::new(tmp.path());
    std::fs::create_dir(root.join(paths::CONFIG_MOUNT)).unwrap();
    let store = Store::open(&root, Some(paths::CONFIG_MOUNT)).unwrap();
    (tmp, store)
}

#[cfg(feature = "privileged")]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[cfg(feature = "privileged")]
#[test]
fn install_ssh_key_keeps_other_keys_and_persists() {
    in_mount_ns(
        "trust::tests::install_ssh_key_keeps_other_keys_and_persists",
        || {
            use std::os::unix::fs::PermissionsExt;
            let (_tmp, store) = store_fixture();
            let dir = store.root().join(paths::ROOT_SSH_DIR);
            let file = store.root().join(paths::ROOT_AUTHORIZED_KEYS);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(
                &file,
                "ssh-ed25519 AAAAme admin\nssh-rsa AAAAold ovirt-engine\n",
            )
            .unwrap();
            let k = key();
            install_ssh_key(&store, &k).unwrap();
            let want = format!("ssh-ed25519 AAAAme admin\n{}\n", k.line());
            assert_eq!(std::fs::read_to_string(&file).unwrap(), want);
            assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
            let stored = store.dir().join("root/.ssh/authorized_keys");
            assert_eq!(std::fs::read_to_string(stored).unwrap(), want);
            assert_eq!(install_ssh_key(&store, &k).unwrap(), Persisted::Unchanged);
        },
    );
}

#[cfg(feature = "privileged")]
#[test]
fn install_ssh_key_creates_the_directory() {
    in_mount_ns(
        "trust::tests::install_ssh_key_creates_the_directory",
        || {
            let (_tmp, store) = store_fixture();
            let k = key();
            install_ssh_key(&store, &k).unwrap();
            let file = store.root().join(paths::ROOT_AUTHORIZED_KEYS);
            assert_eq!(
                std::fs::read_to_string(&file).unwrap(),
                format!("{}\n", k.line())
            );
            assert_eq!(mode(&store.root().join(paths::ROOT_SSH_DIR)), 0o700);
        },
    );
}

#[test]
fn first_use_pin_round_trips_through_the_store() {
    let (_tmp, store) = store_fixture();
    assert_eq!(stored_pin(&store).unwrap(), None);
    let (ca, _) = pins();
    store_pin(&store, &ca.sha256_pin()).unwrap();
    assert_eq!(stored_pin(&store).unwrap(), Some(ca.sha256_pin()));
    store
        .write_state(paths::STORE_CA_PIN, b"garbage", 0o600)
        .unwrap();
    assert!(
        stored_pin(&store).is_err(),
        "a damaged pin never means no pin"
    );
}

#[test]
fn first_use_is_off_by_default() {
    let (ca, _) = pins();
    let p = Pins::from_config(&crate::config::Config::default().reg, None);
    assert!(matches!(verify(&ca, &p), Err(TrustError::NoPin { .. })));
}

/// An SSH wire-format blob from its fields (each a `string`).
fn blob(fields: &[&[u8]]) -> String {
    let mut raw = Vec::new();
    for f in fields {
        raw.extend_from_slice(&(f.len() as u32).to_be_bytes());
        raw.extend_from_slice(f);
    }
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[test]
fn ssh_key_blob_must_be_a_whole_key_of_its_type() {
    // The bare type name, as a hostile engine or a truncated answer would send it.
    let bare = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 ovirt-engine";
    let e = SshKey::parse(bare).unwrap_err().to_string();
    assert!(e.contains("not a valid ssh-ed25519 public key"), "{e}");
    let ed = |key: &[u8], extra: &[&[u8]]| {
        let mut fields: Vec<&[u8]> = vec![b"ssh-ed25519", key];
        fields.extend_from_slice(extra);
        format!("ssh-ed25519 {} ovirt-engine", blob(&fields))
    };
    assert!(SshKey::parse(&ed(&[7; 32], &[])).is_ok());
    for bad in [ed(&[7; 31], &[]), ed(&[7; 33], &[]), ed(&[7; 32], &[b"x"])] {
        assert!(SshKey::parse(&bad).is_err(), "{bad}");
    }
    let mut n = vec![0u8];
    n.extend([0xc5; 256]); // a 2048-bit modulus
    let rsa = |e: &[u8], n: &[u8]| format!("ssh-rsa {} x", blob(&[b"ssh-rsa", e, n]));
    assert!(SshKey::parse(&rsa(&[1, 0, 1], &n)).is_ok());
    assert!(
        SshKey::parse(&rsa(&[1, 0, 1], &n[..64])).is_err(),
        "512 bits"
    );
    assert!(SshKey::parse(&rsa(&[], &n)).is_err(), "no exponent");
    assert!(
        SshKey::parse(&rsa(&[1, 0, 1], &[0x80; 256])).is_err(),
        "negative"
    );
    let mut point = vec![4u8];
    point.extend([9; 64]);
    let ec = |curve: &[u8], q: &[u8]| {
        let b = blob(&[b"ecdsa-sha2-nistp256", curve, q]);
        format!("ecdsa-sha2-nistp256 {b}")
    };
    assert!(SshKey::parse(&ec(b"nistp256", &point)).is_ok());
    assert!(SshKey::parse(&ec(b"nistp384", &point)).is_err());
    assert!(SshKey::parse(&ec(b"nistp256", &point[..33])).is_err());
    // A length that runs past the end never panics.
    let huge = format!(
        "ssh-ed25519 {}",
        base64::engine::general_purpose::STANDARD.encode([0xff; 12])
    );
    assert!(SshKey::parse(&huge).is_err());
}

#[test]
fn a_chain_is_refused_by_name() {
    let a = test_ca().pem();
    let e = CaCert::from_pem(format!("{a}{a}").as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("a chain of 2 PEM certificates"), "{e}");
    // Text around the block is not kept: what is written is re-encoded from the DER.
    let wrapped = format!("junk before\n{a}junk after\n");
    let ca = CaCert::from_pem(wrapped.as_bytes()).unwrap();
    assert_eq!(ca.pem(), a);
}
