//! The local checks of `bootstrap` (docs/ovirt-protocol.md: the seed's `vds_bootstrap`):
//! platform, OS, kernel, CPU virtualization, memory, packages, services, repositories. Each
//! reads through the [`Probe`], so a prepared root and stand-in tools test it.

use crate::os_release::OsRelease;
use crate::paths::{
    APT_SOURCES_DIR, APT_SOURCES_LIST, DEV_KVM, DPKG_ADMINDIR, PROC_CPUINFO, PROC_MEMINFO,
    PROC_OSRELEASE, RUN_SYSTEMD_SYSTEM, YUM_REPOS_DIR,
};

use super::probe::Probe;
use super::report::Line;

/// The architectures vdsm is built for.
const ARCHES: [&str; 3] = ["x86_64", "aarch64", "ppc64le"];
/// The oldest kernel we accept: EL8's (4.18), the oldest supported host.
const MIN_KERNEL: (u32, u32) = (4, 18);
/// oVirt's minimum host memory, and what it recommends.
const MIN_MEMORY_KIB: u64 = 2 << 20;
const GOOD_MEMORY_KIB: u64 = 4 << 20;

/// Which packaging and package names the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// RHEL, CentOS Stream, Rocky, Alma, Fedora, oVirt Node: rpm.
    Rhel,
    /// Debian and Ubuntu: dpkg (development machines only, see README).
    Debian,
    Other,
}

impl Family {
    pub fn of(os: &OsRelease) -> Family {
        let ids: Vec<&str> = os.ids().collect();
        let any = |names: &[&str]| ids.iter().any(|i| names.contains(i));
        if os.is_ovirt_node() || any(&["rhel", "centos", "fedora", "rocky", "almalinux"]) {
            Family::Rhel
        } else if any(&["debian", "ubuntu"]) {
            Family::Debian
        } else {
            Family::Other
        }
    }

    /// What a host needs installed before the engine can manage it.
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            Family::Rhel | Family::Other => {
                &["vdsm", "libvirt-daemon-kvm", "qemu-kvm", "openssh-server"]
            }
            // vdsm is not packaged for Debian: a development machine checks the rest.
            Family::Debian => &["libvirt-daemon-system", "qemu-system-x86", "openssh-server"],
        }
    }
}

/// Supported host operating systems: `ID` and the oldest major `VERSION_ID`.
const SUPPORTED: [(&str, u32); 5] = [
    ("rhel", 8),
    ("centos", 8),
    ("rocky", 8),
    ("almalinux", 8),
    ("fedora", 38),
];

pub fn platform() -> Line {
    let arch = rustix::system::uname()
        .machine()
        .to_string_lossy()
        .into_owned();
    if ARCHES.contains(&arch.as_str()) {
        Line::ok("platform", format!("Linux {arch}"))
    } else {
        Line::fail(
            "platform",
            format!("architecture {arch}: vdsm runs on {}", ARCHES.join(", ")),
        )
    }
}

pub fn os(os: Option<&OsRelease>) -> Line {
    let Some(os) = os else {
        return Line::fail("os", "no /etc/os-release: cannot tell which OS this is");
    };
    let name = os.display_name();
    if os.is_ovirt_node() {
        return Line::ok("os", format!("{name} (oVirt Node)"));
    }
    let major: Option<u32> = os.version_id.split('.').next().and_then(|v| v.parse().ok());
    match (SUPPORTED.iter().find(|(id, _)| *id == os.id), major) {
        (Some((_, min)), Some(m)) if m >= *min => Line::ok("os", name),
        (Some((id, min)), _) => Line::fail(
            "os",
            format!("{name}: {id} hosts need version {min} or later"),
        ),
        (None, _) if Family::of(os) == Family::Debian => Line::warn(
            "os",
            format!("{name}: not a supported host OS (checked as a development machine)"),
        ),
        (None, _) => Line::fail(
            "os",
            format!(
                "{name}: not a supported host OS (RHEL, CentOS Stream, Rocky, Alma 8+, \
                 Fedora 38+, oVirt Node)"
            ),
        ),
    }
}

pub fn kernel(probe: &Probe) -> Line {
    let release = match probe.read(PROC_OSRELEASE) {
        Ok(Some(t)) => t.trim().to_string(),
        _ => return Line::fail("kernel", format!("cannot read {PROC_OSRELEASE}")),
    };
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    match (nums.next(), nums.next()) {
        (Some(a), Some(b)) if (a, b) >= MIN_KERNEL => Line::ok("kernel", release),
        _ => Line::fail(
            "kernel",
            format!(
                "{release}: {}.{} or later is needed",
                MIN_KERNEL.0, MIN_KERNEL.1
            ),
        ),
    }
}

pub fn cpu_virtualization(probe: &Probe) -> Line {
    const C: &str = "cpu_virtualization";
    let cpuinfo = probe.read(PROC_CPUINFO).ok().flatten().unwrap_or_default();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags") || l.starts_with("Features"))
        .flat_map(|l| l.split_once(':').map_or("", |(_, f)| f).split_whitespace())
        .collect();
    let vt = ["vmx", "svm"].into_iter().find(|f| flags.contains(f));
    let kvm = probe.exists(DEV_KVM);
    match (vt, kvm) {
        (Some(f), true) => Line::ok(C, format!("{f} flag, {DEV_KVM} present")),
        (Some(f), false) => Line::warn(
            C,
            format!(
                "{f} flag but no {DEV_KVM}: load the kvm module (or enable VT in the firmware)"
            ),
        ),
        (None, true) => Line::warn(
            C,
            format!("{DEV_KVM} present but no vmx or svm flag in {PROC_CPUINFO} (a nested guest?)"),
        ),
        (None, false) => Line::fail(
            C,
            format!(
                "no hardware virtualization: no vmx or svm flag in {PROC_CPUINFO} and no {DEV_KVM}"
            ),
        ),
    }
}

pub fn memory(probe: &Probe) -> Line {
    let meminfo = probe.read(PROC_MEMINFO).ok().flatten().unwrap_or_default();
    let kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    let Some(kib) = kib else {
        return Line::fail(
            "memory",
            format!("cannot read MemTotal from {PROC_MEMINFO}"),
        );
    };
    let text = format!("{} MiB", kib / 1024);
    if kib < MIN_MEMORY_KIB {
        Line::fail("memory", format!("{text}: at least 2048 MiB is needed"))
    } else if kib < GOOD_MEMORY_KIB {
        Line::warn("memory", format!("{text}: 4096 MiB or more is recommended"))
    } else {
        Line::ok("memory", text)
    }
}

/// One line per required package, with its version; a host without rpm or dpkg-query
/// gets one failing line.
pub fn packages(probe: &Probe, family: Family) -> Vec<Line> {
    let (rpm, dpkg) = (probe.tool("rpm"), probe.tool("dpkg-query"));
    let query = match (family, rpm, dpkg) {
        (Family::Debian, _, Some(d)) | (_, None, Some(d)) => Query::Dpkg(d),
        (_, Some(r), _) => Query::Rpm(r),
        (_, None, None) => {
            return vec![Line::fail(
                "packages",
                "neither rpm nor dpkg-query found: cannot check the packages",
            )]
        }
    };
    family
        .packages()
        .iter()
        .map(|name| package(probe, &query, name))
        .collect()
}

enum Query {
    Rpm(std::path::PathBuf),
    Dpkg(std::path::PathBuf),
}

fn package(probe: &Probe, query: &Query, name: &str) -> Line {
    let component = format!("package:{name}");
    let root = probe.root.dir().to_string_lossy().into_owned();
    let admindir = probe
        .root
        .join(DPKG_ADMINDIR)
        .to_string_lossy()
        .into_owned();
    let ran = match query {
        Query::Rpm(t) => probe.run(
            t,
            &["--root", &root, "-q", "--qf", "%{VERSION}-%{RELEASE}", name],
        ),
        Query::Dpkg(t) => probe.run(
            t,
            &[
                "--admindir",
                &admindir,
                "-W",
                "-f",
                "${Status}\t${Version}",
                name,
            ],
        ),
    };
    let version = match (query, ran) {
        (_, Err(e)) => return Line::fail(&component, format!("{e:#}")),
        (Query::Rpm(_), Ok(r)) if r.ok() => Some(r.stdout.trim().to_string()),
        (Query::Dpkg(_), Ok(r)) if r.ok() => r
            .stdout
            .split_once('\t')
            .filter(|(st, _)| st.trim().ends_with(" installed"))
            .map(|(_, v)| v.trim().to_string()),
        _ => None,
    };
    match version {
        Some(v) => Line::ok(&component, format!("{name} {v} installed")),
        None => Line::fail(&component, format!("{name} is not installed")),
    }
}

/// The services the engine needs: sshd must run (the engine deploys over SSH); libvirtd and
/// vdsmd are started by the deployment, so only a warning when they are not yet.
const SERVICES: [(&str, bool); 3] = [("sshd", true), ("libvirtd", false), ("vdsmd", false)];

pub fn services(probe: &Probe) -> Vec<Line> {
    let Some(systemctl) = probe.tool("systemctl") else {
        return vec![Line::warn(
            "services",
            "no systemctl: services not checked (systemd only)",
        )];
    };
    if !probe.exists(RUN_SYSTEMD_SYSTEM) {
        return vec![Line::warn(
            "services",
            format!("systemd is not running (no {RUN_SYSTEMD_SYSTEM}): services not checked"),
        )];
    }
    SERVICES
        .iter()
        .map(|&(unit, must_run)| service(probe, &systemctl, unit, must_run))
        .collect()
}

fn service(probe: &Probe, systemctl: &std::path::Path, unit: &str, must_run: bool) -> Line {
    let word = |verb: &str| {
        probe
            .run(systemctl, &[verb, unit])
            .map(|r| r.stdout.trim().to_string())
            .unwrap_or_else(|e| format!("{e:#}"))
    };
    let (enabled, active) = (word("is-enabled"), word("is-active"));
    let component = format!("service:{unit}");
    let text = format!("{unit}: {enabled}, {active}");
    let running = active == "active";
    let on = matches!(enabled.as_str(), "enabled" | "alias" | "static");
    match (running && on, must_run) {
        (true, _) => Line::ok(&component, text),
        (false, true) if !running => Line::fail(&component, text),
        (false, _) => Line::warn(&component, text),
    }
}

/// The package manager's configured repositories, read from its files (nothing installed,
/// nothing fetched): dnf/yum's `*.repo` sections, apt's `deb` lines and `URIs:` fields.
pub fn repositories(probe: &Probe) -> Line {
    let mut found = Vec::new();
    for name in probe.list(YUM_REPOS_DIR) {
        if name.ends_with(".repo") {
            found.extend(yum_repos(probe, &format!("{YUM_REPOS_DIR}/{name}")));
        }
    }
    let mut apt = vec![APT_SOURCES_LIST.to_string()];
    apt.extend(
        probe
            .list(APT_SOURCES_DIR)
            .into_iter()
            .filter(|n| n.ends_with(".list") || n.ends_with(".sources"))
            .map(|n| format!("{APT_SOURCES_DIR}/{n}")),
    );
    for file in apt {
        found.extend(apt_sources(probe, &file));
    }
    if found.is_empty() {
        return Line::warn("repositories", "no package repository configured");
    }
    Line::ok(
        "repositories",
        format!("{} configured: {}", found.len(), found.join(", ")),
    )
}

fn yum_repos(probe: &Probe, file: &str) -> Vec<String> {
    let text = probe.read(file).ok().flatten().unwrap_or_default();
    let sections: Vec<String> = text
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix('[')?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .collect();
    sections
        .into_iter()
        .filter(|s| {
            let vals = crate::conffile::ini_values(&text, s);
            crate::conffile::last(&vals, "enabled").is_none_or(|v| v.trim() != "0")
        })
        .collect()
}

fn apt_sources(probe: &Probe, file: &str) -> Vec<String> {
    let text = probe.read(file).ok().flatten().unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter_map(|l| {
            let rest = l.strip_prefix("deb ").or_else(|| l.strip_prefix("URIs:"))?;
            let uri = rest
                .split_whitespace()
                .find(|w| w.contains("://") || w.starts_with("cdrom:"))?;
            Some(uri.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_the_supported_list() {
        let el = OsRelease::parse("ID=rocky\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=9.3\n");
        assert_eq!(Family::of(&el), Family::Rhel);
        assert_eq!(os(Some(&el)).status, super::super::report::Level::Ok);
        let old = OsRelease::parse("ID=centos\nVERSION_ID=7\n");
        assert!(os(Some(&old)).message.contains("version 8 or later"));
        let deb = OsRelease::parse("ID=debian\nVERSION_ID=12\n");
        assert_eq!(Family::of(&deb), Family::Debian);
        assert_eq!(os(Some(&deb)).status, super::super::report::Level::Warn);
        let arch = OsRelease::parse("ID=arch\n");
        assert_eq!(os(Some(&arch)).status, super::super::report::Level::Fail);
    }
}
