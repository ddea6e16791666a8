//! GRUB for BIOS machines without grub-install: the boot sector (`boot.img`) goes into the
//! MBR and the core image (`core.img`, made by `grub-mkimage -O i386-pc` at image build time,
//! image/mkboot.sh) into the BIOS boot partition; both only need to be told where the core
//! is. These are the fields grub-bios-setup fills (GRUB's include/grub/i386/pc/boot.h and
//! boot/i386/pc/diskboot.S).

use anyhow::{ensure, Result};

/// boot.img: the LBA of the core image's first sector (8 bytes, little-endian).
const KERNEL_SECTOR: usize = 0x5c;
/// boot.img: a 2-byte jump over the workaround for BIOSes that pass a wrong boot drive;
/// grub-bios-setup replaces it by two NOPs for hard disks.
const DRIVE_CHECK: usize = 0x66;
/// diskboot.img (the core's first sector): the block list of the rest of the core, at the
/// end of the sector: start LBA (8 bytes), sector count (2), load segment (2).
const BLOCKLIST: usize = 512 - 12;
/// The load segment diskboot.img is built with (GRUB_BOOT_MACHINE_KERNEL_SEG + 0x20).
const CORE_SEGMENT: u16 = 0x0820;

/// The MBR's boot code (its first 440 bytes) and the core image, patched for a core at
/// `core_lba` in a partition of `room` bytes.
pub(crate) fn patch(
    boot_img: &[u8],
    core_img: &[u8],
    core_lba: u64,
    room: u64,
) -> Result<([u8; 440], Vec<u8>)> {
    ensure!(
        boot_img.len() == 512 && boot_img[510..] == [0x55, 0xAA],
        "boot.img: expected GRUB's 512-byte boot sector"
    );
    ensure!(
        core_img.len() >= 1024
            && u16::from_le_bytes([core_img[510], core_img[511]]) == CORE_SEGMENT,
        "core.img: expected a GRUB i386-pc core image (grub-mkimage -O i386-pc)"
    );
    // grub-mkimage does not pad the core to whole sectors; the block list counts them.
    let mut core = core_img.to_vec();
    core.resize(core.len().div_ceil(512) * 512, 0);
    ensure!(
        core.len() as u64 <= room,
        "core.img: {} bytes do not fit the {room}-byte BIOS boot partition",
        core_img.len()
    );
    let mut mbr = [0u8; 440];
    mbr.copy_from_slice(&boot_img[..440]);
    mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    mbr[DRIVE_CHECK..DRIVE_CHECK + 2].copy_from_slice(&[0x90, 0x90]);
    let rest = u16::try_from(core.len() / 512 - 1)?;
    core[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    core[BLOCKLIST + 8..BLOCKLIST + 10].copy_from_slice(&rest.to_le_bytes());
    Ok((mbr, core))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images() -> (Vec<u8>, Vec<u8>) {
        let mut boot = vec![0u8; 512];
        boot[DRIVE_CHECK..DRIVE_CHECK + 2].copy_from_slice(&[0xEB, 0x05]);
        boot[510..].copy_from_slice(&[0x55, 0xAA]);
        let mut core = vec![0u8; 512 * 40 - 100];
        core[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&2u64.to_le_bytes());
        core[510..512].copy_from_slice(&CORE_SEGMENT.to_le_bytes());
        (boot, core)
    }

    #[test]
    fn sector_and_blocklist_point_at_the_partition() {
        let (boot, core) = images();
        let (mbr, core) = patch(&boot, &core, 2048, 1 << 20).unwrap();
        assert_eq!(mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8], 2048u64.to_le_bytes());
        assert_eq!(mbr[DRIVE_CHECK..DRIVE_CHECK + 2], [0x90, 0x90]);
        assert_eq!(core[BLOCKLIST..BLOCKLIST + 8], 2049u64.to_le_bytes());
        assert_eq!(core[BLOCKLIST + 8..BLOCKLIST + 10], 39u16.to_le_bytes());
        assert_eq!(core[510..512], CORE_SEGMENT.to_le_bytes());
        assert_eq!(core.len(), 512 * 40, "padded to whole sectors");
    }

    #[test]
    fn wrong_images_are_named() {
        let (boot, core) = images();
        let e = patch(&core[..512], &core, 2048, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("boot.img"), "{e}");
        let e = patch(&boot, &boot, 2048, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("core.img"), "{e}");
        let e = patch(&boot, &core, 2048, 4096).unwrap_err();
        assert!(e.to_string().contains("do not fit"), "{e}");
    }

    #[test]
    fn the_installed_grub_images_have_these_fields() {
        // Debian's grub-pc-bin, where installed (the build machine: build-support/setup.sh)
        let dir = std::path::Path::new("/usr/lib/grub/i386-pc");
        let (Ok(boot), Ok(disk)) = (
            std::fs::read(dir.join("boot.img")),
            std::fs::read(dir.join("diskboot.img")),
        ) else {
            panic!("grub-pc-bin is not installed: run build-support/setup.sh");
        };
        assert_eq!(boot[KERNEL_SECTOR..KERNEL_SECTOR + 8], 1u64.to_le_bytes());
        assert_eq!(boot[DRIVE_CHECK], 0xEB, "a short jump");
        assert_eq!(disk[BLOCKLIST..BLOCKLIST + 8], 2u64.to_le_bytes());
        assert_eq!(disk[510..512], CORE_SEGMENT.to_le_bytes());
    }
}
