//! `cap:secrets.get`: values from the request's sealed envelope, opened on
//! first use. A name that is not there is `missing`, the same as having no
//! envelope at all, and so is an envelope that does not open for this
//! request (another tenant's or extension's, altered: K-03, K-04), with no
//! oracle for other tenants' names; an expired one is `expired`, a refused
//! algorithm or a failing backend `internal`. The reason (never the
//! material) is logged.
//!
//! - `envelope`: the envelope format, sealing and opening (AES-GCM, Vault
//!   transit, inline), and the settings that say how (`SecretsConfig`).

mod envelope;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use envelope::*;

use super::Invocation;
use super::bindings::alga::extension::secrets;
use super::bindings::types::SecretError;

pub const CAPABILITY: &str = "cap:secrets.get";

/// A request's `secret_envelope` and, once opened, its values.
#[derive(Default)]
pub struct State {
    pub envelope: Option<Arc<SecretEnvelope>>,
    pub config: Arc<SecretsConfig>,
    pub opened: Option<Result<BTreeMap<String, SecretValue>, OpenError>>,
}

impl State {
    /// The request's envelope, opened with `config` (only when granted).
    pub fn prepare(config: &Arc<SecretsConfig>, envelope: Option<Arc<SecretEnvelope>>) -> State {
        State {
            envelope,
            config: config.clone(),
            opened: None,
        }
    }
}

impl secrets::Host for Invocation {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<String, SecretError>> {
        self.count("secrets");
        if !self.grants.allows(CAPABILITY) {
            return Ok(Err(SecretError::Denied));
        }
        Ok(match self.open_secrets().await {
            Ok(values) => values
                .get(&key)
                .map(|v| v.expose().to_string())
                .ok_or(SecretError::Missing),
            Err(e) => Err(e),
        })
    }

    async fn list_keys(&mut self) -> wasmtime::Result<Vec<String>> {
        self.count("secrets");
        if !self.grants.allows(CAPABILITY) {
            return Ok(Vec::new());
        }
        Ok(match self.open_secrets().await {
            Ok(values) => values.keys().cloned().collect(),
            Err(_) => Vec::new(),
        })
    }
}

impl Invocation {
    /// The opened secrets (opening them at most once per execution).
    pub(crate) async fn open_secrets(&mut self) -> Result<&BTreeMap<String, SecretValue>, SecretError> {
        let state = &mut self.caps.secrets;
        if state.opened.is_none() {
            let opened = match &state.envelope {
                None => Ok(BTreeMap::new()),
                Some(envelope) => {
                    let r = &self.request;
                    let result = open(envelope, &state.config, &r.tenant_id, &r.extension_id).await;
                    if let Err(e) = &result {
                        tracing::warn!(target: "ext_runner::secrets", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, error = %e, "secret envelope not opened");
                    }
                    result
                }
            };
            state.opened = Some(opened);
        }
        static NONE: BTreeMap<String, SecretValue> = BTreeMap::new();
        match state.opened.as_ref().expect("set above") {
            Ok(values) => Ok(values),
            // Exactly as if there were no envelope (K-03).
            Err(e) if e.looks_missing() => Ok(&NONE),
            Err(OpenError::Expired(_)) => Err(SecretError::Expired),
            Err(_) => Err(SecretError::Internal),
        }
    }
}
