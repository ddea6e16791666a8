//! What the operating system under the root says it is: os-release(5), read with the one
//! shell-variable reader (`conffile::shell_values`), `/etc/os-release` first, then
//! `/usr/lib/os-release`.
//!
//! Used by the store (an oVirt Node never runs without its config store) and by `bootstrap`
//! (the supported list, the node's own flow).

use anyhow::Result;
use std::path::Path;

use crate::conffile;
use crate::paths::{Root, OS_RELEASE, USR_LIB_OS_RELEASE};

/// os-release is a few hundred bytes; anything over this is not one.
const MAX_OS_RELEASE: u64 = 64 * 1024;

/// The fields we use, as written (empty when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub id_like: String,
    pub name: String,
    pub version_id: String,
    pub variant_id: String,
    pub pretty_name: String,
}

impl OsRelease {
    /// The root's os-release, `None` when neither file exists. `/etc/os-release` is often
    /// a symlink to `../usr/lib/os-release`, which we do not follow (reads beneath the root
    /// never do): the fallback reads its target, as os-release(5) orders.
    pub fn read(root: &Root) -> Result<Option<OsRelease>> {
        let fs = root.fs();
        let etc = fs.read_text(Path::new(OS_RELEASE), MAX_OS_RELEASE);
        if let Ok(Some(text)) = etc {
            return Ok(Some(OsRelease::parse(&text)));
        }
        let usr = fs.read_text(Path::new(USR_LIB_OS_RELEASE), MAX_OS_RELEASE)?;
        Ok(usr.map(|text| OsRelease::parse(&text)))
    }

    pub fn parse(text: &str) -> OsRelease {
        let pairs = conffile::shell_values(text);
        let get = |k: &str| conffile::last(&pairs, k).unwrap_or_default().to_string();
        OsRelease {
            id: get("ID"),
            id_like: get("ID_LIKE"),
            name: get("NAME"),
            version_id: get("VERSION_ID"),
            variant_id: get("VARIANT_ID"),
            pretty_name: get("PRETTY_NAME"),
        }
    }

    /// An oVirt Node: oVirt Node NG says `VARIANT_ID=ovirt-node` on top of its base OS; the
    /// older node and this project's live images say so in `ID` (`ovirt-node…`).
    pub fn is_ovirt_node(&self) -> bool {
        self.variant_id == "ovirt-node" || self.id.starts_with("ovirt-node")
    }

    /// `ID` and every word of `ID_LIKE`: what a family check matches against.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str()).chain(self.id_like.split_whitespace())
    }

    /// The name to print: `PRETTY_NAME`, else `NAME VERSION_ID`, else `ID`.
    pub fn display_name(&self) -> String {
        if !self.pretty_name.is_empty() {
            return self.pretty_name.clone();
        }
        let name = if self.name.is_empty() {
            &self.id
        } else {
            &self.name
        };
        format!("{name} {}", self.version_id).trim().to_string()
    }
}

/// True when the root's os-release names an oVirt Node (an unreadable one is not a node).
pub fn is_ovirt_node(root: &Root) -> bool {
    matches!(OsRelease::read(root), Ok(Some(os)) if os.is_ovirt_node())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quoted_fields_and_tells_a_node() {
        let ng = OsRelease::parse(
            "NAME=\"CentOS Stream\"\nVERSION_ID=\"9\"\nID=\"centos\"\nID_LIKE=\"rhel fedora\"\n\
             VARIANT=\"oVirt Node 4.5.5\"\nVARIANT_ID=\"ovirt-node\"\n",
        );
        assert!(ng.is_ovirt_node());
        assert_eq!(ng.ids().collect::<Vec<_>>(), ["centos", "rhel", "fedora"]);
        assert_eq!(ng.display_name(), "CentOS Stream 9");
        let live = OsRelease::parse("NAME=\"oVirt Node\"\nID=ovirt-node-reg-live\n");
        assert!(live.is_ovirt_node());
        let deb = OsRelease::parse("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n");
        assert!(!deb.is_ovirt_node());
        assert_eq!(deb.display_name(), "Debian GNU/Linux 12 (bookworm)");
    }
}
