//! The PostgreSQL store (`STORAGE_KV_URL=postgres://…`), through a small deadpool pool.
//!
//! Three tables, each with a primary key led by `tenant_id`, so they can be distributed and
//! co-located by tenant (Citus: `create_distributed_table('<table>', 'tenant_id')` on each) and
//! every statement below is a single-tenant router query. Tenant, extension, namespace and key
//! are separate columns: no spelling of a key reaches another row's scope (K-01).
//!
//! Concurrency: every write first locks its (tenant, extension) row in `ext_kv_usage`, so the
//! writes of one scope are serialised: the revision check, the quota check and the write happen
//! against the state the previous writer committed, and concurrent conflicting puts give
//! exactly one winner. Keys and namespaces use the `"C"` collation: byte order, the same order
//! as the embedded store's.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::OpenError;
use crate::backend::{Backend, Entry, Page, PageBuilder, Query};
use crate::error::KvError;
use crate::policy::{Current, Quotas, Scope, Usage, entry_bytes, plan_delete, plan_put};

const NAME: &str = "postgres";

/// Connections per runner process. Each KV call holds one for a few statements, and the rate
/// limits of compat §6 keep per-tenant traffic small; 8 keeps a fleet of runners well inside
/// PostgreSQL's default `max_connections` of 100.
pub const DEFAULT_POOL_SIZE: usize = 8;
/// How long a call waits for a free connection, opens a new one, or checks a returned one,
/// before failing with a backend error: well inside an invocation's deadline, so a stalled
/// database fails the KV call rather than hanging the guest.
pub const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows fetched per round trip while filling a `list` page: bounds the rows (each up to a
/// value's size) held beyond what the page keeps.
const LIST_FETCH_ROWS: i32 = 32;

/// Serialises concurrent schema creation by several runners starting at once
/// (`CREATE TABLE IF NOT EXISTS` alone races on the catalogue). An arbitrary constant: "ext-kv".
const SCHEMA_LOCK: i64 = 0x6578_742d_6b76;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS ext_kv_usage (
    tenant_id     text   NOT NULL,
    extension_id  text   NOT NULL,
    total_bytes   bigint NOT NULL,
    namespaces    bigint NOT NULL,
    last_revision bigint NOT NULL,
    PRIMARY KEY (tenant_id, extension_id)
);
CREATE TABLE IF NOT EXISTS ext_kv_namespaces (
    tenant_id    text              NOT NULL,
    extension_id text              NOT NULL,
    namespace    text COLLATE "C"  NOT NULL,
    keys         bigint            NOT NULL,
    PRIMARY KEY (tenant_id, extension_id, namespace)
);
CREATE TABLE IF NOT EXISTS ext_kv_entries (
    tenant_id    text              NOT NULL,
    extension_id text              NOT NULL,
    namespace    text COLLATE "C"  NOT NULL,
    key          text COLLATE "C"  NOT NULL,
    revision     bigint            NOT NULL,
    value        bytea             NOT NULL,
    PRIMARY KEY (tenant_id, extension_id, namespace, key)
);
"#;

/// Creates the scope's usage row if needed and locks it for the rest of the transaction.
const LOCK_USAGE: &str = "INSERT INTO ext_kv_usage (tenant_id, extension_id, total_bytes, namespaces, last_revision) \
     VALUES ($1, $2, 0, 0, 0) \
     ON CONFLICT (tenant_id, extension_id) DO UPDATE SET last_revision = ext_kv_usage.last_revision \
     RETURNING total_bytes, namespaces, last_revision";
const NAMESPACE_KEYS: &str =
    "SELECT keys FROM ext_kv_namespaces WHERE tenant_id = $1 AND extension_id = $2 AND namespace = $3";
const ENTRY_STATE: &str = "SELECT revision, octet_length(value)::bigint FROM ext_kv_entries \
     WHERE tenant_id = $1 AND extension_id = $2 AND namespace = $3 AND key = $4";
const GET: &str = "SELECT revision, value FROM ext_kv_entries \
     WHERE tenant_id = $1 AND extension_id = $2 AND namespace = $3 AND key = $4";
const UPSERT_ENTRY: &str = "INSERT INTO ext_kv_entries (tenant_id, extension_id, namespace, key, revision, value) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (tenant_id, extension_id, namespace, key) \
     DO UPDATE SET revision = EXCLUDED.revision, value = EXCLUDED.value";
const DELETE_ENTRY: &str =
    "DELETE FROM ext_kv_entries WHERE tenant_id = $1 AND extension_id = $2 AND namespace = $3 AND key = $4";
const UPSERT_NAMESPACE: &str = "INSERT INTO ext_kv_namespaces (tenant_id, extension_id, namespace, keys) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (tenant_id, extension_id, namespace) DO UPDATE SET keys = EXCLUDED.keys";
const DELETE_NAMESPACE: &str =
    "DELETE FROM ext_kv_namespaces WHERE tenant_id = $1 AND extension_id = $2 AND namespace = $3";
const STORE_USAGE: &str = "UPDATE ext_kv_usage SET total_bytes = $3, namespaces = $4, last_revision = $5 \
     WHERE tenant_id = $1 AND extension_id = $2";
const LIST_FROM: &str = "SELECT key, revision, value FROM ext_kv_entries \
     WHERE tenant_id = $1 AND extension_id = $2 AND namespace = $3 AND key >= $4 AND starts_with(key, $5) \
     ORDER BY key LIMIT $6";
const LIST_AFTER: &str = "SELECT key, revision, value FROM ext_kv_entries \
     WHERE tenant_id = $1 AND extension_id = $2 AND namespace = $3 AND key > $4 AND starts_with(key, $5) \
     ORDER BY key LIMIT $6";

/// A purge locks the scope's usage row first, as every write does (so the two queue, never
/// deadlock), and empties it but for the revision counter; no row when the scope never wrote.
const PURGE_USAGE: &str = "UPDATE ext_kv_usage SET total_bytes = 0, namespaces = 0 \
     WHERE tenant_id = $1 AND extension_id = $2";
const PURGE_ENTRIES: &str = "DELETE FROM ext_kv_entries WHERE tenant_id = $1 AND extension_id = $2";
const PURGE_NAMESPACES: &str = "DELETE FROM ext_kv_namespaces WHERE tenant_id = $1 AND extension_id = $2";

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PostgresBackend {
    /// Connections shared by every invocation; each operation holds one for its transaction.
    pool: Pool,
}

impl std::fmt::Debug for PostgresBackend {
    // The pool's config holds the password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("pool", &self.pool.status())
            .finish()
    }
}

fn db(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> KvError {
    KvError::backend(NAME, error)
}

fn to_sql(n: u64) -> Result<i64, KvError> {
    i64::try_from(n).map_err(db)
}

fn from_sql(n: i64) -> Result<u64, KvError> {
    u64::try_from(n).map_err(db)
}

impl PostgresBackend {
    /// Connects to `url` with a pool of [`DEFAULT_POOL_SIZE`] and creates the schema if missing.
    ///
    /// # Errors
    /// [`OpenError::PostgresUrl`] for a malformed URL; [`OpenError::Postgres`] if the database
    /// cannot be reached or the schema cannot be created.
    pub async fn connect(url: &str) -> Result<PostgresBackend, OpenError> {
        let config: tokio_postgres::Config = url.parse().map_err(OpenError::PostgresUrl)?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(DEFAULT_POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| OpenError::Postgres(e.into()))?;
        let mut client = pool.get().await.map_err(|e| OpenError::Postgres(e.into()))?;
        // Keys are UTF-8 and compared as bytes; another server encoding would refuse or mangle some.
        let encoding: String = client
            .query_one("SELECT current_setting('server_encoding')", &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| OpenError::Postgres(e.into()))?;
        if encoding != "UTF8" {
            return Err(OpenError::Postgres(
                format!("database encoding is {encoding}, not UTF8").into(),
            ));
        }
        let txn = client.transaction().await.map_err(|e| OpenError::Postgres(e.into()))?;
        txn.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(|e| OpenError::Postgres(e.into()))?;
        txn.batch_execute(SCHEMA)
            .await
            .map_err(|e| OpenError::Postgres(e.into()))?;
        txn.commit().await.map_err(|e| OpenError::Postgres(e.into()))?;
        Ok(PostgresBackend { pool })
    }
}

/// Locks the scope and reads the state of the target key inside `txn`.
async fn current(
    txn: &deadpool_postgres::Transaction<'_>,
    scope: &Scope,
    namespace: &str,
    key: &str,
) -> Result<Current, KvError> {
    let (t, e) = (scope.tenant(), scope.extension());
    let statement = txn.prepare_cached(LOCK_USAGE).await.map_err(db)?;
    let row = txn.query_one(&statement, &[&t, &e]).await.map_err(db)?;
    let usage = Usage {
        total_bytes: from_sql(row.try_get(0).map_err(db)?)?,
        namespaces: from_sql(row.try_get(1).map_err(db)?)?,
        last_revision: from_sql(row.try_get(2).map_err(db)?)?,
    };
    let statement = txn.prepare_cached(NAMESPACE_KEYS).await.map_err(db)?;
    let namespace_keys = match txn.query_opt(&statement, &[&t, &e, &namespace]).await.map_err(db)? {
        Some(row) => from_sql(row.try_get(0).map_err(db)?)?,
        None => 0,
    };
    let statement = txn.prepare_cached(ENTRY_STATE).await.map_err(db)?;
    let existing = match txn
        .query_opt(&statement, &[&t, &e, &namespace, &key])
        .await
        .map_err(db)?
    {
        Some(row) => {
            let revision = from_sql(row.try_get(0).map_err(db)?)?;
            let value_len = usize::try_from(from_sql(row.try_get(1).map_err(db)?)?).map_err(db)?;
            Some((revision, entry_bytes(key, value_len)))
        }
        None => None,
    };
    Ok(Current {
        usage,
        namespace_keys,
        existing,
    })
}

async fn store_usage(txn: &deadpool_postgres::Transaction<'_>, scope: &Scope, usage: Usage) -> Result<(), KvError> {
    let (t, e) = (scope.tenant(), scope.extension());
    let (total, namespaces, revision) = (
        to_sql(usage.total_bytes)?,
        to_sql(usage.namespaces)?,
        to_sql(usage.last_revision)?,
    );
    txn.execute(
        &txn.prepare_cached(STORE_USAGE).await.map_err(db)?,
        &[&t, &e, &total, &namespaces, &revision],
    )
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn get(&self, scope: &Scope, namespace: &str, key: &str) -> Result<Option<Entry>, KvError> {
        let client = self.pool.get().await.map_err(db)?;
        let statement = client.prepare_cached(GET).await.map_err(db)?;
        let row = client
            .query_opt(&statement, &[&scope.tenant(), &scope.extension(), &namespace, &key])
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Entry {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            revision: from_sql(row.try_get(0).map_err(db)?)?,
            value: row.try_get(1).map_err(db)?,
        }))
    }

    async fn put(
        &self,
        scope: &Scope,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        expected: Option<u64>,
        quotas: &Quotas,
    ) -> Result<Entry, KvError> {
        let mut client = self.pool.get().await.map_err(db)?;
        let txn = client.transaction().await.map_err(db)?;
        let current = current(&txn, scope, namespace, key).await?;
        let plan = match plan_put(quotas, current, entry_bytes(key, value.len()), expected) {
            Ok(plan) => plan,
            Err(refused) => {
                txn.rollback().await.map_err(db)?;
                return Err(refused);
            }
        };
        let (t, e, revision) = (scope.tenant(), scope.extension(), to_sql(plan.revision)?);
        txn.execute(
            &txn.prepare_cached(UPSERT_ENTRY).await.map_err(db)?,
            &[&t, &e, &namespace, &key, &revision, &value],
        )
        .await
        .map_err(db)?;
        let keys = to_sql(plan.namespace_keys)?;
        txn.execute(
            &txn.prepare_cached(UPSERT_NAMESPACE).await.map_err(db)?,
            &[&t, &e, &namespace, &keys],
        )
        .await
        .map_err(db)?;
        store_usage(&txn, scope, plan.usage).await?;
        txn.commit().await.map_err(db)?;
        Ok(Entry {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            value,
            revision: plan.revision,
        })
    }

    async fn delete(&self, scope: &Scope, namespace: &str, key: &str, expected: Option<u64>) -> Result<bool, KvError> {
        let mut client = self.pool.get().await.map_err(db)?;
        let txn = client.transaction().await.map_err(db)?;
        let current = current(&txn, scope, namespace, key).await?;
        let plan = match plan_delete(current, expected) {
            Ok(Some(plan)) => plan,
            outcome => {
                txn.rollback().await.map_err(db)?;
                return outcome.map(|_| false);
            }
        };
        let (t, e) = (scope.tenant(), scope.extension());
        txn.execute(
            &txn.prepare_cached(DELETE_ENTRY).await.map_err(db)?,
            &[&t, &e, &namespace, &key],
        )
        .await
        .map_err(db)?;
        if plan.namespace_keys == 0 {
            txn.execute(
                &txn.prepare_cached(DELETE_NAMESPACE).await.map_err(db)?,
                &[&t, &e, &namespace],
            )
            .await
            .map_err(db)?;
        } else {
            let keys = to_sql(plan.namespace_keys)?;
            txn.execute(
                &txn.prepare_cached(UPSERT_NAMESPACE).await.map_err(db)?,
                &[&t, &e, &namespace, &keys],
            )
            .await
            .map_err(db)?;
        }
        store_usage(&txn, scope, plan.usage).await?;
        txn.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn list(&self, scope: &Scope, namespace: &str, query: &Query) -> Result<Page, KvError> {
        let mut client = self.pool.get().await.map_err(db)?;
        // A portal lives in a transaction; read-only, it takes no locks.
        let txn = client.build_transaction().read_only(true).start().await.map_err(db)?;
        let (lower, inclusive) = query.lower_bound();
        let statement = txn
            .prepare_cached(if inclusive { LIST_FROM } else { LIST_AFTER })
            .await
            .map_err(db)?;
        // One row past the page tells whether another page follows.
        let rows_wanted = i64::try_from(query.limit).map_err(db)?.saturating_add(1);
        let portal = txn
            .bind(
                &statement,
                &[
                    &scope.tenant(),
                    &scope.extension(),
                    &namespace,
                    &lower,
                    &query.prefix.as_str(),
                    &rows_wanted,
                ],
            )
            .await
            .map_err(db)?;
        let mut page = PageBuilder::new(query.limit);
        'fetch: loop {
            let rows = txn.query_portal(&portal, LIST_FETCH_ROWS).await.map_err(db)?;
            let exhausted = rows.len() < LIST_FETCH_ROWS as usize;
            for row in rows {
                let entry = Entry {
                    namespace: namespace.to_owned(),
                    key: row.try_get(0).map_err(db)?,
                    revision: from_sql(row.try_get(1).map_err(db)?)?,
                    value: row.try_get(2).map_err(db)?,
                };
                if !page.offer(entry) {
                    break 'fetch;
                }
            }
            if exhausted {
                break;
            }
        }
        txn.commit().await.map_err(db)?;
        Ok(page.finish())
    }

    async fn purge(&self, scope: &Scope) -> Result<u64, KvError> {
        let mut client = self.pool.get().await.map_err(db)?;
        let txn = client.transaction().await.map_err(db)?;
        let (t, e) = (scope.tenant(), scope.extension());
        txn.execute(&txn.prepare_cached(PURGE_USAGE).await.map_err(db)?, &[&t, &e])
            .await
            .map_err(db)?;
        let removed = txn
            .execute(&txn.prepare_cached(PURGE_ENTRIES).await.map_err(db)?, &[&t, &e])
            .await
            .map_err(db)?;
        txn.execute(&txn.prepare_cached(PURGE_NAMESPACES).await.map_err(db)?, &[&t, &e])
            .await
            .map_err(db)?;
        txn.commit().await.map_err(db)?;
        Ok(removed)
    }
}
