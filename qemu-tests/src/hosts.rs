//! The engine's host table as far as registration sees it (`RegisterVdsQuery`,
//! docs/ovirt-protocol.md §3.5): new hosts are added pending approval unless an auto-approve
//! pattern matches, a known unique id changes nothing, and an administrator approves or
//! rejects through the admin API.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::events::lock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    PendingApproval,
    Approved,
    Rejected,
}

/// What a `register` request asks for, after the servlet applied its defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub unique_id: String,
    pub name: String,
    pub address: String,
    pub ssh_user: String,
    pub ssh_port: i32,
    pub ssh_key_fingerprint: Option<String>,
    pub vds_port: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    #[serde(flatten)]
    pub reg: Registration,
    pub status: HostStatus,
    /// How many `register` requests named this id (bookkeeping, not an engine field).
    pub registrations: u32,
    /// Client address of the first registration.
    pub remote: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Added(Host),
    /// Known id: the engine's query fails with `VDS_STATUS_NOT_VALID_FOR_UPDATE`, which the
    /// servlet ignores, so the node still gets 200 and nothing changes.
    Known(Host),
}

pub struct Hosts {
    map: Mutex<BTreeMap<String, Host>>,
    auto_approve: Vec<String>,
}

impl Hosts {
    /// `auto_approve`: the engine's `AutoApprovePatterns` (empty by default).
    pub fn new(auto_approve: Vec<String>) -> Hosts {
        Hosts {
            map: Mutex::new(BTreeMap::new()),
            auto_approve,
        }
    }

    pub fn register(&self, reg: Registration, remote: &str) -> Outcome {
        let mut map = lock(&self.map);
        if let Some(h) = map.get_mut(&reg.unique_id) {
            h.registrations += 1;
            return Outcome::Known(h.clone());
        }
        let status = if self.auto_approved(&reg) {
            HostStatus::Approved
        } else {
            HostStatus::PendingApproval
        };
        let host = Host {
            reg,
            status,
            registrations: 1,
            remote: remote.to_string(),
        };
        map.insert(host.reg.unique_id.clone(), host.clone());
        Outcome::Added(host)
    }

    /// The engine's rule: the lower-cased host name, or the lower-cased id with `:` turned
    /// into `-`, starts with a pattern or contains it (the engine uses the pattern as a regex;
    /// literal patterns behave the same).
    fn auto_approved(&self, reg: &Registration) -> bool {
        let name = reg.address.to_lowercase();
        let id = reg.unique_id.to_lowercase().replace(':', "-");
        self.auto_approve
            .iter()
            .filter(|p| !p.is_empty())
            .any(|p| name.contains(p.as_str()) || id.contains(p.as_str()))
    }

    pub fn set_status(&self, id: &str, status: HostStatus) -> Option<Host> {
        let mut map = lock(&self.map);
        let h = map.get_mut(id)?;
        h.status = status;
        Some(h.clone())
    }

    pub fn get(&self, id: &str) -> Option<Host> {
        lock(&self.map).get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Host> {
        lock(&self.map).remove(id)
    }

    pub fn list(&self) -> Vec<Host> {
        lock(&self.map).values().cloned().collect()
    }
}

/// The engine strips every character outside `[A-Za-z0-9-.:_]` from the id before lookup
/// and store (docs/ovirt-protocol.md §3.5, §6.1).
pub fn sanitize_unique_id(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-.:_".contains(*c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str, address: &str) -> Registration {
        Registration {
            unique_id: id.into(),
            name: address.into(),
            address: address.into(),
            ssh_user: "root".into(),
            ssh_port: 22,
            ssh_key_fingerprint: None,
            vds_port: 54321,
        }
    }

    #[test]
    fn new_host_pending_known_host_unchanged() {
        let hosts = Hosts::new(vec![]);
        let Outcome::Added(h) = hosts.register(reg("a", "n1"), "127.0.0.1") else {
            panic!("not added")
        };
        assert_eq!(h.status, HostStatus::PendingApproval);
        let mut changed = reg("a", "other");
        changed.vds_port = 1;
        let Outcome::Known(h) = hosts.register(changed, "127.0.0.1") else {
            panic!("not known")
        };
        assert_eq!(h.reg.address, "n1");
        assert_eq!(h.reg.vds_port, 54321);
        assert_eq!(h.registrations, 2);
        assert_eq!(
            hosts.set_status("a", HostStatus::Approved).unwrap().status,
            HostStatus::Approved
        );
        assert!(hosts.set_status("nope", HostStatus::Approved).is_none());
    }

    #[test]
    fn auto_approve_patterns() {
        let hosts = Hosts::new(vec!["node-".into(), "aa-bb".into()]);
        let add = |id, addr| match hosts.register(reg(id, addr), "") {
            Outcome::Added(h) | Outcome::Known(h) => h.status,
        };
        assert_eq!(add("x1", "NODE-7.lab"), HostStatus::Approved);
        assert_eq!(add("AA:BB:cc", "h"), HostStatus::Approved);
        assert_eq!(add("x2", "other"), HostStatus::PendingApproval);
    }

    #[test]
    fn sanitizes_ids() {
        assert_eq!(sanitize_unique_id(" a/b$c-1.2:3_4\n"), "abc-1.2:3_4");
    }
}
