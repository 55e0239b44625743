//! The behaviour both backends must show, as async functions over a
//! [`Fixture`]; `suite_tests!` turns each into a `#[tokio::test]` for one
//! backend.

use std::collections::BTreeMap;
use std::sync::Arc;

use ext_registry::schedules::MAX_SCHEDULES_PER_INSTALL;
use ext_registry::{
    Action, Backend, Database, Error, Execution, InstallSpec, NewVersion, OpenError, Precondition, Published,
    ScheduleEdit, ScheduleSpec, Timestamp,
};

use crate::Fixture;

/// Declares one test per suite function, each on a fresh fixture.
#[macro_export]
macro_rules! suite_tests {
    ($fixture:path) => {
        $crate::suite_tests!(@each $fixture;
            publish_records_a_version_once,
            g03_other_bytes_for_a_published_version_conflict,
            concurrent_publishes_of_one_version_exactly_one_wins,
            concurrent_first_publishes_in_one_namespace_all_land,
            namespaces_are_bound_to_their_first_signer,
            revoking_a_signer_revokes_its_versions_and_refuses_its_publishes,
            install_upgrade_rollback_and_edits_are_in_the_history,
            yanked_and_revoked_versions_are_not_newly_installed,
            concurrent_edits_at_one_revision_exactly_one_wins,
            concurrent_first_installs_make_one_install,
            g03_secrets_are_sealed_per_install_and_other_tenants_see_nothing,
            resealing_pages_through_secrets_and_writes_only_what_was_read,
            uninstall_removes_the_install_and_keeps_its_history,
            a_purge_stays_pending_until_done_and_blocks_reinstalls,
            ui_validation_needs_an_enabled_install_at_that_hash,
            executions_list_newest_first_and_prune_by_age,
            every_change_is_in_the_audit_log,
            changes_a_call_depends_on_are_counted_and_logs_are_not,
            a_database_migrated_by_a_newer_binary_is_refused,
            schedules_are_install_data_validated_field_by_field,
            schedules_are_capped_per_install_and_go_with_it,
            each_due_time_is_claimed_once_and_missed_ones_fire_once,
        );
    };
    (@each $fixture:path; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::suite::$name($fixture().await).await;
            }
        )*
    };
}

const SIGNER: &str = "key:acme";

fn new_version(extension: &str, version: &str, hash: &str) -> NewVersion {
    NewVersion {
        extension: extension.into(),
        version: semver::Version::parse(version).unwrap(),
        content_hash: hash.into(),
        signer: SIGNER.into(),
        size_bytes: 1234,
        manifest: format!(r#"{{"name":"{extension}","version":"{version}"}}"#),
        actor: "publisher-ci".into(),
    }
}

fn hash(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

async fn publish(db: &Database, extension: &str, version: &str, n: u8) -> String {
    db.publish(&new_version(extension, version, &hash(n)))
        .await
        .unwrap()
        .version()
        .version_id
        .clone()
}

fn spec(version_id: &str) -> InstallSpec {
    InstallSpec {
        version_id: version_id.into(),
        capabilities: vec!["cap:context.read".into(), "cap:log.emit".into()],
        config: BTreeMap::new(),
        egress: vec![],
        enabled: true,
    }
}

pub async fn publish_records_a_version_once(f: Fixture) {
    let first =
        f.db.publish(&new_version("com.acme.hello", "1.0.0", &hash(1)))
            .await
            .unwrap();
    let Published::Created(created) = &first else {
        panic!("first publish: {first:?}")
    };
    assert_eq!(
        (
            created.version.as_str(),
            created.content_hash.as_str(),
            created.signer.as_str()
        ),
        ("1.0.0", hash(1).as_str(), SIGNER)
    );
    assert_eq!(
        (created.size_bytes, created.yanked, created.revoked),
        (1234, false, false)
    );
    assert_eq!(created.published_by, "publisher-ci");
    let again =
        f.db.publish(&new_version("com.acme.hello", "1.0.0", &hash(1)))
            .await
            .unwrap();
    assert_eq!(again, Published::Existing(created.clone()));
    publish(&f.db, "com.acme.hello", "1.10.0", 3).await;
    publish(&f.db, "com.acme.hello", "1.2.0", 2).await;
    let (extension, versions) = f.db.extension("com.acme.hello").await.unwrap().unwrap();
    assert_eq!(
        (extension.name.as_str(), extension.publisher.as_str()),
        ("com.acme.hello", "com.acme")
    );
    let order: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(order, ["1.0.0", "1.2.0", "1.10.0"], "semver order, not text order");
    assert_eq!(f.db.extensions().await.unwrap().len(), 1);
    assert!(f.db.extension("com.acme.other").await.unwrap().is_none());
    assert_eq!(
        f.db.version("com.acme.hello", "1.2.0")
            .await
            .unwrap()
            .unwrap()
            .content_hash,
        hash(2)
    );
}

pub async fn g03_other_bytes_for_a_published_version_conflict(f: Fixture) {
    publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    let err =
        f.db.publish(&new_version("com.acme.hello", "1.0.0", &hash(2)))
            .await
            .unwrap_err();
    assert!(
        matches!(&err, Error::VersionExists { existing, .. } if *existing == hash(1)),
        "{err:?}"
    );
    let (_, versions) = f.db.extension("com.acme.hello").await.unwrap().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].content_hash, hash(1), "the published content is untouched");
}

pub async fn concurrent_publishes_of_one_version_exactly_one_wins(f: Fixture) {
    let db = Arc::new(f.db.clone());
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                (
                    i % 2,
                    db.publish(&new_version("com.acme.race", "1.0.0", &hash(i % 2))).await,
                )
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut results = Vec::new();
    for task in tasks {
        let (bytes, result) = task.await.unwrap();
        if let Ok(Published::Created(v)) = &result {
            created.push((bytes, v.clone()));
        }
        results.push((bytes, result));
    }
    assert_eq!(created.len(), 1, "exactly one publish creates: {results:?}");
    let (winner, version) = &created[0];
    for (bytes, result) in &results {
        match result {
            Ok(Published::Created(_)) => {}
            Ok(Published::Existing(v)) => assert!(bytes == winner && v == version, "{result:?}"),
            Err(Error::VersionExists { existing, .. }) => {
                assert!(bytes != winner && *existing == version.content_hash, "{result:?}")
            }
            other => panic!("unexpected: {other:?}"),
        }
    }
    let (_, versions) = f.db.extension("com.acme.race").await.unwrap().unwrap();
    assert_eq!(versions.len(), 1);
}

pub async fn concurrent_first_publishes_in_one_namespace_all_land(f: Fixture) {
    let db = Arc::new(f.db.clone());
    let tasks: Vec<_> = (0..6u8)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                db.publish(&new_version(&format!("com.acme.x{i}"), "1.0.0", &hash(i)))
                    .await
            })
        })
        .collect();
    for task in tasks {
        let published = task.await.unwrap().unwrap();
        assert!(matches!(published, Published::Created(_)), "{published:?}");
    }
    assert_eq!(f.db.extensions().await.unwrap().len(), 6);
    assert_eq!(
        f.db.signers("com.acme").await.unwrap(),
        [SIGNER],
        "the namespace bound once"
    );
}

pub async fn namespaces_are_bound_to_their_first_signer(f: Fixture) {
    publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    assert_eq!(f.db.signers("com.acme").await.unwrap(), [SIGNER]);
    let mut other = new_version("com.acme.billing.sync", "1.0.0", &hash(2));
    other.signer = "key:mallory".into();
    let err = f.db.publish(&other).await.unwrap_err();
    assert!(
        matches!(&err, Error::SignerNotAllowed { publisher, signer } if publisher == "com.acme" && signer == "key:mallory"),
        "{err:?}"
    );
    assert!(
        f.db.extension("com.acme.billing.sync").await.unwrap().is_none(),
        "nothing recorded"
    );
    // Mallory's own namespace is hers.
    let mut own = new_version("org.mallory.tool", "1.0.0", &hash(3));
    own.signer = "key:mallory".into();
    assert!(matches!(f.db.publish(&own).await.unwrap(), Published::Created(_)));
    // Rotation: a second acme key, added by an admin, may publish too.
    f.db.add_signer("com.acme", "key:acme-2026", "admin").await.unwrap();
    f.db.add_signer("com.acme", "key:acme-2026", "admin").await.unwrap();
    let mut rotated = new_version("com.acme.hello", "1.1.0", &hash(4));
    rotated.signer = "key:acme-2026".into();
    assert!(matches!(f.db.publish(&rotated).await.unwrap(), Published::Created(_)));
    assert_eq!(f.db.signers("com.acme").await.unwrap(), ["key:acme", "key:acme-2026"]);
}

pub async fn revoking_a_signer_revokes_its_versions_and_refuses_its_publishes(f: Fixture) {
    publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    publish(&f.db, "com.acme.hello", "1.1.0", 2).await;
    let revoked = f.db.revoke_version("com.acme.hello", "1.0.0", "admin").await.unwrap();
    assert!(revoked.revoked);
    assert_eq!(f.db.revoked_hashes().await.unwrap(), [hash(1)]);
    f.db.revoke_signer(SIGNER, "admin").await.unwrap();
    f.db.revoke_signer(SIGNER, "admin").await.unwrap();
    assert_eq!(f.db.revoked_hashes().await.unwrap(), [hash(1), hash(2)]);
    assert!(f.db.version("com.acme.hello", "1.1.0").await.unwrap().unwrap().revoked);
    let err =
        f.db.publish(&new_version("com.acme.hello", "1.2.0", &hash(3)))
            .await
            .unwrap_err();
    assert!(
        matches!(&err, Error::SignerRevoked { signer } if signer == SIGNER),
        "{err:?}"
    );
    let err =
        f.db.revoke_version("com.acme.hello", "9.9.9", "admin")
            .await
            .unwrap_err();
    assert!(matches!(err, Error::NotFound { what: "version", .. }), "{err:?}");
}

pub async fn install_upgrade_rollback_and_edits_are_in_the_history(f: Fixture) {
    let v1 = publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    let v2 = publish(&f.db, "com.acme.hello", "2.0.0", 2).await;
    let installed =
        f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::Absent, "ops")
            .await
            .unwrap();
    assert_eq!(installed.action, Some(Action::Install));
    let install = installed.install;
    assert_eq!(
        (install.version.as_str(), install.revision, install.enabled),
        ("1.0.0", 1, true)
    );
    assert_eq!(install.content_hash, hash(1));
    let id = install.install_id.clone();

    let same =
        f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
            .await
            .unwrap();
    assert_eq!(
        (same.action, same.install.revision),
        (None, 1),
        "the same state again changes nothing"
    );

    let up =
        f.db.put_install("t1", "com.acme.hello", &spec(&v2), Precondition::Revision(1), "ops")
            .await
            .unwrap();
    assert_eq!(
        (up.action, up.install.version.as_str(), up.install.revision),
        (Some(Action::Upgrade), "2.0.0", 2)
    );
    assert_eq!(
        (up.install.install_id.as_str(), up.install.content_hash.as_str()),
        (id.as_str(), hash(2).as_str())
    );

    let back =
        f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "oncall")
            .await
            .unwrap();
    assert_eq!(
        (back.action, back.install.version.as_str()),
        (Some(Action::Rollback), "1.0.0")
    );

    let mut configured = spec(&v1);
    configured.config.insert("region".into(), "eu".into());
    configured.egress = vec!["https://api.example.com".into()];
    let edit =
        f.db.put_install("t1", "com.acme.hello", &configured, Precondition::None, "ops")
            .await
            .unwrap();
    assert_eq!(edit.action, Some(Action::Configure));
    assert_eq!(edit.install.config["region"], "eu");
    configured.enabled = false;
    let off =
        f.db.put_install("t1", "com.acme.hello", &configured, Precondition::None, "ops")
            .await
            .unwrap();
    assert_eq!((off.action, off.install.enabled), (Some(Action::Disable), false));
    configured.enabled = true;
    let on =
        f.db.put_install("t1", "com.acme.hello", &configured, Precondition::None, "ops")
            .await
            .unwrap();
    assert_eq!((on.action, on.install.revision), (Some(Action::Enable), 6));

    let history = f.db.history("t1", "com.acme.hello").await.unwrap();
    let actions: Vec<Action> = history.iter().map(|h| h.action).collect();
    use Action::*;
    assert_eq!(actions, [Install, Upgrade, Rollback, Configure, Disable, Enable]);
    let seqs: Vec<i64> = history.iter().map(|h| h.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    assert!(history.iter().all(|h| h.install_id == id));
    assert_eq!(
        (history[1].version.as_str(), history[2].actor.as_str()),
        ("2.0.0", "oncall")
    );
    assert_eq!(history[3].egress, ["https://api.example.com"]);
    assert_eq!(f.db.installs("t1").await.unwrap().len(), 1);
    assert!(f.db.installs("t2").await.unwrap().is_empty());

    let other = publish(&f.db, "com.acme.other", "1.0.0", 3).await;
    let err =
        f.db.put_install("t1", "com.acme.hello", &spec(&other), Precondition::None, "ops")
            .await
            .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { what: "version", .. }),
        "another extension's version: {err:?}"
    );
    let err =
        f.db.put_install("t1", "com.acme.hello", &spec(&v2), Precondition::Absent, "ops")
            .await
            .unwrap_err();
    assert!(
        matches!(&err, Error::PreconditionFailed { expected, current } if expected == "absent" && current == "6"),
        "{err:?}"
    );
}

pub async fn yanked_and_revoked_versions_are_not_newly_installed(f: Fixture) {
    let v1 = publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    let v2 = publish(&f.db, "com.acme.hello", "2.0.0", 2).await;
    f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
        .await
        .unwrap();
    assert!(
        f.db.set_yanked("com.acme.hello", "1.0.0", true, "admin")
            .await
            .unwrap()
            .yanked
    );
    let err =
        f.db.put_install("t2", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
            .await
            .unwrap_err();
    assert!(matches!(err, Error::NotInstallable { state: "yanked", .. }), "{err:?}");
    // The existing install keeps it and may still be edited on it.
    let mut edit = spec(&v1);
    edit.enabled = false;
    let kept =
        f.db.put_install("t1", "com.acme.hello", &edit, Precondition::None, "ops")
            .await
            .unwrap();
    assert_eq!(
        (kept.install.version.as_str(), kept.action),
        ("1.0.0", Some(Action::Disable))
    );
    f.db.revoke_version("com.acme.hello", "2.0.0", "admin").await.unwrap();
    let err =
        f.db.put_install("t1", "com.acme.hello", &spec(&v2), Precondition::None, "ops")
            .await
            .unwrap_err();
    assert!(matches!(err, Error::NotInstallable { state: "revoked", .. }), "{err:?}");
    assert!(
        !f.db
            .set_yanked("com.acme.hello", "1.0.0", false, "admin")
            .await
            .unwrap()
            .yanked
    );
    f.db.put_install("t2", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
        .await
        .unwrap();
}

pub async fn concurrent_edits_at_one_revision_exactly_one_wins(f: Fixture) {
    let v1 = publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
        .await
        .unwrap();
    let db = Arc::new(f.db.clone());
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let db = db.clone();
            let mut edit = spec(&v1);
            edit.config.insert("writer".into(), i.to_string());
            tokio::spawn(async move {
                db.put_install("t1", "com.acme.hello", &edit, Precondition::Revision(1), "ops")
                    .await
            })
        })
        .collect();
    let mut won = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(applied) => won.push(applied),
            Err(Error::PreconditionFailed { expected, .. }) => assert_eq!(expected, "1"),
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one edit at revision 1 wins");
    let install = f.db.install("t1", "com.acme.hello").await.unwrap().unwrap();
    assert_eq!(install.revision, 2);
    assert_eq!(install.config, won[0].install.config, "the winner's state is the state");
    assert_eq!(f.db.history("t1", "com.acme.hello").await.unwrap().len(), 2);
}

pub async fn concurrent_first_installs_make_one_install(f: Fixture) {
    let v1 = publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    let db = Arc::new(f.db.clone());
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let db = db.clone();
            let mut edit = spec(&v1);
            edit.config.insert("writer".into(), i.to_string());
            tokio::spawn(async move {
                db.put_install("t1", "com.acme.hello", &edit, Precondition::None, "ops")
                    .await
            })
        })
        .collect();
    let mut installs = 0;
    for task in tasks {
        let applied = task.await.unwrap().unwrap();
        installs += usize::from(applied.action == Some(Action::Install));
    }
    assert_eq!(installs, 1, "one of the writers installs, the others edit it");
    let install = f.db.install("t1", "com.acme.hello").await.unwrap().unwrap();
    let history = f.db.history("t1", "com.acme.hello").await.unwrap();
    assert_eq!(
        history.len() as i64,
        install.revision,
        "one entry per change, none lost"
    );
    let seqs: Vec<i64> = history.iter().map(|h| h.seq).collect();
    assert_eq!(seqs, (1..=install.revision).collect::<Vec<_>>());
    assert_eq!(
        history.last().unwrap().config,
        install.config,
        "the last entry is the state"
    );
}

pub async fn g03_secrets_are_sealed_per_install_and_other_tenants_see_nothing(f: Fixture) {
    let v1 = publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
        .await
        .unwrap();
    f.db.put_install("t2", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
        .await
        .unwrap();
    let names = vec!["API_KEY".to_string()];
    let install =
        f.db.put_secrets("t1", "com.acme.hello", "sealed-blob-1", &names, "ops")
            .await
            .unwrap();
    assert_eq!((install.secret_names.clone(), install.revision), (names.clone(), 2));
    assert_eq!(
        f.db.sealed_secrets("t1", "com.acme.hello").await.unwrap().as_deref(),
        Some("sealed-blob-1")
    );
    assert_eq!(
        f.db.sealed_secrets("t2", "com.acme.hello").await.unwrap(),
        None,
        "another tenant's install"
    );
    assert!(
        f.db.install("t2", "com.acme.hello")
            .await
            .unwrap()
            .unwrap()
            .secret_names
            .is_empty()
    );
    f.db.put_secrets("t1", "com.acme.hello", "sealed-blob-2", &[], "ops")
        .await
        .unwrap();
    assert_eq!(
        f.db.sealed_secrets("t1", "com.acme.hello").await.unwrap().as_deref(),
        Some("sealed-blob-2")
    );
    let history = f.db.history("t1", "com.acme.hello").await.unwrap();
    assert_eq!(history.last().unwrap().action, Action::Secrets);
    let shown = serde_json::to_string(&history).unwrap() + &serde_json::to_string(&install).unwrap();
    assert!(
        !shown.contains("sealed-blob"),
        "neither the history nor the install shows the sealed value"
    );
    let err =
        f.db.put_secrets("t3", "com.acme.hello", "x", &[], "ops")
            .await
            .unwrap_err();
    assert!(matches!(err, Error::NotFound { what: "install", .. }), "{err:?}");
}

/// A re-seal reads the sealed secrets page by page and writes back only
/// those still as read (a concurrent `put_secrets` wins), each with its
/// audit entry, leaving the install's revision and history alone.
pub async fn resealing_pages_through_secrets_and_writes_only_what_was_read(f: Fixture) {
    let v1 = publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    for tenant in ["t1", "t2", "t3"] {
        f.db.put_install(tenant, "com.acme.hello", &spec(&v1), Precondition::None, "ops")
            .await
            .unwrap();
        f.db.put_secrets(tenant, "com.acme.hello", &format!("old-{tenant}"), &["K".into()], "ops")
            .await
            .unwrap();
    }
    f.db.put_install("t4", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
        .await
        .unwrap();
    let first = f.db.sealed_secrets_page(None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = f.db.sealed_secrets_page(Some(&first[1].install_id), 2).await.unwrap();
    assert_eq!(rest.len(), 1, "t4 has no secrets");
    let all: Vec<_> = first.into_iter().chain(rest).collect();
    let mut tenants: Vec<&str> = all.iter().map(|s| s.tenant.as_str()).collect();
    tenants.sort();
    assert_eq!(tenants, ["t1", "t2", "t3"]);
    assert!(all.iter().all(|s| s.sealed == format!("old-{}", s.tenant)));
    assert!(!format!("{all:?}").contains("old-"), "Debug hides the sealed text");

    // t2's secrets change after the read: its re-seal is left.
    f.db.put_secrets("t2", "com.acme.hello", "newer-t2", &["K".into()], "ops")
        .await
        .unwrap();
    let before = f.db.install("t1", "com.acme.hello").await.unwrap().unwrap();
    let updates: Vec<_> = all.iter().map(|s| (s.clone(), format!("new-{}", s.tenant))).collect();
    let mut written = f.db.reseal_secrets(&updates, "root").await.unwrap();
    written.sort();
    let mut expected: Vec<String> = all
        .iter()
        .filter(|s| s.tenant != "t2")
        .map(|s| s.install_id.clone())
        .collect();
    expected.sort();
    assert_eq!(written, expected);
    for (tenant, sealed) in [("t1", "new-t1"), ("t2", "newer-t2"), ("t3", "new-t3")] {
        assert_eq!(
            f.db.sealed_secrets(tenant, "com.acme.hello").await.unwrap().as_deref(),
            Some(sealed)
        );
    }
    let after = f.db.install("t1", "com.acme.hello").await.unwrap().unwrap();
    assert_eq!(
        (after.revision, after.secret_names),
        (before.revision, before.secret_names)
    );
    assert_eq!(
        f.db.history("t1", "com.acme.hello").await.unwrap().len(),
        2,
        "install and secrets only"
    );
    let audit = f.db.audit_log(100).await.unwrap();
    let resealed: Vec<_> = audit.iter().filter(|e| e.action == "reseal").collect();
    assert_eq!(resealed.len(), 2);
    assert!(resealed.iter().all(|e| e.actor == "root"));
    assert!(resealed.iter().any(|e| e.subject == "t1/com.acme.hello"));
    assert!(!serde_json::to_string(&audit).unwrap().contains("new-"));
}

pub async fn uninstall_removes_the_install_and_keeps_its_history(f: Fixture) {
    let v1 = publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    let first =
        f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
            .await
            .unwrap();
    f.db.put_secrets("t1", "com.acme.hello", "sealed", &["K".into()], "ops")
        .await
        .unwrap();
    let err =
        f.db.uninstall("t1", "com.acme.hello", Precondition::Revision(1), "ops")
            .await
            .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
    let removed =
        f.db.uninstall("t1", "com.acme.hello", Precondition::None, "ops")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(removed.install_id, first.install.install_id);
    assert!(f.db.install("t1", "com.acme.hello").await.unwrap().is_none());
    assert_eq!(
        f.db.sealed_secrets("t1", "com.acme.hello").await.unwrap(),
        None,
        "secrets go with it"
    );
    assert_eq!(
        f.db.uninstall("t1", "com.acme.hello", Precondition::None, "ops")
            .await
            .unwrap(),
        None
    );
    let again =
        f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::Absent, "ops")
            .await
            .unwrap();
    assert_ne!(
        again.install.install_id, first.install.install_id,
        "a reinstall is a new install"
    );
    let actions: Vec<Action> =
        f.db.history("t1", "com.acme.hello")
            .await
            .unwrap()
            .iter()
            .map(|h| h.action)
            .collect();
    assert_eq!(
        actions,
        [Action::Install, Action::Secrets, Action::Uninstall, Action::Install]
    );
}

pub async fn a_purge_stays_pending_until_done_and_blocks_reinstalls(f: Fixture) {
    let v1 = publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    let first =
        f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
            .await
            .unwrap();
    f.db.put_secrets("t1", "com.acme.hello", "sealed", &["K".into()], "ops")
        .await
        .unwrap();
    f.db.put_install("t2", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
        .await
        .unwrap();

    let err =
        f.db.uninstall_purging("t1", "com.acme.hello", Precondition::Revision(1), "ops")
            .await
            .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
    assert!(f.db.install("t1", "com.acme.hello").await.unwrap().is_some());

    let purge =
        f.db.uninstall_purging("t1", "com.acme.hello", Precondition::Revision(2), "ops")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        (
            purge.install_id.as_str(),
            purge.uninstalled.as_ref().map(|i| i.revision)
        ),
        (first.install.install_id.as_str(), Some(2))
    );
    assert!(f.db.install("t1", "com.acme.hello").await.unwrap().is_none());
    assert_eq!(f.db.sealed_secrets("t1", "com.acme.hello").await.unwrap(), None);

    // Until the KV purge is confirmed, no reinstall; other tenants are not held up.
    let err =
        f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
            .await
            .unwrap_err();
    assert!(matches!(err, Error::PurgePending { .. }), "{err:?}");
    assert!(f.db.install("t2", "com.acme.hello").await.unwrap().is_some());
    // A plain uninstall finds nothing; a retried purge finds the pending one (its
    // precondition was the first request's).
    assert_eq!(
        f.db.uninstall("t1", "com.acme.hello", Precondition::None, "ops")
            .await
            .unwrap(),
        None
    );
    let retried =
        f.db.uninstall_purging("t1", "com.acme.hello", Precondition::Revision(2), "ops2")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        (retried.install_id.as_str(), retried.uninstalled.is_none()),
        (first.install.install_id.as_str(), true)
    );

    f.db.purge_done(&retried, 3, "ops2").await.unwrap();
    f.db.purge_done(&purge, 3, "ops").await.unwrap();
    assert_eq!(
        f.db.uninstall_purging("t1", "com.acme.hello", Precondition::None, "ops")
            .await
            .unwrap(),
        None,
        "nothing installed, nothing pending"
    );
    assert!(matches!(
        f.db.uninstall_purging("t1", "com.acme.hello", Precondition::Revision(2), "ops")
            .await,
        Err(Error::PreconditionFailed { .. })
    ));
    f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::Absent, "ops")
        .await
        .unwrap();

    let actions: Vec<Action> =
        f.db.history("t1", "com.acme.hello")
            .await
            .unwrap()
            .iter()
            .map(|h| h.action)
            .collect();
    assert_eq!(
        actions,
        [
            Action::Install,
            Action::Secrets,
            Action::Uninstall,
            Action::Purge,
            Action::Install
        ]
    );
    let log = f.db.audit_log(100).await.unwrap();
    let purges: Vec<(&str, &str, &str)> = log
        .iter()
        .filter(|e| e.action.starts_with("purge") || e.action == "uninstall")
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.subject.as_str()))
        .collect();
    assert_eq!(
        purges,
        [
            ("ops2", "purged", "t1/com.acme.hello"),
            ("ops", "purge", "t1/com.acme.hello"),
            ("ops", "uninstall", "t1/com.acme.hello"),
        ],
        "newest first; the purge is done once"
    );
    assert_eq!(
        (
            log[1].detail["install_id"].as_str(),
            log[1].detail["kv_entries"].as_u64()
        ),
        (Some(first.install.install_id.as_str()), Some(3))
    );
}

pub async fn ui_validation_needs_an_enabled_install_at_that_hash(f: Fixture) {
    let v1 = publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
        .await
        .unwrap();
    assert!(f.db.installed_at("t1", "com.acme.hello", &hash(1)).await.unwrap());
    assert!(
        !f.db.installed_at("t2", "com.acme.hello", &hash(1)).await.unwrap(),
        "another tenant"
    );
    assert!(
        !f.db.installed_at("t1", "com.acme.hello", &hash(2)).await.unwrap(),
        "another hash"
    );
    assert!(
        !f.db.installed_at("t1", "com.acme.other", &hash(1)).await.unwrap(),
        "another extension"
    );
    let mut off = spec(&v1);
    off.enabled = false;
    f.db.put_install("t1", "com.acme.hello", &off, Precondition::None, "ops")
        .await
        .unwrap();
    assert!(
        !f.db.installed_at("t1", "com.acme.hello", &hash(1)).await.unwrap(),
        "disabled"
    );
    f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
        .await
        .unwrap();
    f.db.revoke_signer(SIGNER, "admin").await.unwrap();
    assert!(
        !f.db.installed_at("t1", "com.acme.hello", &hash(1)).await.unwrap(),
        "revoked"
    );
}

pub async fn executions_list_newest_first_and_prune_by_age(f: Fixture) {
    let at = |ms: i64| Timestamp(1_800_000_000_000 + ms);
    let row = |extension: &str, request: &str, ms: i64| Execution {
        request_id: request.into(),
        tenant: "t1".into(),
        extension: extension.into(),
        version: "1.0.0".into(),
        endpoint: "GET /hello".into(),
        status: 200,
        error_code: None,
        duration_ms: 3,
        limit_hit: None,
        at: at(ms),
    };
    let mut failed = row("com.acme.b", "r3", 30);
    (failed.status, failed.error_code, failed.limit_hit) = (504, Some("timeout".into()), Some("timeout".into()));
    let mut other_tenant = row("com.acme.a", "r9", 40);
    other_tenant.tenant = "t2".into();
    f.db.record_executions(&[
        row("com.acme.a", "r1", 10),
        row("com.acme.a", "r2", 20),
        failed.clone(),
        other_tenant,
    ])
    .await
    .unwrap();
    let all = f.db.executions("t1", None, 50).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(ids, ["r3", "r2", "r1"], "newest first, this tenant only");
    assert_eq!(all[0], failed);
    let a = f.db.executions("t1", Some("com.acme.a"), 1).await.unwrap();
    assert_eq!(a.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>(), ["r2"]);
    assert_eq!(f.db.prune_executions(at(25)).await.unwrap(), 2);
    assert_eq!(f.db.executions("t1", None, 50).await.unwrap().len(), 1);
}

pub async fn every_change_is_in_the_audit_log(f: Fixture) {
    let v1 = publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
        .await
        .unwrap();
    f.db.put_secrets("t1", "com.acme.hello", "sealed", &["K".into()], "ops")
        .await
        .unwrap();
    f.db.set_yanked("com.acme.hello", "1.0.0", true, "admin").await.unwrap();
    f.db.audit(
        "ci-token",
        "token_use",
        "POST /v1/registry/bundles",
        &serde_json::json!({"status": 201}),
    )
    .await
    .unwrap();
    let log = f.db.audit_log(100).await.unwrap();
    let entries: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.subject.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            ("ci-token", "token_use", "POST /v1/registry/bundles"),
            ("admin", "yank", "com.acme.hello@1.0.0"),
            ("ops", "secrets", "t1/com.acme.hello"),
            ("ops", "install", "t1/com.acme.hello"),
            ("publisher-ci", "publish", "com.acme.hello@1.0.0"),
            ("publisher-ci", "bind_signer", "com.acme"),
        ],
        "newest first"
    );
    assert_eq!(log[4].detail["content_hash"], hash(1));
    assert!(
        !serde_json::to_string(&log).unwrap().contains("\"sealed\""),
        "no secret in the log"
    );
    assert_eq!(f.db.audit_log(2).await.unwrap().len(), 2);
}

pub async fn a_database_migrated_by_a_newer_binary_is_refused(f: Fixture) {
    publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    let backend = f.db.backend();
    f.db.close().await;
    // Opening again keeps the data and migrates nothing twice.
    let reopened = Database::open(&f.url).await.unwrap();
    assert!(reopened.version("com.acme.hello", "1.0.0").await.unwrap().is_some());
    reopened.close().await;
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", f.url),
        Backend::Postgres => f.url.clone(),
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let future = match backend {
        Backend::Sqlite => {
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', 1, X'00', 0)"
        }
        Backend::Postgres => {
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', TRUE, '\\x00'::bytea, 0)"
        }
    };
    sqlx::query(future).execute(&pool).await.unwrap();
    pool.close().await;
    let err = Database::open(&f.url).await.unwrap_err();
    assert!(matches!(err, OpenError::Migrate { .. }), "{err:?}");
    assert!(err.to_string().contains("9999"), "{err}");
}

/// `Database::changes` (what the gateway's install cache is keyed on) moves
/// with every change to versions, signers, installs and secrets, and stays
/// put for the audit and execution logs; clones share it.
pub async fn changes_a_call_depends_on_are_counted_and_logs_are_not(f: Fixture) {
    let db = f.db.clone();
    let mut seen = f.db.changes();
    let mut moved = |what: &str| {
        let now = f.db.changes();
        assert!(now > seen, "{what} was not counted");
        seen = now;
    };
    let v1 = publish(&db, "com.acme.hello", "1.0.0", 1).await;
    moved("a publish");
    db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::Absent, "ops")
        .await
        .unwrap();
    moved("an install");
    db.put_secrets("t1", "com.acme.hello", "sealed", &["K".into()], "ops")
        .await
        .unwrap();
    moved("a secrets write");
    db.set_yanked("com.acme.hello", "1.0.0", true, "admin").await.unwrap();
    moved("a yank");
    db.revoke_version("com.acme.hello", "1.0.0", "admin").await.unwrap();
    moved("a version revocation");
    db.revoke_signer("key:other", "admin").await.unwrap();
    moved("a signer revocation");
    db.uninstall("t1", "com.acme.hello", Precondition::None, "ops")
        .await
        .unwrap();
    moved("an uninstall");

    db.audit("ops", "token.use", "t1", &serde_json::json!({}))
        .await
        .unwrap();
    db.record_executions(&[Execution {
        request_id: "r1".into(),
        tenant: "t1".into(),
        extension: "com.acme.hello".into(),
        version: "1.0.0".into(),
        endpoint: "GET /hello".into(),
        status: 200,
        error_code: None,
        duration_ms: 1,
        limit_hit: None,
        at: Timestamp::now(),
    }])
    .await
    .unwrap();
    assert_eq!(f.db.changes(), seen, "a log write was counted");
}

fn schedule_spec(cron: &str) -> ScheduleSpec {
    ScheduleSpec {
        endpoint_method: "POST".into(),
        endpoint_path: "/sync".into(),
        cron: cron.into(),
        timezone: None,
        enabled: None,
        name: Some("nightly".into()),
        payload: Some(r#"{"full":true}"#.into()),
    }
}

pub async fn schedules_are_install_data_validated_field_by_field(f: Fixture) {
    let v1 = publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    let mine =
        f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
            .await
            .unwrap()
            .install;
    let theirs =
        f.db.put_install("t2", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
            .await
            .unwrap()
            .install;

    let before = Timestamp::now();
    let created =
        f.db.create_schedule(&mine.install_id, &schedule_spec("0 3 * * *"))
            .await
            .unwrap();
    assert_eq!(
        (
            created.tenant.as_str(),
            created.extension.as_str(),
            created.install_id.as_str()
        ),
        ("t1", "com.acme.hello", mine.install_id.as_str())
    );
    assert_eq!(
        (created.endpoint_method.as_str(), created.endpoint_path.as_str()),
        ("POST", "/sync")
    );
    assert_eq!((created.timezone.as_str(), created.enabled), ("UTC", true));
    assert_eq!(created.payload.as_deref(), Some(r#"{"full":true}"#));
    assert_eq!((created.last_run_at, created.last_run_status.as_deref()), (None, None));
    // Due at the next 03:00 UTC: within a day from now, on the hour.
    let next = created.next_run_at.expect("an enabled schedule is due").0;
    assert!(next > before.0 && next <= before.0 + 86_400_000, "{next}");
    assert_eq!(next % 86_400_000, 3 * 3_600_000, "03:00 UTC");

    assert_eq!(
        f.db.schedules(&mine.install_id).await.unwrap(),
        std::slice::from_ref(&created)
    );
    assert_eq!(
        f.db.schedule(&mine.install_id, &created.schedule_id).await.unwrap(),
        Some(created.clone())
    );
    // Another install (another tenant's) neither sees nor changes it.
    assert!(f.db.schedules(&theirs.install_id).await.unwrap().is_empty());
    assert_eq!(
        f.db.schedule(&theirs.install_id, &created.schedule_id).await.unwrap(),
        None
    );
    let err =
        f.db.update_schedule(&theirs.install_id, &created.schedule_id, &ScheduleEdit::default())
            .await
            .unwrap_err();
    assert!(matches!(err, Error::NotFound { what: "schedule", .. }), "{err:?}");
    assert!(
        !f.db
            .delete_schedule(&theirs.install_id, &created.schedule_id)
            .await
            .unwrap()
    );

    // Every bad field named at once; nothing stored.
    let bad = ScheduleSpec {
        endpoint_method: "post".into(),
        endpoint_path: "sync".into(),
        cron: "0 3 * *".into(),
        timezone: Some("Mars/Olympus".into()),
        enabled: None,
        name: None,
        payload: Some("{not json".into()),
    };
    match f.db.create_schedule(&mine.install_id, &bad).await.unwrap_err() {
        Error::InvalidSchedule { fields } => {
            assert_eq!(
                fields.keys().map(String::as_str).collect::<Vec<_>>(),
                ["cron", "endpoint", "payload", "timezone"]
            );
        }
        other => panic!("{other:?}"),
    }
    let err =
        f.db.create_schedule("no-such-install", &schedule_spec("0 3 * * *"))
            .await
            .unwrap_err();
    assert!(matches!(err, Error::NotFound { what: "install", .. }), "{err:?}");
    assert_eq!(f.db.schedules(&mine.install_id).await.unwrap().len(), 1);

    // Disabling clears the due time; a new zone and enabling again retime it.
    let off = ScheduleEdit {
        enabled: Some(false),
        ..ScheduleEdit::default()
    };
    let disabled =
        f.db.update_schedule(&mine.install_id, &created.schedule_id, &off)
            .await
            .unwrap();
    assert_eq!((disabled.enabled, disabled.next_run_at), (false, None));
    let retimed = ScheduleEdit {
        enabled: Some(true),
        timezone: Some("Asia/Kolkata".into()),
        name: Some(None),
        payload: Some(None),
        ..ScheduleEdit::default()
    };
    let edited =
        f.db.update_schedule(&mine.install_id, &created.schedule_id, &retimed)
            .await
            .unwrap();
    assert_eq!(
        f.db.schedule(&mine.install_id, &created.schedule_id)
            .await
            .unwrap()
            .as_ref(),
        Some(&edited),
        "the answer is what is stored"
    );
    assert_eq!(edited.timezone, "Asia/Kolkata");
    assert_eq!((edited.name.as_deref(), edited.payload.as_deref()), (None, None));
    // 03:00 in Kolkata is 21:30 UTC.
    let next = edited.next_run_at.unwrap().0;
    assert_eq!(next % 86_400_000, 21 * 3_600_000 + 30 * 60_000, "{next}");
    let invalid = ScheduleEdit {
        cron: Some("every day".into()),
        ..ScheduleEdit::default()
    };
    match f
        .db
        .update_schedule(&mine.install_id, &created.schedule_id, &invalid)
        .await
        .unwrap_err()
    {
        Error::InvalidSchedule { fields } => assert!(fields.contains_key("cron"), "{fields:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.db.schedule(&mine.install_id, &created.schedule_id)
            .await
            .unwrap()
            .unwrap()
            .cron,
        "0 3 * * *",
        "a refused edit changes nothing"
    );

    assert!(
        f.db.delete_schedule(&mine.install_id, &created.schedule_id)
            .await
            .unwrap()
    );
    assert!(
        !f.db
            .delete_schedule(&mine.install_id, &created.schedule_id)
            .await
            .unwrap()
    );
    assert!(f.db.schedules(&mine.install_id).await.unwrap().is_empty());
}

pub async fn schedules_are_capped_per_install_and_go_with_it(f: Fixture) {
    let v1 = publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    let install =
        f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
            .await
            .unwrap()
            .install;
    for _ in 0..MAX_SCHEDULES_PER_INSTALL {
        f.db.create_schedule(&install.install_id, &schedule_spec("*/5 * * * *"))
            .await
            .unwrap();
    }
    let err =
        f.db.create_schedule(&install.install_id, &schedule_spec("*/5 * * * *"))
            .await
            .unwrap_err();
    assert!(
        matches!(err, Error::ScheduleQuota { limit } if limit == MAX_SCHEDULES_PER_INSTALL),
        "{err:?}"
    );
    assert_eq!(
        f.db.schedules(&install.install_id).await.unwrap().len() as i64,
        MAX_SCHEDULES_PER_INSTALL
    );

    f.db.uninstall("t1", "com.acme.hello", Precondition::None, "ops")
        .await
        .unwrap()
        .unwrap();
    assert!(
        f.db.schedules(&install.install_id).await.unwrap().is_empty(),
        "schedules go with the install"
    );
}

pub async fn each_due_time_is_claimed_once_and_missed_ones_fire_once(f: Fixture) {
    let v1 = publish(&f.db, "com.acme.hello", "1.0.0", 1).await;
    let install =
        f.db.put_install("t1", "com.acme.hello", &spec(&v1), Precondition::None, "ops")
            .await
            .unwrap()
            .install;
    let every_minute =
        f.db.create_schedule(&install.install_id, &schedule_spec("* * * * *"))
            .await
            .unwrap();
    let off = ScheduleSpec {
        enabled: Some(false),
        ..schedule_spec("* * * * *")
    };
    f.db.create_schedule(&install.install_id, &off).await.unwrap();
    let due = every_minute.next_run_at.unwrap();

    // Not yet due: nothing claimed.
    assert!(
        f.db.claim_due_schedules(Timestamp(due.0 - 1), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Ten minutes late (the fleet was down): one firing, for the due time
    // it missed first, and the next one after now.
    let late = Timestamp(due.0 + 10 * 60_000 + 5_000);
    // Two processes on one database (two handles: two pools) claim at once.
    let other = Database::open(&f.url).await.unwrap();
    let (one, two) = tokio::join!(f.db.claim_due_schedules(late, 10), other.claim_due_schedules(late, 10));
    let mut claims: Vec<_> = one.unwrap().into_iter().chain(two.unwrap()).collect();
    assert_eq!(claims.len(), 1, "exactly one claim: {claims:?}");
    let firing = claims.pop().unwrap();
    assert_eq!(
        (firing.schedule.schedule_id.as_str(), firing.due),
        (every_minute.schedule_id.as_str(), due)
    );
    let stored =
        f.db.schedule(&install.install_id, &every_minute.schedule_id)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        stored.next_run_at,
        Some(Timestamp(due.0 + 11 * 60_000)),
        "the next minute after now"
    );
    assert!(
        f.db.claim_due_schedules(late, 10).await.unwrap().is_empty(),
        "claimed once"
    );

    f.db.record_schedule_run(&every_minute.schedule_id, late, "error", Some("guest answered 500"))
        .await
        .unwrap();
    let stored =
        f.db.schedule(&install.install_id, &every_minute.schedule_id)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        (
            stored.last_run_at,
            stored.last_run_status.as_deref(),
            stored.last_error.as_deref()
        ),
        (Some(late), Some("error"), Some("guest answered 500"))
    );

    // The batch limit holds; the rest stay due for the next claim.
    for _ in 0..3 {
        f.db.create_schedule(&install.install_id, &schedule_spec("* * * * *"))
            .await
            .unwrap();
    }
    let later = Timestamp(late.0 + 3_600_000);
    assert_eq!(f.db.claim_due_schedules(later, 2).await.unwrap().len(), 2);
    assert_eq!(f.db.claim_due_schedules(later, 10).await.unwrap().len(), 2);
    assert!(f.db.claim_due_schedules(later, 10).await.unwrap().is_empty());
    other.close().await;
}
