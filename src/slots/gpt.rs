//! The installed disk's partition table: a protective MBR and a GPT (UEFI 2.x §5), written
//! by us rather than by sfdisk so that the node image needs no partitioning tool. Only
//! written, never parsed: the slots are found again by their GPT names, which the kernel
//! reports (`PARTNAME=` in sysfs).

use anyhow::{ensure, Result};

/// Logical sector size we write for (virtio, SATA and SCSI disks of 512-byte sectors).
pub(crate) const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
/// 128 entries of 128 bytes: the usual 32 sectors.
const ENTRIES: usize = 128;
const ENTRY_SIZE: usize = 128;
const TABLE_SECTORS: u64 = (ENTRIES * ENTRY_SIZE) as u64 / SECTOR;

const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// One partition: GPT name, type, first and last sector (inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub name: &'static str,
    type_guid: &'static str,
    pub first: u64,
    pub last: u64,
}

impl Part {
    pub(crate) fn offset(&self) -> u64 {
        self.first * SECTOR
    }
    pub(crate) fn bytes(&self) -> u64 {
        (self.last + 1 - self.first) * SECTOR
    }
}

/// The whole disk: partitions in number order (1 = `parts[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub sectors: u64,
    pub parts: Vec<Part>,
}

/// Sizes, in MiB, of what `install` lays out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    pub bios: u64,
    pub esp: u64,
    pub slot: u64,
    pub config_min: u64,
}

/// GPT names and their order: partition numbers 1-5 (grub.cfg names gpt2-gpt4).
pub(crate) const NAMES: [&str; 5] = [
    super::BIOS_PART,
    super::ESP_PART,
    super::SLOT_A_PART,
    super::SLOT_B_PART,
    super::CONFIG_PART,
];

/// BIOS boot, ESP, slots A and B, then the config store on the rest; 1 MiB aligned.
pub(crate) fn plan(disk_bytes: u64, sizes: Sizes) -> Result<Layout> {
    let sectors = disk_bytes / SECTOR;
    let last_usable = sectors.saturating_sub(1 + 1 + TABLE_SECTORS);
    let types = [BIOS_BOOT, ESP, LINUX_FS, LINUX_FS, LINUX_FS];
    let mib = [sizes.bios, sizes.esp, sizes.slot, sizes.slot, 0];
    let mut parts = Vec::new();
    let mut next = MIB / SECTOR;
    for i in 0..NAMES.len() {
        let last = if i == NAMES.len() - 1 {
            last_usable
        } else {
            next + mib[i] * MIB / SECTOR - 1
        };
        parts.push(Part {
            name: NAMES[i],
            type_guid: types[i],
            first: next,
            last,
        });
        next = last + 1;
    }
    let config = &parts[NAMES.len() - 1];
    let need = (config.first * SECTOR + sizes.config_min * MIB + MIB).div_ceil(MIB);
    ensure!(
        config.last > config.first && config.bytes() >= sizes.config_min * MIB,
        "the disk holds {} MiB; this layout needs at least {need} MiB ({} MiB slots, {} MiB for the config store)",
        disk_bytes / MIB,
        sizes.slot,
        sizes.config_min
    );
    Ok(Layout { sectors, parts })
}

/// What to write: sector 0 (boot code + protective entry), the primary header and table
/// (sectors 1-33), and the backup table and header at the end of the disk.
#[derive(Debug)]
pub(crate) struct Tables {
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
    pub tail_offset: u64,
}

/// The tables for `layout`; `boot_code` goes into the MBR's first 440 bytes; `guids` gives
/// the disk GUID and one per partition (random in `install`, fixed in tests).
pub(crate) fn render(layout: &Layout, boot_code: &[u8; 440], guids: &[[u8; 16]]) -> Tables {
    let last = layout.sectors - 1;
    let mut table = vec![0u8; ENTRIES * ENTRY_SIZE];
    for (i, p) in layout.parts.iter().enumerate() {
        let e = &mut table[i * ENTRY_SIZE..(i + 1) * ENTRY_SIZE];
        e[0..16].copy_from_slice(&guid(p.type_guid));
        e[16..32].copy_from_slice(&guids[i + 1]);
        e[32..40].copy_from_slice(&p.first.to_le_bytes());
        e[40..48].copy_from_slice(&p.last.to_le_bytes());
        for (j, u) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
        }
    }
    let table_crc = crc32(&table);
    let first_usable = 2 + TABLE_SECTORS;
    let last_usable = last - 1 - TABLE_SECTORS;
    let header = |mine: u64, other: u64, entries_at: u64| {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&mine.to_le_bytes());
        h[32..40].copy_from_slice(&other.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&guids[0]);
        h[72..80].copy_from_slice(&entries_at.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&table_crc.to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let mut head = protective_mbr(boot_code, layout.sectors).to_vec();
    head.extend(header(1, last, 2));
    head.extend(&table);
    let mut tail = table;
    tail.extend(header(last, 1, last - TABLE_SECTORS));
    Tables {
        head,
        tail,
        tail_offset: (last - TABLE_SECTORS) * SECTOR,
    }
}

/// Sector 0: boot code, one partition of type 0xEE over the disk (up to 2 TiB), the signature.
fn protective_mbr(boot_code: &[u8; 440], sectors: u64) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[..440].copy_from_slice(boot_code);
    let e = &mut m[446..462];
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    e[4] = 0xEE;
    e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    e[12..16].copy_from_slice(&size.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xAA;
    m
}

/// A GUID's on-disk form: the first three fields little-endian, the rest as written.
fn guid(text: &str) -> [u8; 16] {
    let hex: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'-')
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap_or("00"), 16).unwrap_or(0))
        .collect();
    let mut g = [0u8; 16];
    g.copy_from_slice(&hex[..16]);
    g[0..4].reverse();
    g[4..6].reverse();
    g[6..8].reverse();
    g
}

/// Random version-4 GUIDs: the disk's and one per partition.
pub(crate) fn random_guids(n: usize) -> Result<Vec<[u8; 16]>> {
    let mut out = vec![[0u8; 16]; n];
    for g in &mut out {
        getrandom::fill(g).map_err(|e| anyhow::anyhow!("no random numbers for GUIDs: {e}"))?;
        g[7] = (g[7] & 0x0F) | 0x40; // version 4 (the byte-swapped third field)
        g[8] = (g[8] & 0x3F) | 0x80; // RFC 4122 variant
    }
    Ok(out)
}

/// CRC-32 (IEEE 802.3, reflected), as GPT uses; bitwise, the tables are small.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & 0u32.wrapping_sub(crc & 1));
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: Sizes = Sizes {
        bios: 1,
        esp: 64,
        slot: 512,
        config_min: 64,
    };

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn guid_mixed_endian() {
        assert_eq!(
            guid(ESP),
            [
                0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
                0xC9, 0x3B
            ]
        );
    }

    #[test]
    fn layout_is_aligned_and_fills_the_disk() {
        let l = plan(2048 * MIB, SIZES).unwrap();
        let firsts: Vec<u64> = l.parts.iter().map(|p| p.first).collect();
        assert_eq!(firsts, [2048, 4096, 135168, 1183744, 2232320]);
        assert_eq!(l.parts[2].bytes(), 512 * MIB);
        assert_eq!(l.parts[4].last, 2048 * MIB / SECTOR - 34);
        let e = plan(1000 * MIB, SIZES).unwrap_err().to_string();
        assert!(e.contains("needs at least 1155 MiB"), "{e}");
    }

    #[test]
    fn tables_carry_checksums_names_and_the_backup() {
        let l = plan(2048 * MIB, SIZES).unwrap();
        let guids = vec![[7u8; 16]; 6];
        let t = render(&l, &[0x90; 440], &guids);
        assert_eq!(t.head.len(), 34 * 512);
        assert_eq!(&t.head[510..512], &[0x55, 0xAA]);
        assert_eq!(t.head[446 + 4], 0xEE);
        let h = &t.head[512..1024];
        assert_eq!(&h[..8], b"EFI PART");
        let mut zeroed = h[..92].to_vec();
        zeroed[16..20].fill(0);
        assert_eq!(crc32(&zeroed).to_le_bytes(), h[16..20]);
        assert_eq!(crc32(&t.head[1024..]).to_le_bytes(), h[88..92]);
        let name: Vec<u16> = t.head[1024 + 2 * 128 + 56..1024 + 2 * 128 + 56 + 24]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16_lossy(&name), SLOT_A_NAME);
        assert_eq!(t.tail.len(), 33 * 512);
        assert_eq!(t.tail_offset + t.tail.len() as u64, 2048 * MIB);
        assert_eq!(&t.tail[t.tail.len() - 512..][..8], b"EFI PART");
        assert_eq!(&t.tail[..512 * 32], &t.head[1024..]);
    }

    const SLOT_A_NAME: &str = "ovirt-node-a";

    #[test]
    fn random_guids_differ_and_are_version_4() {
        let g = random_guids(3).unwrap();
        assert_ne!(g[0], g[1]);
        assert!(g.iter().all(|g| g[7] >> 4 == 4 && g[8] >> 6 == 2));
    }
}
