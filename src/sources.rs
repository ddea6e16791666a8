//! Reading the settings' three sources under a root, in order of precedence (lowest
//! first): `vdsm-reg.conf`, `/etc/default/ovirt`, the kernel command line.
//!
//! Above `config` (the settings table and layering), `legacy` and `cmdline` (each turns
//! its source into settings for `config`): `config` needs neither of them.

use anyhow::{Context, Result};
use std::path::Path;

use crate::config::Loaded;
use crate::fsutil::read_optional;
use crate::paths::{Root, DEFAULT_OVIRT, VDSM_REG_CONF};

/// [`load`], with every warning logged.
pub fn load_warned(root: &Root, cmdline: &Path) -> Result<Loaded> {
    let loaded = load(root, cmdline)?;
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    Ok(loaded)
}

/// Read every source under `root`: vdsm-reg.conf, /etc/default/ovirt, then the kernel
/// command line from `cmdline` (a host path; `/proc/cmdline` by default). A missing
/// configuration file is simply empty; an unreadable command line is an error.
pub fn load(root: &Root, cmdline: &Path) -> Result<Loaded> {
    let mut loaded = Loaded::default();
    if let Some(text) = read_optional(&root.join(VDSM_REG_CONF))? {
        crate::legacy::apply_vdsm_reg_conf(&mut loaded, &text);
    }
    if let Some(text) = read_optional(&root.join(DEFAULT_OVIRT))? {
        crate::legacy::apply_default_ovirt(&mut loaded, &text);
    }
    let text = std::fs::read(cmdline)
        .with_context(|| format!("reading the kernel command line from {}", cmdline.display()))?;
    crate::cmdline::apply(&mut loaded, &String::from_utf8_lossy(&text));
    Ok(loaded)
}

/// The settings of a kernel command line alone, for checking one before it is used (PXE
/// tooling): no root, no file of the node is read.
pub fn from_cmdline(text: &str) -> Loaded {
    let mut loaded = Loaded::default();
    crate::cmdline::apply(&mut loaded, text);
    loaded
}
