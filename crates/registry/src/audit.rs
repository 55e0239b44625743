//! The audit log (append-only: who did what to what, when) and the
//! execution log (what the gateway ran; pruned by age).

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::db::Database;
use crate::error::Error;
use crate::model::{AuditEntry, Execution, Timestamp};

/// Rows one listing returns at most, whatever the caller asks.
pub const MAX_LIST_ROWS: u32 = 1_000;

/// A time-ordered id: the millisecond, then this process's sequence (rows
/// one process writes in one millisecond keep their order), then a random
/// part (ids of several processes never collide).
/// Execution rows one `INSERT` carries (11 parameters each): one round
/// trip per this many rows, and few parameters per statement, because
/// binding costs SQLite a scan of the statement's parameters per parameter
/// (`sqlite3_bind_parameter_name`, quadratic in their number: 3.6 % of the
/// gateway's CPU at 100 rows, measured by bench/gateway).
pub const EXECUTION_ROWS_PER_INSERT: usize = 20;

/// `INSERT INTO executions … VALUES ($1, …, $11), ($12, …), …` for `rows` rows.
fn insert_executions_sql(rows: usize) -> String {
    const COLUMNS: usize = 11;
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=COLUMNS).map(|c| format!("${}", row * COLUMNS + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO executions (id, tenant, extension, request_id, version, endpoint, status, error_code, \
         duration_ms, limit_hit, at) VALUES {}",
        values.join(", ")
    )
}

fn ordered_id(at: Timestamp) -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{:013}-{seq:016}-{}", at.0, &random[..16])
}

/// Appends an audit entry inside the change it records, so the two commit
/// together or not at all.
pub(crate) async fn append(
    tx: &mut Transaction<'static, Any>,
    at: Timestamp,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &serde_json::Value,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO audit_log (id, at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(ordered_id(at))
        .bind(at.0)
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(detail.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn audit_from(row: &AnyRow) -> Result<AuditEntry, Error> {
    let detail: String = row.try_get("detail")?;
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: Timestamp(row.try_get("at")?),
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        detail: serde_json::from_str(&detail).map_err(|e| Error::Corrupt {
            column: "audit_log.detail",
            reason: e.to_string(),
        })?,
    })
}

fn execution_from(row: &AnyRow) -> Result<Execution, Error> {
    Ok(Execution {
        request_id: row.try_get("request_id")?,
        tenant: row.try_get("tenant")?,
        extension: row.try_get("extension")?,
        version: row.try_get("version")?,
        endpoint: row.try_get("endpoint")?,
        status: u16::try_from(row.try_get::<i64, _>("status")?).unwrap_or(0),
        error_code: row.try_get("error_code")?,
        duration_ms: u64::try_from(row.try_get::<i64, _>("duration_ms")?).unwrap_or(0),
        limit_hit: row.try_get("limit_hit")?,
        at: Timestamp(row.try_get("at")?),
    })
}

impl Database {
    /// Records an audit entry on its own (token use, secret writes outside
    /// an install change).
    ///
    /// # Errors
    /// The database's.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &serde_json::Value,
    ) -> Result<(), Error> {
        let mut tx = self.write().await?;
        append(&mut tx, Timestamp::now(), actor, action, subject, detail).await?;
        // Not counted in `changes`: the audit log decides no call.
        tx.commit().await?;
        Ok(())
    }

    /// The newest audit entries first, at most `limit` (capped at
    /// [`MAX_LIST_ROWS`]).
    ///
    /// # Errors
    /// The database's.
    pub async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, Error> {
        let rows =
            sqlx::query("SELECT id, at, actor, action, subject, detail FROM audit_log ORDER BY id DESC LIMIT $1")
                .bind(i64::from(limit.min(MAX_LIST_ROWS)))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(audit_from).collect()
    }

    /// Records executions in one transaction (the gateway batches them off
    /// the request path), [`EXECUTION_ROWS_PER_INSERT`] rows per statement:
    /// one round trip to the database per statement, not per row.
    ///
    /// # Errors
    /// The database's.
    pub async fn record_executions(&self, executions: &[Execution]) -> Result<(), Error> {
        let mut tx = self.write().await?;
        for chunk in executions.chunks(EXECUTION_ROWS_PER_INSERT) {
            let sql = insert_executions_sql(chunk.len());
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                query = query
                    .bind(ordered_id(e.at))
                    .bind(e.tenant.clone())
                    .bind(e.extension.clone())
                    .bind(e.request_id.clone())
                    .bind(e.version.clone())
                    .bind(e.endpoint.clone())
                    .bind(i64::from(e.status))
                    .bind(e.error_code.clone())
                    .bind(i64::try_from(e.duration_ms).unwrap_or(i64::MAX))
                    .bind(e.limit_hit.clone())
                    .bind(e.at.0);
            }
            query.execute(&mut *tx).await?;
        }
        // Not counted in `changes`: the execution log decides no call.
        tx.commit().await?;
        Ok(())
    }

    /// A tenant's executions, newest first, of one extension or all, at most
    /// `limit` (capped at [`MAX_LIST_ROWS`]).
    ///
    /// # Errors
    /// The database's.
    pub async fn executions(&self, tenant: &str, extension: Option<&str>, limit: u32) -> Result<Vec<Execution>, Error> {
        let limit = i64::from(limit.min(MAX_LIST_ROWS));
        let query = match extension {
            Some(extension) => sqlx::query(
                "SELECT * FROM executions WHERE tenant = $1 AND extension = $2 ORDER BY at DESC, id DESC LIMIT $3",
            )
            .bind(tenant)
            .bind(extension)
            .bind(limit),
            None => sqlx::query("SELECT * FROM executions WHERE tenant = $1 ORDER BY at DESC, id DESC LIMIT $2")
                .bind(tenant)
                .bind(limit),
        };
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(execution_from).collect()
    }

    /// Deletes executions older than `before` (the retention); returns how
    /// many.
    ///
    /// # Errors
    /// The database's.
    pub async fn prune_executions(&self, before: Timestamp) -> Result<u64, Error> {
        let done = sqlx::query("DELETE FROM executions WHERE at < $1")
            .bind(before.0)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
