//! Root's password and SSH password login: what `rhevm_admin_password=` /
//! `engine_admin_password=` and `ssh_pwauth=` ask for (docs/ovirt-protocol.md §1.2, §1.3),
//! applied by the `configured` step and by `ovirt-node-reg setup`. The engine's "add host"
//! with a root password needs both: the hash in `/etc/shadow` and sshd accepting passwords.
//!
//! Every file is written through the store (`write_persisted`: atomic, beneath the root,
//! never through a symlink, persisted), and only when its content changes. The hash never
//! reaches a log line or an error message: errors name the file only.

use anyhow::{Context, Result};
use log::info;
use std::path::Path;

use crate::config::RegConfig;
use crate::paths;
use crate::secret::Secret;
use crate::store::Store;

/// Largest shadow or sshd_config we read back to rewrite.
const MAX_FILE: u64 = 1 << 20;
/// Mode of a shadow file we create (an existing one keeps its own: 0640 root:shadow on
/// Debian, 0000 on Fedora).
const NEW_SHADOW_MODE: u32 = 0o600;
const DROP_IN_MODE: u32 = 0o600;

/// Apply the password hash and `ssh_pwauth` of `reg`, when given.
pub fn apply(store: &Store, reg: &RegConfig) -> Result<()> {
    if let Some(hash) = &reg.admin_password {
        set_root_hash(store, hash)?;
    }
    if let Some(on) = reg.ssh_pwauth {
        set_ssh_pwauth(store, on)?;
    }
    Ok(())
}

/// Make `hash` root's password, with no account expiry (what `usermod -p` and `chage -E -1`
/// did on oVirt Node), and persist `/etc/shadow`. Unchanged when root has it already.
pub fn set_root_hash(store: &Store, hash: &Secret) -> Result<()> {
    let fs = store.root().fs();
    let path = Path::new(paths::ETC_SHADOW);
    let old = fs.read_text(path, MAX_FILE)?;
    let mode = match fs.metadata(path)? {
        Some(m) => std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777,
        None => NEW_SHADOW_MODE,
    };
    let Some(new) = render_shadow(old.as_deref().unwrap_or(""), hash, days_since_epoch()) else {
        return Ok(());
    };
    store
        .write_persisted(path, new.as_bytes(), mode)
        .with_context(|| format!("setting root's password in {}", paths::ETC_SHADOW))?;
    info!("root's password set in {} (persisted)", paths::ETC_SHADOW);
    Ok(())
}

fn days_since_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// `shadow` with root's entry carrying `hash` (last change `today`, no expiry date), or
/// `None` when it has them already. A missing root entry is added first; other lines stay.
pub(crate) fn render_shadow(shadow: &str, hash: &Secret, today: u64) -> Option<String> {
    let mut lines = file_lines(shadow);
    let at = lines
        .iter()
        .position(|l| l.split(':').next() == Some("root"));
    let mut fields: Vec<String> = match at {
        Some(i) => lines[i].split(':').map(str::to_string).collect(),
        None => "root:*:0:0:99999:7:::"
            .split(':')
            .map(str::to_string)
            .collect(),
    };
    fields.resize(fields.len().max(9), String::new());
    if fields[1] == hash.expose() && fields[7].is_empty() {
        return None;
    }
    fields[1] = hash.expose().to_string();
    fields[2] = today.to_string();
    fields[7].clear();
    let line = fields.join(":");
    match at {
        Some(i) => lines[i] = line,
        None => lines.insert(0, line),
    }
    Some(lines.join("\n") + "\n")
}

/// The lines of `text` exactly as written, carriage returns included (`str::lines` would
/// drop a CR before LF but keep a lone one, so each edit would eat one more CR of a line).
fn file_lines(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    body.split('\n').map(str::to_string).collect()
}

/// sshd's `PasswordAuthentication yes|no`: a drop-in in `/etc/ssh/sshd_config.d/` when
/// sshd_config includes that directory (or there is no sshd_config), else sshd_config
/// itself, edited in place. Persisted either way.
pub fn set_ssh_pwauth(store: &Store, on: bool) -> Result<()> {
    let fs = store.root().fs();
    let config = Path::new(paths::SSHD_CONFIG);
    let old = fs.read_text(config, MAX_FILE)?;
    let has_dir = fs
        .metadata(Path::new(paths::SSHD_CONFIG_DIR))?
        .is_some_and(|m| m.is_dir());
    let value = if on { "yes" } else { "no" };
    let (path, text, mode) = match old {
        Some(text) if !(has_dir && includes_drop_ins(&text)) => {
            let mode = fs.metadata(config)?.map_or(0o644, |m| {
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777
            });
            (config, render_sshd_config(&text, value), mode)
        }
        _ => (Path::new(paths::SSHD_DROP_IN), drop_in(value), DROP_IN_MODE),
    };
    store
        .write_persisted(path, text.as_bytes(), mode)
        .with_context(|| format!("setting PasswordAuthentication in {}", path.display()))?;
    info!(
        "sshd PasswordAuthentication {value} in {} (persisted; sshd reads it when it starts)",
        path.display()
    );
    Ok(())
}

fn drop_in(value: &str) -> String {
    format!("# Written by ovirt-node-reg (ssh_pwauth=)\nPasswordAuthentication {value}\n")
}

/// An `Include` line naming the drop-in directory.
fn includes_drop_ins(config: &str) -> bool {
    config.lines().any(|l| {
        let mut words = l.split_whitespace();
        words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("include"))
            && words.any(|w| w.contains("sshd_config.d"))
    })
}

/// Every global `PasswordAuthentication` line (before the first `Match`) set to `value`;
/// without one, the line goes before the first `Include` or `Match` (sshd keeps the first
/// value it reads), else at the end. Other lines are kept.
pub(crate) fn render_sshd_config(config: &str, value: &str) -> String {
    let line = format!("PasswordAuthentication {value}");
    let keyword = |l: &str| {
        l.split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let mut lines = file_lines(config);
    let global_end = lines
        .iter()
        .position(|l| keyword(l) == "match")
        .unwrap_or(lines.len());
    let mut found = false;
    for l in &mut lines[..global_end] {
        if keyword(l) == "passwordauthentication" {
            l.clone_from(&line);
            found = true;
        }
    }
    if !found {
        let at = lines
            .iter()
            .position(|l| matches!(keyword(l).as_str(), "include" | "match"))
            .unwrap_or(lines.len());
        lines.insert(at, line);
    }
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$6$salt$abc";

    /// Found by the fuzz target `login_files`: a line ending in CR lost one CR per edit.
    #[test]
    fn carriage_returns_stay_and_a_second_edit_changes_nothing() {
        for config in ["Port 22\r\r", "Port 22\r\n#x\r\n", "\n", ""] {
            let once = render_sshd_config(config, "no");
            assert_eq!(render_sshd_config(&once, "no"), once, "{config:?}");
            assert!(
                once.starts_with(config.trim_end_matches('\n')),
                "{config:?}"
            );
        }
        let shadow = "root:!:1:0:99999:7:::\r\ndaemon:*:1:0:99999:7:::\r\n";
        let once = render_shadow(shadow, &Secret::new(HASH), 2).unwrap();
        assert!(once.ends_with("daemon:*:1:0:99999:7:::\r\n"), "{once:?}");
        assert_eq!(render_shadow(&once, &Secret::new(HASH), 2), None);
    }

    #[test]
    fn root_entry_replaced_in_place_expiry_cleared() {
        let old = "root:!:19000:0:99999:7::20000:\ndaemon:*:19000:0:99999:7:::\n";
        let new = render_shadow(old, &Secret::new(HASH), 20100).unwrap();
        assert_eq!(
            new,
            "root:$6$salt$abc:20100:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
        );
        // Applied again: nothing to write (the last-change day stays).
        assert_eq!(render_shadow(&new, &Secret::new(HASH), 20200), None);
    }

    #[test]
    fn missing_root_entry_or_file_is_added() {
        let new = render_shadow("", &Secret::new(HASH), 5).unwrap();
        assert_eq!(new, "root:$6$salt$abc:5:0:99999:7:::\n");
        let new = render_shadow("bin:*:1::::::\n", &Secret::new(HASH), 5).unwrap();
        assert_eq!(new, "root:$6$salt$abc:5:0:99999:7:::\nbin:*:1::::::\n");
        // A short line is padded to its nine fields.
        let new = render_shadow("root:x", &Secret::new(HASH), 5).unwrap();
        assert_eq!(new, "root:$6$salt$abc:5::::::\n");
    }

    #[test]
    fn sshd_config_global_lines_set_match_blocks_kept() {
        let old = "#PasswordAuthentication yes\nPort 22\npasswordauthentication no\n\
                   Match User guest\n    PasswordAuthentication no\n";
        assert_eq!(
            render_sshd_config(old, "yes"),
            "#PasswordAuthentication yes\nPort 22\nPasswordAuthentication yes\n\
             Match User guest\n    PasswordAuthentication no\n"
        );
        // None yet: before the first Include or Match.
        let old = "Port 22\nInclude /etc/ssh/other/*.conf\nMatch all\n";
        assert_eq!(
            render_sshd_config(old, "no"),
            "Port 22\nPasswordAuthentication no\nInclude /etc/ssh/other/*.conf\nMatch all\n"
        );
        assert_eq!(
            render_sshd_config("", "yes"),
            "PasswordAuthentication yes\n"
        );
    }

    #[test]
    fn drop_in_directory_counts_only_when_included() {
        assert!(includes_drop_ins(
            "# top\nInclude /etc/ssh/sshd_config.d/*.conf\n"
        ));
        assert!(!includes_drop_ins(
            "#Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n"
        ));
    }
}
