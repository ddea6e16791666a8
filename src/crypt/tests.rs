use super::*;

/// The SHA-512 vectors of the specification ("Unix crypt using SHA-256 and SHA-512").
const SPEC: [(&str, &str, &str); 7] = [
    (
        "$6$saltstring",
        "Hello world!",
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
    ),
    (
        "$6$rounds=10000$saltstringsaltstring",
        "Hello world!",
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
    ),
    (
        "$6$rounds=5000$toolongsaltstring",
        "This is just a test",
        "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0",
    ),
    (
        "$6$rounds=1400$anotherlongsaltstring",
        "a very much longer text to encrypt.  This one even stretches over morethan one line.",
        "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1",
    ),
    (
        "$6$rounds=77777$short",
        "we have a short salt string but not a short password",
        "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0",
    ),
    (
        "$6$rounds=123456$asaltof16chars..",
        "a short string",
        "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1",
    ),
    (
        "$6$rounds=10$roundstoolow",
        "the minimum number is still observed",
        "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
    ),
];

#[test]
fn the_specifications_vectors() {
    for (setting, password, expected) in SPEC {
        assert_eq!(
            sha512_crypt(password.as_bytes(), setting).unwrap(),
            expected,
            "{setting}"
        );
        // The hash is its own setting: what a login does to check a password.
        assert!(verify(password.as_bytes(), expected));
        assert!(!verify(b"wrong", expected));
    }
}

#[test]
fn a_long_password_crosses_the_64_byte_blocks() {
    // Checked with libxcrypt's crypt(3): 130 bytes take the "full blocks" branches.
    let password = "x".repeat(130);
    let hash = sha512_crypt(password.as_bytes(), "$6$rounds=1000$abc").unwrap();
    assert_eq!(
        hash,
        "$6$rounds=1000$abc$dENps5UOWRfLYBe8otmm5nXQ3Ubvt4RMTI8o91NCe7vbQ23d0eoqaHsS.jWywAxjcrVp0pF.K7obec3V5RYkt1"
    );
}

#[test]
fn new_hashes_have_a_random_salt_and_check_out() {
    let pw = Secret::new("correct horse");
    let (a, b) = (hash_password(&pw).unwrap(), hash_password(&pw).unwrap());
    assert_ne!(a.expose(), b.expose(), "a fresh salt each time");
    assert!(a.expose().starts_with(&format!("$6$rounds={ROUNDS}$")));
    assert!(check_hash(a.expose()).is_ok());
    assert!(verify(b"correct horse", a.expose()));
    assert!(!verify(b"correct horsf", a.expose()));
}

#[test]
fn hash_forms() {
    let sha512 = SPEC[0].2;
    let sha256 = "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5";
    let yescrypt = "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$U4SOHmDd8SvW5vCUKSMR6N835VPwFAtgYNhQ9mFFeL5";
    for ok in [sha512, SPEC[1].2, sha256, yescrypt] {
        assert_eq!(check_hash(ok), Ok(()), "{ok}");
    }
    let refused = [
        "$1$salt$abcdefghijklmnopqrstuv", // MD5
        "abJnggxhB/yWI",                  // DES
        "plain password",
        "$6$salt$short",
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1x",
        "$6$rounds=$salt$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        "$6$sa:t$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        "$y$j9T$salt",
        "",
    ];
    for bad in refused {
        let err = check_hash(bad).unwrap_err();
        assert!(err.contains("$6$"), "{bad}: {err}");
    }
}

#[test]
fn bad_settings_are_errors_not_panics() {
    for bad in ["", "$5$salt", "$6$rounds=x$salt", "$6$rounds=5", "$6$sa:lt"] {
        assert!(sha512_crypt(b"pw", bad).is_err(), "{bad}");
    }
}
