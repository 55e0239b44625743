//! `cap:storage.kv`: the tenant's store, scoped to (tenant, extension) by
//! the host; the guest names only namespaces and keys. Invalid names and
//! quota refusals are `denied`, a lost optimistic-concurrency race is
//! `conflict`, backend trouble `internal` (details in the log only).

use super::bindings::alga::extension::storage;
use super::bindings::types::{StorageEntry, StorageError};
use super::{Invocation, Prepare};
use crate::error::ErrorCode;
use crate::error::Failure;

pub const CAPABILITY: &str = "cap:storage.kv";

/// `STORAGE_KV_URL`: `postgres://…`, or a redb file path (default
/// `$RUNNER_DATA_DIR/kv.redb`).
#[derive(Clone)]
pub struct Settings {
    pub url: String,
}

impl Settings {
    pub fn from_source(source: &crate::config::source::Source, data_dir: &std::path::Path) -> Settings {
        Settings {
            url: source
                .text("STORAGE_KV_URL")
                .map_or_else(|| data_dir.join("kv.redb").display().to_string(), String::from),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = match self.url.starts_with("postgres") {
            true => "postgres (url redacted)",
            false => self.url.as_str(),
        };
        f.debug_tuple("storage::Settings").field(&shown).finish()
    }
}

/// The store, opened on first use (or eagerly at start-up through
/// [`Shared::open`], so a bad URL fails start-up).
pub struct Shared {
    settings: Settings,
    kv: tokio::sync::OnceCell<ext_kv::Kv>,
}

/// One execution's store and scope.
pub type State = (ext_kv::Kv, ext_kv::Scope);

impl Shared {
    pub fn new(settings: &Settings) -> Shared {
        Shared {
            settings: settings.clone(),
            kv: tokio::sync::OnceCell::new(),
        }
    }

    /// The store, connecting (and migrating) on the first call.
    ///
    /// # Errors
    /// `internal` when the store cannot be opened (the reason is logged).
    pub async fn open(&self) -> Result<&ext_kv::Kv, Failure> {
        self.kv
            .get_or_try_init(|| async {
                ext_kv::Kv::open(&self.settings.url, ext_kv::Quotas::default())
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "storage.kv backend cannot be opened");
                        Failure::new(ErrorCode::Internal, "the key-value store is unavailable")
                    })
            })
            .await
    }

    /// The tenant's store (only when granted).
    ///
    /// # Errors
    /// The store cannot be opened, or the ids make no scope.
    pub async fn prepare(&self, request: &Prepare<'_>) -> Result<Option<State>, Failure> {
        if !request.grants.allows(CAPABILITY) {
            return Ok(None);
        }
        let kv = self.open().await?.clone();
        let info = request.info;
        let scope = ext_kv::Scope::new(info.tenant_id.as_str(), info.extension_id.as_str())
            .map_err(|e| Failure::new(ErrorCode::InvalidEnvelope, format!("invalid envelope: context: {e}")))?;
        Ok(Some((kv, scope)))
    }
}

impl storage::Host for Invocation {
    async fn get(&mut self, namespace: String, key: String) -> wasmtime::Result<Result<StorageEntry, StorageError>> {
        self.count("storage");
        let Some((kv, scope)) = self.kv_access() else {
            return Ok(Err(StorageError::Denied));
        };
        Ok(match kv.get(&scope, &namespace, &key).await {
            Ok(Some(entry)) => Ok(storage_entry(entry)),
            Ok(None) => Err(StorageError::Missing),
            Err(e) => Err(self.storage_error("get", &e)),
        })
    }

    async fn put(&mut self, entry: StorageEntry) -> wasmtime::Result<Result<StorageEntry, StorageError>> {
        self.count("storage");
        let Some((kv, scope)) = self.kv_access() else {
            return Ok(Err(StorageError::Denied));
        };
        let result = kv
            .put(&scope, &entry.namespace, &entry.key, entry.value, entry.revision)
            .await;
        Ok(result.map(storage_entry).map_err(|e| self.storage_error("put", &e)))
    }

    async fn delete(&mut self, namespace: String, key: String) -> wasmtime::Result<Result<(), StorageError>> {
        self.count("storage");
        let Some((kv, scope)) = self.kv_access() else {
            return Ok(Err(StorageError::Denied));
        };
        Ok(match kv.delete(&scope, &namespace, &key, None).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(StorageError::Missing),
            Err(e) => Err(self.storage_error("delete", &e)),
        })
    }

    async fn list_entries(
        &mut self,
        namespace: String,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<Vec<StorageEntry>, StorageError>> {
        self.count("storage");
        let Some((kv, scope)) = self.kv_access() else {
            return Ok(Err(StorageError::Denied));
        };
        let options = ext_kv::ListOptions {
            cursor,
            ..Default::default()
        };
        Ok(match kv.list(&scope, &namespace, &options).await {
            Ok(page) => Ok(page.entries.into_iter().map(storage_entry).collect()),
            Err(e) => Err(self.storage_error("list-entries", &e)),
        })
    }
}

impl Invocation {
    fn kv_access(&self) -> Option<State> {
        if !self.grants.allows(CAPABILITY) {
            return None;
        }
        self.caps.storage.clone()
    }

    fn storage_error(&self, operation: &str, error: &ext_kv::KvError) -> StorageError {
        let r = &self.request;
        let mapped = match error {
            ext_kv::KvError::Conflict { .. } => StorageError::Conflict,
            ext_kv::KvError::Invalid { .. } | ext_kv::KvError::QuotaExceeded { .. } => StorageError::Denied,
            _ => StorageError::Internal,
        };
        tracing::info!(target: "ext_runner::storage", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, operation, code = error.code(), error = %error, "storage operation refused");
        mapped
    }
}

fn storage_entry(entry: ext_kv::Entry) -> StorageEntry {
    StorageEntry {
        namespace: entry.namespace,
        key: entry.key,
        value: entry.value,
        revision: Some(entry.revision),
    }
}
