//! Who this host is: the unique id vdsm computes, MAC addresses, host name.
//!
//! Unique id (docs/ovirt-protocol.md §6.1, v1 rules): the first line of `/etc/vdsm/vdsm.id`
//! if present; else the SMBIOS system UUID, lower-cased (vdsm reads it with
//! python-dmidecode; we read the same value from sysfs, which needs no tool); else a random
//! UUID, which the caller stores in `vdsm.id` (as host-deploy does) so it never changes.

use anyhow::{Context, Result};
use serde::Serialize;
use std::fs;
use std::path::Path;

use crate::fsutil::read_optional;
use crate::paths::{
    Root, DMI_PRODUCT_UUID, ETC_HOSTNAME, KERNEL_HOSTNAME, SSH_HOST_KEYS, SYS_CLASS_NET, VDSM_ID,
};
use crate::values::{Hostname, Mac};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdSource {
    VdsmId,
    Dmi,
    Generated,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub unique_id: String,
    pub id_source: IdSource,
    pub macs: Vec<Mac>,
    pub hostname: Option<String>,
}

/// Read the identity; generates (but does not store) an id when there is none.
pub fn read(root: &Root) -> Result<Identity> {
    let (unique_id, id_source) = match existing_id(root)? {
        Some(found) => found,
        None => (random_uuid()?, IdSource::Generated),
    };
    Ok(Identity {
        unique_id,
        id_source,
        macs: physical_macs(root),
        hostname: hostname(root),
    })
}

/// The identity, with the id written to `/etc/vdsm/vdsm.id` when that file is missing (as
/// `vdsm-tool register` does; no trailing newline, like host-deploy), so that the id
/// stays the same from now on. Returns whether it wrote.
pub fn ensure(root: &Root) -> Result<(Identity, bool)> {
    let id = read(root)?;
    let wrote = id.id_source != IdSource::VdsmId;
    if wrote {
        root.fs()
            .write_atomic(Path::new(VDSM_ID), id.unique_id.as_bytes(), 0o644)?;
    }
    Ok((id, wrote))
}

fn existing_id(root: &Root) -> Result<Option<(String, IdSource)>> {
    if let Some(text) = read_optional(&root.join(VDSM_ID))? {
        if let Some(id) = text.lines().next().map(sanitize).filter(|s| !s.is_empty()) {
            return Ok(Some((id, IdSource::VdsmId)));
        }
    }
    let dmi = read_optional(&root.join(DMI_PRODUCT_UUID)).unwrap_or(None);
    Ok(dmi.and_then(|t| dmi_uuid(&t)).map(|u| (u, IdSource::Dmi)))
}

/// The engine keeps only `[A-Za-z0-9-.:_]` of an id (§6.1); so do we, to match it.
fn sanitize(id: &str) -> String {
    id.trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-.:_".contains(*c))
        .collect()
}

/// A DMI UUID that identifies a machine: well formed, not all zeros or all ones (firmware
/// placeholders that many machines share).
fn dmi_uuid(text: &str) -> Option<String> {
    let u = text.trim().to_ascii_lowercase();
    let hex: String = u.chars().filter(|c| *c != '-').collect();
    let shape_ok = u.len() == 36 && hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let placeholder = hex.bytes().all(|b| b == b'0') || hex.bytes().all(|b| b == b'f');
    (shape_ok && !placeholder).then_some(u)
}

/// A random (version 4) UUID from the kernel's random source.
fn random_uuid() -> Result<String> {
    let mut b = [0u8; 16];
    let mut filled = 0;
    // getrandom may return fewer bytes than asked; a bounded number of tries is plenty.
    for _ in 0..16 {
        if filled == b.len() {
            break;
        }
        filled += rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty())
            .context("reading random bytes for a host id")?;
    }
    anyhow::ensure!(
        filled == b.len(),
        "the kernel gave too few random bytes for a host id"
    );
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..].concat()
    ))
}

/// MACs of physical NICs (those with a `device` link in sysfs), sorted, without zeros.
pub fn physical_macs(root: &Root) -> Vec<Mac> {
    let Ok(entries) = fs::read_dir(root.join(SYS_CLASS_NET)) else {
        return Vec::new();
    };
    let mut macs: Vec<Mac> = entries
        .flatten()
        .filter(|e| e.path().join("device").exists())
        .filter_map(|e| fs::read_to_string(e.path().join("address")).ok())
        .filter_map(|a| a.trim().parse::<Mac>().ok())
        .filter(|m| !m.is_zero())
        .collect();
    macs.sort();
    macs.dedup();
    macs
}

/// `SHA256:<base64>` of the first sshd host key found (OpenSSH's fingerprint form), sent
/// as `sshKeyFingerprint` so the engine can pin this host's key; `None` without sshd keys.
pub fn ssh_host_key_fingerprint(root: &Root) -> Option<String> {
    use base64::Engine as _;
    let line = SSH_HOST_KEYS
        .iter()
        .find_map(|p| fs::read_to_string(root.join(p)).ok())?;
    let blob = line.split_whitespace().nth(1)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &raw);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

/// The host name: the running kernel's, else `/etc/hostname`; only a name that passes the
/// one host-name rule (`values::Hostname`: the engine gets it as the host's name), and not
/// the placeholders `(none)` and `localhost`.
pub fn hostname(root: &Root) -> Option<String> {
    [KERNEL_HOSTNAME, ETC_HOSTNAME]
        .iter()
        .filter_map(|p| fs::read_to_string(root.join(p)).ok())
        .filter_map(|t| t.trim().parse::<Hostname>().ok())
        .map(|h| h.0)
        .find(|h| h != "localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Root) {
        let d = tempfile::tempdir().unwrap();
        let r = Root::new(d.path());
        (d, r)
    }

    fn put(root: &Root, path: &str, text: &str) {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn vdsm_id_wins_first_line_sanitized() {
        let (_d, r) = tree();
        put(&r, VDSM_ID, "abc-123 \nsecond\n");
        put(
            &r,
            DMI_PRODUCT_UUID,
            "4C4C4544-0042-3510-8052-B4C04F4E3232\n",
        );
        let id = read(&r).unwrap();
        assert_eq!(
            (id.unique_id.as_str(), id.id_source),
            ("abc-123", IdSource::VdsmId)
        );
    }

    #[test]
    fn dmi_uuid_lowercased_and_stored() {
        let (_d, r) = tree();
        put(
            &r,
            DMI_PRODUCT_UUID,
            "4C4C4544-0042-3510-8052-B4C04F4E3232\n",
        );
        let id = read(&r).unwrap();
        assert_eq!(id.unique_id, "4c4c4544-0042-3510-8052-b4c04f4e3232");
        assert_eq!(id.id_source, IdSource::Dmi);
        let (id, wrote) = ensure(&r).unwrap();
        assert!(wrote);
        assert_eq!(fs::read_to_string(r.join(VDSM_ID)).unwrap(), id.unique_id);
        assert_eq!(read(&r).unwrap().id_source, IdSource::VdsmId);
    }

    #[test]
    fn placeholder_dmi_generates_and_persists_once() {
        let (_d, r) = tree();
        put(
            &r,
            DMI_PRODUCT_UUID,
            "00000000-0000-0000-0000-000000000000\n",
        );
        let (first, wrote) = ensure(&r).unwrap();
        assert!(wrote);
        assert_eq!(first.id_source, IdSource::Generated);
        assert_eq!(first.unique_id.len(), 36);
        assert_eq!(
            fs::read_to_string(r.join(VDSM_ID)).unwrap(),
            first.unique_id,
            "no trailing newline"
        );
        let (second, wrote) = ensure(&r).unwrap();
        assert!(!wrote);
        assert_eq!(second.unique_id, first.unique_id);
    }

    #[test]
    fn macs_of_physical_nics_sorted() {
        let (_d, r) = tree();
        put(&r, "/sys/class/net/eth1/address", "52:54:00:00:00:02\n");
        put(&r, "/sys/class/net/eth1/device/vendor", "x");
        put(&r, "/sys/class/net/eth0/address", "52:54:00:00:00:01\n");
        put(&r, "/sys/class/net/eth0/device/vendor", "x");
        put(&r, "/sys/class/net/lo/address", "00:00:00:00:00:00\n");
        put(&r, "/sys/class/net/br0/address", "52:54:00:00:00:09\n");
        let macs: Vec<String> = physical_macs(&r).iter().map(|m| m.to_string()).collect();
        assert_eq!(macs, ["52:54:00:00:00:01", "52:54:00:00:00:02"]);
    }

    #[test]
    fn ssh_fingerprint_like_ssh_keygen() {
        let (_d, r) = tree();
        assert_eq!(ssh_host_key_fingerprint(&r), None);
        // `ssh-keygen -lf` of this key prints SHA256:gHJluyVyngICXTnOFNZbA3H7UW1FHk3UakPoiuWweAM
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFo5GBGhX5+w3z2Ao2N9j55v2vbTOkYPRkNH79P1njYk root@x\n";
        put(&r, "/etc/ssh/ssh_host_ed25519_key.pub", key);
        let fp = ssh_host_key_fingerprint(&r).unwrap();
        assert_eq!(fp, "SHA256:gHJluyVyngICXTnOFNZbA3H7UW1FHk3UakPoiuWweAM");
        put(&r, "/etc/ssh/ssh_host_ecdsa_key.pub", "garbage");
        assert_eq!(
            ssh_host_key_fingerprint(&r),
            None,
            "the first key found is the one reported"
        );
    }

    #[test]
    fn hostname_from_etc() {
        let (_d, r) = tree();
        assert_eq!(hostname(&r), None);
        put(&r, ETC_HOSTNAME, "node1.example.com.\n");
        assert_eq!(hostname(&r).as_deref(), Some("node1.example.com"));
        for odd in ["localhost\n", "(none)\n", "node 1\n", "bad_name.example\n"] {
            put(&r, ETC_HOSTNAME, odd);
            assert_eq!(hostname(&r), None, "{odd:?}");
        }
    }
}
