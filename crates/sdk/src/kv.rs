//! `cap:storage.kv`: the install's key-value store, with revisions for
//! optimistic concurrency.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::alga::extension::storage as raw;
use crate::bindings::alga::extension::types::StorageEntry;
pub use crate::bindings::alga::extension::types::StorageError;

/// A stored value and its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The namespace the key lives in.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The revision the host assigned to this value.
    pub revision: Option<u64>,
}

impl Entry {
    /// The value parsed as JSON.
    ///
    /// # Errors
    /// If the value is not JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.value)
    }
}

impl From<StorageEntry> for Entry {
    fn from(raw: StorageEntry) -> Self {
        Self {
            namespace: raw.namespace,
            key: raw.key,
            value: raw.value,
            revision: raw.revision,
        }
    }
}

/// The entry at `namespace`/`key`, or `None` if there is none.
///
/// # Errors
/// [`StorageError::Denied`] without the capability, [`StorageError::Internal`].
pub fn get(namespace: &str, key: &str) -> Result<Option<Entry>, StorageError> {
    match raw::get(namespace, key) {
        Ok(entry) => Ok(Some(entry.into())),
        Err(StorageError::Missing) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores `value` and returns the entry with its new revision.
///
/// With `expected_revision: Some(r)` the write succeeds only if the stored
/// revision is still `r`; `None` writes unconditionally.
///
/// # Errors
/// [`StorageError::Conflict`] on a revision mismatch, [`StorageError::Denied`],
/// [`StorageError::Internal`] (quotas included).
pub fn put(
    namespace: &str,
    key: &str,
    value: impl Into<Vec<u8>>,
    expected_revision: Option<u64>,
) -> Result<Entry, StorageError> {
    raw::put(&StorageEntry {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        value: value.into(),
        revision: expected_revision,
    })
    .map(Entry::from)
}

/// Stores `value` as JSON; see [`put`].
///
/// # Errors
/// As [`put`]; a value that cannot be serialised is [`StorageError::Internal`].
pub fn put_json<T: Serialize + ?Sized>(
    namespace: &str,
    key: &str,
    value: &T,
    expected_revision: Option<u64>,
) -> Result<Entry, StorageError> {
    let bytes = serde_json::to_vec(value).map_err(|_| StorageError::Internal)?;
    put(namespace, key, bytes, expected_revision)
}

/// Deletes `namespace`/`key`.
///
/// # Errors
/// [`StorageError::Missing`] if there was nothing to delete, [`StorageError::Denied`],
/// [`StorageError::Internal`].
pub fn delete(namespace: &str, key: &str) -> Result<(), StorageError> {
    raw::delete(namespace, key)
}

/// One page of entries in `namespace`, starting after `cursor` (opaque; `None` for the first page).
///
/// # Errors
/// [`StorageError::Denied`], [`StorageError::Internal`].
pub fn list(namespace: &str, cursor: Option<&str>) -> Result<Vec<Entry>, StorageError> {
    raw::list_entries(namespace, cursor).map(|entries| entries.into_iter().map(Entry::from).collect())
}
