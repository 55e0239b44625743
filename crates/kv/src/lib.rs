//! `ext-kv`: the backends of the `storage.kv` host capability (WIT `alga:extension/storage`).
//! No Wasmtime here; the runner links the WIT functions to a [`Kv`].
//!
//! - [`policy`]: the limit stack (`DEFAULT_*`/`MAX_*`, [`Quotas`]), [`Scope`] and key
//!   validation (K-01), the quota and revision arithmetic of a write (K-02).
//! - [`backend`]: the [`Backend`] trait and [`Entry`], [`ListOptions`], [`Page`].
//! - [`embedded`]: the default store, a redb file in the data dir.
//! - [`postgres`]: PostgreSQL (`STORAGE_KV_URL=postgres://…`), one table set keyed by tenant first.
//! - [`error`]: [`KvError`], the one error type, and [`OpenError`].
//!
//! Every stored key is the tuple (tenant, extension, namespace, key), stored as separate
//! columns or length-prefixed tuple elements, never concatenated, so no key spelling can reach
//! another scope.

pub mod backend;
pub mod embedded;
pub mod error;
pub mod policy;
pub mod postgres;

use std::path::PathBuf;
use std::sync::Arc;

pub use backend::{Backend, Entry, ListOptions, Page, Query};
pub use error::{Field, KvError, Problem, Quota};
pub use policy::{
    DEFAULT_LIST_LIMIT, DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_KEYS_PER_NAMESPACE, DEFAULT_MAX_NAMESPACES,
    DEFAULT_MAX_TOTAL_BYTES, DEFAULT_MAX_VALUE_BYTES, MAX_ID_BYTES, MAX_KEY_BYTES, MAX_LIST_LIMIT, MAX_NAMESPACE_BYTES,
    MAX_PAGE_BYTES, Quotas, Scope,
};

use policy::{check_bound, check_name};

/// Why a store could not be opened (configuration time, not guest-facing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A URL whose scheme is neither `postgres`/`postgresql` nor a file path.
    #[error("unsupported storage.kv URL scheme `{scheme}`: use postgres://… or a file path")]
    UnsupportedScheme { scheme: String },
    /// The PostgreSQL URL does not parse (the URL itself is not repeated: it may hold a password).
    #[error("invalid PostgreSQL URL")]
    PostgresUrl(#[source] tokio_postgres::Error),
    /// Connecting to PostgreSQL or creating the schema failed.
    #[error("cannot prepare the PostgreSQL store")]
    Postgres(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The embedded store's file could not be created or opened.
    #[error("cannot open the embedded store at {}", path.display())]
    Embedded {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A `storage.kv` store: validates every argument and enforces the quotas, then calls its
/// [`Backend`]. Cheap to clone (one `Arc`); share one per process.
#[derive(Debug, Clone)]
pub struct Kv {
    /// The store; shared by every invocation of every tenant.
    backend: Arc<dyn Backend>,
    /// The limits, the same for every (tenant, extension).
    quotas: Quotas,
}

impl Kv {
    /// Opens the store `target` names: a `postgres://` or `postgresql://` URL, else a file
    /// path for the embedded store (parent directories are created).
    ///
    /// # Errors
    /// [`OpenError`] if the URL is malformed or the store cannot be opened or prepared.
    pub async fn open(target: &str, quotas: Quotas) -> Result<Kv, OpenError> {
        let backend: Arc<dyn Backend> = match target.split_once("://") {
            Some(("postgres" | "postgresql", _)) => Arc::new(postgres::PostgresBackend::connect(target).await?),
            Some(("file", path)) => Arc::new(embedded::EmbeddedBackend::open(path).await?),
            Some((scheme, _)) if !scheme.contains(['/', '\\']) => {
                return Err(OpenError::UnsupportedScheme {
                    scheme: scheme.to_owned(),
                });
            }
            _ => Arc::new(embedded::EmbeddedBackend::open(target).await?),
        };
        Ok(Kv { backend, quotas })
    }

    /// A store over an already built backend.
    pub fn with_backend(backend: Arc<dyn Backend>, quotas: Quotas) -> Kv {
        Kv { backend, quotas }
    }

    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// The backend's name, for logs (`"redb"`, `"postgres"`).
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    fn check_target(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        check_name(Field::Namespace, namespace, MAX_NAMESPACE_BYTES)?;
        check_name(Field::Key, key, self.quotas.key_limit())
    }

    /// The entry under `namespace`/`key` of `scope`, if any.
    ///
    /// # Errors
    /// [`KvError::Invalid`] for a bad namespace or key; [`KvError::Backend`].
    pub async fn get(&self, scope: &Scope, namespace: &str, key: &str) -> Result<Option<Entry>, KvError> {
        self.check_target(namespace, key)?;
        self.backend.get(scope, namespace, key).await
    }

    /// Stores `value`, returning the entry with its new revision. `expected_revision = Some(r)`
    /// writes only if the stored revision is `r`; `Some(0)` only if the key is absent.
    ///
    /// # Errors
    /// [`KvError::Invalid`], [`KvError::Conflict`], [`KvError::QuotaExceeded`] (nothing is
    /// stored), [`KvError::Backend`].
    pub async fn put(
        &self,
        scope: &Scope,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        expected_revision: Option<u64>,
    ) -> Result<Entry, KvError> {
        self.check_target(namespace, key)?;
        let len = value.len() as u64;
        if len > self.quotas.max_value_bytes {
            return Err(KvError::QuotaExceeded {
                quota: Quota::ValueBytes,
                limit: self.quotas.max_value_bytes,
                requested: len,
            });
        }
        self.backend
            .put(scope, namespace, key, value, expected_revision, &self.quotas)
            .await
    }

    /// Removes the entry; `Ok(false)` if there was none. `expected_revision` as for [`Kv::put`].
    ///
    /// # Errors
    /// [`KvError::Invalid`], [`KvError::Conflict`], [`KvError::Backend`].
    pub async fn delete(
        &self,
        scope: &Scope,
        namespace: &str,
        key: &str,
        expected_revision: Option<u64>,
    ) -> Result<bool, KvError> {
        self.check_target(namespace, key)?;
        self.backend.delete(scope, namespace, key, expected_revision).await
    }

    /// One page of `namespace`'s entries (ascending byte order of keys).
    ///
    /// # Errors
    /// [`KvError::Invalid`] for a bad namespace, prefix or cursor; [`KvError::Backend`].
    pub async fn list(&self, scope: &Scope, namespace: &str, options: &ListOptions) -> Result<Page, KvError> {
        check_name(Field::Namespace, namespace, MAX_NAMESPACE_BYTES)?;
        let key_limit = self.quotas.key_limit();
        check_bound(Field::Prefix, &options.prefix, key_limit)?;
        // A cursor is a key of a previous page, so the key rules apply; empty means "from the start".
        let after = match options.cursor.as_deref() {
            None | Some("") => None,
            Some(cursor) => {
                check_bound(Field::Cursor, cursor, key_limit)?;
                Some(cursor.to_owned())
            }
        };
        let limit = options.limit.unwrap_or(DEFAULT_LIST_LIMIT).clamp(1, MAX_LIST_LIMIT);
        let query = Query {
            prefix: options.prefix.clone(),
            after,
            limit,
        };
        self.backend.list(scope, namespace, &query).await
    }

    /// Removes everything `scope` holds (an uninstall's purge); returns the entries removed.
    /// See [`Backend::purge`].
    ///
    /// # Errors
    /// [`KvError::Backend`]; nothing is removed then.
    pub async fn purge(&self, scope: &Scope) -> Result<u64, KvError> {
        self.backend.purge(scope).await
    }
}
