//! Installing what the engine signed: the files, owners and modes of docs/ovirt-protocol.md §5.4
//! (Era D, the engine's Ansible roles), `vdsm.conf` (§5.1) and the core-dump pattern. Every
//! file goes through the store, so it survives the reboot of a stateless node.
//!
//! The material was checked before it gets here (pki::verify_issued); this module only
//! places it.

use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

use crate::conffile::{IniFile, Style};
use crate::paths::{self, Root};
use crate::secret::Secret;
use crate::store::{Batch, Store};

/// Fallback ids when `<root>/etc/passwd` or `group` do not name them: the fixed ids the
/// vdsm and qemu packages allocate (vdsm uid 36, kvm gid 36, qemu gid 107).
pub const VDSM_UID: u32 = 36;
pub const KVM_GID: u32 = 36;
pub const QEMU_GID: u32 = 107;

/// Who owns an installed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum User {
    Root,
    Vdsm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Root,
    Kvm,
    Qemu,
}

/// What goes into an installed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    VdsmKey,
    VdsmCert,
    Ca,
    QemuKey,
    QemuCert,
    QemuCa,
    /// A symlink to this (relative) name.
    Link(&'static str),
}

/// One row of the §5.4 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub path: &'static str,
    pub user: User,
    pub group: Group,
    pub mode: u32,
    pub content: Content,
}

const fn e(path: &'static str, user: User, group: Group, mode: u32, content: Content) -> Entry {
    Entry {
        path,
        user,
        group,
        mode,
        content,
    }
}

/// docs/ovirt-protocol.md §5.4 (Era D): CA and certificate files root:kvm 0644, vdsm keys
/// vdsm:kvm 0440, the QEMU key root:qemu 0440, the QEMU client files symlinks to the
/// server ones. The libvirt and spice copies are copies, not links, as on a node (§5.2).
pub const FILES: [Entry; 14] = [
    e(
        paths::VDSM_KEY,
        User::Vdsm,
        Group::Kvm,
        0o440,
        Content::VdsmKey,
    ),
    e(
        paths::VDSM_CERT,
        User::Root,
        Group::Kvm,
        0o644,
        Content::VdsmCert,
    ),
    e(paths::VDSM_CA, User::Root, Group::Kvm, 0o644, Content::Ca),
    e(paths::SPICE_CA, User::Root, Group::Kvm, 0o644, Content::Ca),
    e(
        paths::SPICE_CERT,
        User::Root,
        Group::Kvm,
        0o644,
        Content::VdsmCert,
    ),
    e(
        paths::SPICE_KEY,
        User::Vdsm,
        Group::Kvm,
        0o440,
        Content::VdsmKey,
    ),
    e(
        paths::LIBVIRT_CLIENT_CERT,
        User::Root,
        Group::Kvm,
        0o644,
        Content::VdsmCert,
    ),
    e(
        paths::LIBVIRT_CLIENT_KEY,
        User::Vdsm,
        Group::Kvm,
        0o440,
        Content::VdsmKey,
    ),
    e(paths::SYSTEM_CA, User::Root, Group::Kvm, 0o644, Content::Ca),
    e(
        paths::QEMU_CA,
        User::Root,
        Group::Kvm,
        0o644,
        Content::QemuCa,
    ),
    e(
        paths::QEMU_CERT,
        User::Root,
        Group::Kvm,
        0o644,
        Content::QemuCert,
    ),
    e(
        paths::QEMU_KEY,
        User::Root,
        Group::Qemu,
        0o440,
        Content::QemuKey,
    ),
    e(
        paths::QEMU_CLIENT_CERT,
        User::Root,
        Group::Kvm,
        0o777,
        Content::Link("server-cert.pem"),
    ),
    e(
        paths::QEMU_CLIENT_KEY,
        User::Root,
        Group::Qemu,
        0o777,
        Content::Link("server-key.pem"),
    ),
];

/// Directories vdsm owns (§5.4: vdsm:kvm 0755). Other parents (`/etc/pki/libvirt`,
/// `/etc/pki/CA`) belong to their packages: created root 0755 only when missing.
pub const VDSM_DIRS: [&str; 5] = [
    paths::VDSM_PKI_DIR,
    paths::VDSM_KEYS_DIR,
    paths::VDSM_CERTS_DIR,
    paths::SPICE_PKI_DIR,
    paths::MIGRATE_PKI_DIR,
];

/// Numeric ids of the names above, as this root resolves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owners {
    pub vdsm: u32,
    pub kvm: u32,
    pub qemu: u32,
}

impl Owners {
    /// From `<root>/etc/passwd` and `<root>/etc/group`, the fixed ids where a name is
    /// missing (a root tree without the vdsm packages, e.g. under `--root` in tests).
    pub fn resolve(root: &Root) -> Owners {
        let passwd = fs::read_to_string(root.join(paths::ETC_PASSWD)).unwrap_or_default();
        let group = fs::read_to_string(root.join(paths::ETC_GROUP)).unwrap_or_default();
        Owners {
            vdsm: lookup_id(&passwd, "vdsm").unwrap_or(VDSM_UID),
            kvm: lookup_id(&group, "kvm").unwrap_or(KVM_GID),
            qemu: lookup_id(&group, "qemu").unwrap_or(QEMU_GID),
        }
    }

    pub fn uid(&self, u: User) -> u32 {
        match u {
            User::Root => 0,
            User::Vdsm => self.vdsm,
        }
    }

    pub fn gid(&self, g: Group) -> u32 {
        match g {
            Group::Root => 0,
            Group::Kvm => self.kvm,
            Group::Qemu => self.qemu,
        }
    }
}

/// The third field of the `name:…` line of a passwd or group file.
fn lookup_id(file: &str, name: &str) -> Option<u32> {
    file.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[0] == name)
        .and_then(|f| f[2].trim().parse().ok())
}

/// The checked material to install.
pub struct Material<'a> {
    pub vdsm_key: &'a Secret,
    pub vdsm_cert: &'a str,
    pub ca: &'a str,
    pub qemu_key: &'a Secret,
    pub qemu_cert: &'a str,
    pub qemu_ca: &'a str,
}

impl Material<'_> {
    fn bytes(&self, c: Content) -> &[u8] {
        match c {
            Content::VdsmKey => self.vdsm_key.expose().as_bytes(),
            Content::VdsmCert => self.vdsm_cert.as_bytes(),
            Content::Ca => self.ca.as_bytes(),
            Content::QemuKey => self.qemu_key.expose().as_bytes(),
            Content::QemuCert => self.qemu_cert.as_bytes(),
            Content::QemuCa => self.qemu_ca.as_bytes(),
            Content::Link(_) => &[],
        }
    }
}

/// Install every file of [`FILES`]; safe to repeat (unchanged files are not rewritten).
/// They are persisted together, in one store transaction.
pub fn install_certs(store: &Store, m: &Material, owners: &Owners) -> Result<()> {
    let root = store.root();
    for dir in VDSM_DIRS {
        make_dir(root, dir, Some((owners.vdsm, owners.kvm)))?;
    }
    let mut batch = store.batch();
    for entry in FILES {
        let path = Path::new(entry.path);
        if let Some(parent) = path.parent().and_then(Path::to_str) {
            make_dir(root, parent, None)?;
        }
        let (uid, gid) = (owners.uid(entry.user), owners.gid(entry.group));
        match entry.content {
            Content::Link(target) => install_link(&mut batch, path, target, uid, gid)?,
            c => write_owned(&mut batch, path, m.bytes(c), entry.mode, uid, gid)?,
        }
        crate::fault::point("install.file");
    }
    batch
        .commit()
        .context("persisting the certificates and keys")
}

/// Create an in-root directory (0755) when missing; with `owner`, also make it theirs.
/// Like every write here, beneath the root and through no symlink: a planted
/// `/etc/pki/vdsm/keys` link is an error, never a way to put keys elsewhere.
fn make_dir(root: &Root, dir: &str, owner: Option<(u32, u32)>) -> Result<()> {
    let (fs, path) = (root.fs(), Path::new(dir));
    fs.create_dirs(path, 0o755)
        .with_context(|| format!("creating {dir}"))?;
    if let Some((uid, gid)) = owner {
        fs.set_owner(path, uid, gid)?;
        fs.set_mode(path, 0o755)?;
    }
    Ok(())
}

/// [`Batch::write`] keeps an existing file's owner and would create a new one as root, so
/// the owner is set first: a new file is written in place with its owner and then persisted;
/// an existing one (or its bind-mounted stored copy) is chowned, then rewritten.
pub fn write_owned(
    batch: &mut Batch,
    path: &Path,
    data: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let fs = batch.root().fs();
    if fs.metadata(path)?.is_some_and(|m| m.is_file()) {
        fs.set_owner(path, uid, gid)?;
        // chown clears set-id bits only, but say exactly what we want.
        fs.set_mode(path, mode)?;
    } else {
        fs.write_owned(path, data, mode, (uid, gid))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    batch
        .write(path, data, mode)
        .with_context(|| format!("installing {}", path.display()))?;
    Ok(())
}

/// A relative symlink beside its target, replaced when it points elsewhere, then stored.
fn install_link(batch: &mut Batch, path: &Path, target: &str, uid: u32, gid: u32) -> Result<()> {
    let fs = batch.root().fs();
    let current = fs.read_link(path).ok();
    if current.as_deref() != Some(Path::new(target)) {
        let staged = staged_name(path);
        fs.remove(&staged)?;
        fs.symlink(Path::new(target), &staged)
            .with_context(|| format!("linking {} to {target}", path.display()))?;
        fs.rename(&staged, path)
            .with_context(|| format!("installing {}", path.display()))?;
    }
    fs.set_owner(path, uid, gid)?;
    batch
        .persist(path)
        .with_context(|| format!("persisting {}", path.display()))?;
    Ok(())
}

fn staged_name(live: &Path) -> PathBuf {
    let name = live.file_name().unwrap_or_default().to_string_lossy();
    live.with_file_name(format!(".{name}.ovirt-node-reg.new"))
}

// ---------------------------------------------------------------------------- vdsm.conf

/// `vdsm.conf` with what the engine asked for (§5.1): `[vars] ssl`, `trust_store_path` and
/// `[addresses] management_port` set; every other line kept as it was.
pub fn render_vdsm_conf(old: &str, management_port: u16, ssl: bool) -> String {
    let mut file = IniFile::new(old, Style::Spaced);
    file.set("vars", "ssl", &ssl.to_string());
    file.set("vars", "trust_store_path", paths::VDSM_PKI_DIR);
    file.set("addresses", "management_port", &management_port.to_string());
    file.text()
}

/// The sysctl drop-in that keeps the core-dump pattern across reboots.
pub fn core_sysctl() -> String {
    format!("kernel.core_pattern = {}\n", paths::CORE_PATTERN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdsm_conf_keeps_other_lines() {
        let old = "# mine\n[vars]\nssl = false\nfake_kvm_support = true\n\n[irs]\nx = 1\n";
        let new = render_vdsm_conf(old, 54322, true);
        assert_eq!(
            new,
            "# mine\n[vars]\nssl = true\nfake_kvm_support = true\ntrust_store_path = /etc/pki/vdsm\n\n[irs]\nx = 1\n\n[addresses]\nmanagement_port = 54322\n"
        );
        assert_eq!(render_vdsm_conf(&new, 54322, true), new, "idempotent");
        assert_eq!(
            render_vdsm_conf("", 54321, true),
            "\n[vars]\nssl = true\ntrust_store_path = /etc/pki/vdsm\n\n[addresses]\nmanagement_port = 54321\n"
                .trim_start()
        );
    }

    #[test]
    fn vdsm_conf_every_copy_and_colon_form() {
        // ConfigParser takes the last copy of a key and reads `key: value` too; a key
        // rewritten only in its first copy would leave vdsm without TLS.
        let old = "[vars]\nssl = true\n[addresses]\nmanagement_port: 1\n[vars]\nssl: false\n";
        assert_eq!(
            render_vdsm_conf(old, 54321, true),
            "[vars]\nssl = true\ntrust_store_path = /etc/pki/vdsm\n[addresses]\nmanagement_port = 54321\n[vars]\nssl = true\n"
        );
    }

    #[test]
    fn owners_from_files_or_fixed_ids() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        assert_eq!(
            Owners::resolve(&root),
            Owners {
                vdsm: 36,
                kvm: 36,
                qemu: 107
            }
        );
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nvdsm:x:360:36::/:/sbin/nologin\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("etc/group"),
            "kvm:x:78:qemu\nqemu:x:1107:\n",
        )
        .unwrap();
        assert_eq!(
            Owners::resolve(&root),
            Owners {
                vdsm: 360,
                kvm: 78,
                qemu: 1107
            }
        );
    }

    #[test]
    fn keys_are_never_world_readable() {
        for f in FILES {
            if matches!(f.content, Content::VdsmKey | Content::QemuKey) {
                assert_eq!(f.mode, 0o440, "{}", f.path);
            }
        }
    }
}
