//! `ext-registry`: the registry role's data — extensions, versions, the
//! publisher namespaces bound to signers, tenant installs with their full
//! history, sealed install secrets, the execution log and the audit log — on
//! SQLite (embedded, the default) or PostgreSQL (fleets). No Wasmtime, no
//! HTTP: the runner crate's `registry` module serves it.
//!
//! - [`db`]: [`Database::open`] (URL grammar, pool, migrations that refuse a
//!   database a newer binary migrated), write transactions.
//! - [`versions`]: publish (all or nothing; same bytes twice is a no-op,
//!   other bytes a conflict), yank, revoke, signers.
//! - [`installs`]: install, upgrade, rollback, edits, uninstall (with the
//!   purge of the install's data it records), secrets (and their re-sealing
//!   under a new key), history, the UI validation lookup.
//! - [`audit`]: the audit log and the execution log.
//! - [`schedules`]: an install's schedules (cron, time zone, endpoint,
//!   payload), validated field by field, removed with the install.
//! - [`model`]: the records; [`names`]: what names, versions and tenant ids
//!   may be; [`error`]: [`Error`] and [`OpenError`].
//!
//! Each statement is written once for both backends through sqlx's `Any`
//! driver: `$n` parameters, BIGINT integers and flags, JSON as text, ids
//! made here. One test suite runs against both.

#[macro_use]
pub mod versions;
pub mod audit;
pub mod db;
pub mod error;
pub mod installs;
pub mod model;
pub mod names;
pub mod schedules;

pub use db::{Backend, Database};
pub use error::{Error, OpenError};
pub use model::{
    Action, Applied, AuditEntry, Execution, Extension, HistoryEntry, Install, InstallSpec, NewVersion, PendingPurge,
    Precondition, Published, SealedSecrets, Timestamp, Version,
};
pub use schedules::{Firing, Schedule, ScheduleEdit, ScheduleSpec};
