//! The registry's data errors: what a caller can act on (not found, a
//! conflict, a failed precondition, a refused signer) apart from the
//! database failing.

/// What went wrong with a registry operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The extension, version or install named does not exist.
    #[error("{what} `{name}` not found")]
    NotFound { what: &'static str, name: String },
    /// The version exists with other content: published versions are
    /// immutable.
    #[error("{extension} {version} is already published with content {existing}")]
    VersionExists {
        extension: String,
        version: String,
        existing: String,
    },
    /// The extension name belongs to another publisher namespace's
    /// extension (kept for names recorded before a namespace rule change).
    #[error("`{extension}` belongs to publisher `{publisher}`")]
    WrongPublisher { extension: String, publisher: String },
    /// The publisher namespace is bound to other signers.
    #[error("signer `{signer}` may not publish in namespace `{publisher}`")]
    SignerNotAllowed { publisher: String, signer: String },
    /// The signer is revoked: nothing it signed may be published.
    #[error("signer `{signer}` is revoked")]
    SignerRevoked { signer: String },
    /// The version is yanked or revoked and may not be newly installed.
    #[error("{extension} {version} is {state}: it may not be installed")]
    NotInstallable {
        extension: String,
        version: String,
        state: &'static str,
    },
    /// A conditional change found another revision than it was given.
    #[error("the install is at revision {current}, not {expected}")]
    PreconditionFailed { expected: String, current: String },
    /// The purge of the tenant's previous install of the extension is not
    /// finished (its KV data may still be there): no new install until it is.
    #[error(
        "the purge of tenant `{tenant}`'s previous install of `{extension}` is not finished: DELETE the install \
         again with ?purge=true, then install"
    )]
    PurgePending { tenant: String, extension: String },
    /// A schedule's fields are invalid: each bad field and why.
    #[error("invalid schedule: {}", describe(fields))]
    InvalidSchedule {
        fields: std::collections::BTreeMap<String, String>,
    },
    /// The install holds as many schedules as it may.
    #[error("the install already holds {limit} schedules, the most it may")]
    ScheduleQuota { limit: i64 },
    /// Another writer changed the same rows first and retrying did not help.
    #[error("changed concurrently by another request; retry")]
    Contended,
    /// The database failed (connection, constraint, I/O).
    #[error("registry database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored JSON column did not decode (a row written by something else).
    #[error("registry database: column `{column}` holds invalid JSON: {reason}")]
    Corrupt { column: &'static str, reason: String },
}

/// `field: why; field: why`.
fn describe(fields: &std::collections::BTreeMap<String, String>) -> String {
    let described: Vec<String> = fields.iter().map(|(field, why)| format!("{field}: {why}")).collect();
    described.join("; ")
}

/// Why the database could not be opened (start-up, not per request).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A URL that is neither `postgres://`, `postgresql://`, `sqlite:` nor a
    /// file path.
    #[error("REGISTRY_DATABASE_URL: unsupported scheme `{scheme}`: use postgres://…, sqlite://… or a file path")]
    UnsupportedScheme { scheme: String },
    /// The SQLite file's directory could not be created.
    #[error("REGISTRY_DATABASE_URL: cannot create {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The database could not be reached or opened.
    #[error("REGISTRY_DATABASE_URL: cannot open {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// Migrating failed, or the database was migrated by a newer binary.
    #[error("registry database {url}: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// Whether `error` is a unique-constraint violation (a concurrent insert of
/// the same key won).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}
