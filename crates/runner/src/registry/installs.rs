//! An install request checked against the version's manifest, and install
//! secrets sealed for the runner (and re-sealed under the current secrets
//! key once it rotates: [`Registry::reseal_secrets`]).
//!
//! `PUT …/installs/{name}` takes `{version, capabilities?, config?,
//! egress?, enabled?}`. Omitted `capabilities` and `egress` mean everything
//! the target version's manifest declares (so an upgrade picks up what the
//! new version declares); omitted `config` and `enabled` keep the install's
//! current values (`{}` and `true` for a first install). What the manifest
//! does not declare is refused, naming each entry; a manifest without
//! `network` (as upstream manifests are) declares no host list, so any
//! valid egress pattern may be named for it, and omitted `egress` is none.

use std::collections::BTreeMap;

use ext_registry::{Install, InstallSpec, SealedSecrets, Version};
use serde::{Deserialize, Serialize};

use super::Registry;
use crate::error::{ErrorCode, Failure};

/// Most config entries of one install (the envelope carries them on every call).
pub const MAX_CONFIG_ENTRIES: usize = 64;
/// Longest config key or secret name.
pub const MAX_CONFIG_KEY_BYTES: usize = 128;
/// Longest config value.
pub const MAX_CONFIG_VALUE_BYTES: usize = 4096;
/// Most secrets of one install.
pub const MAX_SECRETS: usize = 64;
/// Longest secret value.
pub const MAX_SECRET_VALUE_BYTES: usize = 16 * 1024;

/// Installs a re-seal reads, opens and writes back at a time: bounds the
/// memory one page holds (install secrets are typically a few hundred bytes
/// sealed; at [`MAX_SECRETS`] × [`MAX_SECRET_VALUE_BYTES`] a page stays under
/// 50 MiB) and how long one write transaction holds SQLite's write lock.
pub const RESEAL_BATCH: u32 = 32;
/// Failures a re-seal's answer names (install ids and reasons); the
/// `failed` count is always complete, the log names every one.
pub const MAX_RESEAL_FAILURES_SHOWN: usize = 100;

/// The body of `PUT …/installs/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    pub version: String,
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    #[serde(default)]
    pub config: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub egress: Option<Vec<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Failure {
    Failure::new(ErrorCode::InvalidRequest, format!("{field}: {why}"))
}

/// Names to texts (config, secrets) within their caps: at most
/// `max_entries`, names of 1-[`MAX_CONFIG_KEY_BYTES`], values of at most
/// `max_value_bytes`, a mistake named `field.name`.
fn check_entries(
    field: &str,
    entries: &BTreeMap<String, String>,
    max_entries: usize,
    max_value_bytes: usize,
) -> Result<(), Failure> {
    if entries.len() > max_entries {
        return Err(invalid(field, format!("at most {max_entries} entries")));
    }
    for (name, value) in entries {
        if name.is_empty() || name.len() > MAX_CONFIG_KEY_BYTES {
            return Err(invalid(field, format!("names are 1-{MAX_CONFIG_KEY_BYTES} bytes")));
        }
        if value.len() > max_value_bytes {
            return Err(invalid(
                &format!("{field}.{name}"),
                format!("at most {max_value_bytes} bytes"),
            ));
        }
    }
    Ok(())
}

/// 422 naming every entry of `field` that `declared_in` of the target
/// version's manifest does not declare.
fn not_declared(
    field: &str,
    undeclared: &[&str],
    declared_in: &str,
    manifest: &ext_bundle::Manifest,
    target: &Version,
) -> Failure {
    Failure::new(
        ErrorCode::NotDeclared,
        format!(
            "{field}: {} not declared in {} {}'s {declared_in}",
            undeclared.join(", "),
            manifest.name,
            target.version
        ),
    )
}

impl InstallRequest {
    /// Sizes and shapes, before any lookup.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidRequest`] naming the field.
    pub fn check(&self) -> Result<(), Failure> {
        ext_registry::names::parse_version(&self.version).map_err(|why| invalid("version", why))?;
        if let Some(config) = &self.config {
            check_entries("config", config, MAX_CONFIG_ENTRIES, MAX_CONFIG_VALUE_BYTES)?;
        }
        if let Some(egress) = &self.egress {
            crate::host::http::canonical_egress(egress)
                .map_err(|(index, why)| invalid(&format!("egress[{index}]"), why))?;
        }
        Ok(())
    }

    /// The install state this asks for on `target`, given the current
    /// install.
    ///
    /// # Errors
    /// [`ErrorCode::NotDeclared`] naming every capability the manifest
    /// does not declare, and every host outside its `network.allowed_hosts`
    /// when it has a `network` (without one any valid pattern may be
    /// named); [`ErrorCode::InvalidRequest`] for a
    /// capability that is not one.
    pub fn spec(&self, target: &Version, current: Option<&Install>) -> Result<InstallSpec, Failure> {
        let manifest = ext_bundle::Manifest::from_slice(target.manifest.as_bytes()).map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("the stored manifest of {} does not parse: {e}", target.version),
            )
        })?;
        let capabilities = match &self.capabilities {
            None => manifest.capabilities.clone(),
            Some(asked) => {
                let mut normalised = asked
                    .iter()
                    .map(|c| ext_bundle::normalise_capability(c).map_err(|why| invalid("capabilities", why)))
                    .collect::<Result<Vec<_>, _>>()?;
                normalised.sort();
                normalised.dedup();
                let undeclared: Vec<&str> = normalised
                    .iter()
                    .filter(|c| !manifest.capabilities.contains(c))
                    .map(String::as_str)
                    .collect();
                if !undeclared.is_empty() {
                    return Err(not_declared("capabilities", &undeclared, "manifest", &manifest, target));
                }
                normalised
            }
        };
        // A manifest without `network` (an upstream one) declares no list:
        // the install's list is then the only one besides the operator's,
        // and none given means no host.
        let egress = match (&self.egress, &manifest.allowed_hosts) {
            (None, declared) => declared.clone().unwrap_or_default(),
            (Some(asked), declared) => {
                let hosts = crate::host::http::canonical_egress(asked)
                    .map_err(|(index, why)| invalid(&format!("egress[{index}]"), why))?;
                let undeclared: Vec<&str> = match declared {
                    None => Vec::new(),
                    Some(declared) => hosts
                        .iter()
                        .filter(|h| !declared.contains(h))
                        .map(String::as_str)
                        .collect(),
                };
                if !undeclared.is_empty() {
                    return Err(not_declared(
                        "egress",
                        &undeclared,
                        "network.allowed_hosts",
                        &manifest,
                        target,
                    ));
                }
                hosts
            }
        };
        Ok(InstallSpec {
            version_id: target.version_id.clone(),
            capabilities,
            config: self
                .config
                .clone()
                .unwrap_or_else(|| current.map(|c| c.config.clone()).unwrap_or_default()),
            egress,
            enabled: self.enabled.unwrap_or_else(|| current.is_none_or(|c| c.enabled)),
        })
    }
}

impl Registry {
    /// Seal `secrets` for (tenant, extension) in the runner's
    /// secret-envelope format (`aes-256-gcm` under `RUNNER_SECRETS_KEY`), so
    /// a gateway can pass the envelope on unopened.
    ///
    /// # Errors
    /// [`ErrorCode::SecretsUnavailable`] without a key; too many or too
    /// large secrets, named.
    pub fn seal_secrets(
        &self,
        tenant: &str,
        extension: &str,
        secrets: &BTreeMap<String, String>,
    ) -> Result<String, Failure> {
        let key = self.secrets.key.as_ref().ok_or_else(|| {
            Failure::new(
                ErrorCode::SecretsUnavailable,
                "no RUNNER_SECRETS_KEY is configured to seal install secrets with",
            )
        })?;
        check_entries("secrets", secrets, MAX_SECRETS, MAX_SECRET_VALUE_BYTES)?;
        let sealed = crate::host::secrets::seal(key, secrets, tenant, extension, None)
            .map_err(|e| Failure::new(ErrorCode::Internal, format!("sealing secrets: {e}")))?;
        Ok(serde_json::json!({"algorithm": "aes-256-gcm", "ciphertext_b64": sealed}).to_string())
    }
}

/// What `POST /v1/registry/secrets/reseal` did: installs whose sealed
/// secrets were re-sealed under the current key, that were sealed under it
/// already, and that could not be (never a value).
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ResealReport {
    pub resealed: u64,
    pub already_current: u64,
    pub failed: u64,
    /// The first [`MAX_RESEAL_FAILURES_SHOWN`] failures.
    pub failures: Vec<ResealFailure>,
}

/// One install whose secrets a re-seal left as they were, and why.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ResealFailure {
    pub install_id: String,
    pub tenant: String,
    pub extension: String,
    pub reason: String,
}

impl ResealReport {
    fn fail(&mut self, read: &SealedSecrets, reason: String) {
        tracing::warn!(
            install_id = %read.install_id,
            tenant = %read.tenant,
            extension = %read.extension,
            reason = %reason,
            "install secrets not re-sealed"
        );
        self.failed += 1;
        if self.failures.len() < MAX_RESEAL_FAILURES_SHOWN {
            self.failures.push(ResealFailure {
                install_id: read.install_id.clone(),
                tenant: read.tenant.clone(),
                extension: read.extension.clone(),
                reason,
            });
        }
    }
}

impl Registry {
    /// Re-seal every install's stored secrets under the current
    /// `RUNNER_SECRETS_KEY`: each is opened with any accepted key (current or
    /// `RUNNER_SECRETS_PREVIOUS_KEYS`), and those not under the current one
    /// are sealed again with it and written back if unchanged since read,
    /// [`RESEAL_BATCH`] at a time. Idempotent: envelopes under the current
    /// key are left. The run is recorded in the audit log (`reseal` per
    /// install written, `reseal_secrets` with the counts).
    ///
    /// # Errors
    /// [`ErrorCode::SecretsUnavailable`] without a key; the database's.
    pub async fn reseal_secrets(&self, actor: &str) -> Result<ResealReport, Failure> {
        if self.secrets.key.is_none() {
            return Err(Failure::new(
                ErrorCode::SecretsUnavailable,
                "no RUNNER_SECRETS_KEY is configured to re-seal install secrets with",
            ));
        }
        let mut report = ResealReport::default();
        let mut after: Option<String> = None;
        loop {
            let page = self.db.sealed_secrets_page(after.as_deref(), RESEAL_BATCH).await?;
            let last_page = page.len() < RESEAL_BATCH as usize;
            after = page.last().map(|read| read.install_id.clone());
            let mut updates = Vec::new();
            for read in page {
                match self.resealed(&read) {
                    Ok(None) => report.already_current += 1,
                    Ok(Some(sealed)) => updates.push((read, sealed)),
                    Err(reason) => report.fail(&read, reason),
                }
            }
            if !updates.is_empty() {
                let written = self.db.reseal_secrets(&updates, actor).await?;
                for (read, _) in &updates {
                    match written.contains(&read.install_id) {
                        true => report.resealed += 1,
                        false => report.fail(read, "changed while being re-sealed; run the re-seal again".into()),
                    }
                }
            }
            if last_page {
                break;
            }
        }
        let failed: Vec<&str> = report.failures.iter().map(|f| f.install_id.as_str()).collect();
        let detail = serde_json::json!({
            "resealed": report.resealed,
            "already_current": report.already_current,
            "failed": report.failed,
            "failed_install_ids": failed,
        });
        self.db
            .audit(actor, "reseal_secrets", "install_secrets", &detail)
            .await?;
        tracing::info!(
            resealed = report.resealed,
            already_current = report.already_current,
            failed = report.failed,
            "install secrets re-sealed under the current key"
        );
        Ok(report)
    }

    /// `read`'s envelope sealed under the current key, or `None` when it is
    /// already; `Err` says why it cannot be (never a value).
    fn resealed(&self, read: &SealedSecrets) -> Result<Option<String>, String> {
        use crate::host::secrets::{Resealed, SecretEnvelope, reseal};
        let not_envelope = |_| "the stored secrets are not a secret envelope".to_string();
        let mut stored: serde_json::Value = serde_json::from_str(&read.sealed).map_err(not_envelope)?;
        let envelope: SecretEnvelope = serde_json::from_value(stored.clone()).map_err(not_envelope)?;
        match reseal(&envelope, &self.secrets, &read.tenant, &read.extension) {
            Ok(Resealed::AlreadyCurrent) => Ok(None),
            Ok(Resealed::Sealed(ciphertext)) => {
                // Every other field (algorithm, expires_at) stays as stored.
                stored["ciphertext_b64"] = serde_json::Value::String(ciphertext);
                Ok(Some(stored.to_string()))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}
