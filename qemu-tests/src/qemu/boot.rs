//! A finished boot ([`Boot`]): the serial console read back, the `QH-` markers the guest
//! printed, the binary's banner, and the assertions the scenarios share.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::images::Image;

/// Where the guest's `/init` puts what it learnt; the test reads these back from the log.
pub const EXIT_MARKER: &str = "QH-EXIT rc=";
pub const DONE_MARKER: &str = "QH-DONE";
/// What the binary prints before it blocks on an unseeded kernel random number generator
/// (src/entropy.rs): a guest of this harness never should (docs/qemu-harness.md §8).
pub const ENTROPY_WAIT: &str = "waiting for the kernel's random number generator";

/// A finished (or timed-out) boot.
#[derive(Debug)]
pub struct Boot {
    pub name: String,
    /// The serial console.
    pub log: String,
    pub log_path: PathBuf,
    /// When QEMU started (wall clock: the simulator's events carry `unix_ms`).
    pub started: SystemTime,
    /// QEMU start to QEMU exit (or to the kill).
    pub elapsed: Duration,
    pub timed_out: bool,
    /// QEMU's own stderr (not the guest's).
    pub qemu_stderr: String,
    pub image: Image,
}

impl Boot {
    /// Lines starting with `prefix`, the prefix cut off.
    pub fn lines<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.log
            .lines()
            .filter_map(move |l| l.trim_end_matches('\r').strip_prefix(prefix))
    }

    pub fn line<'a>(&'a self, prefix: &'a str) -> Option<&'a str> {
        self.lines(prefix).next()
    }

    /// Console lines that contain `needle` (the binary prefixes its lines with the uptime).
    pub fn containing<'a>(&'a self, needle: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.log
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(move |l| l.contains(needle))
    }

    /// The binary's final line (`ovirt-node-reg: ok, step done…`, `ovirt-node-reg: FAILED at
    /// step …`), from `ovirt-node-reg: ` on; the last one if there are several.
    pub fn banner(&self) -> Option<&str> {
        self.log
            .lines()
            .rev()
            .filter_map(|l| {
                let at = l.find("ovirt-node-reg: ")?;
                let b = l[at..].trim_end_matches('\r');
                let rest = &b["ovirt-node-reg: ".len()..];
                [
                    "ok, step ",
                    "waiting, step ",
                    "disabled, step ",
                    "FAILED at step ",
                ]
                .iter()
                .any(|p| rest.starts_with(p))
                .then_some(b)
            })
            .next()
    }

    /// `ovirt-node-reg`'s exit code, from `QH-EXIT rc=N` ([`Image::ScriptInit`]).
    pub fn exit_code(&self) -> Option<i32> {
        self.line(EXIT_MARKER)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// `ovirt-node-reg status --json` as printed by the guest ([`Image::ScriptInit`]).
    pub fn status(&self) -> Option<serde_json::Value> {
        let start = self.log.find("QH-STATUS-BEGIN")? + "QH-STATUS-BEGIN".len();
        let end = self.log[start..].find("QH-STATUS-END")? + start;
        serde_json::from_str(self.log[start..end].trim()).ok()
    }

    /// `QH-LINK` facts of `name`: kind, master, oper, flags, mac.
    pub fn link(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.lines("QH-LINK ")
            .map(fields)
            .find(|f| f.get("name").map(String::as_str) == Some(name))
    }

    /// Seconds since QEMU started at which the guest printed a marker, from its `uptime=`.
    pub fn uptime_at(&self, prefix: &str) -> Option<f64> {
        fields(self.line(prefix)?).get("uptime")?.parse().ok()
    }

    /// Guest uptime (seconds since the kernel started) at which the binary logged
    /// `step NAME: done` (its console lines start with `[   12.345]`).
    pub fn step_done_at(&self, step: &str) -> Option<f64> {
        let needle = format!("step {step}: done");
        let line = self.containing(&needle).next()?;
        let (_, rest) = line.split_once('[')?;
        rest.split_once(']')?.0.trim().parse().ok()
    }

    /// Seconds the binary spent in `step` after `before` was done (both `step …: done` lines).
    pub fn step_took(&self, step: &str, before: &str) -> Option<f64> {
        Some(self.step_done_at(step)? - self.step_done_at(before)?)
    }

    /// The binary waited for the kernel's random number generator to be seeded.
    pub fn waited_for_entropy(&self) -> bool {
        self.log.contains(ENTROPY_WAIT)
    }

    /// The kernel powered the machine off (`reboot: Power down`), as PID 1 asked.
    pub fn powered_off(&self) -> bool {
        self.log.contains("reboot: Power down")
    }

    /// A boot that ran to its end: [`INIT`](super::INIT) reached `QH-DONE`, or the PID-1 binary printed its
    /// banner and powered off (whatever the binary answered).
    pub fn completed(&self) -> bool {
        !self.timed_out
            && match self.image {
                Image::ScriptInit | Image::Dracut(_) | Image::Iso => {
                    self.line(DONE_MARKER).is_some()
                }
                Image::Pid1 => self.banner().is_some() && self.powered_off(),
            }
    }

    /// One line for the test's output: QEMU's wall time, the banner, the guest uptime at each
    /// `QH-` marker the guest printed and at which the PID-1 binary finished.
    pub fn report(&self) -> String {
        let mut out = format!(
            "[qemu] {}: {:.2} s QEMU start to exit; banner: {}",
            self.name,
            self.elapsed.as_secs_f64(),
            self.banner().unwrap_or("-")
        );
        let markers = [
            ("/init", "QH-INIT "),
            ("modules loaded", "QH-MODULES "),
            ("ovirt-node-reg exited", EXIT_MARKER),
            ("the root", "QH-ROOT "),
            ("vdsm listening", "QH-VDSM listening "),
            ("QH-DONE", "QH-DONE "),
        ];
        let at: Vec<String> = markers
            .iter()
            .filter_map(|(what, m)| Some(format!("{what} {:.2} s", self.uptime_at(m)?)))
            .collect();
        if !at.is_empty() {
            out.push_str(&format!("; guest uptime at {}", at.join(", ")));
        }
        let finished = self
            .containing("init: finished at ")
            .next()
            .and_then(|l| l.split("init: finished at ").nth(1))
            .and_then(|r| r.split_whitespace().next());
        if let Some(f) = finished {
            out.push_str(&format!("; PID 1 finished at {f} s guest uptime"));
        }
        if let Some(t) = self.step_took("clock_ok", "network_up") {
            out.push_str(&format!("; clock_ok took {:.0} ms", t * 1000.0));
        }
        out
    }

    /// The log, for assertion messages (the tail: the whole file stays on disk).
    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        let from = lines.len().saturating_sub(80);
        format!(
            "--- {} (last {} lines; full log {}) ---\n{}\n--- qemu stderr ---\n{}",
            self.name,
            lines.len() - from,
            self.log_path.display(),
            lines[from..].join("\n"),
            self.qemu_stderr
        )
    }

    /// A boot through a real root (dracut, ISO): the root's init finished after the switch,
    /// `boot --stage system` exited 0 and the status is `ok` at `done`. `what` names the root
    /// in the messages; the console tail comes with every failure.
    pub fn assert_system_stage_done(&self, what: &str) {
        assert!(
            self.completed(),
            "{what}: its init did not finish\n{}",
            self.tail()
        );
        assert!(
            self.line("QH-ROOT stage=system").is_some(),
            "no switch_root into {what}\n{}",
            self.tail()
        );
        assert_eq!(
            self.exit_code(),
            Some(0),
            "boot --stage system\n{}",
            self.tail()
        );
        let st = self
            .status()
            .unwrap_or_else(|| panic!("no status JSON\n{}", self.tail()));
        assert_eq!(st["result"], "ok", "{st}\n{}", self.tail());
        assert_eq!(st["step"], "done", "{st}");
    }

    /// The test passed: its console log is not an artefact (unless `QH_KEEP_LOGS` is set).
    pub fn pass(self) {
        if std::env::var_os("QH_KEEP_LOGS").is_none() {
            let _ = fs::remove_file(&self.log_path);
        }
    }
}

/// `k=v k=v` words of a marker line.
pub fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_fields() {
        let f = fields("name=eth0 kind=nic master=ovirtmgmt");
        assert_eq!(f["master"], "ovirtmgmt");
    }

    #[test]
    fn banner_is_found_after_an_uptime_prefix() {
        let b = pid1_boot("[    3.100] ovirt-node-reg: step network_up\r\n[    4.200] ovirt-node-reg: ok, step done\r\nreboot: Power down\n");
        assert_eq!(b.banner(), Some("ovirt-node-reg: ok, step done"));
        assert!(b.completed());
    }

    fn pid1_boot(log: &str) -> Boot {
        Boot {
            name: "x".into(),
            log: log.into(),
            log_path: PathBuf::new(),
            started: SystemTime::UNIX_EPOCH,
            elapsed: Duration::ZERO,
            timed_out: false,
            qemu_stderr: String::new(),
            image: Image::Pid1,
        }
    }

    #[test]
    fn the_time_of_a_step_and_a_wait_for_entropy_are_read_from_the_console() {
        let b = pid1_boot(
            "[    3.210] [INFO] step network_up: done\r\n\
             [    3.300] [INFO] waiting for the kernel's random number generator to be seeded\r\n\
             [    4.420] [INFO] step clock_ok: done\r\n",
        );
        let took = b.step_took("clock_ok", "network_up").unwrap();
        assert!((took - 1.21).abs() < 1e-9, "{took}");
        assert!(b.waited_for_entropy());
        assert!(
            b.report().contains("clock_ok took 1210 ms"),
            "{}",
            b.report()
        );
        let quick = pid1_boot(
            "[    3.210] [INFO] step network_up: done\r\n[    3.240] [INFO] step clock_ok: done\r\n",
        );
        assert!(!quick.waited_for_entropy());
        assert_eq!(quick.step_took("clock_ok", "configured"), None);
    }
}
