//! Entry points for the fuzz targets in `fuzz/` (not an API: hidden from the docs).
//!
//! One function per parser of untrusted input: it takes any bytes, runs the real parser (which
//! stays private to the crate) and checks what is cheap to check about the result. A panic
//! here, in a parser or in a check, is what the fuzzer reports. Everything these parsers read
//! comes from the network, a boot loader or a disk that survives reboots and crashes.

use std::net::Ipv4Addr;

use crate::clock::{self, Decision, Limits, Time};
use crate::config::{Loaded, Setting, Source, SETTINGS};
use crate::net::{dhcp, dns, netlink, srv};
use crate::{engine, flow, http, legacy, login, pki, store, trust};

/// Kernel command lines (PXE menus, boot loaders): the settings that parsed print back
/// (`to_kargs`) to a command line that parses to the same configuration.
pub fn cmdline(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut first = Loaded::default();
    crate::cmdline::apply(&mut first, &text);
    let mut again = Loaded::default();
    crate::cmdline::apply(&mut again, &first.to_kargs().join(" "));
    assert_eq!(
        first.config.without_secrets(),
        again.config.without_secrets(),
        "round trip of {text:?}"
    );
}

/// A DHCP server's reply: a lease we accept has a usable address, a prefix of at most 32
/// and names that are valid host names (they reach /etc and the kernel).
pub fn dhcp(data: &[u8]) {
    let Some(reply) = dhcp::parse_reply(data) else {
        return;
    };
    let _ = reply.msg_type();
    let Ok(lease) = reply.lease(Ipv4Addr::new(192, 0, 2, 1)) else {
        return;
    };
    assert!(lease.prefix <= 32, "{lease:?}");
    assert!(!lease.address.is_unspecified() && !lease.address.is_broadcast());
    for name in lease.hostname.iter().chain(&lease.domain) {
        assert!(name.parse::<crate::values::Hostname>().is_ok(), "{name:?}");
    }
}

/// An SNTP reply: decoded and checked as `clock::measure_sntp` does (the originate time
/// taken as ours), turned into an observation and a decision. The clock is never stepped
/// outside the limits. Two bytes after the 48-byte header, if any, give the round trip in ms.
pub fn sntp(data: &[u8]) {
    let Ok(reply) = clock::decode(data) else {
        return;
    };
    let ts = reply.originate;
    let back = clock::to_ntp(clock::from_ntp(ts));
    assert_eq!(back >> 32, ts >> 32, "NTP seconds round trip of {ts:#x}");
    // Nanoseconds are coarser than 2^-32 s: at most 5 units (1.2 ns) are lost, never added.
    let frac = |x: u64| x & 0xffff_ffff;
    let lost = frac(ts).checked_sub(frac(back));
    assert!(
        lost.is_some_and(|d| d <= 5),
        "NTP fraction round trip of {ts:#x}"
    );
    if clock::validate(&reply, ts).is_err() {
        return;
    }
    let t1 = clock::from_ntp(ts);
    let rtt_ms = data
        .get(48..50)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let Some(t4) = t1.checked_add(i64::from(rtt_ms) * 1_000_000) else {
        return;
    };
    let limits = Limits::build();
    let Ok(obs) = clock::sntp_observation("192.0.2.1:123", t1, &reply, t4, &limits) else {
        return;
    };
    assert!(obs.error_ns >= 0);
    // The local clock anywhere: before the floor, at t1, or far in the future.
    for now in [Time::from_secs(0), t1, Time::from_secs(4_000_000_000)] {
        if let Decision::Step { to, .. } = clock::decide(now, Some(&obs), &limits) {
            assert!(limits.check(to).is_ok(), "stepping to {to} from {now}");
        }
    }
}

/// An HTTP `Date` header: a date that parses prints back as the same IMF-fixdate (a leap
/// second reads as the next minute's first second).
pub fn http_date(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Some(secs) = clock::parse_http_date(&text) else {
        return;
    };
    let printed = imf_fixdate(secs);
    if text.trim().get(23..25) == Some("60") {
        assert_eq!(clock::parse_http_date(&printed), Some(secs), "{text:?}");
    } else {
        assert_eq!(printed, text.trim(), "{secs}");
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn imf_fixdate(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86_400);
    let s = secs.rem_euclid(86_400);
    let (y, m, d) = clock::civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[m as usize - 1],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `Retry-After`: only the delay-seconds form, at most ten digits, read exactly.
pub fn retry_after(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let got = http::parse_retry_after(&text);
    let v = text.trim();
    let plain = (1..=10).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit());
    assert_eq!(got.is_some(), plain, "{text:?}");
    if let Some(d) = got {
        assert_eq!(Some(d.as_secs()), v.parse().ok());
    }
}

/// The engine CA as PEM: a CA we accept prints (`pem()`) to PEM that reads back as the same
/// certificate, and its DER is read the same way by our DER parser and by webpki.
pub fn pem(data: &[u8]) {
    if let Ok(der) = trust::pem_certificate(&String::from_utf8_lossy(data)) {
        assert!(der.len() <= data.len(), "more DER than PEM");
        der_agrees_with_webpki(&der);
    }
    let Ok(ca) = trust::CaCert::from_pem(data) else {
        return;
    };
    let again = trust::CaCert::from_pem(ca.pem().as_bytes()).expect("our own PEM parses");
    assert_eq!(again, ca);
}

/// A certificate as DER (the issued vdsm certificate, the installed one): the fields we read
/// lie inside the input, the public key is one whole TLV, the times are calendar dates, and
/// webpki finds the same public key.
pub fn der(data: &[u8]) {
    if let Ok(f) = pki::der::cert_fields(data) {
        let range = data.as_ptr_range();
        assert!(range.contains(&f.spki.as_ptr()) && f.spki.len() <= data.len());
        assert_eq!(f.spki.first(), Some(&0x30));
        // Year 0000–9999: the only years either time form can write.
        const YEAR_0: i64 = -62_167_219_200;
        const YEAR_10000: i64 = 253_402_300_800;
        for t in [f.not_before, f.not_after] {
            assert!((YEAR_0..YEAR_10000).contains(&t), "{t}");
        }
    }
    der_agrees_with_webpki(data);
}

/// When webpki accepts `der` as a trust anchor and our parser reads it, both see the same
/// SubjectPublicKeyInfo (`verify_issued` compares ours with the host key and lets webpki
/// check the chain: the two must be talking about the same key).
fn der_agrees_with_webpki(der: &[u8]) {
    let Ok(ours) = pki::der::cert_fields(der) else {
        return;
    };
    let mut roots = rustls::RootCertStore::empty();
    if roots.add(der.to_vec().into()).is_err() {
        return;
    }
    let theirs: &[u8] = roots.roots[0].subject_public_key_info.as_ref();
    // webpki keeps the SEQUENCE's content; ours is the whole TLV.
    assert!(ours.spki.ends_with(theirs), "different public keys");
    assert!(ours.spki.len() - theirs.len() <= 6, "different public keys");
}

/// The engine's SSH key line: a key we accept prints (`line()`) to a line that reads back as
/// the same key, and `authorized_keys` gets exactly that line.
pub fn ssh_key(data: &[u8]) {
    let Ok(key) = trust::SshKey::parse(&String::from_utf8_lossy(data)) else {
        return;
    };
    let line = key.line();
    assert_eq!(trust::SshKey::parse(&line).ok(), Some(key.clone()));
    let keys = trust::update_authorized_keys("", &key);
    assert_eq!(keys, format!("{line}\n"));
}

/// A v2 answer (`submit-csr`, `poll-certificates`): the first byte picks the HTTP status,
/// the second the `Retry-After`, the rest is the body. What we accept goes through the
/// worker's JSON pipe unchanged, and any reason is one bounded printable line.
pub fn v2_answer(data: &[u8]) {
    const STATUS: [u16; 12] = [200, 202, 400, 403, 404, 405, 204, 409, 410, 299, 418, 500];
    let (Some(&s), Some(&r)) = (data.first(), data.get(1)) else {
        return;
    };
    let answer = http::Answer {
        status: STATUS[usize::from(s) % STATUS.len()],
        retry_after: (r & 1 == 1).then(|| std::time::Duration::from_secs(u64::from(r >> 1))),
        content_type: Some("application/json".into()),
        body: data[2..].to_vec(),
    };
    let Ok(e) = engine::parse_enrollment(&answer) else {
        return;
    };
    let json = serde_json::to_string(&e).expect("an enrollment serialises");
    let back: engine::Enrollment = serde_json::from_str(&json).expect("and reads back");
    assert_eq!(back, e);
    use engine::Enrollment::*;
    if let Rejected { reason }
    | TokenRefused { reason }
    | UnknownHost { reason }
    | NoEnrollment { reason }
    | Refused { reason, .. } = &e
    {
        assert!(
            reason.len() <= 512 && !reason.contains(char::is_control),
            "{reason:?}"
        );
    }
}

/// A datagram from the kernel's NETLINK_ROUTE socket: every payload is read by every parser
/// (a confused kernel or a bug must not panic the root process).
pub fn netlink(data: &[u8]) {
    let mut total = 0;
    for m in netlink::messages(data) {
        total += m.payload.len() + 16;
        let _ = (m.ty, m.seq);
        if let Some(link) = netlink::parse_link(m.payload) {
            assert!(!link.name.contains('\0'), "{link:?}");
            assert!(link.forward_delay.is_none() || link.kind.as_deref() == Some("bridge"));
        }
        let _ = netlink::parse_addr(m.payload);
        let _ = netlink::parse_addr6(m.payload);
        let _ = netlink::parse_default_route(m.payload);
        let _ = netlink::ack_result(m.payload, "fuzz");
    }
    assert!(total <= data.len(), "messages overlap");
}

/// `/etc/default/ovirt`, optionally after a kernel command line and a NUL byte. What the file
/// sets, written back into it, reads back the same; and what the command line sets, written
/// into it (as the `configured` step does on every boot), reads back as the command line's.
pub fn default_ovirt(data: &[u8]) {
    let (cmdline, file) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let text = String::from_utf8_lossy(file);
    let mut first = Loaded::default();
    legacy::apply_default_ovirt(&mut first, &text);
    // The file is written from the command line's settings: pretend each came from there.
    let mut as_cmdline = first.clone();
    as_cmdline
        .sources
        .values_mut()
        .for_each(|s| *s = Source::Cmdline);
    let again = reread_default_ovirt(&text, &as_cmdline);
    assert_eq!(
        first.config.without_secrets(),
        again.config.without_secrets(),
        "{text:?}"
    );

    let mut cmd = Loaded::default();
    crate::cmdline::apply(&mut cmd, &String::from_utf8_lossy(cmdline));
    let again = reread_default_ovirt(&text, &cmd);
    // `ip=` keeps only its address, gateway and netmask in this file.
    let kept = |s: &&Setting| !s.secret && !matches!(s.name, "ip" | "netmask" | "gateway");
    for s in SETTINGS.iter().filter(kept) {
        if cmd.source_of(s.name) == Source::Cmdline {
            let shown = |l: &Loaded| (s.show)(&l.config);
            assert_eq!(shown(&again), shown(&cmd), "{} in {text:?}", s.name);
        }
    }
}

/// `text` updated with the variables of `loaded`, read again.
fn reread_default_ovirt(text: &str, loaded: &Loaded) -> Loaded {
    let written = legacy::render_default_ovirt(text, &legacy::default_ovirt_vars(loaded));
    let mut again = Loaded::default();
    legacy::apply_default_ovirt(&mut again, &written);
    again
}

/// `vdsm-reg.conf`: the engine it names, written back into the same file (as vdsm-config
/// does), reads back as the same engine, port and fingerprint.
pub fn vdsm_reg_conf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut first = Loaded::default();
    legacy::apply_vdsm_reg_conf(&mut first, &text);
    let written = legacy::render_vdsm_reg_conf(&text, &first.config);
    let mut again = Loaded::default();
    legacy::apply_vdsm_reg_conf(&mut again, &written);
    let engine = |l: &Loaded| {
        let c = &l.config;
        let host = c.reg.engine.as_ref().map(|e| e.host.clone());
        (host, c.engine_port(), c.reg.ca_sha1.clone(), c.reg.vds_port)
    };
    assert_eq!(
        engine(&first),
        engine(&again),
        "{text:?} written as {written:?}"
    );
}

/// The store's `files` list: every path read is absolute, plain (no `.` or `..`) and not `/`,
/// and written back one per line (as `persist` writes it) reads back as itself.
pub fn files_list(data: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    use std::path::Component;
    for line in store::list_lines(data) {
        let Ok(path) = store::parse_list_line(line) else {
            continue;
        };
        assert!(path.is_absolute() && path.parent().is_some(), "{path:?}");
        assert!(path
            .components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_))));
        let bytes = path.as_os_str().as_bytes();
        let reread: Vec<_> = store::list_lines(bytes).collect();
        assert_eq!(reread.len(), 1, "{path:?} is not one line");
        assert_eq!(store::parse_list_line(reread[0]), Ok(path));
    }
}

/// `/etc/shadow` and `sshd_config` of the root or a CONFIG disk, edited for
/// `rhevm_admin_password=` and `ssh_pwauth=`: the first root entry carries the hash and a
/// second edit changes nothing; sshd's global `PasswordAuthentication` is the value asked for
/// and a second edit gives the same text.
pub fn login_files(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let hash = crate::secret::Secret::new("$6$salt$fuzz");
    if let Some(shadow) = login::render_shadow(&text, &hash, 20_000) {
        let root = shadow.lines().find(|l| l.split(':').next() == Some("root"));
        assert!(
            root.is_some_and(|l| l.split(':').nth(1) == Some("$6$salt$fuzz")),
            "{shadow:?}"
        );
        assert_eq!(
            login::render_shadow(&shadow, &hash, 20_000),
            None,
            "{text:?}"
        );
    }
    for value in ["yes", "no"] {
        let once = login::render_sshd_config(&text, value);
        let global = once
            .lines()
            .take_while(|l| {
                let first = l.split_whitespace().next().unwrap_or("");
                !first.eq_ignore_ascii_case("match")
            })
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["PasswordAuthentication", value]);
        assert!(global, "{once:?}");
        assert_eq!(login::render_sshd_config(&once, value), once, "{text:?}");
    }
}

/// What the unprivileged worker writes on its pipe (the parent trusts none of it): frames
/// longer than the bound are refused before they are read, and a frame's JSON reply, when it
/// decodes, names a kind.
pub fn worker_frames(data: &[u8]) {
    use crate::worker::wire;
    let max = 4096;
    let mut input = data;
    for _ in 0..64 {
        let Ok(Some(frame)) = wire::read_frame(&mut input, max) else {
            return;
        };
        assert!(frame.len() <= max);
        if let Ok(reply) = serde_json::from_slice::<wire::Reply>(&frame) {
            assert!(!reply.kind().is_empty());
        }
    }
}

/// `state.json`, the checkpoint: a checkpoint we accept is saved (`to_string_pretty`, as
/// `State::save` does) to JSON that reads back as the same checkpoint.
pub fn state_json(data: &[u8]) {
    let Ok(state) = serde_json::from_slice::<flow::State>(data) else {
        return;
    };
    let json = serde_json::to_string_pretty(&state).expect("a state serialises");
    let back: flow::State = serde_json::from_str(&json).expect("and reads back");
    assert_eq!(back, state);
    assert!(state.completed.iter().all(|s| !s.name().is_empty()));
}

/// A DNS server's answer to our SRV query (engine discovery). The id is taken from the
/// input so the fuzzer gets past the id check. What is accepted has at most 64 records,
/// targets of printable ASCII without spaces, and orders (RFC 2782) into a permutation of
/// itself whatever the draws.
pub fn dns(data: &[u8]) {
    const NAME: &str = "_ovirt-engine._tcp.example.test";
    let id = u16::from_be_bytes([
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
    ]);
    let Ok(dns::Answer::Records(records)) = dns::parse_answer(data, id, NAME) else {
        return;
    };
    assert!(records.len() <= 64, "{} records", records.len());
    for r in &records {
        assert!(
            !r.target.is_empty() && r.target.bytes().all(|b| b.is_ascii_graphic()),
            "{r:?}"
        );
    }
    let mut salt = data.len() as u32;
    let mut draw = |n: u32| {
        salt = salt.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        salt % n.saturating_add(1)
    };
    let mut ordered = srv::order(&records, &mut draw);
    let mut original = records.clone();
    let key = |r: &srv::Srv| (r.priority, r.weight, r.port, r.target.clone());
    ordered.sort_by_key(key);
    original.sort_by_key(key);
    assert_eq!(ordered, original, "ordering lost or made up records");
}

/// GRUB's environment block (the ESP's `grub/grubenv`, which GRUB writes too), and the ESP's
/// boot sector that bounds the search for it (a size within FAT's range, or none): a block that
/// parses renders to 1024 bytes that parse to the same variables; the search for it on the
/// partition never panics.
pub fn grubenv(data: &[u8]) {
    use crate::slots::grubenv::{find, Env, SIZE};
    // The ESP's boot sector first: it bounds how far the block is looked for.
    let mut boot = [0u8; 512];
    let n = data.len().min(512);
    boot[..n].copy_from_slice(&data[..n]);
    if let Some(bytes) = crate::slots::fat_bytes(&boot) {
        assert!(bytes > 0 && bytes <= u64::from(u32::MAX) * 4096);
    }
    let _ = find(data);
    let mut block = data.to_vec();
    block.resize(SIZE, b'#');
    let Ok(env) = Env::parse(&block[..SIZE]) else {
        return;
    };
    let out = env.render().expect("what was read fits again");
    assert_eq!(out.len(), SIZE);
    assert_eq!(Env::parse(&out).expect("renders parse"), env);
}

/// The primary volume descriptor of a node image (an ISO file or a medium given to `install`
/// or `upgrade`): a size within bounds and a version that is safe to write into grubenv.
pub fn iso_pvd(data: &[u8]) {
    let Ok(image) = crate::slots::iso::parse_pvd(data) else {
        return;
    };
    assert!(image.bytes > crate::slots::iso::PVD_OFFSET && image.bytes <= 16 << 30);
    assert!(image
        .version
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b)));
    let mut env = crate::slots::grubenv::Env::default();
    env.set("version_A", &image.version)
        .expect("a version is a valid value");
}
