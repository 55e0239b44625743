//! The one error type of the crate. Every variant a guest can provoke on purpose (bad names,
//! conflicts, quotas) is typed and carries its fields; backend failures keep their source for the
//! log but never reach a guest as text.

use std::fmt;

/// What went wrong in a `storage.kv` operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// A tenant id, extension id, namespace, key, prefix or cursor was refused (K-01).
    #[error("invalid {field}: {problem}")]
    Invalid { field: Field, problem: Problem },
    /// Optimistic concurrency: the caller expected `expected`, the store holds `stored`
    /// (0 = no entry).
    #[error("revision conflict: expected {expected}, stored {stored}")]
    Conflict { expected: u64, stored: u64 },
    /// The write would pass a quota (K-02); nothing was stored.
    #[error("quota exceeded: {quota} would be {requested}, limit {limit}")]
    QuotaExceeded { quota: Quota, limit: u64, requested: u64 },
    /// The backend failed (I/O, connection, corrupt data). The source is for the log only.
    #[error("{backend} backend failed")]
    Backend {
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl KvError {
    pub(crate) fn backend(backend: &'static str, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        KvError::Backend {
            backend,
            source: source.into(),
        }
    }

    /// The error code of the product's storage API (compat §6) for this error, for logs and
    /// HTTP-facing callers.
    pub fn code(&self) -> &'static str {
        match self {
            KvError::Invalid { .. } => "VALIDATION_FAILED",
            KvError::Conflict { .. } => "REVISION_MISMATCH",
            KvError::QuotaExceeded { .. } => "QUOTA_EXCEEDED",
            KvError::Backend { .. } => "INTERNAL",
        }
    }
}

/// Which argument was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Tenant,
    Extension,
    Namespace,
    Key,
    Prefix,
    Cursor,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Tenant => "tenant id",
            Field::Extension => "extension id",
            Field::Namespace => "namespace",
            Field::Key => "key",
            Field::Prefix => "prefix",
            Field::Cursor => "cursor",
        })
    }
}

/// Why an argument was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The empty string.
    Empty,
    /// Longer than `max` bytes of UTF-8.
    TooLong { len: usize, max: usize },
    /// Holds a control character (NUL, newline, DEL, C1 ...) at byte offset `at`.
    ControlCharacter { at: usize },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Empty => f.write_str("empty"),
            Problem::TooLong { len, max } => write!(f, "{len} bytes, over the limit of {max}"),
            Problem::ControlCharacter { at } => write!(f, "control character at byte {at}"),
        }
    }
}

/// Which quota a write would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Namespaces holding at least one key, per (tenant, extension).
    Namespaces,
    /// Keys in one namespace.
    KeysPerNamespace,
    /// Bytes of one value.
    ValueBytes,
    /// Bytes of keys plus values, per (tenant, extension).
    TotalBytes,
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quota::Namespaces => "namespaces",
            Quota::KeysPerNamespace => "keys per namespace",
            Quota::ValueBytes => "value bytes",
            Quota::TotalBytes => "total bytes",
        })
    }
}
