//! Tenant installs: install, upgrade, rollback, enable/disable, config and
//! egress edits, uninstall, sealed secrets; every change appended to the
//! history with who made it, in the transaction that makes it.
//!
//! Races: a change reads the install under the write lock (SQLite) or a row
//! lock (PostgreSQL), so changes to one install apply one after the other;
//! it updates only if the revision is still the one read, and a first
//! install inserts under the unique (tenant, extension) key. A change that
//! loses the first-install race retries from the read when it had no
//! precondition; with one, it fails [`Error::PreconditionFailed`], so of
//! concurrent edits at one revision exactly one wins.
//!
//! Purges: the install's KV data lives in the runner's store, which no
//! transaction here reaches. [`Database::uninstall_purging`] removes the
//! install and records a pending purge in one transaction, the caller
//! purges the KV store, and [`Database::purge_done`] clears the record.
//! While a purge is pending the extension cannot be installed again for
//! that tenant, so a late or retried purge never removes a new install's
//! data, and nothing ever points at data already purged.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::audit;
use crate::db::{Backend, Database, MAX_CHANGE_ATTEMPTS};
use crate::error::{Error, is_unique_violation};
use crate::model::{
    Action, Applied, HistoryEntry, Install, InstallSpec, PendingPurge, Precondition, SealedSecrets, Timestamp, Version,
};
use crate::versions::version_from;

macro_rules! select_installs {
    () => {
        "SELECT i.install_id, i.tenant, i.extension, v.version, i.version_id, v.content_hash, i.capabilities, \
         i.config, i.egress, i.enabled, i.revision, s.names, s.sealed, i.created_at, i.updated_at \
         FROM installs i JOIN versions v ON v.version_id = i.version_id \
         LEFT JOIN install_secrets s ON s.install_id = i.install_id"
    };
}

fn json_column<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &'static str) -> Result<T, Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| Error::Corrupt {
        column,
        reason: e.to_string(),
    })
}

fn install_from(row: &AnyRow) -> Result<Install, Error> {
    let secret_names = match row.try_get::<Option<String>, _>("names")? {
        Some(_) => json_column(row, "names")?,
        None => Vec::new(),
    };
    Ok(Install {
        install_id: row.try_get("install_id")?,
        tenant: row.try_get("tenant")?,
        extension: row.try_get("extension")?,
        version: row.try_get("version")?,
        version_id: row.try_get("version_id")?,
        content_hash: row.try_get("content_hash")?,
        capabilities: json_column(row, "capabilities")?,
        config: json_column(row, "config")?,
        egress: json_column(row, "egress")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        revision: row.try_get("revision")?,
        secret_names,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

fn history_from(row: &AnyRow) -> Result<HistoryEntry, Error> {
    let action: String = row.try_get("action")?;
    Ok(HistoryEntry {
        seq: row.try_get("seq")?,
        install_id: row.try_get("install_id")?,
        action: Action::parse(&action).ok_or_else(|| Error::Corrupt {
            column: "install_history.action",
            reason: format!("unknown action `{action}`"),
        })?,
        version: row.try_get("version")?,
        version_id: row.try_get("version_id")?,
        capabilities: json_column(row, "capabilities")?,
        config: json_column(row, "config")?,
        egress: json_column(row, "egress")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        actor: row.try_get("actor")?,
        at: Timestamp(row.try_get("at")?),
    })
}

/// The install as a write transaction reads it: on PostgreSQL the row is
/// locked until the transaction ends, so concurrent changes queue behind each
/// other (as SQLite's write lock makes them) instead of losing and retrying.
async fn install_in(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    tenant: &str,
    extension: &str,
) -> Result<Option<Install>, Error> {
    let statement = match backend {
        Backend::Sqlite => concat!(select_installs!(), " WHERE i.tenant = $1 AND i.extension = $2"),
        Backend::Postgres => concat!(
            select_installs!(),
            " WHERE i.tenant = $1 AND i.extension = $2 FOR UPDATE OF i"
        ),
    };
    let row = sqlx::query(statement)
        .bind(tenant)
        .bind(extension)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(install_from).transpose()
}

fn check(precondition: Precondition, current: Option<&Install>) -> Result<(), Error> {
    let failed = |expected: String| Error::PreconditionFailed {
        expected,
        current: current.map_or_else(|| "absent".to_string(), |i| i.revision.to_string()),
    };
    match (precondition, current) {
        (Precondition::None, _) | (Precondition::Absent, None) => Ok(()),
        (Precondition::Absent, Some(_)) => Err(failed("absent".into())),
        (Precondition::Revision(r), Some(i)) if i.revision == r => Ok(()),
        (Precondition::Revision(r), _) => Err(failed(r.to_string())),
    }
}

/// What changing `current` into `spec` at `target` is.
fn action_of(current: &Install, spec: &InstallSpec, target: &Version) -> Option<Action> {
    if current.version_id != spec.version_id {
        let older = match (
            semver::Version::parse(&target.version),
            semver::Version::parse(&current.version),
        ) {
            (Ok(new), Ok(old)) => new < old,
            _ => target.version < current.version,
        };
        return Some(if older { Action::Rollback } else { Action::Upgrade });
    }
    if current.capabilities != spec.capabilities || current.config != spec.config || current.egress != spec.egress {
        return Some(Action::Configure);
    }
    match (current.enabled, spec.enabled) {
        (false, true) => Some(Action::Enable),
        (true, false) => Some(Action::Disable),
        _ => None,
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Appends the history entry of `install`'s state after `action`.
async fn record(
    tx: &mut Transaction<'static, Any>,
    install: &Install,
    action: Action,
    actor: &str,
    at: Timestamp,
) -> Result<(), Error> {
    let last: Option<i64> =
        sqlx::query_scalar("SELECT MAX(seq) FROM install_history WHERE tenant = $1 AND extension = $2")
            .bind(&install.tenant)
            .bind(&install.extension)
            .fetch_one(&mut **tx)
            .await?;
    sqlx::query(
        "INSERT INTO install_history (tenant, extension, seq, install_id, action, version_id, version, capabilities, \
         config, egress, enabled, actor, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&install.tenant)
    .bind(&install.extension)
    .bind(last.unwrap_or(0) + 1)
    .bind(&install.install_id)
    .bind(action.as_str())
    .bind(&install.version_id)
    .bind(&install.version)
    .bind(json(&install.capabilities))
    .bind(json(&install.config))
    .bind(json(&install.egress))
    .bind(i64::from(install.enabled))
    .bind(actor)
    .bind(at.0)
    .execute(&mut **tx)
    .await?;
    let subject = format!("{}/{}", install.tenant, install.extension);
    let detail =
        serde_json::json!({"install_id": install.install_id, "version": install.version, "revision": install.revision});
    audit::append(tx, at, actor, action.as_str(), &subject, &detail).await
}

/// Deletes `current` (its secrets go by the foreign key's cascade) and
/// records the uninstall.
async fn remove(
    tx: &mut Transaction<'static, Any>,
    current: &Install,
    actor: &str,
    at: Timestamp,
) -> Result<(), Error> {
    let deleted = sqlx::query("DELETE FROM installs WHERE install_id = $1 AND revision = $2")
        .bind(&current.install_id)
        .bind(current.revision)
        .execute(&mut **tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(Error::Contended);
    }
    // Schedules are install data: they go with the install.
    sqlx::query("DELETE FROM schedules WHERE install_id = $1")
        .bind(&current.install_id)
        .execute(&mut **tx)
        .await?;
    record(tx, current, Action::Uninstall, actor, at).await
}

/// The install id of the tenant's pending purge of `extension`, if any.
async fn pending_purge(
    tx: &mut Transaction<'static, Any>,
    tenant: &str,
    extension: &str,
) -> Result<Option<String>, Error> {
    Ok(
        sqlx::query_scalar("SELECT install_id FROM pending_purges WHERE tenant = $1 AND extension = $2")
            .bind(tenant)
            .bind(extension)
            .fetch_optional(&mut **tx)
            .await?,
    )
}

/// Whether a failed attempt lost a race another change won.
fn lost_race(result: &Result<Option<Applied>, Error>) -> bool {
    matches!(result, Ok(None)) || matches!(result, Err(Error::Database(e)) if is_unique_violation(e))
}

impl Database {
    /// A tenant's install of an extension.
    ///
    /// # Errors
    /// The database's.
    pub async fn install(&self, tenant: &str, extension: &str) -> Result<Option<Install>, Error> {
        let row = sqlx::query(concat!(select_installs!(), " WHERE i.tenant = $1 AND i.extension = $2"))
            .bind(tenant)
            .bind(extension)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(install_from).transpose()
    }

    /// A tenant's install of an extension with its sealed secrets, in one
    /// query: what a gateway reads on every call.
    ///
    /// # Errors
    /// The database's.
    pub async fn install_for_call(
        &self,
        tenant: &str,
        extension: &str,
    ) -> Result<Option<(Install, Option<String>)>, Error> {
        // The casts keep SQLite from preparing the join again on every call
        // (it re-plans a join whose WHERE compares a bound value of unknown
        // type; measured by bench/gateway: ~58 µs a call); PostgreSQL reads
        // them as the TEXT the columns are.
        let row = sqlx::query(concat!(
            select_installs!(),
            " WHERE i.tenant = CAST($1 AS TEXT) AND i.extension = CAST($2 AS TEXT)"
        ))
        .bind(tenant)
        .bind(extension)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|row| Ok((install_from(row)?, row.try_get::<Option<String>, _>("sealed")?)))
            .transpose()
    }

    /// A tenant's installs, by extension name.
    ///
    /// # Errors
    /// The database's.
    pub async fn installs(&self, tenant: &str) -> Result<Vec<Install>, Error> {
        let rows = sqlx::query(concat!(select_installs!(), " WHERE i.tenant = $1 ORDER BY i.extension"))
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(install_from).collect()
    }

    /// Whether the tenant has the extension installed, enabled, at this
    /// content hash, and the content is not revoked (the UI validation).
    ///
    /// # Errors
    /// The database's.
    pub async fn installed_at(&self, tenant: &str, extension: &str, content_hash: &str) -> Result<bool, Error> {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT i.install_id FROM installs i JOIN versions v ON v.version_id = i.version_id \
             WHERE i.tenant = CAST($1 AS TEXT) AND i.extension = CAST($2 AS TEXT) AND v.content_hash = CAST($3 AS TEXT) \
             AND i.enabled = 1 AND v.revoked = 0 \
             AND NOT EXISTS (SELECT 1 FROM revoked_signers r WHERE r.signer = v.signer)",
        )
        .bind(tenant)
        .bind(extension)
        .bind(content_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Puts the tenant's install of `extension` into the state `spec` names,
    /// if `precondition` holds: a first install, an upgrade or rollback (a
    /// new version), a configuration edit, an enable or disable, or nothing
    /// when it is in that state already. A version that is yanked or revoked
    /// may not be newly installed or moved to; an install may stay on one.
    ///
    /// # Errors
    /// [`Error::NotFound`] (the version is not this extension's),
    /// [`Error::NotInstallable`], [`Error::PreconditionFailed`],
    /// [`Error::Contended`], the database's.
    pub async fn put_install(
        &self,
        tenant: &str,
        extension: &str,
        spec: &InstallSpec,
        precondition: Precondition,
        actor: &str,
    ) -> Result<Applied, Error> {
        for _ in 0..MAX_CHANGE_ATTEMPTS {
            let result = self.try_put_install(tenant, extension, spec, precondition, actor).await;
            if lost_race(&result) {
                if precondition != Precondition::None {
                    let current = self.install(tenant, extension).await?;
                    check(precondition, current.as_ref())?;
                }
                continue;
            }
            return result.map(|applied| applied.expect("a lost race retries"));
        }
        Err(Error::Contended)
    }

    /// One attempt; `Ok(None)` when another change won the race.
    async fn try_put_install(
        &self,
        tenant: &str,
        extension: &str,
        spec: &InstallSpec,
        precondition: Precondition,
        actor: &str,
    ) -> Result<Option<Applied>, Error> {
        let mut tx = self.write().await?;
        let target = sqlx::query(concat!(
            select_versions!(),
            " WHERE v.version_id = $1 AND v.extension = $2"
        ))
        .bind(&spec.version_id)
        .bind(extension)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(target) = target.as_ref().map(version_from).transpose()? else {
            return Err(Error::NotFound {
                what: "version",
                name: spec.version_id.clone(),
            });
        };
        let current = install_in(&mut tx, self.backend(), tenant, extension).await?;
        // Read after `install_in`, which on PostgreSQL waits for a concurrent
        // uninstall's lock: a purge that uninstall recorded is seen here.
        if current.is_none() && pending_purge(&mut tx, tenant, extension).await?.is_some() {
            return Err(Error::PurgePending {
                tenant: tenant.to_string(),
                extension: extension.to_string(),
            });
        }
        check(precondition, current.as_ref())?;
        let moving = current.as_ref().is_none_or(|c| c.version_id != target.version_id);
        if moving && (target.yanked || target.revoked) {
            return Err(Error::NotInstallable {
                extension: extension.to_string(),
                version: target.version,
                state: if target.revoked { "revoked" } else { "yanked" },
            });
        }
        let now = Timestamp::now();
        let action = match &current {
            None => {
                let install_id = uuid::Uuid::new_v4().to_string();
                sqlx::query(
                    "INSERT INTO installs (install_id, tenant, extension, version_id, capabilities, config, egress, \
                     enabled, revision, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9)",
                )
                .bind(&install_id)
                .bind(tenant)
                .bind(extension)
                .bind(&spec.version_id)
                .bind(json(&spec.capabilities))
                .bind(json(&spec.config))
                .bind(json(&spec.egress))
                .bind(i64::from(spec.enabled))
                .bind(now.0)
                .execute(&mut *tx)
                .await?;
                Action::Install
            }
            Some(current) => {
                let Some(action) = action_of(current, spec, &target) else {
                    tx.rollback().await?;
                    return Ok(Some(Applied {
                        install: current.clone(),
                        action: None,
                    }));
                };
                let updated = sqlx::query(
                    "UPDATE installs SET version_id = $1, capabilities = $2, config = $3, egress = $4, enabled = $5, \
                     revision = revision + 1, updated_at = $6 WHERE install_id = $7 AND revision = $8",
                )
                .bind(&spec.version_id)
                .bind(json(&spec.capabilities))
                .bind(json(&spec.config))
                .bind(json(&spec.egress))
                .bind(i64::from(spec.enabled))
                .bind(now.0)
                .bind(&current.install_id)
                .bind(current.revision)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    return Ok(None);
                }
                action
            }
        };
        let install = install_in(&mut tx, self.backend(), tenant, extension)
            .await?
            .ok_or(Error::Contended)?;
        record(&mut tx, &install, action, actor, now).await?;
        self.commit(tx).await?;
        Ok(Some(Applied {
            install,
            action: Some(action),
        }))
    }

    /// Replaces an install's sealed secrets (`names` are the secret names,
    /// shown; `sealed` is the runner's secret envelope, never shown).
    ///
    /// # Errors
    /// [`Error::NotFound`], the database's.
    pub async fn put_secrets(
        &self,
        tenant: &str,
        extension: &str,
        sealed: &str,
        names: &[String],
        actor: &str,
    ) -> Result<Install, Error> {
        let mut tx = self.write().await?;
        let not_found = || Error::NotFound {
            what: "install",
            name: format!("{tenant}/{extension}"),
        };
        let current = install_in(&mut tx, self.backend(), tenant, extension)
            .await?
            .ok_or_else(not_found)?;
        let now = Timestamp::now();
        sqlx::query("DELETE FROM install_secrets WHERE install_id = $1")
            .bind(&current.install_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO install_secrets (install_id, sealed, names, updated_at) VALUES ($1, $2, $3, $4)")
            .bind(&current.install_id)
            .bind(sealed)
            .bind(json(&names))
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE installs SET revision = revision + 1, updated_at = $1 WHERE install_id = $2")
            .bind(now.0)
            .bind(&current.install_id)
            .execute(&mut *tx)
            .await?;
        let install = install_in(&mut tx, self.backend(), tenant, extension)
            .await?
            .ok_or_else(not_found)?;
        record(&mut tx, &install, Action::Secrets, actor, now).await?;
        self.commit(tx).await?;
        Ok(install)
    }

    /// An install's sealed secrets, for the gateway to pass on unopened.
    ///
    /// # Errors
    /// The database's.
    pub async fn sealed_secrets(&self, tenant: &str, extension: &str) -> Result<Option<String>, Error> {
        Ok(sqlx::query_scalar(
            "SELECT s.sealed FROM install_secrets s JOIN installs i ON i.install_id = s.install_id \
             WHERE i.tenant = $1 AND i.extension = $2",
        )
        .bind(tenant)
        .bind(extension)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Up to `limit` installs' sealed secrets (capped at
    /// [`audit::MAX_LIST_ROWS`]) with an install id after `after`, by install
    /// id: a re-seal walks them page by page.
    ///
    /// # Errors
    /// The database's.
    pub async fn sealed_secrets_page(&self, after: Option<&str>, limit: u32) -> Result<Vec<SealedSecrets>, Error> {
        let rows = sqlx::query(
            "SELECT s.install_id, i.tenant, i.extension, s.sealed FROM install_secrets s \
             JOIN installs i ON i.install_id = s.install_id WHERE s.install_id > $1 ORDER BY s.install_id LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit.min(audit::MAX_LIST_ROWS)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SealedSecrets {
                    install_id: row.try_get("install_id")?,
                    tenant: row.try_get("tenant")?,
                    extension: row.try_get("extension")?,
                    sealed: row.try_get("sealed")?,
                })
            })
            .collect()
    }

    /// Replaces each install's sealed secrets that are still what was read
    /// (`read.sealed`) by `sealed`, the same secrets sealed under another
    /// key, in one transaction that appends a `reseal` audit entry for each
    /// install written. The install, its revision and history stay: its
    /// secrets did not change. Returns the install ids written; the others
    /// were changed or removed since they were read and are left.
    ///
    /// # Errors
    /// The database's (nothing is written).
    pub async fn reseal_secrets(&self, updates: &[(SealedSecrets, String)], actor: &str) -> Result<Vec<String>, Error> {
        let mut tx = self.write().await?;
        let now = Timestamp::now();
        let mut written = Vec::new();
        for (read, sealed) in updates {
            let done = sqlx::query(
                "UPDATE install_secrets SET sealed = $1, updated_at = $2 WHERE install_id = $3 AND sealed = $4",
            )
            .bind(sealed)
            .bind(now.0)
            .bind(&read.install_id)
            .bind(&read.sealed)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                continue;
            }
            let subject = format!("{}/{}", read.tenant, read.extension);
            let detail = serde_json::json!({"install_id": read.install_id});
            audit::append(&mut tx, now, actor, "reseal", &subject, &detail).await?;
            written.push(read.install_id.clone());
        }
        self.commit(tx).await?;
        Ok(written)
    }

    /// Removes a tenant's install and its secrets, recording it; returns
    /// what was removed, or `None` when there was none. Its KV data stays
    /// ([`Database::uninstall_purging`] removes it too).
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`], the database's.
    pub async fn uninstall(
        &self,
        tenant: &str,
        extension: &str,
        precondition: Precondition,
        actor: &str,
    ) -> Result<Option<Install>, Error> {
        let mut tx = self.write().await?;
        let Some(current) = install_in(&mut tx, self.backend(), tenant, extension).await? else {
            check(precondition, None)?;
            return Ok(None);
        };
        check(precondition, Some(&current))?;
        remove(&mut tx, &current, actor, Timestamp::now()).await?;
        self.commit(tx).await?;
        Ok(Some(current))
    }

    /// An uninstall that purges: removes the install (and its secrets) as
    /// [`Database::uninstall`] does, records `purge` after `uninstall` in
    /// its history, and records the purge of its KV data as pending, all in
    /// one transaction. With no install but a pending purge (an earlier
    /// purge whose KV step failed) it returns that purge, whatever the
    /// precondition (the request that started it held its own), so a retry
    /// can finish it. `None`: no install and nothing pending.
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`], [`Error::Contended`], the database's.
    pub async fn uninstall_purging(
        &self,
        tenant: &str,
        extension: &str,
        precondition: Precondition,
        actor: &str,
    ) -> Result<Option<PendingPurge>, Error> {
        let mut tx = self.write().await?;
        let Some(current) = install_in(&mut tx, self.backend(), tenant, extension).await? else {
            let pending = pending_purge(&mut tx, tenant, extension).await?;
            tx.rollback().await?;
            return match pending {
                Some(install_id) => Ok(Some(PendingPurge {
                    tenant: tenant.to_string(),
                    extension: extension.to_string(),
                    install_id,
                    uninstalled: None,
                })),
                None => {
                    check(precondition, None)?;
                    Ok(None)
                }
            };
        };
        check(precondition, Some(&current))?;
        let now = Timestamp::now();
        remove(&mut tx, &current, actor, now).await?;
        record(&mut tx, &current, Action::Purge, actor, now).await?;
        sqlx::query(
            "INSERT INTO pending_purges (tenant, extension, install_id, requested_at, actor) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(tenant)
        .bind(extension)
        .bind(&current.install_id)
        .bind(now.0)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        self.commit(tx).await?;
        Ok(Some(PendingPurge {
            tenant: tenant.to_string(),
            extension: extension.to_string(),
            install_id: current.install_id.clone(),
            uninstalled: Some(current),
        }))
    }

    /// The caller purged `purge`'s KV data (`kv_entries` entries): clears
    /// the pending purge and appends `purged` to the audit log. Done once:
    /// when a concurrent retry cleared it first, nothing more is recorded.
    ///
    /// # Errors
    /// The database's (the purge stays pending: finishing it again is safe).
    pub async fn purge_done(&self, purge: &PendingPurge, kv_entries: u64, actor: &str) -> Result<(), Error> {
        let mut tx = self.write().await?;
        let cleared =
            sqlx::query("DELETE FROM pending_purges WHERE tenant = $1 AND extension = $2 AND install_id = $3")
                .bind(&purge.tenant)
                .bind(&purge.extension)
                .bind(&purge.install_id)
                .execute(&mut *tx)
                .await?;
        if cleared.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(());
        }
        let subject = format!("{}/{}", purge.tenant, purge.extension);
        let detail = serde_json::json!({"install_id": purge.install_id, "kv_entries": kv_entries});
        audit::append(&mut tx, Timestamp::now(), actor, "purged", &subject, &detail).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Every change to the tenant's install of an extension, oldest first,
    /// across uninstalls and reinstalls.
    ///
    /// # Errors
    /// The database's.
    pub async fn history(&self, tenant: &str, extension: &str) -> Result<Vec<HistoryEntry>, Error> {
        let rows = sqlx::query(
            "SELECT seq, install_id, action, version_id, version, capabilities, config, egress, enabled, actor, at \
             FROM install_history WHERE tenant = $1 AND extension = $2 ORDER BY seq",
        )
        .bind(tenant)
        .bind(extension)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(history_from).collect()
    }
}
