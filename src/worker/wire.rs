//! What crosses the worker's pipes: length-prefixed JSON frames holding one job or one
//! reply, and the JSON forms of the typed values the jobs carry (each turned back into its
//! type by that type's own parser on the other side).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::io::{self, Read, Write};
use std::time::Duration;

use super::{
    DownloadCa, FetchCa, FetchSshKey, GetVersion, LookupSrv, MeasureClock, Measured, PollCerts,
    Register, Registered, Resolve, Resolved, Sandbox, SrvFound, SubmitCsr, Whoami,
};
use crate::engine::Enrollment;

/// A job on the pipe; the tag is the job's name (what the test hook's `DIR/<job>.json` is
/// named after).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Wire {
    Trust(FetchCa),
    DownloadCa(DownloadCa),
    SshKey(FetchSshKey),
    Register(Register),
    Clock(MeasureClock),
    Version(GetVersion),
    SubmitCsr(SubmitCsr),
    PollCerts(PollCerts),
    Resolve(Resolve),
    LookupSrv(LookupSrv),
    Whoami(Whoami),
    #[cfg(feature = "test-hooks")]
    TryCreate(super::TryCreate),
}

/// A reply on the pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The CA the worker fetched and found matching the pins.
    Trusted {
        ca_pem: String,
    },
    /// The CA the worker downloaded, unchecked (`setup`).
    Ca {
        ca_pem: String,
    },
    SshKey {
        line: String,
    },
    Registered(Registered),
    Clock(Measured),
    Version {
        version: u32,
    },
    Enrollment {
        answer: Enrollment,
    },
    Resolved(Resolved),
    Srv(SrvFound),
    Whoami(Sandbox),
    /// Tests: what each creation attempt of `TryCreate` got, `None` for success.
    #[cfg(feature = "test-hooks")]
    Created {
        results: Vec<(String, Option<i32>)>,
    },
    Failed {
        message: String,
    },
}

impl Reply {
    /// The reply's tag, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Trusted { .. } => "trusted",
            Reply::Ca { .. } => "ca",
            Reply::SshKey { .. } => "ssh_key",
            Reply::Registered(_) => "registered",
            Reply::Clock(_) => "clock",
            Reply::Version { .. } => "version",
            Reply::Enrollment { .. } => "enrollment",
            Reply::Resolved(_) => "resolved",
            Reply::Srv(_) => "srv",
            Reply::Whoami(_) => "whoami",
            #[cfg(feature = "test-hooks")]
            Reply::Created { .. } => "created",
            Reply::Failed { .. } => "failed",
        }
    }
}

/// What the session needs of a job besides its reply: its name, its deadline, its wire form.
/// Private to the worker module (a sealed supertrait of [`super::Call`]).
pub trait Job {
    /// The job's name on the pipe and in messages.
    const NAME: &'static str;
    fn deadline(&self) -> Duration;
    fn wire(&self) -> Wire;
}

macro_rules! net_job {
    ($ty:ident, $variant:ident, $name:literal) => {
        impl Job for $ty {
            const NAME: &'static str = $name;
            fn deadline(&self) -> Duration {
                self.net.policy.deadline
            }
            fn wire(&self) -> Wire {
                Wire::$variant(self.clone())
            }
        }
    };
}

net_job!(FetchCa, Trust, "trust");
net_job!(DownloadCa, DownloadCa, "download_ca");
net_job!(FetchSshKey, SshKey, "ssh_key");
net_job!(Register, Register, "register");
net_job!(MeasureClock, Clock, "clock");
net_job!(GetVersion, Version, "version");
net_job!(SubmitCsr, SubmitCsr, "submit_csr");
net_job!(PollCerts, PollCerts, "poll_certs");
net_job!(Resolve, Resolve, "resolve");

impl Job for LookupSrv {
    const NAME: &'static str = "lookup_srv";
    fn deadline(&self) -> Duration {
        self.deadline
    }
    fn wire(&self) -> Wire {
        Wire::LookupSrv(self.clone())
    }
}

impl Job for Whoami {
    const NAME: &'static str = "whoami";
    fn deadline(&self) -> Duration {
        Duration::ZERO
    }
    fn wire(&self) -> Wire {
        Wire::Whoami(self.clone())
    }
}

#[cfg(feature = "test-hooks")]
impl Job for super::TryCreate {
    const NAME: &'static str = "try_create";
    fn deadline(&self) -> Duration {
        Duration::ZERO
    }
    fn wire(&self) -> Wire {
        Wire::TryCreate(self.clone())
    }
}

// ------------------------------------------------------------------------------ frames

/// One frame: its length (4 bytes, big-endian), then that many bytes.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// The next frame, or `None` when the pipe is closed before one starts. A frame longer than
/// `max` is an error, and nothing of it is read.
pub fn read_frame(r: &mut impl Read, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(head) as usize;
    if len > max {
        let msg = format!("a frame of {len} bytes, more than {max}");
        return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

// --------------------------------------------------------------- typed values as JSON

/// `{"host": "engine.example.com", "port": 443}`; the host is read back with its own parser.
pub mod endpoint {
    use super::*;
    use crate::http::Endpoint;
    use crate::values::Host;

    #[derive(Serialize, Deserialize)]
    struct Form {
        host: String,
        port: u16,
    }

    pub fn serialize<S: Serializer>(e: &Endpoint, s: S) -> Result<S::Ok, S::Error> {
        let host = e.host.to_string();
        Form { host, port: e.port }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        let f = Form::deserialize(d)?;
        let host = parse::<Host, D>(&f.host, "engine host")?;
        Ok(Endpoint { host, port: f.port })
    }
}

/// Milliseconds: `{"base_ms": 1000, "cap_ms": 60000, "deadline_ms": 300000, "max_attempts": N}`.
pub mod policy {
    use super::*;
    use crate::retry::Policy;

    #[derive(Serialize, Deserialize)]
    struct Form {
        base_ms: u64,
        cap_ms: u64,
        deadline_ms: u64,
        max_attempts: u32,
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    pub fn serialize<S: Serializer>(p: &Policy, s: S) -> Result<S::Ok, S::Error> {
        Form {
            base_ms: ms(p.base),
            cap_ms: ms(p.cap),
            deadline_ms: ms(p.deadline),
            max_attempts: p.max_attempts,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Policy, D::Error> {
        let f = Form::deserialize(d)?;
        Ok(Policy {
            base: Duration::from_millis(f.base_ms),
            cap: Duration::from_millis(f.cap_ms),
            deadline: Duration::from_millis(f.deadline_ms),
            max_attempts: f.max_attempts,
        })
    }
}

/// A duration as whole milliseconds.
pub mod millis {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        u64::try_from(d.as_millis())
            .unwrap_or(u64::MAX)
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// The pins as written in the settings (`sha256:…`, SHA-1 colon hex), read back with the
/// settings' parsers.
pub mod pins {
    use super::*;
    use crate::trust::Pins;
    use crate::values::{Sha1Fingerprint, Sha256Pin};

    #[derive(Serialize, Deserialize)]
    struct Form {
        sha256: Vec<String>,
        sha1: Option<String>,
        stored: Option<String>,
        insecure_tofu: bool,
    }

    pub fn serialize<S: Serializer>(p: &Pins, s: S) -> Result<S::Ok, S::Error> {
        Form {
            sha256: p.sha256.iter().map(ToString::to_string).collect(),
            sha1: p.sha1.as_ref().map(ToString::to_string),
            stored: p.stored.as_ref().map(ToString::to_string),
            insecure_tofu: p.insecure_tofu,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pins, D::Error> {
        let f = Form::deserialize(d)?;
        Ok(Pins {
            sha256: f
                .sha256
                .iter()
                .map(|p| parse::<Sha256Pin, D>(p, "CA pin"))
                .collect::<Result<_, _>>()?,
            sha1: f
                .sha1
                .as_deref()
                .map(|p| parse::<Sha1Fingerprint, D>(p, "SHA-1 fingerprint"))
                .transpose()?,
            stored: f
                .stored
                .as_deref()
                .map(|p| parse::<Sha256Pin, D>(p, "stored CA pin"))
                .transpose()?,
            insecure_tofu: f.insecure_tofu,
        })
    }
}

/// The CA as PEM, read back with [`CaCert::from_pem`](crate::trust::CaCert::from_pem).
pub mod ca {
    use super::*;
    use crate::trust::CaCert;

    pub fn serialize<S: Serializer>(ca: &CaCert, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ca.pem())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CaCert, D::Error> {
        let pem = String::deserialize(d)?;
        CaCert::from_pem(pem.as_bytes())
            .map_err(|e| D::Error::custom(format!("the pinned engine CA: {e}")))
    }
}

/// Host names or addresses as written in the settings.
pub mod hosts {
    use super::*;
    use crate::values::Host;

    pub fn serialize<S: Serializer>(hosts: &[Host], s: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        text.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Host>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|h| parse::<Host, D>(h, "NTP server"))
            .collect()
    }
}

/// The token crosses the pipe in clear (the worker must send it); everywhere else a
/// [`Secret`](crate::secret::Secret) prints `<redacted>`.
pub mod secret {
    use super::*;
    use crate::secret::Secret;

    pub fn serialize<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(Secret::expose).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(Secret::new))
    }
}

/// `text` read with `T`'s own parser; the error names `what` and the expected form.
fn parse<'de, T, D>(text: &str, what: &str) -> Result<T, D::Error>
where
    T: std::str::FromStr<Err = &'static str>,
    D: Deserializer<'de>,
{
    text.parse()
        .map_err(|e| D::Error::custom(format!("{what} {text:?}: expected {e}")))
}

#[cfg(test)]
mod tests {
    use super::super::{HostInfo, Net};
    use super::*;
    use crate::retry::Policy;
    use crate::secret::Secret;
    use crate::trust::{CaCert, Pins};

    fn ca() -> CaCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        CaCert::from_der(cert.der().to_vec()).unwrap()
    }

    fn net() -> Net {
        Net {
            endpoint: crate::http::Endpoint {
                host: "[fd00::1]".parse().unwrap(),
                port: 8443,
            },
            policy: Policy {
                base: Duration::from_millis(1500),
                cap: Duration::from_secs(60),
                deadline: Duration::from_secs(300),
                max_attempts: 7,
            },
        }
    }

    /// Every job comes back as itself, under the name the session and the test hook use.
    #[test]
    fn jobs_cross_the_pipe_as_themselves() {
        let ca = ca();
        let pins = Pins {
            sha256: vec![ca.sha256_pin()],
            sha1: Some(ca.sha1()),
            stored: Some(ca.sha256_pin()),
            insecure_tofu: true,
        };
        let host = HostInfo {
            name: Some("node1".into()),
            address: None,
            unique_id: "id".into(),
            ssh_user: "root".into(),
            ssh_port: 22,
            ssh_key_fingerprint: None,
            vds_port: 54321,
        };
        let jobs: Vec<(Wire, &str)> = vec![
            (FetchCa { net: net(), pins }.wire(), FetchCa::NAME),
            (
                FetchSshKey {
                    net: net(),
                    ca: ca.clone(),
                }
                .wire(),
                FetchSshKey::NAME,
            ),
            (
                Register {
                    net: net(),
                    ca: ca.clone(),
                    host,
                }
                .wire(),
                Register::NAME,
            ),
            (
                MeasureClock {
                    net: net(),
                    ntp: vec!["10.0.0.1".parse().unwrap(), "ntp.example".parse().unwrap()],
                }
                .wire(),
                MeasureClock::NAME,
            ),
            (
                GetVersion {
                    net: net(),
                    ca: ca.clone(),
                }
                .wire(),
                GetVersion::NAME,
            ),
            (
                PollCerts {
                    net: net(),
                    ca,
                    unique_id: "id".into(),
                }
                .wire(),
                PollCerts::NAME,
            ),
            (
                LookupSrv {
                    names: vec!["_ovirt-engine._tcp.example.test".into()],
                    servers: vec!["10.0.2.100:53".parse().unwrap()],
                    tcp_only: true,
                    deadline: Duration::from_millis(1500),
                }
                .wire(),
                LookupSrv::NAME,
            ),
            (Whoami {}.wire(), Whoami::NAME),
        ];
        for (job, name) in jobs {
            let text = serde_json::to_string(&job).unwrap();
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["job"], name, "{text}");
            assert_eq!(serde_json::from_str::<Wire>(&text).unwrap(), job, "{text}");
        }
    }

    #[test]
    fn the_token_crosses_the_pipe_but_is_never_printed() {
        let job = SubmitCsr {
            net: net(),
            ca: ca(),
            unique_id: "id".into(),
            vdsm_csr: String::new(),
            qemu_csr: String::new(),
            token: Some(Secret::new("s3cr3t-token-value")),
        };
        assert!(!format!("{job:?}").contains("s3cr3t"));
        let wire = serde_json::to_string(&job.wire()).unwrap();
        assert!(wire.contains("s3cr3t-token-value"));
        assert_eq!(serde_json::from_str::<Wire>(&wire).unwrap(), job.wire());
    }

    #[test]
    fn a_value_that_does_not_parse_is_an_invalid_job() {
        let mut value = serde_json::to_value(
            FetchCa {
                net: net(),
                pins: Pins::default(),
            }
            .wire(),
        )
        .unwrap();
        value["pins"]["sha256"] = serde_json::json!(["sha256:zz"]);
        let e = serde_json::from_value::<Wire>(value.clone()).unwrap_err();
        assert!(
            e.to_string()
                .contains("CA pin \"sha256:zz\": expected sha256:"),
            "{e}"
        );
        value["pins"]["sha256"] = serde_json::json!([]);
        value["net"]["endpoint"]["host"] = serde_json::json!("bad host!");
        let e = serde_json::from_value::<Wire>(value).unwrap_err();
        assert!(e.to_string().contains("engine host \"bad host!\""), "{e}");
    }

    #[test]
    fn frames_are_bounded_and_end_cleanly() {
        let mut pipe = Vec::new();
        write_frame(&mut pipe, b"{}").unwrap();
        write_frame(&mut pipe, &[b'x'; 100]).unwrap();
        let mut r = &pipe[..];
        assert_eq!(read_frame(&mut r, 100).unwrap().unwrap(), b"{}");
        assert_eq!(read_frame(&mut r, 100).unwrap().unwrap().len(), 100);
        assert_eq!(
            read_frame(&mut r, 100).unwrap(),
            None,
            "closed between frames"
        );
        let mut big = &pipe[6..];
        let e = read_frame(&mut big, 99).unwrap_err();
        assert!(
            e.to_string().contains("a frame of 100 bytes, more than 99"),
            "{e}"
        );
        let mut cut = &pipe[..2];
        assert!(read_frame(&mut cut, 100).is_err(), "closed inside a length");
        let mut cut = &pipe[..5];
        assert!(read_frame(&mut cut, 100).is_err(), "closed inside a frame");
    }
}
