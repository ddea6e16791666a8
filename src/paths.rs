//! The one place that knows where every file lives.
//!
//! Every path the binary touches is relative to a root directory (`--root DIR`, default `/`),
//! so that tests run the whole program against a temporary tree.

use std::path::{Component, Path, PathBuf};

use crate::fsutil::Beneath;

/// Files and directories, as absolute paths inside the root.
pub const PROC_CMDLINE: &str = "/proc/cmdline";
pub const DEFAULT_OVIRT: &str = "/etc/default/ovirt";
pub const VDSM_REG_CONF: &str = "/etc/vdsm-reg/vdsm-reg.conf";
pub const VDSM_ID: &str = "/etc/vdsm/vdsm.id";
pub const DMI_PRODUCT_UUID: &str = "/sys/class/dmi/id/product_uuid";
pub const SYS_CLASS_NET: &str = "/sys/class/net";
pub const SYS_CLASS_BLOCK: &str = "/sys/class/block";
/// Block devices by `major:minor` (their sector size, partitions).
pub const SYS_DEV_BLOCK: &str = "/sys/dev/block";
/// The device a live system booted from (dracut's dmsquash-live makes the link).
pub const LIVE_DEV: &str = "/run/initramfs/livedev";
/// The boot loader's files for `install` (image/mkboot.sh): esp.img, core.img, boot.img.
pub const BOOT_FILES_DIR: &str = "/usr/lib/ovirt-node-reg/boot";
pub const ETC_HOSTNAME: &str = "/etc/hostname";
pub const KERNEL_HOSTNAME: &str = "/proc/sys/kernel/hostname";
pub const MOUNTINFO: &str = "/proc/self/mountinfo";
pub const DEV: &str = "/dev";
pub const DEV_KMSG: &str = "/dev/kmsg";
/// Where the config store is mounted (oVirt Node: LV `HostVG/Config`, label `CONFIG`).
pub const CONFIG_MOUNT: &str = "/config";
/// The filesystem label that marks the config store.
pub const CONFIG_LABEL: &str = "CONFIG";
/// The list of persisted paths, relative to the store.
pub const STORE_FILES_LIST: &str = "files";
/// Our own state inside the store.
pub const STORE_STATE_DIR: &str = "ovirt-node-reg";
pub const STATE_FILE: &str = "ovirt-node-reg/state.json";
/// A host without a config store (`ovirt.reg.store=none`) keeps the state files above in
/// `/var/lib` (`/var/lib/ovirt-node-reg/state.json`, …): its root file system is persistent.
pub const IN_PLACE_STATE_PARENT: &str = "/var/lib";
/// The enrolment token `bootstrap --token-file -` was given on stdin (0600, persisted).
pub const BOOTSTRAP_TOKEN: &str = "/etc/ovirt-node-reg/token";
// What `bootstrap` checks (under the root, so prepared trees test it).
pub const PROC_OSRELEASE: &str = "/proc/sys/kernel/osrelease";
pub const PROC_CPUINFO: &str = "/proc/cpuinfo";
pub const PROC_MEMINFO: &str = "/proc/meminfo";
pub const DEV_KVM: &str = "/dev/kvm";
/// dpkg's database (`dpkg-query --admindir`).
pub const DPKG_ADMINDIR: &str = "/var/lib/dpkg";
/// Present when systemd is the running init (sd_booted(3)).
pub const RUN_SYSTEMD_SYSTEM: &str = "/run/systemd/system";
pub const YUM_REPOS_DIR: &str = "/etc/yum.repos.d";
pub const APT_SOURCES_LIST: &str = "/etc/apt/sources.list";
pub const APT_SOURCES_DIR: &str = "/etc/apt/sources.list.d";
/// Where `bootstrap` looks for rpm, dpkg-query and systemctl when neither `--tools-path`
/// nor `PATH` says (outside the root: the tools of the machine that runs us).
pub const DEFAULT_TOOLS_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// What the operating system says it is (os-release(5)); the second is the fallback.
pub const OS_RELEASE: &str = "/etc/os-release";
pub const USR_LIB_OS_RELEASE: &str = "/usr/lib/os-release";
pub const STORE_STATUS_FILE: &str = "ovirt-node-reg/status.json";
/// The engine CA pin kept after trust on first use (`ovirt.reg.insecure_tofu`).
pub const STORE_CA_PIN: &str = "ovirt-node-reg/ca-pin";
/// Where the engine's SSH key goes (the engine logs in as root to deploy the host).
pub const ROOT_SSH_DIR: &str = "/root/.ssh";
pub const ROOT_AUTHORIZED_KEYS: &str = "/root/.ssh/authorized_keys";
/// Where `vdsm-tool register` keeps the engine CA (docs/ovirt-protocol.md §3.4 step 4).
pub const ENGINE_CA_PEM: &str = "/etc/pki/ovirt-engine/ca.pem";
/// Name servers (written by the network step; NetworkManager owns it in the real root).
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// NetworkManager keyfile profiles (`ovirt.reg.netconf=keyfile`).
pub const NM_CONNECTIONS_DIR: &str = "/etc/NetworkManager/system-connections";
/// Legacy initscripts network files (`ovirt.reg.netconf=ifcfg`).
pub const IFCFG_DIR: &str = "/etc/sysconfig/network-scripts";
pub const RUN_DIR: &str = "/run/ovirt-node-reg";
pub const STATUS_FILE: &str = "/run/ovirt-node-reg/status.json";
/// This host's sshd public keys, in the order we report them (ECDSA is what the engine's
/// SSH client negotiates first with a stock sshd).
pub const SSH_HOST_KEYS: [&str; 3] = [
    "/etc/ssh/ssh_host_ecdsa_key.pub",
    "/etc/ssh/ssh_host_ed25519_key.pub",
    "/etc/ssh/ssh_host_rsa_key.pub",
];
/// Root's password hash (`rhevm_admin_password=`, `setup`).
pub const ETC_SHADOW: &str = "/etc/shadow";
/// sshd's configuration, and the drop-in that sets `PasswordAuthentication` (`ssh_pwauth=`)
/// where sshd_config includes its `.d` directory. `01-` sorts before the distributions' own
/// drop-ins (`50-redhat.conf`, `50-cloud-init.conf`): sshd keeps the first value it reads.
pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
pub const SSHD_CONFIG_DIR: &str = "/etc/ssh/sshd_config.d";
pub const SSHD_DROP_IN: &str = "/etc/ssh/sshd_config.d/01-ovirt-node-reg.conf";
/// Read for the vdsm, kvm and qemu ids.
pub const ETC_PASSWD: &str = "/etc/passwd";
pub const ETC_GROUP: &str = "/etc/group";

// vdsm's files (docs/ovirt-protocol.md §5.1, §5.4).
pub const VDSM_CONF: &str = "/etc/vdsm/vdsm.conf";
/// vdsm's PKI directory, also its `trust_store_path`.
pub const VDSM_PKI_DIR: &str = "/etc/pki/vdsm";
pub const VDSM_KEYS_DIR: &str = "/etc/pki/vdsm/keys";
pub const VDSM_CERTS_DIR: &str = "/etc/pki/vdsm/certs";
pub const SPICE_PKI_DIR: &str = "/etc/pki/vdsm/libvirt-spice";
pub const MIGRATE_PKI_DIR: &str = "/etc/pki/vdsm/libvirt-migrate";
pub const VDSM_KEY: &str = "/etc/pki/vdsm/keys/vdsmkey.pem";
pub const VDSM_CERT: &str = "/etc/pki/vdsm/certs/vdsmcert.pem";
pub const VDSM_CA: &str = "/etc/pki/vdsm/certs/cacert.pem";
pub const SPICE_CA: &str = "/etc/pki/vdsm/libvirt-spice/ca-cert.pem";
pub const SPICE_CERT: &str = "/etc/pki/vdsm/libvirt-spice/server-cert.pem";
pub const SPICE_KEY: &str = "/etc/pki/vdsm/libvirt-spice/server-key.pem";
pub const LIBVIRT_CLIENT_CERT: &str = "/etc/pki/libvirt/clientcert.pem";
pub const LIBVIRT_CLIENT_KEY: &str = "/etc/pki/libvirt/private/clientkey.pem";
pub const SYSTEM_CA: &str = "/etc/pki/CA/cacert.pem";
pub const QEMU_CA: &str = "/etc/pki/vdsm/libvirt-migrate/ca-cert.pem";
pub const QEMU_CERT: &str = "/etc/pki/vdsm/libvirt-migrate/server-cert.pem";
pub const QEMU_KEY: &str = "/etc/pki/vdsm/libvirt-migrate/server-key.pem";
pub const QEMU_CLIENT_CERT: &str = "/etc/pki/vdsm/libvirt-migrate/client-cert.pem";
pub const QEMU_CLIENT_KEY: &str = "/etc/pki/vdsm/libvirt-migrate/client-key.pem";
/// The sysctl drop-in that keeps the core-dump pattern across reboots.
pub const CORE_SYSCTL: &str = "/etc/sysctl.d/ovirt-node-reg-core.conf";
/// Where vdsm wants core dumps (the value of `kernel.core_pattern`).
pub const CORE_PATTERN: &str = "/var/log/core/core.%p.%t.dump";

// Process 1 (init): the image's hook, the hand-over, the API filesystems.
/// The image's hook that loads kernel modules before anything needs a device.
pub const PRE_INIT: &str = "/etc/ovirt-node-reg/pre-init";
/// Where the real root is mounted before the switch.
pub const SYSROOT: &str = "/sysroot";
pub const SBIN_INIT: &str = "/sbin/init";
pub const BIN_SH: &str = "/bin/sh";
pub const PROC: &str = "/proc";
pub const SYS: &str = "/sys";
pub const RUN: &str = "/run";
pub const DEV_CONSOLE: &str = "/dev/console";

// This process and the running kernel itself: never under `--root`.
/// The running kernel's core pattern (set for this boot; `CORE_SYSCTL` keeps it).
pub const PROC_CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";
/// Reaches our own binary even where nobody could not walk its directory.
pub const PROC_SELF_EXE: &str = "/proc/self/exe";
pub const PROC_SELF_STATUS: &str = "/proc/self/status";
pub const PROC_SELF_FD: &str = "/proc/self/fd";

/// A root directory under which all absolute paths are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root { dir: dir.into() }
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes beneath the root: never through a symlink, never above it.
    pub fn fs(&self) -> Beneath {
        Beneath::new(&self.dir)
    }

    /// True when this is the real `/`.
    pub fn is_system(&self) -> bool {
        self.dir == Path::new("/")
    }

    /// Resolve an absolute in-root path (e.g. `/etc/default/ovirt`) to a host path.
    /// The path is taken lexically: `..` can never climb above the root.
    pub fn join(&self, abs: impl AsRef<Path>) -> PathBuf {
        let mut out = self.dir.clone();
        for c in normalize(abs.as_ref()).components() {
            if let Component::Normal(part) = c {
                out.push(part);
            }
        }
        out
    }
}

impl Default for Root {
    fn default() -> Self {
        Root::new("/")
    }
}

/// Lexically normalise an absolute path: drop `.`, resolve `..` without climbing above `/`.
pub fn normalize(path: &Path) -> PathBuf {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut out = PathBuf::from("/");
    out.extend(parts);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_stays_inside_root() {
        let r = Root::new("/tmp/r");
        assert_eq!(r.join("/etc/x"), PathBuf::from("/tmp/r/etc/x"));
        assert_eq!(r.join("/../../etc/x"), PathBuf::from("/tmp/r/etc/x"));
        assert_eq!(r.join("/a/./b/../c"), PathBuf::from("/tmp/r/a/c"));
    }

    #[test]
    fn system_root() {
        assert!(Root::default().is_system());
        assert_eq!(
            Root::default().join("/proc/cmdline"),
            PathBuf::from("/proc/cmdline")
        );
    }
}
