//! `cap:ui.proxy`: `call-route(route, payload)` POSTs the payload to
//! `UI_PROXY_BASE_URL` + `/{extension}` + route (checked and rebuilt in
//! `route`, P-01) with the tenant, extension and request id as headers;
//! 2xx → the body, 404 → `route-not-found`, 400/422 → `bad-request`,
//! 401/403 → `denied`, anything else → `internal`.
//!
//! - `route`: where a route may go.

pub mod route;

use super::bindings::alga::extension::ui_proxy;
use super::bindings::types::ProxyError;
use super::{Invocation, Prepare};

pub use route::{MAX_ROUTE_BYTES, RouteRefusal, route_url};

pub const CAPABILITY: &str = "cap:ui.proxy";

/// `UI_PROXY_BASE_URL`: where `ui-proxy.call-route` goes.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Without a trailing slash.
    pub base_url: Option<String>,
}

impl Settings {
    pub fn from_source(source: &crate::config::source::Source) -> Settings {
        Settings {
            base_url: source
                .http_url("UI_PROXY_BASE_URL")
                .map(|url| url.trim_end_matches('/').to_string()),
        }
    }
}

/// The client every execution's calls share (no proxies from the
/// environment, no redirects).
pub struct Shared {
    client: reqwest::Client,
    base_url: Option<String>,
}

/// Where one execution's `call-route`s go.
pub struct State {
    client: reqwest::Client,
    base_url: String,
    deadline: tokio::time::Instant,
}

impl Shared {
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(settings: &Settings) -> anyhow::Result<Shared> {
        Ok(Shared {
            client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| anyhow::anyhow!("ui-proxy client: {e}"))?,
            base_url: settings.base_url.clone(),
        })
    }

    /// Only when granted and configured.
    pub fn prepare(&self, request: &Prepare<'_>) -> Option<State> {
        let base_url = self.base_url.clone().filter(|_| request.grants.allows(CAPABILITY))?;
        Some(State {
            client: self.client.clone(),
            base_url,
            deadline: request.deadline,
        })
    }
}

impl ui_proxy::Host for Invocation {
    async fn call_route(
        &mut self,
        route: String,
        payload: Option<Vec<u8>>,
    ) -> wasmtime::Result<Result<Vec<u8>, ProxyError>> {
        self.count("ui-proxy");
        let Some(access) = self.caps.ui_proxy.as_ref().filter(|_| self.grants.allows(CAPABILITY)) else {
            return Ok(Err(ProxyError::Denied));
        };
        let r = &self.request;
        let url = match route_url(&access.base_url, &r.extension_id, &route) {
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
