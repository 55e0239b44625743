//! ext-registry's integration tests, one binary: the shared [`suite`] runs
//! against both backends (`sqlite::*` and `postgres::*`).
//!
//! The PostgreSQL tests need `EXT_TEST_POSTGRES_URL`, which `scripts/test`
//! sets after starting a server with `scripts/services/postgres`; each test
//! gets a schema of its own.

mod suite;

use std::sync::atomic::{AtomicU64, Ordering};

use ext_registry::Database;

/// A database and what must outlive it.
pub struct Fixture {
    pub db: Database,
    /// The URL it was opened with, to open it again.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("data/registry.db").display().to_string();
    Fixture {
        db: Database::open(&url).await.unwrap(),
        url,
        _dir: Some(dir),
    }
}

pub async fn postgres() -> Fixture {
    let base = std::env::var("EXT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| panic!("EXT_TEST_POSTGRES_URL is not set: run scripts/test, which starts PostgreSQL"));
    let schema = unique("registry").replace('-', "_");
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
    Fixture {
        db: Database::open(&url).await.unwrap(),
        url,
        _dir: None,
    }
}

/// A name no other test (nor an earlier run) uses.
pub fn unique(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{name}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

mod sqlite {
    crate::suite_tests!(crate::sqlite);

    #[tokio::test]
    async fn a_url_of_another_database_is_refused() {
        let err = ext_registry::Database::open("mysql://h/db")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("REGISTRY_DATABASE_URL: unsupported scheme `mysql`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_file_uses_write_ahead_logging() {
        let fixture = crate::sqlite().await;
        let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", fixture.url))
            .await
            .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }
}

mod postgres {
    crate::suite_tests!(crate::postgres);
}
