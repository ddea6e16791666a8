//! The node ISO (`image/mkiso.sh`): its two big parts (the dracut initramfs with
//! dmsquash-live and the live root), cached like the other images, and the ISO itself, made
//! per machine because it may carry a token.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use super::host::{host, need, static_binary, target_dir, tempfile_dir, which, workspace, Host};
use super::images::{
    build_cached, files_under, image_script, image_script_at, inputs_key, run_script, token_file,
    NET_DRIVERS,
};
use super::{GRUB_TIMEOUT, TCG_APPEND};

/// The ISO's live root (`image/mkroot-live.sh --root`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveRoot {
    /// busybox init with the units' order: 5 MB, about 5 s to build.
    Busybox,
    /// Debian minbase with systemd running the real units (mmdebstrap: downloads from the
    /// Debian mirror, about 2 min, 58 MB).
    Systemd,
}

impl LiveRoot {
    pub fn name(self) -> &'static str {
        match self {
            LiveRoot::Busybox => "busybox",
            LiveRoot::Systemd => "systemd",
        }
    }
}

/// The ISO's two big parts, built once and cached by the hash of their inputs: the dracut
/// initramfs with dmsquash-live (`image/mkinitrd-dracut.sh --live --net-drivers virtio_net`,
/// about 15 s alone) and the live root (`image/mkroot-live.sh`) with `root_bin` as its
/// `/usr/sbin/ovirt-node-reg` (the initramfs always has the real binary).
fn iso_parts_with(host: &Host, root: LiveRoot, root_bin: &Path) -> Result<(PathBuf, PathBuf)> {
    need("dracut", "dracut")?;
    ensure!(
        Path::new("/usr/lib/dracut/modules.d/90dmsquash-live").is_dir(),
        "dracut's dmsquash-live module is missing: the ISO tests need the Debian package \
         dracut-live (build-support/setup.sh installs it)"
    );
    need("dmsetup", "dmsetup")?;
    need("mksquashfs", "squashfs-tools")?;
    need("openssl", "openssl")?;
    let dir = target_dir().join("qemu-cache");
    fs::create_dir_all(&dir)?;
    // Both parts at once, each under its own build lock (build_cached). One after the other,
    // the initramfs, which every ISO and install scenario needs, started only when the busybox
    // root was done: the first ISO boot came at 151-168 s of the QEMU tier instead of about
    // 100 s, and the BIOS install's five boots after it were the tier's long pole.
    std::thread::scope(|scope| {
        let rootfs = scope.spawn(|| live_root(&dir, root, root_bin));
        let initrd = live_initrd(host, &dir);
        let rootfs = rootfs
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the live root's build panicked")));
        Ok((initrd?, rootfs?))
    })
}

/// The live root (`image/mkroot-live.sh`) with `root_bin` as its `/usr/sbin/ovirt-node-reg`.
fn live_root(dir: &Path, root: LiveRoot, root_bin: &Path) -> Result<PathBuf> {
    let ws = workspace();
    let script = ws.join("image/mkroot-live.sh");
    let openssl = which("openssl").context("openssl")?;
    let mut files = vec![
        script.clone(),
        root_bin.to_path_buf(),
        openssl,
        ws.join("dracut/ovirt-node-reg.service"),
        ws.join("image/mkboot.sh"),
    ];
    files.extend(files_under(&ws.join("image/live"))?);
    let base = match root {
        LiveRoot::Systemd => Some(debian_base(dir)?),
        LiveRoot::Busybox => None,
    };
    let base_name = base
        .as_deref()
        .map(Path::to_string_lossy)
        .unwrap_or_default();
    let key = inputs_key(&files, &[root.name(), &base_name, TCG_APPEND, GRUB_TIMEOUT])?;
    let rootfs = dir.join(format!("root-live-{}-{}.squashfs", root.name(), &key[..24]));
    let mut cmd = image_script_at(0);
    cmd.arg(&script)
        .arg(&rootfs)
        .arg(root_bin)
        .args(["--root", root.name()])
        .args(["--boot-args", TCG_APPEND, "--boot-timeout", GRUB_TIMEOUT]);
    if let Some(base) = &base {
        cmd.arg("--base").arg(base);
    }
    build_cached(&rootfs, &mut cmd, "image/mkroot-live.sh")?;
    Ok(rootfs)
}

/// The dracut initramfs with dmsquash-live and the real binary.
fn live_initrd(host: &Host, dir: &Path) -> Result<PathBuf> {
    let ws = workspace();
    let bin = static_binary()?;
    let script = ws.join("image/mkinitrd-dracut.sh");
    let mut files = vec![script.clone(), bin.clone()];
    files.extend(files_under(&ws.join("dracut"))?);
    let key = inputs_key(&files, &[&host.kver, "live", NET_DRIVERS])?;
    let initrd = dir.join(format!("dracut-live-{}.img", &key[..24]));
    let mut cmd = image_script_at(0);
    cmd.arg(&script)
        .arg(&bin)
        .arg(&initrd)
        .args(["--live", "--kver", &host.kver])
        .args(["--net-drivers", NET_DRIVERS]);
    build_cached(&initrd, &mut cmd, "image/mkinitrd-dracut.sh --live")?;
    Ok(initrd)
}

/// The systemd root's Debian base in `dir` (`image/mkdebian-base.sh`: it keys, locks and
/// caches the tarball itself, so build-support/test-all.sh can start it before the tests are
/// built; here it is found made, waited for, or made).
fn debian_base(dir: &Path) -> Result<PathBuf> {
    need("mmdebstrap", "mmdebstrap")?;
    let mut cmd = image_script();
    cmd.arg(workspace().join("image/mkdebian-base.sh")).arg(dir);
    let out = run_script(&mut cmd, "image/mkdebian-base.sh")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let base = PathBuf::from(stdout.lines().last().unwrap_or_default());
    ensure!(
        base.is_file(),
        "image/mkdebian-base.sh named no tarball: {stdout}"
    );
    Ok(base)
}

/// The node ISO for machine `name` (`target/qemu-disks/<name>.iso`, mode 0600: it may hold a
/// token), made by `image/mkiso.sh` from the cached parts with `append` as the boot entry's
/// kernel arguments (no boot prompt) and, with `token`, the token in an initramfs overlay
/// (`ovirt.reg.token_file=/etc/ovirt-node-reg/token`), the root `root`. About 2 s once the
/// parts exist.
pub fn iso_image(name: &str, root: LiveRoot, append: &str, token: Option<&str>) -> Result<PathBuf> {
    iso_image_with(name, root, append, token, None, None)
}

/// [`iso_image`] of node version `version` (mkiso.sh `--version`; default the binary's),
/// whose live root runs `root_bin` instead of the real binary (a broken image).
pub fn iso_image_with(
    name: &str,
    root: LiveRoot,
    append: &str,
    token: Option<&str>,
    version: Option<&str>,
    root_bin: Option<&Path>,
) -> Result<PathBuf> {
    let host = host()?;
    need("xorriso", "xorriso")?;
    need("grub-mkimage", "grub-common")?;
    need("mformat", "mtools")?;
    ensure!(
        Path::new("/usr/lib/grub/x86_64-efi").is_dir(),
        "/usr/lib/grub/x86_64-efi missing: the ISO tests need the Debian package \
         grub-efi-amd64-bin (build-support/setup.sh installs it)"
    );
    ensure!(
        Path::new("/usr/lib/ISOLINUX/isolinux.bin").is_file(),
        "/usr/lib/ISOLINUX/isolinux.bin missing: the ISO tests need the Debian package isolinux"
    );
    ensure!(
        Path::new("/usr/lib/syslinux/modules/bios/ldlinux.c32").is_file(),
        "ldlinux.c32 missing: the ISO tests need the Debian package syslinux-common"
    );
    let bin = static_binary()?;
    let (initrd, rootfs) = iso_parts_with(&host, root, root_bin.unwrap_or(&bin))?;
    let disks = target_dir().join("qemu-disks");
    fs::create_dir_all(&disks)?;
    let out = disks.join(format!("{name}.iso"));
    let _ = fs::remove_file(&out);
    let work = tempfile_dir(&disks, name)?;
    let result = (|| -> Result<()> {
        let mut cmd = image_script_at(0);
        cmd.arg(workspace().join("image/mkiso.sh"))
            .arg(&bin)
            .arg(&out)
            .arg("--append")
            .arg(append)
            .args(["--timeout", "0", "--kernel"])
            .arg(format!("/boot/vmlinuz-{}", host.kver))
            .arg("--initrd")
            .arg(&initrd)
            .arg("--rootfs")
            .arg(&rootfs);
        if let Some(token) = token {
            cmd.arg("--token-file").arg(token_file(&work, token)?);
        }
        if let Some(v) = version {
            cmd.args(["--version", v]);
        }
        run_script(&mut cmd, "image/mkiso.sh")?;
        fs::set_permissions(&out, fs::Permissions::from_mode(0o600))?;
        Ok(())
    })();
    let _ = fs::remove_dir_all(&work);
    result?;
    Ok(out)
}
