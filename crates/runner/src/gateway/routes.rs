//! The gateway's routes:
//! - `ANY /api/ext/{extension}/{*path}`: a call of the endpoint the
//!   tenant's installed version declares for the method and path;
//! - `ANY /api/ext-proxy/{extension}/{*path}`: the iframe's `apiproxy`
//!   calls (envelope `endpoint: "ui-proxy:<path>"`);
//! - `GET /api/ext-ui/{extension}?path=/…`: `{src}`, the iframe URL of the
//!   tenant's installed version;
//! - under `serve --dev`, the host page's `/dev/…` ([`super::dev_host`]).
//!
//! Order of checks, each refusal before anything behind it runs (G-01):
//! path shape, user token (401), the tenant's rate limit (429), the install
//! (404 for none or another tenant's, 403 disabled), the endpoint (404),
//! the body size (413, from `content-length` before reading), then the
//! runner. Every call with a known user is logged ([`super::execution_log`]).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http_body_util::BodyExt as _;

use super::Gateway;
use super::execution_log::ExecutionRow;
use super::installs::{CallTarget, Resolved};
use super::request::{EnvelopeParts, Trigger, envelope, guest_headers, guest_path, query_pairs};
use super::runner_link::Call;
use super::users::UserClaims;
use crate::error::{ApiError, ErrorCode, Failure};
use crate::grant::Claims;
use crate::metrics::UNRESOLVED;
use crate::server::request_id::{id_of, set_request_id};

/// The gateway's routes, for the API router (its layers give each request
/// its id and `no-store` unless the guest said how to cache).
pub fn router<S: Clone + Send + Sync + 'static>(gateway: Arc<Gateway>) -> Router<S> {
    let router = Router::new()
        .route("/api/ext/{extension}", any(call_api))
        .route("/api/ext/{extension}/", any(call_api))
        .route("/api/ext/{extension}/{*path}", any(call_api))
        .route("/api/ext-proxy/{extension}/{*path}", any(call_proxy))
        .route("/api/ext-ui/{extension}", get(ui_src));
    let router = match cors(&gateway.settings.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    // After the CORS layer: no other origin may read a dev token.
    let router = match &gateway.dev_host {
        Some(dev) => router.merge(super::dev_host::router(dev.clone())),
        None => router,
    };
    router.with_state(gateway)
}

/// `GATEWAY_CORS_ORIGINS`: those origins may call with a user token and
/// read the answer; without the setting no CORS headers are sent, so
/// browsers keep other origins out.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods(AllowMethods::mirror_request())
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(ExposeHeaders::list([
                http::HeaderName::from_static("x-request-id"),
                http::HeaderName::from_static(crate::idempotency::REPLAY_HEADER),
                http::header::RETRY_AFTER,
            ]))
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Which route a call came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Api,
    Proxy,
}

impl Route {
    fn prefix(self) -> &'static str {
        match self {
            Route::Api => "/api/ext/",
            Route::Proxy => "/api/ext-proxy/",
        }
    }
}

async fn call_api(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    gateway.call(Route::Api, request).await
}

async fn call_proxy(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    gateway.call(Route::Proxy, request).await
}

/// What a call names: its route, the extension and the rest of the path,
/// as sent (not decoded: `{*path}` would decode `%2F` into a separator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Target<'p> {
    route: Route,
    extension: &'p str,
    rest: &'p str,
}

impl<'p> Target<'p> {
    fn of(route: Route, path: &'p str) -> Target<'p> {
        let after = path.strip_prefix(route.prefix()).unwrap_or_default();
        let (extension, rest) = after.split_once('/').unwrap_or((after, ""));
        Target { route, extension, rest }
    }
}

/// What the log and the metrics record of one call.
struct Record<'a> {
    user: Option<&'a UserClaims>,
    extension: &'a str,
    /// The installed version, once resolved.
    version: String,
    endpoint: String,
    limit_hit: Option<String>,
    /// The runner replayed the answer stored for the idempotency key.
    replayed: bool,
}

impl Gateway {
    async fn call(&self, route: Route, request: Request) -> Response {
        let started = Instant::now();
        let request_id = id_of(&request);
        let path = request.uri().path().to_string();
        let target = Target::of(route, &path);
        let mut record = Record {
            user: None,
            extension: UNRESOLVED,
            version: String::new(),
            endpoint: String::new(),
            limit_hit: None,
            replayed: false,
        };
        let user = match self.user(request.headers()).await {
            Ok(user) => user,
            Err(failure) => return self.finish(&record, Err(failure), &request_id, started),
        };
        record.user = Some(&user);
        let answer = self.answer(target, request, &user, &request_id, &mut record).await;
        self.finish(&record, answer, &request_id, started)
    }

    async fn user(&self, headers: &http::HeaderMap) -> Result<UserClaims, Failure> {
        let authorization = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        self.users.verify(authorization).await
    }

    /// Everything after the user is known, up to the guest's answer.
    async fn answer<'r>(
        &self,
        target: Target<'r>,
        request: Request,
        user: &'r UserClaims,
        request_id: &str,
        record: &mut Record<'r>,
    ) -> Result<Response, Failure> {
        let Target { route, extension, rest } = target;
        self.admit(&user.tenant).await?;
        let resolved = self.resolve(&user.tenant, extension).await?;
        record.extension = extension;
        record.version.clone_from(&resolved.target.version);
        let guest_path = guest_path(rest)?;
        let method = request.method().as_str().to_string();
        let Some(endpoint) = resolved.manifest.resolve(&method, &guest_path) else {
            return Err(Failure::new(
                ErrorCode::EndpointNotFound,
                format!(
                    "{extension} {} declares no endpoint for {method} {guest_path}",
                    resolved.target.version
                ),
            ));
        };
        let (endpoint_label, endpoint_field) = match route {
            Route::Api => (
                format!("{} {}", endpoint.method, endpoint.path),
                endpoint.handler.clone(),
            ),
            Route::Proxy => (
                format!("ui-proxy:{} {}", endpoint.method, endpoint.path),
                format!("ui-proxy:{guest_path}"),
            ),
        };
        record.endpoint = endpoint_label;
        let (parts, body) = request.into_parts();
        // The user's key goes to the runner, which keeps the answer for it.
        let idempotency_key = crate::idempotency::key_of(&parts.headers, true)?;
        let body = self.read_body(&parts.headers, body).await?;
        let sends_body = !body.is_empty() || !matches!(parts.method, http::Method::GET | http::Method::HEAD);
        let headers = guest_headers(&parts.headers, request_id, &user.tenant, extension);
        let target = &resolved.target;
        let envelope = envelope(&EnvelopeParts {
            request_id,
            tenant: &user.tenant,
            extension,
            user: Some(user),
            trigger: Trigger::Http,
            target,
            endpoint: endpoint_field,
            method: &method,
            path: &guest_path,
            query: query_pairs(parts.uri.query()),
            headers,
            body: sends_body.then_some(&body[..]),
            timeout_ms: self.settings.runner_timeout_ms(),
            sealed_secrets: resolved.sealed_secrets.as_ref(),
        })?;
        let claims = self.claims(&user.tenant, extension, target, request_id);
        let traceparent = parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .filter(|v| crate::envelope::is_traceparent(v));
        let call = Call {
            envelope,
            claims: &claims,
            request_id,
            traceparent,
            idempotency_key: idempotency_key.as_deref(),
        };
        let outcome = self
            .runner
            .call(call, self.settings.timeout, self.settings.max_response_bytes)
            .await;
        record.limit_hit = outcome.limit_hit;
        record.replayed = outcome.replayed;
        let answer = outcome.result?;
        let mut response = Response::new(Body::from(answer.body));
        *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let headers = response.headers_mut();
        for (name, value) in answer.headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.append(name, value);
            }
        }
        Ok(response)
    }

    /// The execution grant of one call to the tenant's install.
    pub(super) fn claims(&self, tenant: &str, extension: &str, target: &CallTarget, request_id: &str) -> Claims {
        Claims {
            tenant: tenant.to_string(),
            extension: extension.to_string(),
            install_id: Some(target.install_id.clone()),
            version_id: Some(target.version_id.clone()),
            content_hash: target.content_hash.clone(),
            capabilities: target.capabilities.clone(),
            egress: target.egress.clone(),
            request_id: Some(request_id.to_string()),
            // Valid for the call and not beyond (runners refuse grants that
            // run longer than MAX_GRANT_TTL_SECS).
            exp: crate::grant::now_secs() + (self.settings.timeout.as_secs() + 1).min(crate::grant::MAX_GRANT_TTL_SECS),
        }
    }

    /// The tenant's rate limit (`GATEWAY_TENANT_RATE_LIMIT`).
    async fn admit(&self, tenant: &str) -> Result<(), Failure> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        rate.take(tenant, &self.rate_stats).await.map_err(|wait| {
            let retry_after_secs = crate::quota::retry_after_secs(wait);
            Failure::new(
                ErrorCode::RateLimited { retry_after_secs },
                format!(
                    "the tenant's gateway rate limit of {} is used up; retry in {retry_after_secs} s",
                    rate.limit
                ),
            )
        })
    }

    /// The tenant's enabled install of `extension`. An install of another
    /// tenant is the same as none (nothing tells them apart).
    async fn resolve(&self, tenant: &str, extension: &str) -> Result<Arc<Resolved>, Failure> {
        let not_installed = || {
            Failure::new(
                ErrorCode::ExtensionNotInstalled,
                format!("`{extension}` is not installed for this tenant"),
            )
        };
        if ext_registry::names::check_extension(extension).is_err() {
            return Err(not_installed());
        }
        let resolved = self.installs.find(tenant, extension).await?.ok_or_else(not_installed)?;
        if !resolved.target.enabled {
            return Err(Failure::new(
                ErrorCode::InstallDisabled,
                format!("`{extension}` is installed but disabled for this tenant"),
            ));
        }
        Ok(resolved)
    }

    /// The body, at most `GATEWAY_MAX_REQUEST_BYTES` (a declared length
    /// over it is refused before reading), within the body read timeout.
    async fn read_body(&self, headers: &http::HeaderMap, body: Body) -> Result<bytes::Bytes, Failure> {
        let max = self.settings.max_request_bytes;
        let too_large = || {
            Failure::new(
                ErrorCode::PayloadTooLarge,
                format!("the request body exceeds {max} bytes"),
            )
        };
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max) {
            return Err(too_large());
        }
        let limited = http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
        match tokio::time::timeout(self.body_read_timeout, limited.collect()).await {
            Err(_) => Err(Failure::new(
                ErrorCode::RequestTimeout,
                "the request body was not received in time",
            )),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Ok(Err(e)) => Err(Failure::new(
                ErrorCode::InvalidRequest,
                format!("could not read the request body: {e}"),
            )),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }
    }

    /// The answer as the user gets it, counted, and logged when the user
    /// is known.
    fn finish(
        &self,
        record: &Record<'_>,
        answer: Result<Response, Failure>,
        request_id: &str,
        started: Instant,
    ) -> Response {
        let elapsed = started.elapsed();
        let (mut response, code) = match answer {
            Ok(response) => (response, None),
            Err(Failure { code, message }) => (ApiError::new(code, message, request_id).into_response(), Some(code)),
        };
        set_request_id(response.headers_mut(), request_id);
        if record.replayed {
            response.headers_mut().insert(
                http::HeaderName::from_static(crate::idempotency::REPLAY_HEADER),
                HeaderValue::from_static("true"),
            );
        }
        let tenant = record.user.map_or(UNRESOLVED, |u| u.tenant.as_str());
        let outcome = code.map_or("ok", ErrorCode::as_str);
        self.metrics.call(tenant, record.extension, outcome, elapsed);
        if let Some(user) = record.user {
            self.log.record(ExecutionRow {
                tenant: user.tenant.clone(),
                extension: record.extension.to_string(),
                request_id: request_id.to_string(),
                version: record.version.clone(),
                endpoint: record.endpoint.clone(),
                status: response.status().as_u16(),
                error_code: code.map(|c| c.as_str().to_string()),
                duration_ms: elapsed.as_millis() as u64,
                limit_hit: record.limit_hit.clone(),
                at: ext_registry::Timestamp::now().0,
            });
        }
        response
    }
}

/// `GET /api/ext-ui/{extension}?path=/…[&parentOrigin=…]`: `{src}`, the
/// iframe URL of the tenant's installed version on `RUNNER_PUBLIC_BASE`.
async fn ui_src(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let request_id = id_of(&request);
    let (request, _) = request.into_parts();
    let answer = async {
        let user = gateway.user(&request.headers).await?;
        let extension = request
            .uri
            .path()
            .strip_prefix("/api/ext-ui/")
            .unwrap_or_default()
            .to_string();
        let resolved = gateway.resolve(&user.tenant, &extension).await?;
        let ui = resolved.manifest.ui.as_ref().ok_or_else(|| {
            Failure::new(
                ErrorCode::EndpointNotFound,
                format!("{extension} {} has no UI", resolved.target.version),
            )
        })?;
        let asked = query_pairs(request.uri.query());
        let asked = |key: &str| asked.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let path = asked("path").unwrap_or_else(|| "/".into());
        if !path.starts_with('/') {
            return Err(Failure::new(ErrorCode::InvalidRequest, "path: must start with `/`"));
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("path", &path)
            .append_pair("extensionId", &extension)
            .append_pair("tenant", &user.tenant);
        if let Some(origin) = asked("parentOrigin") {
            query.append_pair("parentOrigin", &origin);
        }
        let hash = resolved.target.content_hash.replace(':', "%3A");
        let src = format!(
            "{}/ext-ui/{extension}/{hash}/{}?{}",
            gateway.public_base,
            ui.entry,
            query.finish()
        );
        Ok(axum::Json(serde_json::json!({ "src": src })).into_response())
    };
    let mut response = match answer.await {
        Ok(response) => response,
        Err(Failure { code, message }) => ApiError::new(code, message, &request_id).into_response(),
    };
    set_request_id(response.headers_mut(), &request_id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_and_the_rest_come_from_the_raw_path() {
        let parts = |route, path| {
            let Target { extension, rest, .. } = Target::of(route, path);
            (extension, rest)
        };
        assert_eq!(parts(Route::Api, "/api/ext/com.x/visits/3"), ("com.x", "visits/3"));
        assert_eq!(parts(Route::Api, "/api/ext/com.x"), ("com.x", ""));
        assert_eq!(parts(Route::Proxy, "/api/ext-proxy/com.x/a%2Fb"), ("com.x", "a%2Fb"));
    }
}
