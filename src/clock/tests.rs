use super::*;

const S: i64 = NANOS;

/// 2026-01-01T00:00:00Z, a floor for the pure tests.
fn floor() -> Time {
    Time::from_secs(days_from_civil(2026, 1, 1) * 86_400)
}

fn limits() -> Limits {
    Limits::from_floor(floor())
}

fn sntp(offset_ns: i64) -> Observation {
    Observation {
        source: Source::Sntp {
            server: "10.0.0.1:123".into(),
        },
        offset_ns,
        error_ns: 1_000_000,
    }
}

// ----------------------------------------------------------------------- calendar

#[test]
fn calendar_round_trips() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    for days in [-800_000, -1, 0, 59, 10_957, 20_000, 47_482, 900_000] {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
    }
}

#[test]
fn time_displays_as_rfc3339() {
    assert_eq!(Time(0).to_string(), "1970-01-01T00:00:00Z");
    assert_eq!(
        Time::from_secs(784_111_777).to_string(),
        "1994-11-06T08:49:37Z"
    );
    assert_eq!(Time(-1).to_string(), "1969-12-31T23:59:59Z");
    assert_eq!(Time(-1).subsec_nanos(), 999_999_999);
}

#[test]
fn build_time_is_sane() {
    // Built after this code was written, and read from build.rs, not a placeholder.
    const { assert!(BUILD_UNIX_TIME > 1_760_000_000) };
    let l = Limits::build();
    assert_eq!(l.floor, Time::from_secs(BUILD_UNIX_TIME));
    assert!(l.ceiling.secs() - BUILD_UNIX_TIME >= 20 * 365 * 86_400);
    assert_eq!(l.threshold, Duration::from_secs(1));
}

// -------------------------------------------------------------------------- NTP

#[test]
fn ntp_timestamps_convert_both_ways() {
    // 1970-01-01 is NTP second 2 208 988 800.
    assert_eq!(to_ntp(Time(0)), 2_208_988_800u64 << 32);
    assert_eq!(from_ntp(2_208_988_800u64 << 32), Time(0));
    // Half a second is 2^31 of fraction.
    assert_eq!(to_ntp(Time(S / 2)) & 0xFFFF_FFFF, 1 << 31);
    for t in [
        floor(),
        Time(981_173_106 * S + 123_456_789),
        Time(4_000_000_000 * S),
    ] {
        let back = from_ntp(to_ntp(t));
        assert!((back.0 - t.0).abs() <= 1, "{t} -> {back}");
    }
}

#[test]
fn ntp_fraction_loses_at_most_five_units() {
    // Found by the fuzz target `sntp`: nanoseconds are coarser than 2^-32 s, so 236 units
    // become 54 ns and come back as 231 units (1.2 ns lost, never gained).
    let ts = 0xbe4a_0800_0000_00ec;
    assert_eq!(to_ntp(from_ntp(ts)), ts - 5);
}

#[test]
fn ntp_era_1_after_2036() {
    // 2036-02-07T06:28:16Z is where NTP seconds wrap to 0 (RFC 4330 §3).
    let wrap = Time::from_secs(days_from_civil(2036, 2, 7) * 86_400 + 6 * 3600 + 28 * 60 + 16);
    assert_eq!(to_ntp(wrap), 0);
    assert_eq!(from_ntp(1 << 32), Time(wrap.0 + S));
    assert_eq!(from_ntp(0xFFFF_FFFFu64 << 32), Time(wrap.0 - S));
}

#[test]
fn request_layout() {
    let p = encode_request(0x0102_0304_0506_0708);
    assert_eq!(p.len(), 48);
    assert_eq!(p[0], 0b00_100_011, "LI 0, version 4, mode 3");
    assert!(p[1..40].iter().all(|&b| b == 0));
    assert_eq!(&p[40..], &[1, 2, 3, 4, 5, 6, 7, 8]);
}

fn reply_bytes(first: u8, stratum: u8, orig: u64, recv: u64, xmit: u64) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    b[0] = first;
    b[1] = stratum;
    b[24..32].copy_from_slice(&orig.to_be_bytes());
    b[32..40].copy_from_slice(&recv.to_be_bytes());
    b[40..48].copy_from_slice(&xmit.to_be_bytes());
    b
}

const OK_FIRST: u8 = (VERSION << 3) | MODE_SERVER;

#[test]
fn decodes_a_reply() {
    let r = decode(&reply_bytes(OK_FIRST, 2, 7, 8, 9)).unwrap();
    assert_eq!((r.leap, r.version, r.mode, r.stratum), (0, 4, 4, 2));
    assert_eq!((r.originate, r.receive, r.transmit), (7, 8, 9));
    assert_eq!(validate(&r, 7), Ok(()));
    // Trailing extension fields are ignored; a short packet is not a reply.
    assert!(decode(&[reply_bytes(OK_FIRST, 2, 7, 8, 9), vec![0; 20]].concat()).is_ok());
    assert_eq!(decode(&[0u8; 47]), Err(PacketError::Short(47)));
    assert_eq!(decode(&[]), Err(PacketError::Short(0)));
}

#[test]
fn validation_follows_rfc4330() {
    let check = |first, stratum, orig, recv, xmit| {
        validate(
            &decode(&reply_bytes(first, stratum, orig, recv, xmit)).unwrap(),
            7,
        )
    };
    assert_eq!(check(OK_FIRST, 1, 7, 8, 9), Ok(()));
    assert_eq!(check(OK_FIRST, 15, 7, 8, 9), Ok(()));
    assert_eq!(
        check((3 << 3) | 4, 3, 7, 8, 9),
        Ok(()),
        "NTPv3 servers answer"
    );
    assert_eq!(check(OK_FIRST, 2, 6, 8, 9), Err(PacketError::NotOurs));
    for (first, stratum, recv, xmit) in [
        ((VERSION << 3) | MODE_CLIENT, 2, 8, 9), // not a server
        ((5 << 3) | 4, 2, 8, 9),                 // unknown version
        ((2 << 3) | 4, 2, 8, 9),                 // too old
        (OK_FIRST, 0, 8, 9),                     // kiss-o'-death
        (OK_FIRST, 16, 8, 9),                    // unsynchronized
        (OK_FIRST | 0xC0, 2, 8, 9),              // alarm: LI 3
        (OK_FIRST, 2, 8, 0),                     // no transmit time
        (OK_FIRST, 2, 0, 9),                     // no receive time
    ] {
        assert!(
            matches!(
                check(first, stratum, 7, recv, xmit),
                Err(PacketError::Unusable(_))
            ),
            "{first:#x} {stratum} {recv} {xmit}"
        );
    }
}

#[test]
fn offset_math() {
    let t = |s: i64| Time(s * S);
    // Symmetric 1 s paths, server 100 s ahead: offset +100, delay 2 (1 s in the server).
    assert_eq!(
        offset_delay(t(0), t(101), t(102), t(3)),
        Some((100 * S, 2 * S))
    );
    // Server 25 years behind.
    let y25 = 25 * 365 * 86_400;
    let (o, d) = offset_delay(t(y25), t(1), t(1), t(y25)).unwrap();
    assert_eq!((o, d), (-(y25 - 1) * S, 0));
    // Asymmetric: the estimate is half-way, the delay is what it is.
    assert_eq!(offset_delay(t(10), t(10), t(10), t(12)), Some((-S, 2 * S)));
    // Extremes do not overflow: the answer is None, not a panic or a wrap.
    assert_eq!(
        offset_delay(
            Time(i64::MIN),
            Time(i64::MAX),
            Time(i64::MAX),
            Time(i64::MIN)
        ),
        None
    );
}

#[test]
fn server_names_and_ports() {
    assert_eq!(
        resolve("127.0.0.1").unwrap(),
        "127.0.0.1:123".parse().unwrap()
    );
    assert_eq!(
        resolve("127.0.0.1:4123").unwrap(),
        "127.0.0.1:4123".parse().unwrap()
    );
    assert_eq!(resolve("::1").unwrap(), "[::1]:123".parse().unwrap());
    assert_eq!(resolve("[::1]").unwrap(), "[::1]:123".parse().unwrap());
    assert_eq!(resolve("[::1]:5").unwrap(), "[::1]:5".parse().unwrap());
    assert!(resolve("127.0.0.1:x").is_err());
}

// ------------------------------------------------------------------------ HTTP Date

#[test]
fn parses_imf_fixdate() {
    assert_eq!(
        parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(
        parse_http_date(" Thu, 01 Jan 1970 00:00:00 GMT\r\n"),
        Some(0)
    );
    assert_eq!(
        parse_http_date("Thu, 29 Feb 2024 23:59:60 GMT"),
        Some(1_709_251_200)
    );
    assert_eq!(
        parse_http_date("Wed, 25 Nov 2026 15:40:00 GMT"),
        Some(days_from_civil(2026, 11, 25) * 86_400 + 15 * 3600 + 40 * 60)
    );
}

#[test]
fn refuses_other_dates() {
    for bad in [
        "",
        "Sunday, 06-Nov-94 08:49:37 GMT", // RFC 850
        "Sun Nov  6 08:49:37 1994",       // asctime
        "Mon, 06 Nov 1994 08:49:37 GMT",  // wrong weekday
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Thu, 29 Feb 2023 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 08-49-37 GMT",
        "Sun, +6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMTX",
        "Sun, 06 Nov 1994 08:49:3é GMT",
    ] {
        assert_eq!(parse_http_date(bad), None, "{bad:?}");
    }
}

#[test]
fn date_observation_centres_the_second() {
    let t1 = Time(1000 * S);
    let t4 = Time(1002 * S);
    let o = date_observation(5000, t1, t4, "engine:443");
    // Stamped at 5000.5 against a local midpoint of 1001.
    assert_eq!(o.offset_ns, 3999 * S + S / 2);
    assert_eq!(o.error_ns, S + S / 2);
    assert_eq!(
        o.source,
        Source::EngineDate {
            engine: "engine:443".into()
        }
    );
}

#[test]
fn date_bounds() {
    let l = limits();
    assert!(l.check(floor()).is_ok());
    assert!(l
        .check(Time(floor().0 - 1))
        .unwrap_err()
        .contains("before this binary"));
    assert!(l.check(l.ceiling).is_ok());
    assert!(l
        .check(Time(l.ceiling.0 + S))
        .unwrap_err()
        .contains("future"));
}

// ----------------------------------------------------------------------- decide

#[test]
fn small_offsets_are_kept() {
    let now = Time(floor().0 + 1000 * S);
    for off in [0, S, -S, S / 2] {
        assert_eq!(
            decide(now, Some(&sntp(off)), &limits()),
            Decision::Keep { offset_ns: off }
        );
    }
    let strict = Limits {
        threshold: Duration::from_millis(100),
        ..limits()
    };
    assert!(matches!(
        decide(now, Some(&sntp(S / 2)), &strict),
        Decision::Step { .. }
    ));
}

#[test]
fn years_off_is_stepped() {
    // An RTC at 2001-01-01 and an observation that says it is 2026-06-01.
    let now = Time::from_secs(days_from_civil(2001, 1, 1) * 86_400);
    let truth = Time::from_secs(days_from_civil(2026, 6, 1) * 86_400);
    let d = decide(now, Some(&sntp(truth.since(now))), &limits());
    assert_eq!(
        d,
        Decision::Step {
            to: truth,
            source: sntp(0).source
        }
    );
    // Backwards too, when the local clock is ahead but inside the bounds.
    let ahead = Time(truth.0 + 3600 * S);
    let d = decide(ahead, Some(&sntp(-3600 * S)), &limits());
    assert_eq!(
        d,
        Decision::Step {
            to: truth,
            source: sntp(0).source
        }
    );
    assert!(matches!(
        decide(truth, Some(&sntp(2 * S)), &limits()),
        Decision::Step { .. }
    ));
}

#[test]
fn insane_observations_are_refused() {
    let now = Time(floor().0 + 1000 * S);
    // Before the build, past the ceiling, out of range.
    for off in [-2000 * S, 21 * 366 * 86_400 * S, i64::MAX, i64::MIN] {
        assert!(
            matches!(
                decide(now, Some(&sntp(off)), &limits()),
                Decision::Refuse { .. }
            ),
            "{off}"
        );
    }
}

#[test]
fn never_below_the_floor() {
    let early = Time::from_secs(days_from_civil(2001, 1, 1) * 86_400);
    let to_floor = Decision::Step {
        to: floor(),
        source: Source::BuildFloor,
    };
    // Nothing observed: raise to the build time.
    assert_eq!(decide(early, None, &limits()), to_floor);
    // An observation below the floor is refused, and the floor still applies.
    let below = sntp(Time(floor().0 - 10 * S).since(early));
    assert_eq!(decide(early, Some(&below), &limits()), to_floor);
    // A sane clock and nothing observed: nothing to do.
    assert_eq!(
        decide(floor(), None, &limits()),
        Decision::Keep { offset_ns: 0 }
    );
}

// ------------------------------------------------------------------------ apply

/// Records what would be set; never touches the machine's clock.
struct Fake {
    now: std::cell::Cell<Time>,
    set: std::cell::RefCell<Vec<Time>>,
}

impl Clock for Fake {
    fn now(&self) -> io::Result<Time> {
        Ok(self.now.get())
    }
    fn set(&self, t: Time) -> io::Result<()> {
        self.set.borrow_mut().push(t);
        self.now.set(t);
        Ok(())
    }
}

fn fake(at: Time) -> Fake {
    Fake {
        now: at.into(),
        set: Vec::new().into(),
    }
}

#[test]
fn apply_reports_the_step() {
    let early = Time::from_secs(days_from_civil(2001, 1, 1) * 86_400);
    let clock = fake(early);
    let off = floor().since(early) + 86_400 * S;
    let Outcome::Stepped(step) = apply(&clock, Some(&sntp(off)), &limits()).unwrap() else {
        panic!("no step");
    };
    assert_eq!(step.old, early);
    assert_eq!(step.new, Time(early.0 + off));
    assert_eq!(step.step_ns, off);
    assert_eq!(*clock.set.borrow(), vec![step.new]);
    let text = step.to_string();
    assert!(
        text.contains("from 2001-01-01T00:00:00Z to 2026-01-02T00:00:00Z"),
        "{text}"
    );
    assert!(text.contains("SNTP server 10.0.0.1:123"), "{text}");
    assert!(step.step_secs() > 7.8e8);
}

#[test]
fn apply_keeps_and_refuses_without_setting() {
    let clock = fake(Time(floor().0 + 5 * S));
    assert_eq!(
        apply(&clock, Some(&sntp(S / 3)), &limits()).unwrap(),
        Outcome::Kept { offset_ns: S / 3 }
    );
    assert!(matches!(
        apply(&clock, Some(&sntp(-3600 * S)), &limits()).unwrap(),
        Outcome::Refused { .. }
    ));
    assert!(clock.set.borrow().is_empty());
}

#[test]
fn observation_survives_the_worker_json() {
    let o = sntp(-42);
    let json = serde_json::to_string(&o).unwrap();
    assert_eq!(serde_json::from_str::<Observation>(&json).unwrap(), o);
    assert!(json.contains("\"kind\":\"sntp\""), "{json}");
}
