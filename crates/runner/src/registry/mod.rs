//! The registry role: `/v1/registry/…` over [`ext_registry::Database`].
//!
//! - [`settings`]: `REGISTRY_DATABASE_URL`, `REGISTRY_TOKENS`;
//! - [`tokens`]: the callers and their scopes;
//! - [`publish`]: a bundle in, verified and checked as the runner would,
//!   stored, recorded — all or nothing;
//! - [`installs`]: an install request against the version's manifest,
//!   sealing install secrets, and re-sealing them under the current key;
//! - [`purge`]: uninstall with purge: the registry's record, the runner's
//!   KV store, the confirmation, in the order that survives a failure;
//! - [`routes`]: the handlers;
//! - [`Registry::put_install`]: an install change for in-process callers
//!   (`serve --dev` installs its extension for the dev tenant);
//! - [`openapi`]: their part of `/openapi.json`.
//!
//! Every registry error becomes a [`Failure`] in [`failure`], and from
//! there an HTTP answer in `crate::error`, the one place statuses are chosen.

pub mod installs;
mod metrics;
pub mod openapi;
pub mod publish;
pub mod purge;
pub mod retention;
pub mod routes;
pub mod settings;
pub mod tokens;

use std::sync::Arc;

use anyhow::Context as _;
use axum::http::HeaderMap;
use ext_registry::{Applied, Database, Precondition};

use crate::error::{ErrorCode, Failure};
use crate::execute::Runner;
use crate::store::object::BundleObjects;
use installs::InstallRequest;
use tokens::{Caller, Tokens};

pub use settings::RegistrySettings;

/// The registry role's state: the database, the bundle store it publishes
/// to, the trust it verifies publishes against, its callers, and the
/// runner's KV store its purges empty.
pub struct Registry {
    db: Database,
    tokens: Tokens,
    /// `serve --dev` on loopback without `REGISTRY_TOKENS`: every caller is
    /// the admin `dev`.
    open_access: bool,
    objects: BundleObjects,
    trust: Arc<ext_bundle::TrustBundle>,
    /// `RUNNER_SECRETS_KEY` (install secrets are sealed with it) and
    /// `RUNNER_SECRETS_PREVIOUS_KEYS` (a re-seal opens with them too).
    secrets: crate::host::secrets::SecretsConfig,
    /// The runner's `storage.kv` store (`STORAGE_KV_URL`), the handle its
    /// guests write through: an uninstall with purge empties the install's
    /// (tenant, extension) scope in it.
    kv: ext_kv::Kv,
    /// `REGISTRY_EXECUTION_RETENTION_HOURS` ([`retention`]).
    execution_retention: std::time::Duration,
    metrics: metrics::RegistryMetrics,
    /// The runner role's revocation list, when this process runs it: a
    /// revoke applies to it before the revoke is answered.
    revoked: std::sync::OnceLock<Arc<crate::revocation::Revoked>>,
}

impl Registry {
    /// Open the database (migrating it) and the bundle store for the
    /// runner's config, sharing the runner's KV store (purges reach it) and
    /// metrics.
    ///
    /// # Errors
    /// No trust bundle (publishes could not be verified), no tokens outside
    /// `--dev` on loopback, a `{tenant}` key layout (runner-side only), an
    /// unreachable or newer database, a KV store that cannot be opened —
    /// each naming its setting.
    pub async fn open(runner: &Runner) -> anyhow::Result<Registry> {
        let (config, metrics) = (runner.config(), runner.metrics());
        let settings = &config.registry;
        let trust = config
            .bundles
            .trust
            .as_ref()
            .map(|t| t.bundle.clone())
            .context("the registry role needs SIGNING_TRUST_BUNDLE: publishes are verified against it")?;
        let loopback = config.server.listen.ip().is_loopback();
        let open_access = settings.tokens.is_empty();
        if open_access && !(config.server.dev && loopback) {
            anyhow::bail!("the registry role needs REGISTRY_TOKENS (only `serve --dev` on loopback runs without them)");
        }
        if config.storage.layout.template().contains("{tenant}") {
            anyhow::bail!(
                "BUNDLE_STORAGE_KEY_LAYOUT `{}` contains {{tenant}}: that is a runner-side layout; a registry \
                 publishes one bundle for every tenant",
                config.storage.layout.template()
            );
        }
        let objects =
            BundleObjects::open(&config.storage).map_err(|why| anyhow::anyhow!("BUNDLE_STORAGE_URL: {why}"))?;
        if objects.is_read_only() {
            anyhow::bail!(
                "BUNDLE_STORAGE_URL: http(s) stores are read-only; the registry publishes to s3:// or file://"
            );
        }
        let kv = runner
            .open_kv()
            .await
            .map_err(|f| anyhow::anyhow!("STORAGE_KV_URL: {}", f.message))?
            .clone();
        if !config.roles.runner && kv.backend_name() == "redb" {
            // Runners elsewhere write their own files: a purge here reaches only this one.
            tracing::warn!(
                "the registry role without the runner role uses an embedded STORAGE_KV_URL: purges on uninstall \
                 reach only this process's file; point STORAGE_KV_URL at the runners' PostgreSQL"
            );
        }
        let db = Database::open(&settings.database_url).await?;
        // Schedules are install data: guests of this process keep theirs here.
        runner.keep_schedules_in(db.clone());
        Ok(Registry {
            db,
            tokens: settings.tokens.clone(),
            open_access,
            objects,
            trust,
            secrets: config.host.secrets.clone(),
            kv,
            execution_retention: settings.execution_retention,
            metrics: metrics::RegistryMetrics::register(metrics),
            revoked: std::sync::OnceLock::new(),
        })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Who is calling: the caller whose token the request presents.
    ///
    /// # Errors
    /// [`ErrorCode::Unauthorized`] without a known token.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, Failure> {
        if self.open_access {
            return Ok(Caller::dev());
        }
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        presented
            .and_then(|token| self.tokens.authenticate(token))
            .ok_or_else(|| {
                Failure::new(
                    ErrorCode::Unauthorized,
                    "missing or invalid registry token (REGISTRY_TOKENS)",
                )
            })
    }

    /// Let revokes apply at once to this process's runner role.
    pub fn share_revocations(&self, revoked: Arc<crate::revocation::Revoked>) {
        let _ = self.revoked.set(revoked);
    }

    /// Every revoked content hash: revoked versions and every version of a
    /// revoked signer.
    ///
    /// # Errors
    /// `registry_unavailable`, or `internal_error` for a stored hash that
    /// does not parse.
    pub async fn revoked_hashes(&self) -> Result<std::collections::BTreeSet<ext_bundle::Digest>, Failure> {
        self.db
            .revoked_hashes()
            .await?
            .iter()
            .map(|hash| {
                ext_bundle::Digest::parse(hash)
                    .map_err(|e| Failure::new(ErrorCode::Internal, format!("stored content hash {hash}: {e}")))
            })
            .collect()
    }

    /// After a revoke: this process's runner role refuses the content now.
    pub(crate) async fn apply_revocations(&self) {
        if let Some(revoked) = self.revoked.get() {
            match self.revoked_hashes().await {
                Ok(hashes) => revoked.replace(hashes),
                Err(failure) => revoked.sync_failed(&failure.message),
            }
        }
    }

    /// Install, upgrade or change `tenant`'s install of `extension` as
    /// `caller` asks in `request` (the body `PUT
    /// /v1/registry/tenants/{tenant}/installs/{name}` takes): that route's
    /// work, and what callers in this process (`serve --dev`) use.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidRequest`] for a bad tenant, name or request,
    /// [`ErrorCode::Forbidden`] outside the caller's scope,
    /// [`ErrorCode::VersionNotFound`], and the refusals of
    /// [`InstallRequest::spec`] and [`Database::put_install`].
    pub async fn put_install(
        &self,
        caller: &Caller,
        tenant: &str,
        extension: &str,
        request: &InstallRequest,
        precondition: Precondition,
    ) -> Result<Applied, Failure> {
        let invalid = |field: &str, why: String| Failure::new(ErrorCode::InvalidRequest, format!("{field}: {why}"));
        ext_registry::names::check_tenant(tenant).map_err(|why| invalid("tenant", why))?;
        ext_registry::names::check_extension(extension).map_err(|why| invalid("extension", why))?;
        if !caller.may_manage(tenant) {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                format!("token `{}` may not manage tenant `{tenant}`", caller.name),
            ));
        }
        request.check()?;
        let target = self.db.version(extension, &request.version).await?.ok_or_else(|| {
            Failure::new(
                ErrorCode::VersionNotFound,
                format!("`{extension}` has no version {}", request.version),
            )
        })?;
        let current = self.db.install(tenant, extension).await?;
        let spec = request.spec(&target, current.as_ref())?;
        Ok(self
            .db
            .put_install(tenant, extension, &spec, precondition, &caller.name)
            .await?)
    }

    /// Whether the database answers (readiness).
    pub async fn reachable(&self) -> Result<(), String> {
        self.db.ping().await.map_err(|e| e.to_string())
    }
}

impl From<ext_registry::Error> for Failure {
    fn from(error: ext_registry::Error) -> Failure {
        failure(error)
    }
}

/// The one mapping of registry errors to what a client sees.
pub fn failure(error: ext_registry::Error) -> Failure {
    use ext_registry::Error as E;
    let message = error.to_string();
    let code = match &error {
        E::NotFound { what: "extension", .. } => ErrorCode::ExtensionNotFound,
        E::NotFound { what: "install", .. } => ErrorCode::InstallNotFound,
        E::NotFound { .. } => ErrorCode::VersionNotFound,
        E::VersionExists { .. } => ErrorCode::VersionExists,
        E::WrongPublisher { .. } => ErrorCode::Forbidden,
        E::SignerNotAllowed { .. } | E::SignerRevoked { .. } => ErrorCode::SignatureRejected,
        E::NotInstallable { .. } => ErrorCode::VersionNotInstallable,
        E::PreconditionFailed { .. } => ErrorCode::PreconditionFailed,
        E::Contended | E::PurgePending { .. } => ErrorCode::Conflict,
        E::InvalidSchedule { .. } => ErrorCode::InvalidRequest,
        E::ScheduleQuota { .. } => ErrorCode::Conflict,
        _ => {
            // The database's own words stay in the log.
            tracing::error!(error = %message, "registry database failed");
            return Failure::new(
                ErrorCode::RegistryUnavailable,
                "the registry database failed; retry later",
            );
        }
    };
    Failure::new(code, message)
}
