//! Choosing and opening a store with `Kv::open`, and data surviving a reopen.

use ext_kv::{Kv, OpenError, Quotas, Scope};

use crate::{postgres_url, unique};

#[tokio::test]
async fn paths_and_file_urls_open_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/kv.redb");
    let kv = Kv::open(path.to_str().unwrap(), Quotas::default()).await.unwrap();
    assert_eq!(kv.backend_name(), "redb");
    assert!(path.is_file(), "parent directories are created");
    drop(kv);

    let url = format!("file://{}", dir.path().join("other.redb").display());
    let kv = Kv::open(&url, Quotas::default()).await.unwrap();
    assert_eq!(kv.backend_name(), "redb");
    assert!(dir.path().join("other.redb").is_file());
}

#[tokio::test]
async fn unknown_schemes_are_refused() {
    match Kv::open("redis://127.0.0.1/0", Quotas::default()).await {
        Err(OpenError::UnsupportedScheme { scheme }) => assert_eq!(scheme, "redis"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not.redb");
    std::fs::write(&path, b"this is not a redb file, just some bytes that are long enough").unwrap();
    match Kv::open(path.to_str().unwrap(), Quotas::default()).await {
        Err(OpenError::Embedded { path: p, .. }) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn embedded_data_and_revisions_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kv.redb");
    let s = Scope::new("t", "e").unwrap();
    let first = {
        let kv = Kv::open(path.to_str().unwrap(), Quotas::default()).await.unwrap();
        kv.put(&s, "n", "k", b"v".to_vec(), None).await.unwrap()
    };
    let kv = Kv::open(path.to_str().unwrap(), Quotas::default()).await.unwrap();
    assert_eq!(kv.get(&s, "n", "k").await.unwrap(), Some(first.clone()));
    assert!(kv.put(&s, "n", "k", b"w".to_vec(), None).await.unwrap().revision > first.revision);
}

#[tokio::test]
async fn postgres_urls_open_postgres_and_data_survives_a_reconnect() {
    let url = postgres_url();
    let s = Scope::new(unique("reconnect"), "e").unwrap();
    let first = {
        let kv = Kv::open(&url, Quotas::default()).await.unwrap();
        assert_eq!(kv.backend_name(), "postgres");
        kv.put(&s, "n", "k", b"v".to_vec(), None).await.unwrap()
    };
    // A second open finds the schema in place.
    let kv = Kv::open(&url.replacen("postgres://", "postgresql://", 1), Quotas::default())
        .await
        .unwrap();
    assert_eq!(kv.get(&s, "n", "k").await.unwrap(), Some(first));
}

#[tokio::test]
async fn concurrent_postgres_opens_create_the_schema_once() {
    let url = postgres_url();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Kv::open(&url, Quotas::default()).await.map(drop) })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn postgres_failures_do_not_reveal_the_password() {
    // Nothing listens on port 1.
    let err = Kv::open(
        "postgres://user:hunter2-secret@127.0.0.1:1/db?connect_timeout=2",
        Quotas::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, OpenError::Postgres(_)), "{err:?}");
    let mut text = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!text.contains("hunter2"), "{text}");

    match Kv::open("postgres://u:hunter2-secret@127.0.0.1:notaport/db", Quotas::default()).await {
        Err(err @ OpenError::PostgresUrl(_)) => assert!(!format!("{err} {err:?}").contains("hunter2")),
        other => panic!("{other:?}"),
    }
}
