//! Single-use enrollment tokens (docs/protocol-v2.md §6): an administrator creates one with
//! an expiry, optionally bound to a unique id; the first enrolment that presents it is
//! approved without an administrator and uses it up.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::rand::SecureRandom as _;
use serde::Serialize;

use crate::events::lock;

/// Simulator default lifetime of a token.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Serialize)]
pub struct Token {
    /// The secret itself; only the admin API that created it ever shows it.
    pub token: String,
    pub expires_unix: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_id: Option<String>,
    /// The host address the engine added (`POST /admin/hosts/add`): only a host that
    /// registered with this address may use it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Whom a token is for: any host, one unique id, one address, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    pub unique_id: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired,
    Used,
    OtherHost,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Unknown => "enrollment token is not known to the engine",
            Refusal::Expired => "enrollment token has expired",
            Refusal::Used => "enrollment token was already used",
            Refusal::OtherHost => "enrollment token is bound to another host",
        }
    }
}

struct Entry {
    token: Token,
    used: bool,
}

#[derive(Default)]
pub struct Tokens {
    map: Mutex<BTreeMap<String, Entry>>,
}

impl Tokens {
    /// A new token: 32 random bytes, base64url (43 characters).
    pub fn create(&self, ttl: Duration, bound: Binding) -> anyhow::Result<Token> {
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        let token = Token {
            token: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
            expires_unix: unix_now().saturating_add(ttl.as_secs()),
            unique_id: bound.unique_id,
            address: bound.address,
        };
        let entry = Entry {
            token: token.clone(),
            used: false,
        };
        lock(&self.map).insert(token.token.clone(), entry);
        Ok(token)
    }

    /// Uses the token up for `unique_id` (registered with `address`), or says why not.
    /// Checked and consumed under one lock, so two hosts racing with the same token cannot
    /// both win.
    pub fn consume(
        &self,
        secret: &str,
        unique_id: &str,
        address: Option<&str>,
    ) -> Result<(), Refusal> {
        let mut map = lock(&self.map);
        let entry = map.get_mut(secret).ok_or(Refusal::Unknown)?;
        if entry.used {
            return Err(Refusal::Used);
        }
        if entry.token.expires_unix <= unix_now() {
            return Err(Refusal::Expired);
        }
        if entry
            .token
            .unique_id
            .as_deref()
            .is_some_and(|id| id != unique_id)
        {
            return Err(Refusal::OtherHost);
        }
        if let Some(bound) = entry.token.address.as_deref() {
            if address != Some(bound) {
                return Err(Refusal::OtherHost);
            }
        }
        entry.used = true;
        Ok(())
    }

    /// How many tokens exist and how many are used (never the secrets).
    pub fn counts(&self) -> (usize, usize) {
        let map = lock(&self.map);
        (map.len(), map.values().filter(|e| e.used).count())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_use_bound_and_expiring() {
        let t = Tokens::default();
        let any = Binding::default();
        let a = t.create(DEFAULT_TTL, any.clone()).unwrap();
        assert_eq!(a.token.len(), 43);
        assert_eq!(t.consume("nope", "h", None), Err(Refusal::Unknown));
        assert_eq!(t.consume(&a.token, "h1", None), Ok(()));
        assert_eq!(t.consume(&a.token, "h1", None), Err(Refusal::Used));
        let to_h2 = Binding {
            unique_id: Some("h2".into()),
            address: None,
        };
        let b = t.create(DEFAULT_TTL, to_h2).unwrap();
        assert_eq!(t.consume(&b.token, "h3", None), Err(Refusal::OtherHost));
        assert_eq!(t.consume(&b.token, "h2", None), Ok(()));
        let c = t.create(Duration::ZERO, any).unwrap();
        assert_eq!(t.consume(&c.token, "h", None), Err(Refusal::Expired));
        let at = Binding {
            unique_id: None,
            address: Some("192.0.2.7".into()),
        };
        let d = t.create(DEFAULT_TTL, at).unwrap();
        let other = Some("192.0.2.8");
        assert_eq!(t.consume(&d.token, "h4", other), Err(Refusal::OtherHost));
        assert_eq!(t.consume(&d.token, "h4", None), Err(Refusal::OtherHost));
        assert_eq!(t.consume(&d.token, "h4", Some("192.0.2.7")), Ok(()));
        assert_eq!(t.counts(), (4, 3));
    }
}
