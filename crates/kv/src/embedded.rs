//! The default store: one redb file in the data dir. redb has one writer at a time, so every
//! write transaction sees the state the previous one committed; reads are MVCC snapshots. redb
//! calls block, so each operation runs on Tokio's blocking pool.
//!
//! Keys are redb tuples `(tenant, extension, namespace, key)`, whose encoding length-prefixes
//! the variable-width elements: `("a", "b:c")` and `("a:b", "c")` are different keys (K-01).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::OpenError;
use crate::backend::{Backend, Entry, Page, PageBuilder, Query};
use crate::error::KvError;
use crate::policy::{Current, Quotas, Scope, Usage, entry_bytes, plan_delete, plan_put};

const NAME: &str = "redb";

/// (tenant, extension, namespace, key).
type EntryKey = (&'static str, &'static str, &'static str, &'static str);
/// (revision, value).
type EntryValue = (u64, &'static [u8]);

/// Every entry of every scope.
const ENTRIES: TableDefinition<EntryKey, EntryValue> = TableDefinition::new("kv_entries");
/// (tenant, extension, namespace) -> keys in it; absent when it holds none.
const NAMESPACES: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("kv_namespaces");
/// (tenant, extension) -> (total bytes, namespaces, last revision); kept when empty so the
/// revision counter never goes back.
const USAGE: TableDefinition<(&str, &str), (u64, u64, u64)> = TableDefinition::new("kv_usage");

/// The redb store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedBackend {
    /// The open database; redb serialises writers itself.
    db: Arc<Database>,
}

fn storage(error: impl Into<redb::Error>) -> KvError {
    KvError::backend(NAME, error.into())
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, KvError> + Send + 'static) -> Result<T, KvError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| KvError::backend(NAME, e))?
}

impl EmbeddedBackend {
    /// Opens (or creates) the database file at `path`, creating its parent directories.
    ///
    /// # Errors
    /// [`OpenError::Embedded`] if the file cannot be created, is not a redb database, or is
    /// held by another process.
    pub async fn open(path: impl AsRef<Path>) -> Result<EmbeddedBackend, OpenError> {
        let path = path.as_ref().to_path_buf();
        let fail = |path: &PathBuf, source: Box<dyn std::error::Error + Send + Sync>| OpenError::Embedded {
            path: path.clone(),
            source,
        };
        let opened = tokio::task::spawn_blocking({
            let path = path.clone();
            move || -> Result<Database, Box<dyn std::error::Error + Send + Sync>> {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent)?;
                }
                let db = Database::create(&path)?;
                // Create the tables once, so readers never meet a missing table.
                let txn = db.begin_write()?;
                txn.open_table(ENTRIES)?;
                txn.open_table(NAMESPACES)?;
                txn.open_table(USAGE)?;
                txn.commit()?;
                Ok(db)
            }
        })
        .await
        .map_err(|e| fail(&path, e.into()))?;
        let db = opened.map_err(|e| fail(&path, e))?;
        Ok(EmbeddedBackend { db: Arc::new(db) })
    }
}

/// Owned copies of an operation's coordinates, for the blocking task.
struct At {
    tenant: String,
    extension: String,
    namespace: String,
    key: String,
}

impl At {
    fn new(scope: &Scope, namespace: &str, key: &str) -> At {
        At {
            tenant: scope.tenant().to_owned(),
            extension: scope.extension().to_owned(),
            namespace: namespace.to_owned(),
            key: key.to_owned(),
        }
    }

    fn entry_key(&self) -> (&str, &str, &str, &str) {
        (&self.tenant, &self.extension, &self.namespace, &self.key)
    }

    fn namespace_key(&self) -> (&str, &str, &str) {
        (&self.tenant, &self.extension, &self.namespace)
    }

    fn scope_key(&self) -> (&str, &str) {
        (&self.tenant, &self.extension)
    }
}

type Tables<'t> = (
    redb::Table<'t, EntryKey, EntryValue>,
    redb::Table<'t, (&'static str, &'static str, &'static str), u64>,
    redb::Table<'t, (&'static str, &'static str), (u64, u64, u64)>,
);

/// Reads the usage, namespace and entry state of `at` inside a write transaction.
fn current(tables: &Tables<'_>, at: &At) -> Result<Current, redb::Error> {
    let (entries, namespaces, usage) = tables;
    let usage = usage
        .get(at.scope_key())?
        .map(|g| {
            let (total_bytes, namespaces, last_revision) = g.value();
            Usage {
                total_bytes,
                namespaces,
                last_revision,
            }
        })
        .unwrap_or_default();
    let namespace_keys = namespaces.get(at.namespace_key())?.map_or(0, |g| g.value());
    let existing = entries.get(at.entry_key())?.map(|g| {
        let (revision, value) = g.value();
        (revision, entry_bytes(&at.key, value.len()))
    });
    Ok(Current {
        usage,
        namespace_keys,
        existing,
    })
}

/// Runs `op` in a write transaction: commits if it returns `Ok(Ok(_))`, aborts otherwise, so a
/// refused write leaves nothing behind.
fn write<T>(
    db: &Database,
    op: impl FnOnce(&mut Tables<'_>) -> Result<Result<T, KvError>, redb::Error>,
) -> Result<T, KvError> {
    let txn = db.begin_write().map_err(storage)?;
    let outcome = {
        let mut tables = (
            txn.open_table(ENTRIES).map_err(storage)?,
            txn.open_table(NAMESPACES).map_err(storage)?,
            txn.open_table(USAGE).map_err(storage)?,
        );
        op(&mut tables)
    };
    match outcome {
        Ok(Ok(value)) => {
            txn.commit().map_err(storage)?;
            Ok(value)
        }
        Ok(Err(refused)) => {
            txn.abort().map_err(storage)?;
            Err(refused)
        }
        Err(failed) => {
            // The transaction may be poisoned; dropping it aborts.
            drop(txn);
            Err(storage(failed))
        }
    }
}

fn store_usage(tables: &mut Tables<'_>, at: &At, usage: Usage) -> Result<(), redb::Error> {
    tables.2.insert(
        at.scope_key(),
        (usage.total_bytes, usage.namespaces, usage.last_revision),
    )?;
    Ok(())
}

#[async_trait]
impl Backend for EmbeddedBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn get(&self, scope: &Scope, namespace: &str, key: &str) -> Result<Option<Entry>, KvError> {
        let (db, at) = (self.db.clone(), At::new(scope, namespace, key));
        blocking(move || {
            let txn = db.begin_read().map_err(storage)?;
            let entries = txn.open_table(ENTRIES).map_err(storage)?;
            let found = entries.get(at.entry_key()).map_err(storage)?.map(|g| {
                let (revision, value) = g.value();
                (revision, value.to_vec())
            });
            Ok(found.map(|(revision, value)| Entry {
                namespace: at.namespace,
                key: at.key,
                value,
                revision,
            }))
        })
        .await
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
        let (db, at, quotas) = (self.db.clone(), At::new(scope, namespace, key), quotas.clone());
        blocking(move || {
            let revision = write(&db, |tables| {
                let current = current(tables, &at)?;
                let plan = match plan_put(&quotas, current, entry_bytes(&at.key, value.len()), expected) {
                    Ok(plan) => plan,
                    Err(refused) => return Ok(Err(refused)),
                };
                tables.0.insert(at.entry_key(), (plan.revision, value.as_slice()))?;
                tables.1.insert(at.namespace_key(), plan.namespace_keys)?;
                store_usage(tables, &at, plan.usage)?;
                Ok(Ok(plan.revision))
            })?;
            Ok(Entry {
                namespace: at.namespace,
                key: at.key,
                value,
                revision,
            })
        })
        .await
    }

    async fn delete(&self, scope: &Scope, namespace: &str, key: &str, expected: Option<u64>) -> Result<bool, KvError> {
        let (db, at) = (self.db.clone(), At::new(scope, namespace, key));
        blocking(move || {
            write(&db, |tables| {
                let plan = match plan_delete(current(tables, &at)?, expected) {
                    Ok(Some(plan)) => plan,
                    Ok(None) => return Ok(Ok(false)),
                    Err(refused) => return Ok(Err(refused)),
                };
                tables.0.remove(at.entry_key())?;
                if plan.namespace_keys == 0 {
                    tables.1.remove(at.namespace_key())?;
                } else {
                    tables.1.insert(at.namespace_key(), plan.namespace_keys)?;
                }
                store_usage(tables, &at, plan.usage)?;
                Ok(Ok(true))
            })
        })
        .await
    }

    async fn list(&self, scope: &Scope, namespace: &str, query: &Query) -> Result<Page, KvError> {
        let (db, at, query) = (self.db.clone(), At::new(scope, namespace, ""), query.clone());
        blocking(move || {
            let txn = db.begin_read().map_err(storage)?;
            let entries = txn.open_table(ENTRIES).map_err(storage)?;
            let (lower, inclusive) = query.lower_bound();
            let start = (at.tenant.as_str(), at.extension.as_str(), at.namespace.as_str(), lower);
            let start = if inclusive {
                std::ops::Bound::Included(start)
            } else {
                std::ops::Bound::Excluded(start)
            };
            let mut page = PageBuilder::new(query.limit);
            for item in entries.range((start, std::ops::Bound::Unbounded)).map_err(storage)? {
                let (k, v) = item.map_err(storage)?;
                let (tenant, extension, ns, key) = k.value();
                if (tenant, extension, ns) != at.namespace_key() || !key.starts_with(query.prefix.as_str()) {
                    break;
                }
                let (revision, value) = v.value();
                let entry = Entry {
                    namespace: ns.to_owned(),
                    key: key.to_owned(),
                    value: value.to_vec(),
                    revision,
                };
                if !page.offer(entry) {
                    break;
                }
            }
            Ok(page.finish())
        })
        .await
    }

    async fn purge(&self, scope: &Scope) -> Result<u64, KvError> {
        let (db, at) = (self.db.clone(), At::new(scope, "", ""));
        blocking(move || {
            write(&db, |tables| {
                // "" is the least string: the scope's keys start at (tenant, extension, "", "")
                // and run on while the first two elements match (tuples compare element-wise).
                let scope_key = at.scope_key();
                let mut doomed = Vec::new();
                for item in tables.0.range(at.entry_key()..)? {
                    let (k, _) = item?;
                    let (tenant, extension, namespace, key) = k.value();
                    if (tenant, extension) != scope_key {
                        break;
                    }
                    doomed.push((namespace.to_owned(), key.to_owned()));
                }
                for (namespace, key) in &doomed {
                    tables.0.remove((
                        at.tenant.as_str(),
                        at.extension.as_str(),
                        namespace.as_str(),
                        key.as_str(),
                    ))?;
                }
                let mut namespaces = Vec::new();
                for item in tables.1.range(at.namespace_key()..)? {
                    let (k, _) = item?;
                    let (tenant, extension, namespace) = k.value();
                    if (tenant, extension) != scope_key {
                        break;
                    }
                    namespaces.push(namespace.to_owned());
                }
                for namespace in &namespaces {
                    tables
                        .1
                        .remove((at.tenant.as_str(), at.extension.as_str(), namespace.as_str()))?;
                }
                // Keep the revision counter (see `USAGE`); nothing is stored any more.
                let last_revision = tables.2.get(scope_key)?.map(|g| g.value().2);
                if let Some(last_revision) = last_revision {
                    let usage = Usage {
                        total_bytes: 0,
                        namespaces: 0,
                        last_revision,
                    };
                    store_usage(tables, &at, usage)?;
                }
                Ok(Ok(doomed.len() as u64))
            })
        })
        .await
    }
}
