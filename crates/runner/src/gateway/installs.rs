//! Install resolution: a tenant and an extension name → the install, its
//! version, content hash, manifest, capabilities, egress, config and sealed
//! secrets. Answers, found or not, are kept per (tenant, extension): in one
//! process with the registry for [`LOCAL_INSTALL_TTL`] and only while the
//! database has counted no change since (`Database::changes`), so a change
//! made through this process applies to the very next call and one made by
//! another process sharing the database within the TTL; from a registry
//! elsewhere (`GATEWAY_REGISTRY_URL`) for [`REMOTE_INSTALL_TTL`]. Manifests
//! are parsed once per version (versions are immutable).

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ext_bundle::Manifest;
use lru::LruCache;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, Failure};
use crate::registry::Registry;

/// How long an answer of a registry elsewhere is reused (system spec:
/// install lookups are cached ≤ 5 s): an uninstall or disable reaches this
/// gateway within it.
pub const REMOTE_INSTALL_TTL: Duration = Duration::from_secs(5);
/// How long an answer read from the database of this process's registry is
/// reused while no change was made through this process: how late a change
/// made by another replica sharing the database reaches this one. At a
/// thousand calls a second it saves all but one read per install a second
/// (about 140 µs of CPU and 4 thread hand-offs each, measured by
/// bench/gateway).
pub const LOCAL_INSTALL_TTL: Duration = Duration::from_secs(1);
/// (tenant, extension) answers kept, found or not: bounds memory whatever
/// names callers try.
pub const INSTALL_CACHE_ENTRIES: usize = 10_000;
/// Parsed manifests kept, by version id.
pub const MANIFEST_CACHE_ENTRIES: usize = 1_024;
/// Longest a registry elsewhere may take to answer a lookup.
pub const REGISTRY_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest lookup answer accepted from a registry elsewhere (a manifest is
/// at most 1 MiB; sealed secrets at most 64 × 16 KiB base64-encoded).
pub const MAX_LOOKUP_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// What one call needs of the tenant's install.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallTarget {
    pub install_id: String,
    pub version_id: String,
    pub version: String,
    pub content_hash: String,
    pub capabilities: Vec<String>,
    pub config: BTreeMap<String, String>,
    pub egress: Vec<String>,
    pub enabled: bool,
    /// The install's secrets as the registry sealed them (the
    /// `secret_envelope` JSON); only a runner with the key opens them.
    pub sealed_secrets: Option<String>,
}

impl CallTarget {
    /// The call target of `install`, with its sealed secrets.
    pub fn new(install: ext_registry::Install, sealed_secrets: Option<String>) -> CallTarget {
        CallTarget {
            install_id: install.install_id,
            version_id: install.version_id,
            version: install.version,
            content_hash: install.content_hash,
            capabilities: install.capabilities,
            config: install.config,
            egress: install.egress,
            enabled: install.enabled,
            sealed_secrets,
        }
    }
}

/// The answer of `GET /v1/registry/tenants/{tenant}/installs/{name}/call`:
/// the target and its version's manifest as published (JSON text).
#[derive(Debug, Serialize, Deserialize)]
pub struct CallAnswer {
    #[serde(flatten)]
    pub target: CallTarget,
    pub manifest: String,
}

/// A [`CallTarget`] with its manifest and sealed secrets parsed.
#[derive(Debug)]
pub struct Resolved {
    pub target: CallTarget,
    pub manifest: Arc<Manifest>,
    /// `target.sealed_secrets` as JSON.
    pub sealed_secrets: Option<serde_json::Value>,
}

impl Resolved {
    /// # Errors
    /// `internal_error` when the install's sealed secrets are not JSON (the
    /// registry wrote them; they are never shown).
    fn new(target: CallTarget, manifest: Arc<Manifest>) -> Result<Resolved, Failure> {
        let sealed_secrets = match &target.sealed_secrets {
            Some(sealed) => Some(serde_json::from_str(sealed).map_err(|e| {
                Failure::new(
                    ErrorCode::Internal,
                    format!("the install's sealed secrets are not JSON: {e}"),
                )
            })?),
            None => None,
        };
        Ok(Resolved {
            target,
            manifest,
            sealed_secrets,
        })
    }
}

/// An answer for (tenant, extension): when it was read, the database's
/// change count before the read (0 for a registry elsewhere), and what it
/// found.
struct Answer {
    at: Instant,
    changes: u64,
    found: Option<Arc<Resolved>>,
}

/// Where installs are read from.
enum Source {
    Local {
        registry: Arc<Registry>,
        manifests: Mutex<LruCache<String, Arc<Manifest>>>,
    },
    Remote {
        client: reqwest::Client,
        /// `GATEWAY_REGISTRY_URL`, without a trailing `/`.
        base: String,
        token: String,
    },
}

/// Install lookups and the answers kept, keyed by the tenant's length, `:`,
/// the tenant and the extension (no two pairs share a key).
pub struct Installs {
    source: Source,
    answers: Mutex<LruCache<String, Answer>>,
}

fn unavailable(why: impl std::fmt::Display) -> Failure {
    tracing::warn!(error = %why, "install lookup failed");
    Failure::new(
        ErrorCode::RegistryUnavailable,
        "the registry did not answer the install lookup; retry later",
    )
}

impl Installs {
    pub fn local(registry: Arc<Registry>) -> Installs {
        Installs::new(Source::Local {
            registry,
            manifests: Mutex::new(LruCache::new(nonzero(MANIFEST_CACHE_ENTRIES))),
        })
    }

    /// # Errors
    /// The HTTP client cannot be built.
    pub fn remote(base: &str, token: &str) -> anyhow::Result<Installs> {
        Ok(Installs::new(Source::Remote {
            client: reqwest::Client::builder().timeout(REGISTRY_LOOKUP_TIMEOUT).build()?,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }))
    }

    fn new(source: Source) -> Installs {
        Installs {
            source,
            answers: Mutex::new(LruCache::new(nonzero(INSTALL_CACHE_ENTRIES))),
        }
    }

    /// `tenant`'s install of `extension`, if there is one.
    ///
    /// # Errors
    /// `registry_unavailable` when the registry cannot answer.
    pub async fn find(&self, tenant: &str, extension: &str) -> Result<Option<Arc<Resolved>>, Failure> {
        let (changes, ttl) = match &self.source {
            Source::Local { registry, .. } => (registry.database().changes(), LOCAL_INSTALL_TTL),
            Source::Remote { .. } => (0, REMOTE_INSTALL_TTL),
        };
        let key = format!("{}:{tenant}{extension}", tenant.len());
        if let Some(answer) = lock(&self.answers).get(&key)
            && answer.changes == changes
            && answer.at.elapsed() < ttl
        {
            return Ok(answer.found.clone());
        }
        // Read after taking the count: a change committed meanwhile counts
        // after it, so what was read is never kept past that change.
        let at = Instant::now();
        let found = match &self.source {
            Source::Local { registry, manifests } => read_local(registry, manifests, tenant, extension).await?,
            Source::Remote { client, base, token } => fetch(client, base, token, tenant, extension).await?,
        };
        let answer = Answer {
            at,
            changes,
            found: found.clone(),
        };
        lock(&self.answers).put(key, answer);
        Ok(found)
    }
}

async fn read_local(
    registry: &Registry,
    manifests: &Mutex<LruCache<String, Arc<Manifest>>>,
    tenant: &str,
    extension: &str,
) -> Result<Option<Arc<Resolved>>, Failure> {
    let Some((install, sealed)) = registry.database().install_for_call(tenant, extension).await? else {
        return Ok(None);
    };
    let cached = lock(manifests).get(&install.version_id).cloned();
    let manifest = match cached {
        Some(manifest) => manifest,
        None => {
            let version = registry
                .database()
                .version_by_id(&install.version_id)
                .await?
                .ok_or_else(|| unavailable(format!("version {} of an install is gone", install.version_id)))?;
            let manifest = Arc::new(parse_manifest(&version.manifest)?);
            lock(manifests).put(install.version_id.clone(), manifest.clone());
            manifest
        }
    };
    let target = CallTarget::new(install, sealed);
    Ok(Some(Arc::new(Resolved::new(target, manifest)?)))
}

async fn fetch(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    tenant: &str,
    extension: &str,
) -> Result<Option<Arc<Resolved>>, Failure> {
    let mut url = reqwest::Url::parse(base).map_err(unavailable)?;
    url.path_segments_mut()
        .map_err(|()| unavailable("GATEWAY_REGISTRY_URL cannot take a path"))?
        .pop_if_empty()
        .extend(["v1", "registry", "tenants", tenant, "installs", extension, "call"]);
    let response = client.get(url).bearer_auth(token).send().await.map_err(unavailable)?;
    match response.status() {
        reqwest::StatusCode::OK => {}
        reqwest::StatusCode::NOT_FOUND => return Ok(None),
        status => return Err(unavailable(format!("the registry answered {status}"))),
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_LOOKUP_ANSWER_BYTES as u64)
    {
        return Err(unavailable("the registry's answer is too large"));
    }
    let bytes = response.bytes().await.map_err(unavailable)?;
    if bytes.len() > MAX_LOOKUP_ANSWER_BYTES {
        return Err(unavailable("the registry's answer is too large"));
    }
    let answer: CallAnswer = serde_json::from_slice(&bytes).map_err(unavailable)?;
    let manifest = Arc::new(parse_manifest(&answer.manifest)?);
    Ok(Some(Arc::new(Resolved::new(answer.target, manifest)?)))
}

fn parse_manifest(text: &str) -> Result<Manifest, Failure> {
    Manifest::from_slice(text.as_bytes()).map_err(|e| unavailable(format!("a published manifest does not parse: {e}")))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}
