//! `cap:http.fetch`: egress through the policy engine (ext-egress). The
//! destination must be allowed by the operator's allowlist, the install's
//! egress list (envelope or grant) when there is one, and the manifest's
//! `network.allowed_hosts` when it declares one (with neither list: only
//! under `EXT_EGRESS_UNDECLARED_MANIFESTS=operator`), resolve to permitted
//! addresses, and stay within the execution's request count, sizes and
//! deadline. Header values
//! may use `{{secret:NAME}}` handles when `cap:secrets.get` is granted too;
//! the guest never sees the substituted value.
//!
//! - `proxy`: a `wasi:http/proxy` component's outbound `wasi:http`
//!   requests, under the same grant, engine and policy.
//! - `metrics`: egress per tenant on `/metrics`, read when scraped.

pub mod metrics;
pub mod proxy;

use std::sync::Arc;

use super::bindings::alga::extension::http;
use super::bindings::types::{HttpError, HttpHeader, HttpRequest, HttpResponse};
use super::{Invocation, Prepare};

pub const CAPABILITY: &str = "cap:http.fetch";
/// Most patterns in one install's egress list (it travels in every
/// envelope and grant).
pub const MAX_EGRESS_ENTRIES: usize = 64;
/// Longest egress pattern (`https://*.example.org:8443` is 26).
pub const MAX_EGRESS_ENTRY_BYTES: usize = 256;

/// An install's egress list: each entry trimmed and a valid pattern,
/// sorted, without repeats.
///
/// # Errors
/// The index of the first entry that is not a pattern (or of the first
/// one over [`MAX_EGRESS_ENTRIES`]) and why.
pub fn canonical_egress(list: &[String]) -> Result<Vec<String>, (usize, String)> {
    if list.len() > MAX_EGRESS_ENTRIES {
        return Err((MAX_EGRESS_ENTRIES, format!("at most {MAX_EGRESS_ENTRIES} entries")));
    }
    let mut patterns = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        let entry = entry.trim();
        if entry.is_empty() || entry.len() > MAX_EGRESS_ENTRY_BYTES {
            return Err((index, format!("entries are 1-{MAX_EGRESS_ENTRY_BYTES} bytes")));
        }
        entry
            .parse::<ext_egress::Pattern>()
            .map_err(|e| (index, e.to_string()))?;
        patterns.push(entry.to_string());
    }
    patterns.sort();
    patterns.dedup();
    Ok(patterns)
}

/// The egress engine every execution shares, and the operator's policy.
pub struct Shared {
    egress: ext_egress::Egress,
    settings: Arc<ext_egress::Settings>,
}

impl Shared {
    /// `self_addrs`: the runner's own listeners, never egress destinations (S-09).
    ///
    /// # Errors
    /// The egress engine cannot be built (TLS roots, resolver).
    pub fn new(settings: &Arc<ext_egress::Settings>, self_addrs: &[std::net::SocketAddr]) -> anyhow::Result<Shared> {
        let mut config = settings.config.clone();
        config.self_addrs.extend_from_slice(self_addrs);
        Ok(Shared {
            egress: ext_egress::Egress::new(config).map_err(|e| anyhow::anyhow!("egress: {e}"))?,
            settings: settings.clone(),
        })
    }

    /// Per-tenant egress counters (for `/metrics`).
    pub fn stats(&self) -> &Arc<ext_egress::EgressStats> {
        self.egress.stats()
    }

    /// What the execution may reach: operator ∩ the install's list (when
    /// given) ∩ the manifest's (when it declares one); with neither list,
    /// what `EXT_EGRESS_UNDECLARED_MANIFESTS` says (default: nothing).
    pub fn prepare(&self, request: &Prepare<'_>) -> Option<HttpAccess> {
        if !request.grants.allows(CAPABILITY) {
            return None;
        }
        let declared = request.manifest.allowed_hosts.as_ref().map(|hosts| {
            ext_egress::Allowlist::parse(hosts).unwrap_or_else(|e| {
                tracing::warn!(request_id = %request.info.request_id, error = %e, "manifest network.allowed_hosts unusable; egress denied");
                ext_egress::Allowlist::new(Vec::new())
            })
        });
        // Validated when the envelope was parsed; a list that no longer parses reaches nothing.
        let install = request
            .egress
            .map(|list| ext_egress::Allowlist::parse(list).unwrap_or_else(|_| ext_egress::Allowlist::new(Vec::new())));
        let policy = ext_egress::Policy::new(declared, &self.settings.operator, &request.info.tenant_id, install);
        Some(HttpAccess {
            egress: self.egress.clone(),
            policy,
            budget: self.egress.budget(),
            deadline: request.deadline,
        })
    }
}

/// What one execution may reach through `http.fetch`.
pub struct HttpAccess {
    pub egress: ext_egress::Egress,
    /// Operator ∩ install (when given) ∩ manifest (when declared) destinations.
    pub policy: ext_egress::Policy,
    /// Requests left for this execution.
    pub budget: ext_egress::RequestBudget,
    /// No egress phase may outlive the execution.
    pub deadline: tokio::time::Instant,
}

impl http::Host for Invocation {
    async fn fetch(&mut self, request: HttpRequest) -> wasmtime::Result<Result<HttpResponse, HttpError>> {
        self.count("http");
        let Some(access) = self.caps.http.access.clone().filter(|_| self.grants.allows(CAPABILITY)) else {
            return Ok(Err(HttpError::NotAllowed));
        };
        let uses_handles = request.headers.iter().any(|h| h.value.contains("{{secret:"));
        let secrets = if uses_handles && self.grants.allows(super::secrets::CAPABILITY) {
            match self.open_secrets().await {
                Ok(values) => ext_egress::StaticSecrets(
                    values
                        .iter()
                        .map(|(k, v)| (k.clone(), v.expose().to_string()))
                        .collect(),
                ),
                Err(_) => ext_egress::StaticSecrets(Default::default()),
            }
        } else {
            ext_egress::StaticSecrets(Default::default())
        };
        let sent = request.body.as_ref().map_or(0, Vec::len) as u64;
        let mut headers: Vec<(String, String)> = request.headers.into_iter().map(|h| (h.name, h.value)).collect();
        // Continue the caller's trace: same trace id, a new span id, unless
        // the guest set its own.
        if let Some(parent) = &self.request.traceparent
            && !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("traceparent"))
        {
            headers.push(("traceparent".to_string(), crate::otlp::child_traceparent(parent)));
        }
        let egress_request = ext_egress::EgressRequest {
            method: request.method,
            url: request.url,
            headers,
            body: request.body,
        };
        let context = ext_egress::FetchContext {
            deadline: access.deadline,
            tenant: &self.request.tenant_id,
            policy: &access.policy,
            budget: &access.budget,
            secrets: &secrets,
        };
        let result = access.egress.fetch(egress_request, context).await;
        Ok(match result {
            Ok(response) => {
                (self.caps.http.usage.bytes)
                    .fetch_add(sent + response.body.len() as u64, std::sync::atomic::Ordering::Relaxed);
                Ok(HttpResponse {
                    status: response.status,
                    headers: response
                        .headers
                        .into_iter()
                        .map(|(name, value)| HttpHeader { name, value })
                        .collect(),
                    body: Some(response.body),
                })
            }
            Err(error) => {
                let r = &self.request;
                tracing::info!(target: "ext_runner::egress", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, code = error.code(), error = %error, "http.fetch refused or failed");
                Err(match error.kind() {
                    ext_egress::HttpErrorKind::InvalidUrl => HttpError::InvalidUrl,
                    ext_egress::HttpErrorKind::NotAllowed => HttpError::NotAllowed,
                    ext_egress::HttpErrorKind::Transport => HttpError::Transport,
                    _ => HttpError::Internal,
                })
            }
        })
    }
}
