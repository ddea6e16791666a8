//! The node image: an ISO 9660 file system (image/mkiso.sh). We read its primary volume
//! descriptor only (ECMA-119 §8.4): the size of the file system, so that a medium (a CD-ROM,
//! a USB stick) is copied no further than the image, and the application identifier, where
//! mkiso.sh writes the node's version.

use anyhow::{ensure, Result};

/// The primary volume descriptor is the 17th 2048-byte sector.
pub(crate) const PVD_OFFSET: u64 = 16 * 2048;
pub(crate) const PVD_SIZE: usize = 2048;
/// What mkiso.sh puts before the version in the application identifier.
const APP_PREFIX: &str = "ovirt-node ";
/// Largest image we take (a node ISO is well under 2 GiB).
const MAX_BYTES: u64 = 16 << 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image {
    /// Bytes of the file system (volume space size × logical block size).
    pub bytes: u64,
    /// The node version, or `unknown` when the image names none we can show.
    pub version: String,
}

pub(crate) fn parse_pvd(pvd: &[u8]) -> Result<Image> {
    ensure!(
        pvd.len() >= PVD_SIZE && pvd[0] == 1 && &pvd[1..6] == b"CD001" && pvd[6] == 1,
        "not an ISO 9660 image (no primary volume descriptor at byte {PVD_OFFSET})"
    );
    let blocks = u32::from_le_bytes([pvd[80], pvd[81], pvd[82], pvd[83]]);
    let block = u16::from_le_bytes([pvd[128], pvd[129]]);
    ensure!(
        matches!(block, 512 | 1024 | 2048),
        "ISO 9660 image: logical block size {block}, expected 2048"
    );
    let bytes = u64::from(blocks) * u64::from(block);
    ensure!(
        bytes > PVD_OFFSET && bytes <= MAX_BYTES,
        "ISO 9660 image: a size of {bytes} bytes is not a node image"
    );
    Ok(Image {
        bytes,
        version: version(&pvd[574..702]),
    })
}

/// `ovirt-node VERSION` → `VERSION`, when VERSION is a plain version string. ISO 9660 keeps
/// identifiers in upper case (xorriso writes `OVIRT-NODE 1.0-TEST` for `-A "ovirt-node
/// 1.0-test"`), so the prefix is matched in any case and the version is shown in lower case.
fn version(app_id: &[u8]) -> String {
    let text = String::from_utf8_lossy(app_id).to_ascii_lowercase();
    let v = text.trim_end_matches([' ', '\0']);
    let v = v.strip_prefix(APP_PREFIX).unwrap_or("");
    let plain = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+~-".contains(&b));
    if plain { v } else { "unknown" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn pvd(blocks: u32, app: &str) -> Vec<u8> {
        let mut p = vec![b' '; PVD_SIZE];
        p[0] = 1;
        p[1..6].copy_from_slice(b"CD001");
        p[6] = 1;
        p[80..84].copy_from_slice(&blocks.to_le_bytes());
        p[84..88].copy_from_slice(&blocks.to_be_bytes());
        p[128..130].copy_from_slice(&2048u16.to_le_bytes());
        p[574..574 + app.len()].copy_from_slice(app.as_bytes());
        p
    }

    #[test]
    fn size_and_version() {
        let i = parse_pvd(&pvd(22528, "ovirt-node 0.2.0-test")).unwrap();
        assert_eq!(i.bytes, 22528 * 2048);
        assert_eq!(i.version, "0.2.0-test");
        // as xorriso writes it
        let i = parse_pvd(&pvd(22528, "OVIRT-NODE 0.2.0-TEST")).unwrap();
        assert_eq!(i.version, "0.2.0-test");
        assert_eq!(
            parse_pvd(&pvd(22528, "XORRISO")).unwrap().version,
            "unknown"
        );
        assert_eq!(
            parse_pvd(&pvd(22528, "ovirt-node a=b")).unwrap().version,
            "unknown"
        );
    }

    #[test]
    fn not_an_image() {
        let e = parse_pvd(&[0u8; PVD_SIZE]).unwrap_err().to_string();
        assert!(e.contains("not an ISO 9660 image"), "{e}");
        let e = parse_pvd(&pvd(1, "")).unwrap_err().to_string();
        assert!(e.contains("not a node image"), "{e}");
        let mut p = pvd(22528, "");
        p[128] = 3;
        assert!(parse_pvd(&p).is_err());
        assert!(parse_pvd(&p[..100]).is_err());
    }
}
