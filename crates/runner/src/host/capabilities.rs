//! The WIT `Host` implementations for the `alga:extension` interfaces.
//!
//! Always-granted capabilities (`context.read`, `log.emit`, `user.read`) and
//! the granted ones (`secrets`, `http.fetch`, `storage.kv`, `ui-proxy`) are
//! implemented here, the latter through their slots on [`Invocation`]
//! (`host/secrets.rs`, ext-egress, ext-kv, `host/ui_proxy.rs`). Every
//! interface is linked so every guest instantiates; a capability not
//! granted answers the typed deny error of compat §1, never a trap.

use super::bindings::alga::extension::{context, http, logging, secrets, storage, types, ui_proxy, user, user_v2};
use super::bindings::types::{
    ContextData, HttpError, HttpHeader, HttpRequest, HttpResponse, ProxyError, SecretError, StorageEntry, StorageError,
    UserData, UserDataV2, UserError,
};
use super::{Invocation, grants};
use crate::limits::{MAX_GUEST_LOG_LINES, MAX_GUEST_LOG_MESSAGE_BYTES};

type HostResult<T> = wasmtime::Result<T>;

impl types::Host for Invocation {}

impl context::Host for Invocation {
    fn get_context(&mut self) -> HostResult<ContextData> {
        self.count("context");
        let r = &self.request;
        Ok(ContextData {
            request_id: Some(r.request_id.clone()),
            tenant_id: r.tenant_id.clone(),
            extension_id: r.extension_id.clone(),
            install_id: r.install_id.clone(),
            version_id: r.version_id.clone(),
        })
    }
}

#[derive(Clone, Copy)]
enum Level {
    Info,
    Warn,
    Error,
}

impl Invocation {
    fn guest_log(&mut self, level: Level, mut message: String) {
        if self.log_lines >= MAX_GUEST_LOG_LINES {
            self.log_dropped += 1;
            return;
        }
        self.log_lines += 1;
        if message.len() > MAX_GUEST_LOG_MESSAGE_BYTES {
            let mut end = MAX_GUEST_LOG_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("…[truncated]");
        }
        let r = &self.request;
        match level {
            Level::Info => {
                tracing::info!(target: "ext_runner::guest", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "ext_runner::guest", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "ext_runner::guest", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, "{message}")
            }
        }
        let level = match level {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.debug_line(level, "log", &message);
    }
}

impl logging::Host for Invocation {
    fn log_info(&mut self, message: String) -> HostResult<()> {
        self.count("logging");
        self.guest_log(Level::Info, message);
        Ok(())
    }

    fn log_warn(&mut self, message: String) -> HostResult<()> {
        self.count("logging");
        self.guest_log(Level::Warn, message);
        Ok(())
    }

    fn log_error(&mut self, message: String) -> HostResult<()> {
        self.count("logging");
        self.guest_log(Level::Error, message);
        Ok(())
    }
}

impl user::Host for Invocation {
    fn get_user(&mut self) -> HostResult<Result<UserData, UserError>> {
        self.count("user");
        let Some(u) = &self.user else {
            return Ok(Err(UserError::NotAvailable));
        };
        Ok(Ok(UserData {
            tenant_id: self.request.tenant_id.clone(),
            client_name: u.client_name.clone(),
            user_id: u.user_id.clone(),
            user_email: u.user_email.clone(),
            user_name: u.user_name.clone(),
            user_type: u.user_type.clone(),
        }))
    }
}

impl user_v2::Host for Invocation {
    fn get_user(&mut self) -> HostResult<Result<UserDataV2, UserError>> {
        self.count("user");
        let Some(u) = &self.user else {
            return Ok(Err(UserError::NotAvailable));
        };
        Ok(Ok(UserDataV2 {
            tenant_id: self.request.tenant_id.clone(),
            client_name: u.client_name.clone(),
            user_id: u.user_id.clone(),
            user_email: u.user_email.clone(),
            user_name: u.user_name.clone(),
            user_type: u.user_type.clone(),
            client_id: u.client_id.clone(),
            additional_fields: u.additional_fields.clone(),
        }))
    }
}

/// `cap:secrets.get`: values from the request's sealed envelope, opened on
/// first use. A name that is not there is `missing`, the same as having no
/// envelope at all, and so is an envelope that does not open for this
/// request (another tenant's or extension's, altered: K-03, K-04), with no
/// oracle for other tenants' names; an expired one is `expired`, a refused
/// algorithm or a failing backend `internal`. The reason (never the
/// material) is logged.
impl secrets::Host for Invocation {
    async fn get(&mut self, key: String) -> HostResult<Result<String, SecretError>> {
        self.count("secrets");
        if !self.grants.allows(grants::SECRETS_GET) {
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

    async fn list_keys(&mut self) -> HostResult<Vec<String>> {
        self.count("secrets");
        if !self.grants.allows(grants::SECRETS_GET) {
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
    async fn open_secrets(
        &mut self,
    ) -> Result<&std::collections::BTreeMap<String, super::secrets::SecretValue>, SecretError> {
        if self.secrets.opened.is_none() {
            let opened = match &self.secrets.envelope {
                None => Ok(std::collections::BTreeMap::new()),
                Some(envelope) => {
                    let r = &self.request;
                    let result =
                        super::secrets::open(envelope, &self.secrets.config, &r.tenant_id, &r.extension_id).await;
                    if let Err(e) = &result {
                        tracing::warn!(target: "ext_runner::secrets", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, error = %e, "secret envelope not opened");
                    }
                    result
                }
            };
            self.secrets.opened = Some(opened);
        }
        static NONE: std::collections::BTreeMap<String, super::secrets::SecretValue> =
            std::collections::BTreeMap::new();
        match self.secrets.opened.as_ref().expect("set above") {
            Ok(values) => Ok(values),
            // Exactly as if there were no envelope (K-03).
            Err(e) if e.looks_missing() => Ok(&NONE),
            Err(super::secrets::OpenError::Expired(_)) => Err(SecretError::Expired),
            Err(_) => Err(SecretError::Internal),
        }
    }
}

/// `cap:http.fetch`: egress through the policy engine (ext-egress): the
/// destination must be allowed by the manifest's `network.allowed_hosts`
/// and the operator's allowlist, resolve to permitted addresses, and stay
/// within the execution's request count, sizes and deadline. Header values
/// may use `{{secret:NAME}}` handles when `cap:secrets.get` is granted too;
/// the guest never sees the substituted value.
impl http::Host for Invocation {
    async fn fetch(&mut self, request: HttpRequest) -> HostResult<Result<HttpResponse, HttpError>> {
        self.count("http");
        let Some(access) = self
            .outbound
            .access
            .clone()
            .filter(|_| self.grants.allows(grants::HTTP_FETCH))
        else {
            return Ok(Err(HttpError::NotAllowed));
        };
        let uses_handles = request.headers.iter().any(|h| h.value.contains("{{secret:"));
        let secrets = if uses_handles && self.grants.allows(grants::SECRETS_GET) {
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
                (self.outbound.usage.bytes)
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

/// `cap:storage.kv`: the tenant's store, scoped to (tenant, extension) by
/// the host; the guest names only namespaces and keys. Invalid names and
/// quota refusals are `denied`, a lost optimistic-concurrency race is
/// `conflict`, backend trouble `internal` (details in the log only).
impl storage::Host for Invocation {
    async fn get(&mut self, namespace: String, key: String) -> HostResult<Result<StorageEntry, StorageError>> {
        self.count("storage");
        let Some((kv, scope)) = self.kv_access() else {
            return Ok(Err(StorageError::Denied));
        };
        Ok(match kv.get(&scope, &namespace, &key).await {
            Ok(Some(entry)) => Ok(storage_entry(entry)),
            Ok(None) => Err(StorageError::Missing),
            Err(e) => Err(self.storage_error("get", &e)),
        })
    }

    async fn put(&mut self, entry: StorageEntry) -> HostResult<Result<StorageEntry, StorageError>> {
        self.count("storage");
        let Some((kv, scope)) = self.kv_access() else {
            return Ok(Err(StorageError::Denied));
        };
        let result = kv
            .put(&scope, &entry.namespace, &entry.key, entry.value, entry.revision)
            .await;
        Ok(result.map(storage_entry).map_err(|e| self.storage_error("put", &e)))
    }

    async fn delete(&mut self, namespace: String, key: String) -> HostResult<Result<(), StorageError>> {
        self.count("storage");
        let Some((kv, scope)) = self.kv_access() else {
            return Ok(Err(StorageError::Denied));
        };
        Ok(match kv.delete(&scope, &namespace, &key, None).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(StorageError::Missing),
            Err(e) => Err(self.storage_error("delete", &e)),
        })
    }

    async fn list_entries(
        &mut self,
        namespace: String,
        cursor: Option<String>,
    ) -> HostResult<Result<Vec<StorageEntry>, StorageError>> {
        self.count("storage");
        let Some((kv, scope)) = self.kv_access() else {
            return Ok(Err(StorageError::Denied));
        };
        let options = ext_kv::ListOptions {
            cursor,
            ..Default::default()
        };
        Ok(match kv.list(&scope, &namespace, &options).await {
            Ok(page) => Ok(page.entries.into_iter().map(storage_entry).collect()),
            Err(e) => Err(self.storage_error("list-entries", &e)),
        })
    }
}

impl Invocation {
    fn kv_access(&self) -> Option<(ext_kv::Kv, ext_kv::Scope)> {
        if !self.grants.allows(grants::STORAGE_KV) {
            return None;
        }
        self.kv.clone()
    }

    fn storage_error(&self, operation: &str, error: &ext_kv::KvError) -> StorageError {
        let r = &self.request;
        let mapped = match error {
            ext_kv::KvError::Conflict { .. } => StorageError::Conflict,
            ext_kv::KvError::Invalid { .. } | ext_kv::KvError::QuotaExceeded { .. } => StorageError::Denied,
            _ => StorageError::Internal,
        };
        tracing::info!(target: "ext_runner::storage", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, operation, code = error.code(), error = %error, "storage operation refused");
        mapped
    }
}

fn storage_entry(entry: ext_kv::Entry) -> StorageEntry {
    StorageEntry {
        namespace: entry.namespace,
        key: entry.key,
        value: entry.value,
        revision: Some(entry.revision),
    }
}

/// `cap:ui.proxy`: `call-route(route, payload)` POSTs the payload to
/// `UI_PROXY_BASE_URL` + `/{extension}` + route (checked and rebuilt in
/// `ui_proxy.rs`, P-01) with the tenant, extension and request id as
/// headers; 2xx → the body, 404 → `route-not-found`, 400/422 →
/// `bad-request`, 401/403 → `denied`, anything else → `internal`.
impl ui_proxy::Host for Invocation {
    async fn call_route(&mut self, route: String, payload: Option<Vec<u8>>) -> HostResult<Result<Vec<u8>, ProxyError>> {
        self.count("ui-proxy");
        let Some(access) = self.ui_proxy.clone().filter(|_| self.grants.allows(grants::UI_PROXY)) else {
            return Ok(Err(ProxyError::Denied));
        };
        let r = &self.request;
        let url = match super::ui_proxy::route_url(&access.base_url, &r.extension_id, &route) {
            Ok(url) => url,
            Err(why) => {
                tracing::info!(target: "ext_runner::ui_proxy", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, reason = %why, "ui-proxy route refused");
                return Ok(Err(ProxyError::BadRequest));
            }
        };
        let remaining = access.deadline.saturating_duration_since(tokio::time::Instant::now());
        let response = access
            .client
            .post(url)
            .timeout(remaining)
            .header("content-type", "application/octet-stream")
            .header("x-alga-tenant", &r.tenant_id)
            .header("x-alga-extension", &r.extension_id)
            .header("x-request-id", &r.request_id)
            .body(payload.unwrap_or_default())
            .send()
            .await;
        let outcome = match response {
            Ok(response) => match response.status().as_u16() {
                200..=299 => match response.bytes().await {
                    Ok(bytes) if bytes.len() <= crate::limits::MAX_UI_PROXY_RESPONSE_BYTES => Ok(bytes.to_vec()),
                    _ => Err(ProxyError::Internal),
                },
                404 => Err(ProxyError::RouteNotFound),
                400 | 422 => Err(ProxyError::BadRequest),
                401 | 403 => Err(ProxyError::Denied),
                _ => Err(ProxyError::Internal),
            },
            Err(e) => {
                tracing::info!(target: "ext_runner::ui_proxy", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, error = %e.without_url(), "ui-proxy call failed");
                Err(ProxyError::Internal)
            }
        };
        Ok(outcome)
    }
}

/// `cap:metrics.emit` (this runner's addition): guest series on `/metrics`
/// under `ext_runner_guest_<name>`, labelled by tenant and extension; names,
/// labels and caps are checked in `guest_metrics.rs`.
impl super::bindings::alga::extension::metrics::Host for Invocation {
    fn counter_add(
        &mut self,
        name: String,
        value: u64,
        labels: Vec<(String, String)>,
    ) -> HostResult<Result<(), super::bindings::alga::extension::metrics::MetricsError>> {
        Ok(self.emit_metric(name, super::guest_metrics::Emit::CounterAdd(value), labels))
    }

    fn gauge_set(
        &mut self,
        name: String,
        value: f64,
        labels: Vec<(String, String)>,
    ) -> HostResult<Result<(), super::bindings::alga::extension::metrics::MetricsError>> {
        Ok(self.emit_metric(name, super::guest_metrics::Emit::GaugeSet(value), labels))
    }

    fn histogram_observe(
        &mut self,
        name: String,
        value: f64,
        labels: Vec<(String, String)>,
    ) -> HostResult<Result<(), super::bindings::alga::extension::metrics::MetricsError>> {
        Ok(self.emit_metric(name, super::guest_metrics::Emit::HistogramObserve(value), labels))
    }
}
