//! Keeping [`Revoked`] in step with the registry: asked in-process when
//! this process runs the registry role, else polled over HTTP at
//! `RUNNER_REVOCATIONS_URL` with `RUNNER_REGISTRY_TOKEN`. A failed poll
//! keeps the list in force (counted, logged): an unreachable registry never
//! un-revokes anything.

use std::collections::BTreeSet;
use std::sync::Arc;

use ext_bundle::Digest;

use super::{MAX_REVOCATIONS_BYTES, REVOCATIONS_FETCH_TIMEOUT, RevocationList, RevocationSettings, Revoked};
use crate::registry::Registry;

/// Where the list comes from.
#[derive(Clone)]
pub enum ListSource {
    /// The registry role of this process.
    InProcess(Arc<Registry>),
    /// Another process's registry.
    Http {
        url: String,
        token: Option<String>,
        client: reqwest::Client,
    },
}

impl ListSource {
    /// The URL when one is configured, else the in-process registry, else
    /// none (the list on disk stays in force).
    pub fn choose(settings: &RevocationSettings, registry: Option<&Arc<Registry>>) -> Option<ListSource> {
        if let Some(url) = &settings.url {
            let client = reqwest::Client::builder()
                .timeout(REVOCATIONS_FETCH_TIMEOUT)
                .no_proxy()
                .build()
                .unwrap_or_default();
            return Some(ListSource::Http {
                url: url.clone(),
                token: settings.registry_token.clone(),
                client,
            });
        }
        registry.map(|r| ListSource::InProcess(r.clone()))
    }

    /// The registry's current list.
    ///
    /// # Errors
    /// Why there is no list: unreachable, refused, too large or malformed.
    pub async fn fetch(&self) -> Result<BTreeSet<Digest>, String> {
        match self {
            ListSource::InProcess(registry) => registry.revoked_hashes().await.map_err(|f| f.message),
            ListSource::Http { url, token, client } => {
                let mut request = client.get(url);
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let mut response = request.send().await.map_err(|e| e.without_url().to_string())?;
                if !response.status().is_success() {
                    return Err(format!("the registry answered {}", response.status()));
                }
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(|e| e.without_url().to_string())? {
                    if body.len() + chunk.len() > MAX_REVOCATIONS_BYTES {
                        return Err(format!("the list is over {MAX_REVOCATIONS_BYTES} bytes"));
                    }
                    body.extend_from_slice(&chunk);
                }
                let list: RevocationList = serde_json::from_slice(&body).map_err(|e| format!("not a list: {e}"))?;
                list.digests()
            }
        }
    }
}

/// One sync: the registry's list replaces the one in force, or the failure
/// is counted.
pub async fn sync_once(revoked: &Revoked, source: &ListSource) {
    match source.fetch().await {
        Ok(hashes) => revoked.replace(hashes),
        Err(why) => revoked.sync_failed(&why),
    }
}

/// Sync now and then every `settings.poll`, until the task is dropped.
pub async fn run(revoked: Arc<Revoked>, source: ListSource, settings: RevocationSettings) {
    let mut every = tokio::time::interval(settings.poll);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        sync_once(&revoked, &source).await;
    }
}
