//! ext-kv's integration tests, one binary: the shared [`suite`] runs against both backends
//! (`embedded::*` and `postgres::*`), plus store opening and reopening in [`open`].
//!
//! The PostgreSQL tests need `EXT_TEST_POSTGRES_URL`, which `scripts/test` sets after starting
//! a server with `scripts/services/postgres`.

mod open;
mod suite;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ext_kv::Backend;
use ext_kv::embedded::EmbeddedBackend;
use ext_kv::postgres::PostgresBackend;

/// A backend and what must outlive it (the directory of a redb file).
pub struct Fixture {
    pub backend: Arc<dyn Backend>,
    _dir: Option<tempfile::TempDir>,
}

pub async fn embedded() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let backend = EmbeddedBackend::open(dir.path().join("kv.redb")).await.unwrap();
    Fixture {
        backend: Arc::new(backend),
        _dir: Some(dir),
    }
}

pub fn postgres_url() -> String {
    std::env::var("EXT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| panic!("EXT_TEST_POSTGRES_URL is not set: run scripts/test, which starts PostgreSQL"))
}

pub async fn postgres() -> Fixture {
    let backend = PostgresBackend::connect(&postgres_url()).await.unwrap();
    Fixture {
        backend: Arc::new(backend),
        _dir: None,
    }
}

/// A name no other test (nor an earlier run against the same database) uses, so tests sharing
/// one PostgreSQL database never see each other's rows.
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

mod embedded {
    crate::suite_tests!(crate::embedded);
}

mod postgres {
    crate::suite_tests!(crate::postgres);
}
