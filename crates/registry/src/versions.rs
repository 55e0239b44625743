//! Extensions and their versions: publishing (all or nothing, the same
//! bytes twice a no-op), the publisher namespaces bound to signers, yanks
//! and revocations.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::audit;
use crate::db::{Database, MAX_CHANGE_ATTEMPTS};
use crate::error::{Error, is_unique_violation};
use crate::model::{Extension, NewVersion, Published, Timestamp, Version};
use crate::names::namespace_of;

/// A version's columns; `revoked` counts the version's own flag and its
/// signer's revocation.
macro_rules! select_versions {
    () => {
        "SELECT v.version_id, v.extension, v.version, v.content_hash, v.signer, v.size_bytes, v.manifest, \
         v.published_at, v.published_by, v.yanked, \
         CAST(CASE WHEN v.revoked = 1 OR EXISTS (SELECT 1 FROM revoked_signers r WHERE r.signer = v.signer) \
         THEN 1 ELSE 0 END AS BIGINT) AS revoked_any FROM versions v"
    };
}

pub(crate) fn version_from(row: &AnyRow) -> Result<Version, Error> {
    Ok(Version {
        version_id: row.try_get("version_id")?,
        extension: row.try_get("extension")?,
        version: row.try_get("version")?,
        content_hash: row.try_get("content_hash")?,
        signer: row.try_get("signer")?,
        size_bytes: u64::try_from(row.try_get::<i64, _>("size_bytes")?).unwrap_or(0),
        manifest: row.try_get("manifest")?,
        published_at: Timestamp(row.try_get("published_at")?),
        published_by: row.try_get("published_by")?,
        yanked: row.try_get::<i64, _>("yanked")? != 0,
        revoked: row.try_get::<i64, _>("revoked_any")? != 0,
    })
}

fn extension_from(row: &AnyRow) -> Result<Extension, Error> {
    Ok(Extension {
        name: row.try_get("name")?,
        publisher: row.try_get("publisher")?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

pub(crate) async fn version_in(
    tx: &mut Transaction<'static, Any>,
    extension: &str,
    version: &str,
) -> Result<Option<Version>, Error> {
    let row = sqlx::query(concat!(
        select_versions!(),
        " WHERE v.extension = $1 AND v.version = $2"
    ))
    .bind(extension)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(version_from).transpose()
}

fn by_semver(versions: &mut [Version]) {
    versions.sort_by(
        |a, b| match (semver::Version::parse(&a.version), semver::Version::parse(&b.version)) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            _ => a.version.cmp(&b.version),
        },
    );
}

impl Database {
    /// Records a version: its extension (first publish of a name), the
    /// publisher namespace's signer (first publish in a namespace binds it),
    /// the version and an audit entry, in one transaction. The same content
    /// again is [`Published::Existing`]; other content for a published
    /// version is [`Error::VersionExists`], also when two publishes race.
    ///
    /// # Errors
    /// [`Error::VersionExists`], [`Error::SignerNotAllowed`],
    /// [`Error::SignerRevoked`], [`Error::WrongPublisher`], the database's.
    pub async fn publish(&self, new: &NewVersion) -> Result<Published, Error> {
        let version = new.version.to_string();
        for _ in 0..MAX_CHANGE_ATTEMPTS {
            match self.try_publish(new, &version).await {
                // A concurrent publish committed first: of this version (the
                // answer is the same as if it had come first), or another's
                // first in the namespace or of the extension (try again).
                Err(Error::Database(e)) if is_unique_violation(&e) => {
                    if let Some(v) = self.version(&new.extension, &version).await? {
                        return if v.content_hash == new.content_hash {
                            Ok(Published::Existing(v))
                        } else {
                            Err(Error::VersionExists {
                                extension: new.extension.clone(),
                                version,
                                existing: v.content_hash,
                            })
                        };
                    }
                }
                other => return other,
            }
        }
        Err(Error::Contended)
    }

    async fn try_publish(&self, new: &NewVersion, version: &str) -> Result<Published, Error> {
        let mut tx = self.write().await?;
        if let Some(existing) = version_in(&mut tx, &new.extension, version).await? {
            tx.rollback().await?;
            return if existing.content_hash == new.content_hash {
                Ok(Published::Existing(existing))
            } else {
                Err(Error::VersionExists {
                    extension: new.extension.clone(),
                    version: version.to_string(),
                    existing: existing.content_hash,
                })
            };
        }
        let revoked = sqlx::query("SELECT signer FROM revoked_signers WHERE signer = $1")
            .bind(&new.signer)
            .fetch_optional(&mut *tx)
            .await?;
        if revoked.is_some() {
            return Err(Error::SignerRevoked {
                signer: new.signer.clone(),
            });
        }
        let now = Timestamp::now();
        let publisher = namespace_of(&new.extension);
        let signers: Vec<String> = sqlx::query_scalar("SELECT signer FROM publisher_signers WHERE publisher = $1")
            .bind(&publisher)
            .fetch_all(&mut *tx)
            .await?;
        if signers.is_empty() {
            bind_signer(&mut tx, &publisher, &new.signer, &new.actor, now).await?;
        } else if !signers.contains(&new.signer) {
            return Err(Error::SignerNotAllowed {
                publisher,
                signer: new.signer.clone(),
            });
        }
        let owner: Option<String> = sqlx::query_scalar("SELECT publisher FROM extensions WHERE name = $1")
            .bind(&new.extension)
            .fetch_optional(&mut *tx)
            .await?;
        match owner {
            None => {
                sqlx::query("INSERT INTO extensions (name, publisher, created_at) VALUES ($1, $2, $3)")
                    .bind(&new.extension)
                    .bind(&publisher)
                    .bind(now.0)
                    .execute(&mut *tx)
                    .await?;
            }
            Some(owner) if owner != publisher => {
                return Err(Error::WrongPublisher {
                    extension: new.extension.clone(),
                    publisher: owner,
                });
            }
            Some(_) => {}
        }
        let version_id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO versions (version_id, extension, version, content_hash, signer, size_bytes, manifest, \
             published_at, published_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&version_id)
        .bind(&new.extension)
        .bind(version)
        .bind(&new.content_hash)
        .bind(&new.signer)
        .bind(i64::try_from(new.size_bytes).unwrap_or(i64::MAX))
        .bind(&new.manifest)
        .bind(now.0)
        .bind(&new.actor)
        .execute(&mut *tx)
        .await?;
        let detail =
            serde_json::json!({"version_id": version_id, "content_hash": new.content_hash, "signer": new.signer});
        audit::append(
            &mut tx,
            now,
            &new.actor,
            "publish",
            &format!("{}@{version}", new.extension),
            &detail,
        )
        .await?;
        let created = version_in(&mut tx, &new.extension, version).await?;
        self.commit(tx).await?;
        created.map(Published::Created).ok_or(Error::Contended)
    }

    /// Every extension, by name.
    ///
    /// # Errors
    /// The database's.
    pub async fn extensions(&self) -> Result<Vec<Extension>, Error> {
        let rows = sqlx::query("SELECT name, publisher, created_at FROM extensions ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(extension_from).collect()
    }

    /// One extension and its versions, lowest version first.
    ///
    /// # Errors
    /// The database's.
    pub async fn extension(&self, name: &str) -> Result<Option<(Extension, Vec<Version>)>, Error> {
        let Some(row) = sqlx::query("SELECT name, publisher, created_at FROM extensions WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(concat!(select_versions!(), " WHERE v.extension = $1"))
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        let mut versions = rows.iter().map(version_from).collect::<Result<Vec<_>, _>>()?;
        by_semver(&mut versions);
        Ok(Some((extension_from(&row)?, versions)))
    }

    /// A version by its id (ids are never reused).
    ///
    /// # Errors
    /// The database's.
    pub async fn version_by_id(&self, version_id: &str) -> Result<Option<Version>, Error> {
        let row = sqlx::query(concat!(select_versions!(), " WHERE v.version_id = $1"))
            .bind(version_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(version_from).transpose()
    }

    /// One version of an extension.
    ///
    /// # Errors
    /// The database's.
    pub async fn version(&self, extension: &str, version: &str) -> Result<Option<Version>, Error> {
        let row = sqlx::query(concat!(
            select_versions!(),
            " WHERE v.extension = $1 AND v.version = $2"
        ))
        .bind(extension)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(version_from).transpose()
    }

    /// Marks a version yanked (no new installs) or not, with an audit entry.
    ///
    /// # Errors
    /// [`Error::NotFound`], the database's.
    pub async fn set_yanked(
        &self,
        extension: &str,
        version: &str,
        yanked: bool,
        actor: &str,
    ) -> Result<Version, Error> {
        let action = if yanked { "yank" } else { "unyank" };
        let update = "UPDATE versions SET yanked = $1 WHERE version_id = $2";
        self.flag_version(extension, version, actor, action, update, i64::from(yanked))
            .await
    }

    /// Revokes a version: nothing runs or serves its content again.
    ///
    /// # Errors
    /// [`Error::NotFound`], the database's.
    pub async fn revoke_version(&self, extension: &str, version: &str, actor: &str) -> Result<Version, Error> {
        let update = "UPDATE versions SET revoked = $1 WHERE version_id = $2";
        self.flag_version(extension, version, actor, "revoke", update, 1).await
    }

    /// Sets one flag column of a version (`update` binds the value, then the
    /// version id) and audits it.
    async fn flag_version(
        &self,
        extension: &str,
        version: &str,
        actor: &str,
        action: &str,
        update: &'static str,
        value: i64,
    ) -> Result<Version, Error> {
        let mut tx = self.write().await?;
        let Some(found) = version_in(&mut tx, extension, version).await? else {
            return Err(Error::NotFound {
                what: "version",
                name: format!("{extension}@{version}"),
            });
        };
        sqlx::query(update)
            .bind(value)
            .bind(&found.version_id)
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({"version_id": found.version_id});
        audit::append(
            &mut tx,
            Timestamp::now(),
            actor,
            action,
            &format!("{extension}@{version}"),
            &detail,
        )
        .await?;
        let flagged = version_in(&mut tx, extension, version).await?;
        self.commit(tx).await?;
        flagged.ok_or(Error::Contended)
    }

    /// Revokes every version a signer signed, and refuses its publishes.
    ///
    /// # Errors
    /// The database's.
    pub async fn revoke_signer(&self, signer: &str, actor: &str) -> Result<(), Error> {
        let mut tx = self.write().await?;
        let now = Timestamp::now();
        let done = sqlx::query("INSERT INTO revoked_signers (signer, at, actor) VALUES ($1, $2, $3)")
            .bind(signer)
            .bind(now.0)
            .bind(actor)
            .execute(&mut *tx)
            .await;
        match done {
            Err(e) if is_unique_violation(&e) => return Ok(()),
            other => other?,
        };
        audit::append(&mut tx, now, actor, "revoke_signer", signer, &serde_json::json!({})).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// The content hashes nothing may run or serve (revoked versions and
    /// every version of a revoked signer), what runners poll.
    ///
    /// # Errors
    /// The database's.
    pub async fn revoked_hashes(&self) -> Result<Vec<String>, Error> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT v.content_hash FROM versions v WHERE v.revoked = 1 \
             OR EXISTS (SELECT 1 FROM revoked_signers r WHERE r.signer = v.signer) ORDER BY v.content_hash",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Adds a signer to a publisher namespace (key rotation: the old one
    /// stays until removed).
    ///
    /// # Errors
    /// The database's.
    pub async fn add_signer(&self, publisher: &str, signer: &str, actor: &str) -> Result<(), Error> {
        let mut tx = self.write().await?;
        let now = Timestamp::now();
        match bind_signer(&mut tx, publisher, signer, actor, now).await {
            Err(Error::Database(e)) if is_unique_violation(&e) => return Ok(()),
            other => other?,
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// The signers a publisher namespace accepts.
    ///
    /// # Errors
    /// The database's.
    pub async fn signers(&self, publisher: &str) -> Result<Vec<String>, Error> {
        Ok(
            sqlx::query_scalar("SELECT signer FROM publisher_signers WHERE publisher = $1 ORDER BY signer")
                .bind(publisher)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

async fn bind_signer(
    tx: &mut Transaction<'static, Any>,
    publisher: &str,
    signer: &str,
    actor: &str,
    now: Timestamp,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO publisher_signers (publisher, signer, added_at, added_by) VALUES ($1, $2, $3, $4)")
        .bind(publisher)
        .bind(signer)
        .bind(now.0)
        .bind(actor)
        .execute(&mut **tx)
        .await?;
    let detail = serde_json::json!({"signer": signer});
    audit::append(tx, now, actor, "bind_signer", publisher, &detail).await
}
