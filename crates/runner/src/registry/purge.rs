//! Uninstall with purge (`DELETE …/installs/{name}?purge=true`): the install
//! goes, and so does what it stored.
//!
//! Two stores, no transaction across them: the registry's database holds
//! the install, its sealed secrets and its history; the runner's KV store
//! (`STORAGE_KV_URL`) the data its guests wrote under (tenant, extension).
//! The order is the one a failure anywhere leaves safe:
//!
//! 1. one database transaction removes the install (its secrets with it),
//!    records `uninstall` and `purge` in its history and audit log, and
//!    records the purge as pending — from here no install points at the data
//!    and, while the purge is pending, none can be made
//!    ([`ext_registry::Error::PurgePending`]);
//! 2. the KV store empties the scope (idempotent);
//! 3. the pending purge is cleared and `purged` audited with the count.
//!
//! A failure after 1 answers 503 (`purge_incomplete` or
//! `registry_unavailable`); the same `DELETE …?purge=true` then finds no
//! install but the pending purge, and runs 2 and 3 again. Only when there is
//! neither an install nor a pending purge is the answer 404.

use ext_registry::Precondition;

use super::Registry;
use crate::error::{ErrorCode, Failure};

impl Registry {
    /// Uninstall `tenant`'s install of `extension` and purge its KV data
    /// (steps above), as `actor`; `false` when there was neither an install
    /// nor a pending purge.
    ///
    /// # Errors
    /// `precondition_failed`, `conflict`, `registry_unavailable`,
    /// `purge_incomplete` (the install is gone; retry to finish).
    pub async fn purge(
        &self,
        tenant: &str,
        extension: &str,
        precondition: Precondition,
        actor: &str,
    ) -> Result<bool, Failure> {
        // The scope the runner gives the guest: the envelope's tenant_id and
        // extension_id, which the registry's tenant and extension name are.
        // Made first, so an id it refuses changes nothing.
        let scope = ext_kv::Scope::new(tenant, extension)
            .map_err(|e| Failure::new(ErrorCode::InvalidRequest, format!("no KV scope for this install: {e}")))?;
        let Some(pending) = self
            .db
            .uninstall_purging(tenant, extension, precondition, actor)
            .await?
        else {
            return Ok(false);
        };
        let removed = self.kv.purge(&scope).await.map_err(|e| {
            tracing::error!(error = %e, tenant, extension, "purging the install's KV data failed");
            Failure::new(
                ErrorCode::PurgeIncomplete,
                format!(
                    "tenant `{tenant}`'s install of `{extension}` is uninstalled, but the key-value store failed \
                     before its data was purged: send the same DELETE with ?purge=true again to finish"
                ),
            )
        })?;
        self.db.purge_done(&pending, removed, actor).await?;
        let finished_earlier = pending.uninstalled.is_none();
        tracing::info!(
            tenant,
            extension,
            kv_entries = removed,
            actor,
            finished_earlier,
            "install purged"
        );
        Ok(true)
    }
}
