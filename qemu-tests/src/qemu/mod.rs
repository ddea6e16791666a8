//! The minimal direct-kernel QEMU harness (docs/qemu-harness.md, Recipe A).
//!
//! One boot: an initramfs made by `image/mkinitrd-min.sh` (the only builder; cached by the hash
//! of its inputs in `target/qemu-cache`) from the static `target/static/ovirt-node-reg` (built by
//! `build-support/build-static.sh`, or `QH_BIN`), busybox-static and the Debian kernel's
//! modules; that kernel as an uncompressed `vmlinux` booted through its PVH note; TCG (never KVM
//! unless `QH_ACCEL=kvm`); user-mode networking with `restrict=on` and a `guestfwd` per NIC from
//! `10.0.2.100:PORT` to the simulator on `127.0.0.1:PORT` (the guest reaches nothing else); an
//! optional config disk ([`Disk`], ext4 labelled `CONFIG`); the serial console in a file; a hard
//! timeout after which the harness kills QEMU itself. At most [`MAX_VMS`] boots run at once.
//! QEMU exits 0 even after a kernel panic, so callers judge a boot by what the guest printed
//! ([`Boot`]), the disk and the simulator's events, never by QEMU's exit code.
//!
//! Two images ([`Image`]):
//! * [`Image::Pid1`]: the binary itself is `/init` (its PID-1 mode); the harness adds
//!   `ovirt.reg.poweroff` so it powers off when done; the store is the config disk.
//! * [`Image::ScriptInit`]: busybox sh is `/init` ([`INIT`]): it mounts proc/sys/dev/run, a tmpfs
//!   on `/config` (the store), runs the image's pre-init (the modules), runs
//!   `ovirt-node-reg --kmsg boot` (or the machine's [`CONSOLE_SCRIPT`]), prints `QH-EXIT rc=N`,
//!   `ovirt-node-reg status --json`, the links it sees and the clock, then powers off. The VLAN
//!   and bond tests read those links.
//!
//! Two more boot paths: [`Image::Dracut`] (the dracut initramfs and a tiny ext4 root) and
//! [`Image::Iso`] (the node ISO from `image/mkiso.sh` on the CD-ROM, `-cdrom ISO -boot d`, no
//! `-kernel`, with [`Vm::vdsm_port`]: `hostfwd` from 127.0.0.1 only to the guest's vdsm port;
//! [`boot_with`] runs the engine's check while the guest waits).
//!
//! Missing host tools are errors that name the Debian package (`build-support/setup.sh`
//! installs them all): a boot test never skips.
//!
//! One module per concern: [`host`] (tools, kernel, directories, the static binary),
//! [`images`] (the initramfs, dracut, root and PXE images, cached), [`iso`] (the node ISO),
//! [`disk`] (the config disk), [`vm`] (a boot and its QEMU command line), [`run`] (running it)
//! and [`boot`](mod@boot) (reading what the guest printed). Everything public is re-exported
//! here, so callers use `qemu::Vm`, `qemu::boot`, ….

pub mod boot;
pub mod disk;
pub mod host;
pub mod images;
pub mod iso;
pub mod run;
pub mod vm;

pub use crate::config::GUEST_ENGINE_ADDR;

/// The harness's kernel arguments before each test's own. `no_timer_check`: under TCG on a
/// loaded host the kernel's IO-APIC timer check can miss its ticks and panic ("IO-APIC +
/// timer doesn't work", docs/qemu-harness.md §8); the check proves nothing about the node.
/// It ends with [`TCG_APPEND`].
pub const BASE_APPEND: &str = "console=ttyS0 panic=-1 no_timer_check quiet init_on_alloc=0";

/// Kernel arguments for TCG that every guest gets, also the ISO's and the installed disk's
/// boots (through `image/mkboot.sh --append`). `init_on_alloc=0`: the Debian kernel zeroes
/// every page it allocates, and under TCG zeroing a page that held code the guest ran (the
/// freed initramfs) costs milliseconds: the installs, upgrades and the disk boots spent 30-40 s
/// in `clear_page_rep` (docs/qemu-harness.md §9). Nothing the tests check depends on it.
pub const TCG_APPEND: &str = "init_on_alloc=0";

/// QEMU's `-accel` for every guest unless `QH_ACCEL` names another (`kvm` on a laptop).
/// `tb-size=128`: a 128 MiB cache of translated code instead of QEMU's 1 GiB default, so it
/// fills and is flushed during a long boot. A flush forgets which guest pages held code, and
/// zeroing such a page otherwise takes TCG's slow path (see [`TCG_APPEND`]): the systemd
/// ISO's boot took 117 s with the default and 50 s with this (docs/qemu-harness.md §9 item 12).
/// `build-support/qemu-lib.sh` passes the same.
pub const TCG_ACCEL: &str = "tcg,tb-size=128";

/// QEMU's machine for every guest: q35, a PCI Express chipset as on the servers oVirt Node
/// runs on (and oVirt's own default chipset for VMs). The older i440fx routes each PCI
/// device's legacy interrupt through ACPI link devices whose methods the guest kernel
/// interprets when the driver enables the device: under TCG 160 ms per device, 0.3 s of a
/// minimal boot with one NIC and one disk (docs/qemu-harness.md §9 item 17).
/// `build-support/qemu-lib.sh` passes the same.
pub const MACHINE: &str = "q35";

/// The GRUB menu timeout of the installed disk in the tests (`image/mkboot.sh --timeout`):
/// no menu, as the ISO's (`image/mkiso.sh --timeout 0`); the product waits 1 s.
pub const GRUB_TIMEOUT: &str = "0";

pub use boot::{fields, Boot, DONE_MARKER, ENTROPY_WAIT, EXIT_MARKER};
pub use disk::Disk;
pub use host::{
    artifacts_dir, host, is_static_elf, kernel_version, static_binary, target_dir, workspace, Host,
};
pub use images::{
    initramfs_file, pxe_tree, root_disk, vmlinux, Extra, Flavour, Image, CONSOLE_SCRIPT, INIT,
    MODULES,
};
pub use iso::{iso_image, iso_image_with, LiveRoot};
pub use run::{boot, boot_with, total_qemu_time, BOOT_TIMES, MAX_VMS};
pub use vm::{free_port, Nic, Pxe, Vm, CPU, OVMF_CODE, OVMF_VARS, VDSM_PORT};

#[cfg(test)]
mod tests {
    #[test]
    fn every_direct_boot_gets_the_tcg_arguments() {
        assert!(super::BASE_APPEND.ends_with(super::TCG_APPEND));
    }

    /// The demo and the benchmark boot their guests as the tests do.
    #[test]
    fn the_scripts_boot_the_same_machine_and_accelerator() {
        let lib = include_str!("../../../build-support/qemu-lib.sh");
        for arg in [
            format!("-accel {} ", super::TCG_ACCEL),
            format!("-machine {} ", super::MACHINE),
        ] {
            assert!(lib.contains(&arg), "qemu-lib.sh has no `{arg}`");
        }
    }
}
