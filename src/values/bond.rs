//! `bond=NAME:SLAVE,SLAVE[:OPTION,OPTION]` and the bonding options the network step applies.
//!
//! The options are checked here, when the settings are read, against exactly what `net`
//! sends to the kernel: a bond option the network step would refuse, or the kernel would
//! reject, fails the `configured` step with the reason instead of surfacing at `network_up`
//! (or, worse, being rounded or ignored).

use super::{Expectation, IfName};
use std::fmt;
use std::str::FromStr;

const FORM: &str = "NAME:SLAVE,SLAVE[:OPTION,OPTION], e.g. bond0:eth0,eth1:mode=4";

/// The kernel's bonding modes, numbered as the kernel numbers them (`mode=4` = `802.3ad`).
const MODES: &[&str] = &[
    "balance-rr",
    "active-backup",
    "balance-xor",
    "broadcast",
    "802.3ad",
    "balance-tlb",
    "balance-alb",
];
const MODE_802_3AD: u8 = 4;
const XMIT_POLICIES: &[&str] = &["layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4"];
const LACP_RATES: &[&str] = &["slow", "fast"];

/// Longest link-monitor interval or delay, in milliseconds: longer is a typo (a bond that
/// notices a dead link after a minute has already lost the management network).
const MAX_TIMER_MS: u32 = 60_000;

/// `bond=NAME:SLAVE,SLAVE[:OPTION,OPTION]`, e.g. `bond0:eth0,eth1:mode=4,miimon=100`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bond {
    pub name: IfName,
    pub slaves: Vec<IfName>,
    /// The options as written: printed back and persisted (NetworkManager, ifcfg) as given.
    pub options: Vec<String>,
    /// What the network step applies: the options in kernel terms, or vdsm's default.
    pub applied: BondOptions,
}

impl FromStr for Bond {
    type Err = Expectation;
    fn from_str(text: &str) -> Result<Self, Expectation> {
        let mut parts = text.splitn(3, ':');
        let name: IfName = parts.next().unwrap_or_default().parse().map_err(|_| FORM)?;
        let slaves: Vec<IfName> = parts
            .next()
            .ok_or(FORM)?
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| FORM)?;
        check_slaves(&name, &slaves)?;
        let options: Vec<String> = match parts.next() {
            Some(o) => o.split(',').map(str::to_string).collect(),
            None => Vec::new(),
        };
        let applied = BondOptions::parse(&options)?;
        Ok(Bond {
            name,
            slaves,
            options,
            applied,
        })
    }
}

/// Each slave once, and never the bond itself (the kernel would refuse the second
/// enslavement half-way through building the bond).
fn check_slaves(name: &IfName, slaves: &[IfName]) -> Result<(), Expectation> {
    if slaves.contains(name) {
        return Err(format!("slaves other than the bond itself ({name} is both)").into());
    }
    let mut twice: Vec<&str> = Vec::new();
    for (i, s) in slaves.iter().enumerate() {
        if slaves[..i].contains(s) && !twice.contains(&s.0.as_str()) {
            twice.push(&s.0);
        }
    }
    if twice.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "each slave once ({} given more than once)",
            twice.join(", ")
        )
        .into())
    }
}

impl fmt::Display for Bond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slaves: Vec<String> = self.slaves.iter().map(|s| s.to_string()).collect();
        write!(f, "{}:{}", self.name, slaves.join(","))?;
        if !self.options.is_empty() {
            write!(f, ":{}", self.options.join(","))?;
        }
        Ok(())
    }
}

/// Bonding options as the kernel takes them over netlink (`IFLA_BOND_*`). Only these are
/// supported: anything else is refused rather than ignored, so a bond never comes up
/// different from what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BondOptions {
    pub mode: Option<u8>,
    pub miimon: Option<u32>,
    pub updelay: Option<u32>,
    pub downdelay: Option<u32>,
    pub xmit_hash_policy: Option<u8>,
    pub lacp_rate: Option<u8>,
}

impl BondOptions {
    /// vdsm's default when `bond=` gives no options: `mode=802.3ad miimon=150`
    /// (docs/ovirt-protocol.md §2.8).
    pub const VDSM_DEFAULT: BondOptions = BondOptions {
        mode: Some(MODE_802_3AD),
        miimon: Some(150),
        updelay: None,
        downdelay: None,
        xmit_hash_policy: None,
        lacp_rate: None,
    };

    /// The kernel's name of the mode (`802.3ad` for `mode=4`), for people.
    pub fn mode_name(&self) -> Option<&'static str> {
        name_of(self.mode, MODES)
    }

    /// The kernel's name of `xmit_hash_policy`.
    pub fn xmit_hash_policy_name(&self) -> Option<&'static str> {
        name_of(self.xmit_hash_policy, XMIT_POLICIES)
    }

    /// The kernel's name of `lacp_rate`.
    pub fn lacp_rate_name(&self) -> Option<&'static str> {
        name_of(self.lacp_rate, LACP_RATES)
    }

    /// `mode=4,miimon=100` (kernel/initscripts names, `KEY=VALUE`, each key once).
    pub fn parse(options: &[String]) -> Result<BondOptions, Expectation> {
        if options.is_empty() {
            return Ok(Self::VDSM_DEFAULT);
        }
        let mut o = BondOptions::default();
        let mut seen: Vec<&str> = Vec::new();
        for opt in options {
            let (key, value) = opt.split_once('=').ok_or(FORM)?;
            if seen.contains(&key) {
                return Err(format!("each bond option once ({key} given more than once)").into());
            }
            seen.push(key);
            o.set(key, value)?;
        }
        o.check_combination()?;
        Ok(o)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), Expectation> {
        match key {
            "mode" => self.mode = Some(keyword(key, value, MODES)?),
            "miimon" => self.miimon = Some(timer(key, value)?),
            "updelay" => self.updelay = Some(timer(key, value)?),
            "downdelay" => self.downdelay = Some(timer(key, value)?),
            "xmit_hash_policy" => {
                self.xmit_hash_policy = Some(keyword(key, value, XMIT_POLICIES)?)
            }
            "lacp_rate" => self.lacp_rate = Some(keyword(key, value, LACP_RATES)?),
            _ => {
                return Err(format!(
                    "bond options mode, miimon, updelay, downdelay, xmit_hash_policy or lacp_rate ({key} is not supported)"
                )
                .into())
            }
        }
        Ok(())
    }

    /// What the kernel refuses in combination (drivers/net/bonding/bond_options.c):
    /// `lacp_rate` outside 802.3ad, and up/down delays without MII monitoring. Delays that
    /// are not a multiple of `miimon` would be silently rounded down: refused too.
    fn check_combination(&self) -> Result<(), Expectation> {
        if self.lacp_rate.is_some() && self.mode != Some(MODE_802_3AD) {
            return Err(
                "lacp_rate only with mode=802.3ad (the kernel refuses it in other modes)".into(),
            );
        }
        let miimon = self.miimon.unwrap_or(0);
        for (key, delay) in [("updelay", self.updelay), ("downdelay", self.downdelay)] {
            let Some(delay) = delay else { continue };
            if miimon == 0 {
                return Err(format!(
                    "{key} only together with miimon= above 0 (the kernel refuses delays without link monitoring)"
                )
                .into());
            }
            if delay % miimon != 0 {
                return Err(format!(
                    "{key}= a multiple of miimon ({miimon}); the kernel would round {delay} down"
                )
                .into());
            }
        }
        Ok(())
    }
}

/// The word a keyword number stands for.
fn name_of(number: Option<u8>, words: &[&'static str]) -> Option<&'static str> {
    number.and_then(|n| words.get(usize::from(n)).copied())
}

/// A keyword's position in `words`, or its number (`mode=4` and `mode=802.3ad` alike).
fn keyword(key: &str, value: &str, words: &[&str]) -> Result<u8, Expectation> {
    if let Some(i) = words.iter().position(|w| *w == value) {
        return Ok(i as u8);
    }
    match value.parse::<u8>() {
        Ok(n) if usize::from(n) < words.len() => Ok(n),
        _ => Err(format!(
            "{key}= one of {} or a number from 0 to {}",
            words.join(", "),
            words.len() - 1
        )
        .into()),
    }
}

/// A timer in milliseconds: a whole number from 0 to [`MAX_TIMER_MS`].
fn timer(key: &str, value: &str) -> Result<u32, Expectation> {
    match value.parse::<u32>() {
        Ok(ms) if ms <= MAX_TIMER_MS && value.bytes().all(|b| b.is_ascii_digit()) => Ok(ms),
        _ => Err(format!("{key}= a whole number of milliseconds from 0 to {MAX_TIMER_MS}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bond_err(text: &str) -> String {
        text.parse::<Bond>().unwrap_err().into_owned()
    }

    fn opts(list: &[&str]) -> Result<BondOptions, Expectation> {
        BondOptions::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_and_prints_as_written() {
        let b: Bond = "bond0:eth0,eth1:mode=active-backup,miimon=100,updelay=200"
            .parse()
            .unwrap();
        assert_eq!(b.applied.mode, Some(1));
        assert_eq!(
            (b.applied.miimon, b.applied.updelay),
            (Some(100), Some(200))
        );
        assert_eq!(
            b.to_string(),
            "bond0:eth0,eth1:mode=active-backup,miimon=100,updelay=200"
        );
        let d: Bond = "bond1:eth2".parse().unwrap();
        assert_eq!(d.applied, BondOptions::VDSM_DEFAULT, "vdsm's default");
        assert_eq!(d.to_string(), "bond1:eth2");
    }

    #[test]
    fn duplicate_slaves_are_named() {
        let e = bond_err("bond0:eth0,eth1,eth0,eth1,eth0");
        assert_eq!(e, "each slave once (eth0, eth1 given more than once)");
        assert!(bond_err("bond0:eth0,bond0").contains("bond0 is both"));
        assert!(bond_err("bond0").contains("NAME:SLAVE"));
    }

    #[test]
    fn modes_by_name_or_number_only() {
        for (i, m) in MODES.iter().enumerate() {
            assert_eq!(opts(&[&format!("mode={m}")]).unwrap().mode, Some(i as u8));
            assert_eq!(opts(&[&format!("mode={i}")]).unwrap().mode, Some(i as u8));
        }
        for bad in ["mode=7", "mode=fastest", "mode=-1", "mode=", "mode=256"] {
            let e = opts(&[bad]).unwrap_err();
            assert!(
                e.contains("mode= one of balance-rr") && e.contains("0 to 6"),
                "{e}"
            );
        }
    }

    #[test]
    fn timers_are_bounded_whole_milliseconds() {
        assert_eq!(opts(&["miimon=0"]).unwrap().miimon, Some(0));
        assert_eq!(opts(&["miimon=60000"]).unwrap().miimon, Some(60_000));
        for bad in [
            "miimon=-1",
            "miimon=+5",
            "miimon=60001",
            "miimon=99999999999999999999",
            "miimon=often",
            "miimon=",
        ] {
            let e = opts(&[bad]).unwrap_err();
            assert!(
                e.contains("miimon= a whole number of milliseconds from 0 to 60000"),
                "{bad}: {e}"
            );
        }
        let e = opts(&["miimon=100", "downdelay=-200"]).unwrap_err();
        assert!(e.starts_with("downdelay= a whole number"), "{e}");
    }

    #[test]
    fn what_the_kernel_would_refuse_is_refused() {
        let e = opts(&["arp_interval=100"]).unwrap_err();
        assert!(e.contains("arp_interval is not supported"), "{e}");
        assert!(opts(&["mode=1", "mode=4"])
            .unwrap_err()
            .contains("mode given more than once"));
        assert!(opts(&["miimon"]).unwrap_err().contains("NAME:SLAVE"));
        assert!(opts(&["mode=1", "lacp_rate=fast"])
            .unwrap_err()
            .contains("802.3ad"));
        assert_eq!(
            opts(&["mode=802.3ad", "lacp_rate=fast"]).unwrap().lacp_rate,
            Some(1)
        );
        assert!(opts(&["updelay=200"])
            .unwrap_err()
            .contains("miimon= above 0"));
        assert!(opts(&["miimon=0", "downdelay=0"])
            .unwrap_err()
            .contains("miimon= above 0"));
        assert!(opts(&["miimon=100", "updelay=250"])
            .unwrap_err()
            .contains("multiple of miimon (100)"));
        assert_eq!(
            opts(&["xmit_hash_policy=layer3+4"])
                .unwrap()
                .xmit_hash_policy,
            Some(1)
        );
    }
}
