//! Opening the registry's database: the URL grammar, the pool, the
//! migrations, and write transactions that behave alike on both backends.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Transaction};

use crate::error::{Error, OpenError};

/// Connections to PostgreSQL per process: the registry's statements are
/// short; more would only queue inside the server.
pub const MAX_POSTGRES_CONNECTIONS: u32 = 16;

/// Connections to the SQLite file: one writer at a time anyway (WAL), a few
/// readers beside it.
pub const MAX_SQLITE_CONNECTIONS: u32 = 4;

/// How long a statement waits for a connection before failing, so a
/// database that is down answers within a request's patience.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Attempts of a change that lost a race to a unique key (a first install,
/// a namespace's first publish): each loss means the other change committed,
/// and the next attempt sees it, so a second attempt settles it; the rest
/// is margin.
pub const MAX_CHANGE_ATTEMPTS: usize = 5;

/// The schema's migrations, in order. A database that records a migration
/// not in this list was migrated by a newer binary and is refused.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "registry", include_str!("../migrations/0001_registry.sql")),
    (
        2,
        "pending purges",
        include_str!("../migrations/0002_pending_purges.sql"),
    ),
    (3, "schedules", include_str!("../migrations/0003_schedules.sql")),
];

/// Which server holds the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The registry's database: a pool and the backend behind it.
#[derive(Clone, Debug)]
pub struct Database {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// Changes committed through this handle and its clones (see
    /// [`Database::changes`]).
    changes: Arc<AtomicU64>,
}

impl Database {
    /// Opens (creating a SQLite file if missing) and migrates the database
    /// at `url`: `postgres://…`/`postgresql://…`, `sqlite://PATH`,
    /// `sqlite:PATH` or a plain file path.
    ///
    /// # Errors
    /// An unsupported URL, an unreachable server, a failed migration, or a
    /// database migrated by a newer binary.
    pub async fn open(url: &str) -> Result<Database, OpenError> {
        install_default_drivers();
        let (backend, connect_url) = connect_url(url)?;
        let max = match backend {
            Backend::Sqlite => MAX_SQLITE_CONNECTIONS,
            Backend::Postgres => MAX_POSTGRES_CONNECTIONS,
        };
        let connect_error = |source| OpenError::Connect {
            url: redact(url),
            source,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(&connect_url)
            .await
            .map_err(connect_error)?;
        if backend == Backend::Sqlite {
            // Readers beside the writer; persistent in the file, so once.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(connect_error)?;
        }
        migrator().run(&pool).await.map_err(|source| OpenError::Migrate {
            url: redact(url),
            source,
        })?;
        Ok(Database {
            pool,
            backend,
            changes: Arc::default(),
        })
    }

    /// The backend holding the data.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers (readiness).
    ///
    /// # Errors
    /// The database's failure.
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A transaction that writes. SQLite takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead
    /// of the later one failing when it first writes; PostgreSQL's
    /// conditional updates and unique keys settle races.
    pub(crate) async fn write(&self) -> Result<Transaction<'static, Any>, Error> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// How many changes to versions, signers, installs or their secrets
    /// this handle and its clones have committed. A cache of what those
    /// decide may keep an answer read while this number stays the same;
    /// changes other processes make to a shared database are not counted.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Commits a change to versions, signers, installs or secrets and counts
    /// it in [`Database::changes`] (also when the commit fails: a count too
    /// many only costs a cache a read).
    pub(crate) async fn commit(&self, tx: Transaction<'static, Any>) -> Result<(), Error> {
        let committed = tx.commit().await;
        self.changes.fetch_add(1, Ordering::AcqRel);
        Ok(committed?)
    }

    /// Closes the pool, waiting for statements in flight.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    (*name).into(),
                    MigrationType::Simple,
                    sqlx::SqlStr::from_static(sql),
                    false,
                )
            })
            .collect(),
    )
}

/// The backend and the URL sqlx connects to for a configured `url`.
fn connect_url(url: &str) -> Result<(Backend, String), OpenError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_string()));
    }
    let path = match url.split_once(':') {
        Some(("sqlite", rest)) => rest.strip_prefix("//").unwrap_or(rest),
        Some((scheme, rest)) if rest.starts_with("//") => {
            return Err(OpenError::UnsupportedScheme { scheme: scheme.into() });
        }
        _ => url,
    };
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| OpenError::Directory {
            path: parent.display().to_string(),
            source,
        })?;
    }
    // sqlx percent-decodes the path; keep `%`, `?` and `#` in file names.
    let escaped = path.replace('%', "%25").replace('?', "%3F").replace('#', "%23");
    let query = if query.is_empty() { "mode=rwc" } else { query };
    Ok((Backend::Sqlite, format!("sqlite://{escaped}?{query}")))
}

/// `url` without a password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}:***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a b/reg#1.db");
        let (backend, url) = connect_url(file.to_str().unwrap()).unwrap();
        assert_eq!(backend, Backend::Sqlite);
        assert!(url.ends_with("/a b/reg%231.db?mode=rwc"), "{url}");
        assert!(dir.path().join("a b").is_dir());
        let (_, url) = connect_url(&format!("sqlite://{}/x.db", dir.path().display())).unwrap();
        assert!(
            url.starts_with("sqlite:///") && url.ends_with("/x.db?mode=rwc"),
            "{url}"
        );
        assert_eq!(connect_url("postgres://u@h/db").unwrap().0, Backend::Postgres);
        let err = connect_url("mysql://h/db").unwrap_err().to_string();
        assert!(err.contains("unsupported scheme `mysql`"), "{err}");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("/data/registry.db"), "/data/registry.db");
    }
}
