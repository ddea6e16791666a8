use super::*;

fn transient(e: &Error) -> bool {
    matches!(e.class(), Class::Transient { .. })
}

#[test]
fn retry_after_seconds_form_only() {
    assert_eq!(parse_retry_after("5"), Some(Duration::from_secs(5)));
    assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    assert_eq!(parse_retry_after("-1"), None);
    assert_eq!(parse_retry_after(""), None);
    assert_eq!(parse_retry_after("99999999999999999999"), None);
}

#[test]
fn status_classes() {
    let status = |code| Error::Status {
        code,
        retry_after: None,
    };
    for code in [400, 401, 403, 404, 405, 410] {
        assert_eq!(status(code).class(), Class::Fatal, "{code}");
    }
    for code in [408, 429, 500, 502, 503, 504] {
        assert!(transient(&status(code)), "{code}");
    }
    let e = Error::Status {
        code: 503,
        retry_after: Some(Duration::from_secs(3)),
    };
    assert_eq!(
        e.class(),
        Class::Transient {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    assert_eq!(e.to_string(), "HTTP 503 (Retry-After 3s)");
}

#[test]
fn trust_failures_and_redirects_are_fatal() {
    assert_eq!(Error::Certificate("x".into()).class(), Class::Fatal);
    let r = Error::Redirect {
        code: 302,
        location: Some("http://evil/".into()),
    };
    assert_eq!(r.class(), Class::Fatal);
    assert!(r.to_string().contains("http://evil/"));
}

#[test]
fn network_trouble_is_transient() {
    assert!(transient(&Error::Connect("refused".into())));
    assert!(transient(&Error::Timeout("read".into())));
    assert!(transient(&Error::Tls("eof".into())));
}

#[test]
fn answers_of_the_wrong_form_are_permanent() {
    assert_eq!(Error::TooLarge { limit: 1 }.class(), Class::Fatal);
    assert_eq!(Error::Malformed("a chain".into()).class(), Class::Fatal);
    assert!(transient(&Error::Protocol("cut short".into())));
}

#[test]
fn io_errors_are_mapped() {
    let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
    assert!(matches!(classify_io(refused), Error::Connect(_)));
    let timeout = io::Error::new(io::ErrorKind::TimedOut, "slow");
    assert!(matches!(classify_io(timeout), Error::Timeout(_)));
    let bad_cert = io::Error::new(
        io::ErrorKind::InvalidData,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
    );
    assert!(matches!(classify_io(bad_cert), Error::Certificate(_)));
    let other_tls = io::Error::new(
        io::ErrorKind::InvalidData,
        rustls::Error::HandshakeNotComplete,
    );
    assert!(matches!(classify_io(other_tls), Error::Tls(_)));
    // A kept-alive connection the engine closes under a request: retried like any
    // connection failure (ureq itself does not send the request again).
    for kind in [
        io::ErrorKind::ConnectionReset,
        io::ErrorKind::BrokenPipe,
        io::ErrorKind::UnexpectedEof,
    ] {
        let broken = classify_io(io::Error::new(kind, "closed"));
        assert!(matches!(broken, Error::Connect(_)), "{kind:?}");
        assert!(transient(&broken), "{kind:?}");
    }
    let old_tls = classify_rustls(&rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls12NotOffered,
    ));
    assert_eq!(old_tls.class(), Class::Fatal);
}

#[test]
fn endpoint_urls() {
    let ep = |s: &str| Endpoint::new(&s.parse().unwrap(), 443);
    assert_eq!(
        ep("engine.example.com").base_url(),
        "https://engine.example.com:443"
    );
    assert_eq!(ep("10.0.0.1:8443").base_url(), "https://10.0.0.1:8443");
    assert_eq!(ep("[fd00::1]:8443").base_url(), "https://[fd00::1]:8443");
}

#[test]
fn endpoint_from_config() {
    let mut cfg = Config::default();
    assert!(Endpoint::from_config(&cfg).is_none());
    cfg.reg.engine = Some("engine.example.com".parse().unwrap());
    cfg.reg.management_port = Some(8443);
    assert_eq!(
        Endpoint::from_config(&cfg).unwrap().to_string(),
        "engine.example.com:8443"
    );
}

#[test]
fn refused_connection_is_a_connect_error() {
    // Bind then drop a listener: the port is (almost certainly) closed right after.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = Endpoint {
        host: "127.0.0.1".parse().unwrap(),
        port,
    };
    let c = Client::for_ca_fetch(ep, Timeouts::default());
    let e = c
        .get("/ca.crt", Duration::from_secs(5), MAX_BODY)
        .unwrap_err();
    assert!(matches!(e, Error::Connect(_)), "{e:?}");
}

#[test]
fn response_text_rejects_binary() {
    let r = Response {
        status: 200,
        content_type: None,
        date: None,
        body: vec![0xff, 0xfe],
    };
    assert!(matches!(r.text(), Err(Error::Malformed(_))));
}
