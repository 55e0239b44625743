//! An install request checked against the version's manifest, and install
//! secrets sealed for the runner.
//!
//! `PUT …/installs/{name}` takes `{version, capabilities?, config?,
//! egress?, enabled?}`. Omitted `capabilities` and `egress` mean everything
//! the target version's manifest declares (so an upgrade picks up what the
//! new version declares); omitted `config` and `enabled` keep the install's
//! current values (`{}` and `true` for a first install). What the manifest
//! does not declare is refused, naming each entry.

use std::collections::BTreeMap;

use ext_registry::{Install, InstallSpec, Version};
use serde::Deserialize;

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
    /// [`ErrorCode::NotDeclared`] naming every capability or host the
    /// manifest does not declare; [`ErrorCode::InvalidRequest`] for a
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
        let egress = match &self.egress {
            None => manifest.allowed_hosts.clone(),
            Some(asked) => {
                let undeclared: Vec<&str> = asked
                    .iter()
                    .filter(|h| !manifest.allowed_hosts.is_empty() && !manifest.allowed_hosts.contains(h))
                    .map(String::as_str)
                    .collect();
                if !undeclared.is_empty() {
                    return Err(not_declared(
                        "egress",
                        &undeclared,
                        "network.allowed_hosts",
                        &manifest,
                        target,
                    ));
                }
                let mut hosts = asked.clone();
                hosts.sort();
                hosts.dedup();
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
        let key = self.secrets_key.as_ref().ok_or_else(|| {
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
