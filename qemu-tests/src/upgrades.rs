//! Node upgrades offered by the engine (docs/protocol-v2.md §"Node upgrade"): an administrator
//! names a node ISO for a host; the simulator serves the image and gives the command the node
//! runs, `ovirt-node-reg upgrade --sha256 HEX --image FILE`, where FILE is where the image was
//! put on the node. The engine of oVirt 3.x did the same with `vdsm-upgrade` over SSH.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::Serialize;

/// One offered upgrade.
#[derive(Debug, Clone, Serialize)]
pub struct Offer {
    /// The image on the engine's side.
    pub image: PathBuf,
    pub size: u64,
    /// SHA-256 of the whole image, in hex: the node checks it before it boots the image.
    pub sha256: String,
    /// The command the node runs, without `--image` (where the transport put the image).
    pub command: String,
    /// Where the engine serves the image (admin API).
    pub url: String,
}

/// The offers, by host id.
#[derive(Debug, Default)]
pub struct Upgrades {
    offers: Mutex<BTreeMap<String, Offer>>,
}

impl Upgrades {
    /// Offer `image` to host `id`; its size and SHA-256 are taken now.
    pub fn offer(&self, id: &str, image: &Path) -> Result<Offer> {
        let data = std::fs::read(image)
            .with_context(|| format!("{}: the upgrade image", image.display()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &data);
        let sha256: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let offer = Offer {
            image: image.to_path_buf(),
            size: data.len() as u64,
            command: format!("upgrade --sha256 {sha256}"),
            sha256,
            url: format!("/admin/hosts/{id}/upgrade/image"),
        };
        self.lock().insert(id.to_string(), offer.clone());
        Ok(offer)
    }

    pub fn get(&self, id: &str) -> Option<Offer> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Offer>> {
        self.offers.lock().unwrap_or_else(|e| e.into_inner())
    }
}
