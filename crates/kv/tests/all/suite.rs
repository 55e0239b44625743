//! The behaviour both backends must show, as async functions over a backend; `suite_tests!`
//! turns each into a `#[tokio::test]` for one backend fixture.

use std::collections::BTreeSet;
use std::sync::Arc;

use ext_kv::{Backend, Field, Kv, KvError, ListOptions, Problem, Quota, Quotas, Scope};

use crate::unique;

/// Declares one test per suite function, each on a fresh fixture from `$fixture`.
#[macro_export]
macro_rules! suite_tests {
    ($fixture:path) => {
        $crate::suite_tests!(@each $fixture;
            crud_roundtrip,
            revisions_are_never_reused,
            revision_conflicts,
            concurrent_writers_exactly_one_wins,
            concurrent_creates_exactly_one_wins,
            list_pages_with_a_cursor,
            list_pages_are_stable_under_writes,
            list_pages_stop_at_the_byte_cap,
            list_filters_by_prefix,
            k01_other_tenants_and_extensions_are_unreachable,
            k01_separators_in_ids_and_keys_do_not_collide,
            k01_invalid_keys_are_refused,
            longest_names_fit,
            k02_quota_exhaustion_stores_nothing,
            k02_quota_holds_under_concurrent_writers,
            k02_deletes_free_quota,
            purge_removes_the_scope_and_nothing_else,
            purge_keeps_revisions_increasing,
            purge_frees_the_quota,
        );
    };
    (@each $fixture:path; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = $fixture().await;
                $crate::suite::$name(fixture.backend.clone()).await;
            }
        )*
    };
}

fn kv(backend: Arc<dyn Backend>) -> Kv {
    Kv::with_backend(backend, Quotas::default())
}

fn scope(tenant: &str) -> Scope {
    Scope::new(unique(tenant), "com.example.ext").unwrap()
}

async fn keys_of(kv: &Kv, scope: &Scope, namespace: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let options = ListOptions {
            cursor,
            limit: Some(7),
            ..ListOptions::default()
        };
        let page = kv.list(scope, namespace, &options).await.unwrap();
        keys.extend(page.entries.into_iter().map(|e| e.key));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return keys,
        }
    }
}

pub async fn crud_roundtrip(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let s = scope("crud");
    assert_eq!(kv.get(&s, "settings", "color").await.unwrap(), None);

    let first = kv.put(&s, "settings", "color", b"red".to_vec(), None).await.unwrap();
    assert_eq!(
        (first.namespace.as_str(), first.key.as_str(), first.value.as_slice()),
        ("settings", "color", &b"red"[..])
    );
    assert!(first.revision >= 1);
    assert_eq!(kv.get(&s, "settings", "color").await.unwrap(), Some(first.clone()));

    let second = kv.put(&s, "settings", "color", b"blue".to_vec(), None).await.unwrap();
    assert!(second.revision > first.revision, "{second:?} after {first:?}");
    let got = kv.get(&s, "settings", "color").await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.revision), (&b"blue"[..], second.revision));

    // The same key in another namespace is another entry; empty values are values.
    kv.put(&s, "other", "color", Vec::new(), None).await.unwrap();
    assert_eq!(kv.get(&s, "other", "color").await.unwrap().unwrap().value, b"");
    assert_eq!(kv.get(&s, "settings", "color").await.unwrap().unwrap().value, b"blue");

    assert!(kv.delete(&s, "settings", "color", None).await.unwrap());
    assert_eq!(kv.get(&s, "settings", "color").await.unwrap(), None);
    assert!(
        !kv.delete(&s, "settings", "color", None).await.unwrap(),
        "deleting a missing key reports it"
    );
    assert!(kv.get(&s, "other", "color").await.unwrap().is_some());
}

pub async fn revisions_are_never_reused(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let s = scope("revisions");
    let a = kv.put(&s, "n", "k", b"1".to_vec(), None).await.unwrap();
    assert!(kv.delete(&s, "n", "k", None).await.unwrap());
    let b = kv.put(&s, "n", "k", b"1".to_vec(), None).await.unwrap();
    // A reader holding `a.revision` must not mistake the recreated key for the one it read.
    assert!(b.revision > a.revision);
    assert!(matches!(
        kv.put(&s, "n", "k", b"2".to_vec(), Some(a.revision)).await,
        Err(KvError::Conflict { .. })
    ));
}

pub async fn revision_conflicts(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let s = scope("conflicts");
    // Some(0): create only if absent.
    let created = kv.put(&s, "n", "k", b"v1".to_vec(), Some(0)).await.unwrap();
    match kv.put(&s, "n", "k", b"v2".to_vec(), Some(0)).await {
        Err(KvError::Conflict { expected: 0, stored }) => assert_eq!(stored, created.revision),
        other => panic!("create over an existing key: {other:?}"),
    }
    match kv.put(&s, "n", "k", b"v2".to_vec(), Some(created.revision + 100)).await {
        Err(KvError::Conflict { stored, .. }) => assert_eq!(stored, created.revision),
        other => panic!("stale revision: {other:?}"),
    }
    assert!(matches!(
        kv.put(&s, "n", "absent", b"x".to_vec(), Some(1)).await,
        Err(KvError::Conflict { expected: 1, stored: 0 })
    ));
    assert_eq!(kv.get(&s, "n", "absent").await.unwrap(), None);
    assert_eq!(
        kv.get(&s, "n", "k").await.unwrap().unwrap().value,
        b"v1",
        "refused writes changed nothing"
    );

    let updated = kv
        .put(&s, "n", "k", b"v2".to_vec(), Some(created.revision))
        .await
        .unwrap();
    assert!(updated.revision > created.revision);

    assert!(matches!(
        kv.delete(&s, "n", "k", Some(created.revision)).await,
        Err(KvError::Conflict { .. })
    ));
    assert!(kv.get(&s, "n", "k").await.unwrap().is_some());
    assert!(kv.delete(&s, "n", "k", Some(updated.revision)).await.unwrap());
    assert!(kv.get(&s, "n", "k").await.unwrap().is_none());
}

/// Spawns `writers` puts of `key` expecting `expected`, each with its own value; returns the
/// values that were accepted and the number of conflicts.
async fn race(kv: &Kv, s: &Scope, key: &str, expected: Option<u64>, writers: usize) -> (Vec<Vec<u8>>, usize) {
    let start = Arc::new(tokio::sync::Barrier::new(writers));
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let (kv, s, key, start) = (kv.clone(), s.clone(), key.to_owned(), start.clone());
            tokio::spawn(async move {
                // Open a connection each (PostgreSQL), then write at the same moment.
                kv.get(&s, "race", &key).await.unwrap();
                start.wait().await;
                let value = format!("writer {i}").into_bytes();
                (value.clone(), kv.put(&s, "race", &key, value, expected).await)
            })
        })
        .collect();
    let (mut won, mut conflicts) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            (value, Ok(entry)) => {
                assert_eq!(entry.value, value);
                won.push(value);
            }
            (_, Err(KvError::Conflict { .. })) => conflicts += 1,
            (_, Err(other)) => panic!("unexpected {other:?}"),
        }
    }
    (won, conflicts)
}

pub async fn concurrent_writers_exactly_one_wins(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let s = scope("race");
    let start = kv.put(&s, "race", "k", b"start".to_vec(), None).await.unwrap();
    let (won, conflicts) = race(&kv, &s, "k", Some(start.revision), 12).await;
    assert_eq!((won.len(), conflicts), (1, 11));
    assert_eq!(kv.get(&s, "race", "k").await.unwrap().unwrap().value, won[0]);
}

pub async fn concurrent_creates_exactly_one_wins(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let s = scope("create-race");
    let (won, conflicts) = race(&kv, &s, "fresh", Some(0), 12).await;
    assert_eq!((won.len(), conflicts), (1, 11));
    assert_eq!(kv.get(&s, "race", "fresh").await.unwrap().unwrap().value, won[0]);
}

pub async fn list_pages_with_a_cursor(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let s = scope("list");
    // Byte order, the same on both backends: uppercase < lowercase < non-ASCII.
    let mut want: Vec<String> = (0..22).map(|i| format!("k{i:02}")).collect();
    want.extend(["B", "a", "é", "z", "k"].map(String::from));
    for key in &want {
        kv.put(&s, "n", key, key.as_bytes().to_vec(), None).await.unwrap();
    }
    kv.put(&s, "elsewhere", "k05", b"x".to_vec(), None).await.unwrap();
    want.sort();

    let mut seen = Vec::new();
    let mut cursor = None;
    let mut sizes = Vec::new();
    loop {
        let page = kv
            .list(
                &s,
                "n",
                &ListOptions {
                    cursor,
                    limit: Some(10),
                    ..ListOptions::default()
                },
            )
            .await
            .unwrap();
        sizes.push(page.entries.len());
        for entry in &page.entries {
            assert_eq!(
                (entry.namespace.as_str(), entry.value.as_slice()),
                ("n", entry.key.as_bytes())
            );
            assert!(entry.revision >= 1);
        }
        let last = page.entries.last().map(|e| e.key.clone());
        seen.extend(page.entries.into_iter().map(|e| e.key));
        match page.next_cursor {
            // A WIT guest only has the entries: the cursor must be the last key it got.
            Some(next) => {
                assert_eq!(Some(&next), last.as_ref());
                cursor = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(sizes, [10, 10, 7]);
    assert_eq!(seen, want);

    // The default page size, and an empty namespace.
    let page = kv.list(&s, "n", &ListOptions::default()).await.unwrap();
    assert_eq!((page.entries.len(), page.next_cursor), (want.len(), None));
    let page = kv.list(&s, "empty", &ListOptions::default()).await.unwrap();
    assert_eq!((page.entries.len(), page.next_cursor), (0, None));
    // A cursor at the last key, and an empty cursor meaning "from the start".
    let page = kv
        .list(
            &s,
            "n",
            &ListOptions {
                cursor: want.last().cloned(),
                ..ListOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(page.entries.is_empty());
    let page = kv
        .list(
            &s,
            "n",
            &ListOptions {
                cursor: Some(String::new()),
                ..ListOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.entries.len(), want.len());
    // Exactly one page's worth: the last page is known to be the last.
    let page = kv
        .list(
            &s,
            "n",
            &ListOptions {
                limit: Some(want.len()),
                ..ListOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((page.entries.len(), page.next_cursor), (want.len(), None));
}

pub async fn list_pages_are_stable_under_writes(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let s = scope("list-stable");
    for i in 0..30 {
        kv.put(&s, "n", &format!("k{i:02}"), vec![1], None).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut round = 0;
    loop {
        let page = kv
            .list(
                &s,
                "n",
                &ListOptions {
                    cursor,
                    limit: Some(8),
                    ..ListOptions::default()
                },
            )
            .await
            .unwrap();
        seen.extend(page.entries.iter().map(|e| e.key.clone()));
        // Between pages: rewrite a seen and an unseen key, add keys before and after the
        // cursor, delete an unseen key that was never listed.
        round += 1;
        kv.put(&s, "n", "k00", vec![round], None).await.unwrap();
        kv.put(&s, "n", "k29", vec![round], None).await.unwrap();
        if round <= 2 {
            kv.put(&s, "n", &format!("a-new-{round}"), vec![1], None).await.unwrap();
            kv.put(&s, "n", &format!("z-new-{round}"), vec![1], None).await.unwrap();
        }
        if round == 1 {
            assert!(kv.delete(&s, "n", "k20", None).await.unwrap());
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no key listed twice: {seen:?}");
    for i in (0..30).filter(|i| *i != 20) {
        assert!(
            unique.contains(&format!("k{i:02}")),
            "k{i:02} existed throughout but was missed: {seen:?}"
        );
    }
    assert!(
        !unique.contains("a-new-1"),
        "keys added behind the cursor are not revisited"
    );
    assert!(
        unique.contains("z-new-1") && unique.contains("z-new-2"),
        "keys added ahead are listed"
    );
}

pub async fn list_pages_stop_at_the_byte_cap(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let s = scope("list-bytes");
    let value = vec![7u8; 64 * 1024];
    for i in 0..20 {
        kv.put(&s, "big", &format!("k{i:02}"), value.clone(), None)
            .await
            .unwrap();
    }
    let page = kv.list(&s, "big", &ListOptions::default()).await.unwrap();
    let bytes: usize = page.entries.iter().map(|e| e.key.len() + e.value.len()).sum();
    assert!(
        page.entries.len() < 20 && bytes >= ext_kv::MAX_PAGE_BYTES,
        "{} entries",
        page.entries.len()
    );
    assert!(
        bytes - (64 * 1024 + 3) < ext_kv::MAX_PAGE_BYTES,
        "stops at the first entry past the cap"
    );
    assert_eq!(page.next_cursor.as_deref(), page.entries.last().map(|e| e.key.as_str()));
    assert_eq!(keys_of(&kv, &s, "big").await.len(), 20);
}

pub async fn list_filters_by_prefix(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let s = scope("prefix");
    for key in ["p", "p/", "p/a", "p/b", "p/c/d", "p0", "q/a", "o/z"] {
        kv.put(&s, "n", key, vec![], None).await.unwrap();
    }
    let list = |prefix: &str, cursor: Option<&str>, limit: usize| {
        let options = ListOptions {
            prefix: prefix.into(),
            cursor: cursor.map(Into::into),
            limit: Some(limit),
        };
        let kv = kv.clone();
        let s = s.clone();
        async move {
            let page = kv.list(&s, "n", &options).await.unwrap();
            (
                page.entries.into_iter().map(|e| e.key).collect::<Vec<_>>(),
                page.next_cursor,
            )
        }
    };
    assert_eq!(
        list("p/", None, 10).await,
        (vec!["p/".into(), "p/a".into(), "p/b".into(), "p/c/d".into()], None)
    );
    assert_eq!(
        list("p/", None, 2).await,
        (vec!["p/".into(), "p/a".into()], Some("p/a".into()))
    );
    assert_eq!(
        list("p/", Some("p/a"), 2).await,
        (vec!["p/b".into(), "p/c/d".into()], None)
    );
    // A cursor before the prefix starts at the prefix.
    assert_eq!(list("p/", Some("a"), 1).await, (vec!["p/".into()], Some("p/".into())));
    assert_eq!(list("zz", None, 10).await, (vec![], None));
    // Prefixes are literal: no pattern characters.
    kv.put(&s, "n", "%_x", vec![], None).await.unwrap();
    assert_eq!(list("%", None, 10).await, (vec!["%_x".into()], None));
    assert_eq!(list("_", None, 10).await, (vec![], None));
}

pub async fn k01_other_tenants_and_extensions_are_unreachable(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let other = unique("otherTenant");
    let attacker = Scope::new(unique("tenantA"), "com.example.ext").unwrap();
    let victim = Scope::new(other.clone(), "com.example.ext").unwrap();
    let victim_other_ext = Scope::new(other.clone(), "com.example.second").unwrap();

    kv.put(&victim, "n", "x", b"secret".to_vec(), None).await.unwrap();
    kv.put(&victim_other_ext, "n", "y", b"secret2".to_vec(), None)
        .await
        .unwrap();

    let escapes = [
        format!("../{other}/x"),
        format!("{other}/com.example.ext/n/x"),
        "../../x".into(),
        "/x".into(),
    ];
    for key in &escapes {
        assert_eq!(kv.get(&attacker, "n", key).await.unwrap(), None, "{key}");
        kv.put(&attacker, "n", key, b"attack".to_vec(), None).await.unwrap();
        assert_eq!(
            kv.get(&attacker, "n", key).await.unwrap().unwrap().key,
            *key,
            "stored verbatim in its own scope"
        );
    }
    for namespace in [format!("../{other}"), "..".into()] {
        assert_eq!(kv.get(&attacker, &namespace, "x").await.unwrap(), None);
    }
    // The victim's data is untouched and the attacker's keys are not in its scope.
    assert_eq!(kv.get(&victim, "n", "x").await.unwrap().unwrap().value, b"secret");
    assert_eq!(keys_of(&kv, &victim, "n").await, ["x"]);
    assert_eq!(keys_of(&kv, &victim_other_ext, "n").await, ["y"]);
    // Same tenant, other extension: separate too.
    assert_eq!(kv.get(&victim, "n", "y").await.unwrap(), None);
    assert_eq!(kv.get(&victim_other_ext, "n", "x").await.unwrap(), None);
    assert!(!kv.delete(&attacker, "n", "x", None).await.unwrap());
    assert!(kv.get(&victim, "n", "x").await.unwrap().is_some());
    // The attacker lists only its own keys.
    let mut own = escapes.to_vec();
    own.sort();
    assert_eq!(keys_of(&kv, &attacker, "n").await, own);
}

pub async fn k01_separators_in_ids_and_keys_do_not_collide(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let t = unique("t");
    // (tenant, extension) = ("t", "e:x") vs ("t:e", "x"), and "/" likewise.
    let pairs = [
        (
            Scope::new(t.clone(), "e:x").unwrap(),
            Scope::new(format!("{t}:e"), "x").unwrap(),
        ),
        (
            Scope::new(t.clone(), "e/x").unwrap(),
            Scope::new(format!("{t}/e"), "x").unwrap(),
        ),
    ];
    for (a, b) in &pairs {
        kv.put(a, "n", "k", b"a".to_vec(), None).await.unwrap();
        assert_eq!(kv.get(b, "n", "k").await.unwrap(), None);
        kv.put(b, "n", "k", b"b".to_vec(), None).await.unwrap();
        assert_eq!(kv.get(a, "n", "k").await.unwrap().unwrap().value, b"a");
    }
    // (namespace, key) = ("a", "b:c") vs ("a:b", "c").
    let s = scope("separators");
    kv.put(&s, "a", "b:c", b"1".to_vec(), None).await.unwrap();
    assert_eq!(kv.get(&s, "a:b", "c").await.unwrap(), None);
    assert_eq!(kv.get(&s, "a", "b").await.unwrap(), None);
    kv.put(&s, "a:b", "c", b"2".to_vec(), None).await.unwrap();
    assert_eq!(kv.get(&s, "a", "b:c").await.unwrap().unwrap().value, b"1");
    assert_eq!(keys_of(&kv, &s, "a").await, ["b:c"]);
    assert_eq!(keys_of(&kv, &s, "a:b").await, ["c"]);
}

pub async fn k01_invalid_keys_are_refused(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let s = scope("invalid");
    let max = ext_kv::DEFAULT_MAX_KEY_BYTES;
    let long = "k".repeat(max + 1);
    let cases: &[(&str, &str, Field, Problem)] = &[
        ("n", "", Field::Key, Problem::Empty),
        ("n", "a\0b", Field::Key, Problem::ControlCharacter { at: 1 }),
        ("n", "a\nb", Field::Key, Problem::ControlCharacter { at: 1 }),
        ("n", &long, Field::Key, Problem::TooLong { len: max + 1, max }),
        ("", "k", Field::Namespace, Problem::Empty),
        ("a\0b", "k", Field::Namespace, Problem::ControlCharacter { at: 1 }),
    ];
    for (namespace, key, field, problem) in cases {
        let is_refused = |result: Result<(), KvError>| match result {
            Err(KvError::Invalid { field: f, problem: p }) => assert_eq!((f, p), (*field, *problem), "{key:?}"),
            other => panic!("{namespace:?}/{key:?}: {other:?}"),
        };
        is_refused(kv.put(&s, namespace, key, b"v".to_vec(), None).await.map(drop));
        is_refused(kv.get(&s, namespace, key).await.map(drop));
        is_refused(kv.delete(&s, namespace, key, None).await.map(drop));
    }
    assert!(keys_of(&kv, &s, "n").await.is_empty(), "nothing stored");
    // The limit itself is allowed.
    kv.put(&s, "n", &"k".repeat(max), b"v".to_vec(), None).await.unwrap();

    let bad_list = [
        (
            "a\0",
            ListOptions {
                cursor: None,
                ..ListOptions::default()
            },
            Field::Namespace,
        ),
        (
            "n",
            ListOptions {
                cursor: Some("a\0b".into()),
                ..ListOptions::default()
            },
            Field::Cursor,
        ),
        (
            "n",
            ListOptions {
                prefix: long.clone(),
                ..ListOptions::default()
            },
            Field::Prefix,
        ),
    ];
    for (namespace, options, field) in bad_list {
        match kv.list(&s, namespace, &options).await {
            Err(KvError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{options:?}: {other:?}"),
        }
    }
}

/// `len` letters that compress badly (the PostgreSQL index would hide an oversized row by
/// compressing a repetitive one).
fn noise(seed: u64, len: usize) -> String {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from(b'!' + ((state >> 33) % 94) as u8)
        })
        .collect()
}

pub async fn longest_names_fit(backend: Arc<dyn Backend>) {
    let kv = Kv::with_backend(
        backend,
        Quotas {
            max_key_bytes: usize::MAX,
            ..Quotas::default()
        },
    );
    let max = ext_kv::MAX_ID_BYTES;
    let tenant = unique("long");
    let tenant = format!("{tenant}{}", noise(1, max - tenant.len()));
    let s = Scope::new(tenant, noise(2, max)).unwrap();
    let namespace = noise(3, ext_kv::MAX_NAMESPACE_BYTES);
    let key = noise(4, ext_kv::MAX_KEY_BYTES);
    let entry = kv.put(&s, &namespace, &key, b"v".to_vec(), None).await.unwrap();
    assert_eq!(kv.get(&s, &namespace, &key).await.unwrap(), Some(entry));
    assert!(matches!(
        kv.put(&s, &namespace, &noise(4, ext_kv::MAX_KEY_BYTES + 1), vec![], None)
            .await,
        Err(KvError::Invalid {
            field: Field::Key,
            problem: Problem::TooLong { .. }
        })
    ));
}

fn small_quotas() -> Quotas {
    Quotas {
        max_namespaces: 2,
        max_keys_per_namespace: 3,
        max_value_bytes: 16,
        max_key_bytes: 8,
        max_total_bytes: 60,
    }
}

fn quota_of(result: Result<ext_kv::Entry, KvError>) -> Quota {
    match result {
        Err(KvError::QuotaExceeded { quota, .. }) => quota,
        other => panic!("expected a quota error, got {other:?}"),
    }
}

pub async fn k02_quota_exhaustion_stores_nothing(backend: Arc<dyn Backend>) {
    let kv = Kv::with_backend(backend, small_quotas());
    let a = scope("quota-a");
    let b = scope("quota-b");

    // One value over the cap.
    assert_eq!(
        quota_of(kv.put(&a, "n1", "big", vec![0; 17], None).await),
        Quota::ValueBytes
    );
    assert_eq!(kv.get(&a, "n1", "big").await.unwrap(), None);
    // Key over the configured key cap.
    assert!(matches!(
        kv.put(&a, "n1", "123456789", vec![], None).await,
        Err(KvError::Invalid {
            field: Field::Key,
            problem: Problem::TooLong { len: 9, max: 8 }
        })
    ));

    // Keys per namespace: 3.
    for key in ["k1", "k2", "k3"] {
        kv.put(&a, "n1", key, vec![1; 8], None).await.unwrap(); // 10 bytes each
    }
    assert_eq!(
        quota_of(kv.put(&a, "n1", "k4", vec![1], None).await),
        Quota::KeysPerNamespace
    );
    assert_eq!(kv.get(&a, "n1", "k4").await.unwrap(), None);
    // Overwriting an existing key in a full namespace is still fine.
    kv.put(&a, "n1", "k1", vec![2; 8], None).await.unwrap();

    // Namespaces: 2.
    kv.put(&a, "n2", "k1", vec![1; 8], None).await.unwrap(); // total 40
    assert_eq!(quota_of(kv.put(&a, "n3", "k1", vec![1], None).await), Quota::Namespaces);
    assert!(keys_of(&kv, &a, "n3").await.is_empty());

    // Total bytes: 60; 40 used, 20 left.
    kv.put(&a, "n2", "k2", vec![1; 8], None).await.unwrap(); // 50
    assert_eq!(
        quota_of(kv.put(&a, "n2", "k3", vec![1; 9], None).await),
        Quota::TotalBytes
    ); // would be 61
    assert_eq!(kv.get(&a, "n2", "k3").await.unwrap(), None);
    // Exactly to the limit is fine.
    kv.put(&a, "n2", "k3", vec![1; 8], None).await.unwrap(); // 60
    // Growing an existing value past the total is refused and the old value stays whole.
    assert_eq!(
        quota_of(kv.put(&a, "n2", "k2", vec![9; 9], None).await),
        Quota::TotalBytes
    );
    assert_eq!(kv.get(&a, "n2", "k2").await.unwrap().unwrap().value, vec![1; 8]);
    // Shrinking at the limit is fine.
    kv.put(&a, "n2", "k2", vec![1; 7], None).await.unwrap(); // 59
    kv.put(&a, "n2", "k2", vec![1; 8], None).await.unwrap(); // 60

    assert_eq!(keys_of(&kv, &a, "n1").await, ["k1", "k2", "k3"]);
    assert_eq!(keys_of(&kv, &a, "n2").await, ["k1", "k2", "k3"]);

    // Another tenant is unaffected by a's exhaustion: it has its whole quota.
    for namespace in ["n1", "n2"] {
        for key in ["k1", "k2", "k3"] {
            kv.put(&b, namespace, key, vec![1; 8], None).await.unwrap();
        }
    }
    assert_eq!(
        quota_of(kv.put(&b, "n2", "k3", vec![1; 9], None).await),
        Quota::TotalBytes
    );
    assert_eq!(kv.get(&a, "n2", "k3").await.unwrap().unwrap().value, vec![1; 8]);
}

pub async fn k02_quota_holds_under_concurrent_writers(backend: Arc<dyn Backend>) {
    let quotas = Quotas {
        max_keys_per_namespace: 5,
        ..Quotas::default()
    };
    let kv = Kv::with_backend(backend, quotas);
    let s = scope("quota-race");
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (kv, s, start) = (kv.clone(), s.clone(), start.clone());
            tokio::spawn(async move {
                let key = format!("k{i:02}");
                kv.get(&s, "n", &key).await.unwrap();
                start.wait().await;
                kv.put(&s, "n", &key, vec![1], None).await
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(KvError::QuotaExceeded {
                quota: Quota::KeysPerNamespace,
                ..
            }) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, refused), (5, 11));
    assert_eq!(keys_of(&kv, &s, "n").await.len(), 5);
}

pub async fn k02_deletes_free_quota(backend: Arc<dyn Backend>) {
    let kv = Kv::with_backend(backend, small_quotas());
    let s = scope("quota-free");
    for key in ["k1", "k2", "k3"] {
        kv.put(&s, "n1", key, vec![1; 8], None).await.unwrap();
    }
    kv.put(&s, "n2", "k1", vec![1; 8], None).await.unwrap();
    assert_eq!(
        quota_of(kv.put(&s, "n1", "k4", vec![], None).await),
        Quota::KeysPerNamespace
    );
    assert_eq!(quota_of(kv.put(&s, "n3", "k1", vec![], None).await), Quota::Namespaces);

    assert!(kv.delete(&s, "n1", "k1", None).await.unwrap());
    kv.put(&s, "n1", "k4", vec![], None).await.unwrap();
    // Emptying a namespace frees its slot.
    assert!(kv.delete(&s, "n2", "k1", None).await.unwrap());
    kv.put(&s, "n3", "k1", vec![1; 8], None).await.unwrap();
    // Bytes freed by deletes count again: 10+10+2+10 = 32 used, 28 left.
    kv.put(&s, "n3", "k2", vec![1; 16], None).await.unwrap(); // 50
    assert_eq!(
        quota_of(kv.put(&s, "n3", "k3", vec![1; 9], None).await),
        Quota::TotalBytes
    );
    assert!(kv.delete(&s, "n3", "k2", None).await.unwrap()); // 32
    kv.put(&s, "n3", "k3", vec![1; 16], None).await.unwrap(); // 50
}

pub async fn purge_removes_the_scope_and_nothing_else(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let s = scope("purge");
    let t = s.tenant().to_owned();
    // Neighbours: the same tenant's other extension, another tenant, and ids that extend or
    // contain the purged ones (a range that overshoots its scope would reach them).
    let neighbours = [
        Scope::new(t.clone(), "com.example.second").unwrap(),
        Scope::new(t.clone(), "com.example.ext2").unwrap(),
        Scope::new(format!("{t}x"), "com.example.ext").unwrap(),
        Scope::new(format!("{t}:com.example.ext"), "x").unwrap(),
        scope("purge-other"),
    ];
    for (namespace, key) in [("a", "1"), ("a", "2"), ("b", "1"), ("b:c", "d")] {
        kv.put(&s, namespace, key, b"mine".to_vec(), None).await.unwrap();
    }
    for n in &neighbours {
        kv.put(n, "a", "1", b"theirs".to_vec(), None).await.unwrap();
    }

    assert_eq!(kv.purge(&s).await.unwrap(), 4);
    for (namespace, key) in [("a", "1"), ("a", "2"), ("b", "1"), ("b:c", "d")] {
        assert_eq!(kv.get(&s, namespace, key).await.unwrap(), None, "{namespace}/{key}");
    }
    for namespace in ["a", "b", "b:c"] {
        assert!(keys_of(&kv, &s, namespace).await.is_empty(), "{namespace}");
    }
    for n in &neighbours {
        let entry = kv.get(n, "a", "1").await.unwrap();
        assert_eq!(entry.map(|e| e.value), Some(b"theirs".to_vec()), "{n:?} survives");
        assert_eq!(keys_of(&kv, n, "a").await, ["1"]);
    }

    // Retrying is harmless: nothing is left, and a scope that never wrote purges too.
    assert_eq!(kv.purge(&s).await.unwrap(), 0);
    assert_eq!(kv.purge(&scope("purge-never")).await.unwrap(), 0);
    // The scope is usable again.
    kv.put(&s, "a", "1", b"new".to_vec(), Some(0)).await.unwrap();
    assert_eq!(kv.get(&s, "a", "1").await.unwrap().unwrap().value, b"new");
}

pub async fn purge_keeps_revisions_increasing(backend: Arc<dyn Backend>) {
    let kv = kv(backend);
    let s = scope("purge-revisions");
    let before = kv.put(&s, "n", "k", b"1".to_vec(), None).await.unwrap();
    kv.put(&s, "n", "other", b"1".to_vec(), None).await.unwrap();
    assert_eq!(kv.purge(&s).await.unwrap(), 2);
    let after = kv.put(&s, "n", "k", b"2".to_vec(), None).await.unwrap();
    // A guest still holding the revision it read before the purge must not match the new entry.
    assert!(after.revision > before.revision + 1, "{after:?} after {before:?}");
    assert!(matches!(
        kv.put(&s, "n", "k", b"3".to_vec(), Some(before.revision)).await,
        Err(KvError::Conflict { .. })
    ));
}

pub async fn purge_frees_the_quota(backend: Arc<dyn Backend>) {
    let kv = Kv::with_backend(backend, small_quotas());
    let s = scope("purge-quota");
    let fill = |kv: Kv, s: Scope| async move {
        // 2 namespaces x 3 keys x 10 bytes = the 60-byte total.
        for namespace in ["n1", "n2"] {
            for key in ["k1", "k2", "k3"] {
                kv.put(&s, namespace, key, vec![1; 8], None).await.unwrap();
            }
        }
    };
    fill(kv.clone(), s.clone()).await;
    assert_eq!(quota_of(kv.put(&s, "n3", "k1", vec![], None).await), Quota::Namespaces);
    assert_eq!(kv.purge(&s).await.unwrap(), 6);
    // Every byte, key and namespace slot is free again: the whole quota fits once more.
    kv.put(&s, "n3", "k1", vec![1; 8], None).await.unwrap();
    assert!(kv.delete(&s, "n3", "k1", None).await.unwrap());
    fill(kv.clone(), s.clone()).await;
    assert_eq!(
        quota_of(kv.put(&s, "n2", "k3", vec![1; 9], None).await),
        Quota::TotalBytes
    );
}
