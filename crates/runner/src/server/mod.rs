//! HTTP surface: `router(state)` and `serve(listener, state, shutdown)`.
//!
//! Connections are served through hyper-util (not `axum::serve`) so hyper
//! has a timer and the header-read timeout works (slowloris, A-17), with
//! `TCP_NODELAY` on every accepted socket and bounded header sizes;
//! `connections` supervises each one (silent, idle and stalled connections,
//! the per-listener cap: ).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::error::Failure;
use crate::error::{ApiError, ErrorCode};
use crate::execute::Runner;

pub mod connections;
mod execute_call;
mod layers;
mod metrics;
pub mod request_id;
pub mod settings;

pub use settings::{LogFormat, ServerSettings};

use execute_call::ExecuteCall;
use request_id::{inbound_request_id, set_request_id};

/// Shared by every request handler.
pub struct AppState {
    pub runner: Arc<Runner>,
    /// The registry role, when this process runs it (`RUNNER_ROLES`).
    pub registry: Option<Arc<crate::registry::Registry>>,
    /// The gateway role, when this process runs it.
    pub gateway: Option<Arc<crate::gateway::Gateway>>,
    /// Verified UI files kept in memory and install-check answers.
    pub ui: Arc<crate::ui::UiState>,
    /// SHA-256 of each accepted service token: comparing fixed-size digests
    /// in constant time leaks neither content nor length.
    token_digests: Vec<[u8; 32]>,
    /// SHA-256 of `RUNNER_METRICS_TOKEN`, when `/metrics` needs one.
    metrics_token_digest: Option<[u8; 32]>,
    /// Connection counters of the service and the public listener.
    connections: [Arc<connections::ConnectionStats>; 2],
}

/// The UI handlers' part of the state.
impl axum::extract::FromRef<Arc<AppState>> for crate::ui::UiContext {
    fn from_ref(state: &Arc<AppState>) -> Self {
        crate::ui::UiContext {
            runner: state.runner.clone(),
            ui: state.ui.clone(),
            registry: state.registry.clone(),
        }
    }
}

impl AppState {
    /// The server's and the UI's families and gauges go to the runner's
    /// registry: one `AppState` per runner.
    pub fn new(runner: Arc<Runner>) -> Arc<AppState> {
        AppState::with_roles(runner, None, None)
    }

    /// [`AppState::new`] with the registry and gateway roles' states.
    pub fn with_roles(
        runner: Arc<Runner>,
        registry: Option<Arc<crate::registry::Registry>>,
        gateway: Option<Arc<crate::gateway::Gateway>>,
    ) -> Arc<AppState> {
        let digest = |t: &String| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() };
        let config = runner.config();
        let token_digests = config.server.service_tokens.iter().map(digest).collect();
        let metrics_token_digest = config.server.metrics_token.as_ref().map(digest);
        let connections: [Arc<connections::ConnectionStats>; 2] = Default::default();
        runner.metrics().register_gauges(metrics::ServerGauges {
            connections: connections.clone(),
        });
        if let Some(registry) = &registry {
            registry.share_revocations(runner.bundles().revoked().clone());
        }
        Arc::new(AppState {
            ui: Arc::new(crate::ui::UiState::new(runner.metrics())),
            token_digests,
            metrics_token_digest,
            connections,
            runner,
            registry,
            gateway,
        })
    }

    /// Connection counters of one listener.
    pub fn connections(&self, kind: Listener) -> &Arc<connections::ConnectionStats> {
        &self.connections[kind as usize]
    }

    /// Whether the request carries an accepted service token. With no token
    /// configured (only possible in `--dev` on loopback) everything passes.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        self.token_digests.is_empty() || presents_one_of(headers, &self.token_digests)
    }

    /// Whether `/metrics` may be read: always, unless the operator set
    /// `RUNNER_METRICS_TOKEN` (M-01), which must then be presented.
    fn may_read_metrics(&self, headers: &HeaderMap) -> bool {
        self.metrics_token_digest
            .as_ref()
            .is_none_or(|digest| presents_one_of(headers, std::slice::from_ref(digest)))
    }
}

/// Whether the request's bearer token (or `x-runner-service-token`) is one
/// of `digests`, compared as SHA-256 digests in constant time against every
/// one of them, so timing reveals neither which matched nor a length.
fn presents_one_of(headers: &HeaderMap, digests: &[[u8; 32]]) -> bool {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .or_else(|| headers.get("x-runner-service-token").and_then(|v| v.to_str().ok()));
    let Some(presented) = presented else {
        return false;
    };
    let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
    digests
        .iter()
        .fold(subtle::Choice::from(0), |acc, t| acc | t.ct_eq(&digest))
        .into()
}

/// The application: `POST /v1/execute` and the UI assets (the runner
/// role), `/v1/registry/…` (the registry role), `/api/ext/…`,
/// `/api/ext-proxy/…` and `/api/ext-ui/…` (the gateway role, checking
/// user tokens), `GET /healthz`, `/readyz`,
/// `/metrics`, `/openapi.json`, JSON 404/405.
///
/// The API routes share one stack of layers (outermost first):
/// 1. `request_id`: the caller's `x-request-id` (or a new one) in the
///    request's extensions and on every answer;
/// 2. `no_store`: answers about this moment (executions, metrics,
///    readiness, errors) are never cached, unless the handler says so.
///
/// `/v1/execute` alone adds `require_service_token` (401 without one); the
/// registry's routes check registry tokens (`REGISTRY_TOKENS`); `/metrics`
/// checks its own optional token. UI assets take none: they set their own
/// caching and are reached without a token.
pub fn router(state: Arc<AppState>) -> Router {
    let api_layers = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn(request_id::request_id))
        .layer(axum::middleware::map_response(layers::no_store));
    let runs_runner = state.runner.config().roles.runner;
    let mut api = Router::new();
    if runs_runner {
        let execute_route = post(execute).route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            layers::require_service_token,
        ));
        api = api.route("/v1/execute", execute_route);
    }
    if let Some(registry) = &state.registry {
        api = api.merge(crate::registry::routes::router(registry.clone()));
    }
    if let Some(gateway) = &state.gateway {
        api = api.merge(crate::gateway::routes::router(gateway.clone()));
    }
    let api = api
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(api_layers);
    let app = if runs_runner {
        ui_routes(api)
    } else {
        api.route("/healthz", get(healthz))
    };
    app.with_state(state)
}

/// The browser-facing listener (`RUNNER_PUBLIC_LISTEN`): UI assets and
/// `/healthz` only, so exposing it never exposes `/v1/execute`.
pub fn public_router(state: Arc<AppState>) -> Router {
    ui_routes(Router::new())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// `get` also answers `HEAD` (axum drops the body). The UI handlers set
/// their own caching (immutable assets, `no-store` index and errors).
fn ui_routes(router: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    router
        .route("/ext-ui/{extension}/{hash}/", get(crate::ui::index))
        .route("/ext-ui/{extension}/{hash}/{*path}", get(crate::ui::asset))
        .route(
            "/healthz",
            get(healthz).layer(axum::middleware::map_response(layers::no_store)),
        )
}

#[derive(Serialize)]
struct ExecuteBody<'a> {
    status: u16,
    headers: serde_json::Map<String, serde_json::Value>,
    body_b64: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    /// What the execution used (wall time, fuel, memory, host calls, …).
    report: &'a crate::engine::ExecutionReport,
}

async fn execute(State(state): State<Arc<AppState>>, call: ExecuteCall) -> Response {
    let ExecuteCall { envelope, request_id } = call;
    let span = tracing::info_span!("execute", request_id = %request_id, trace_id = envelope.traceparent.as_deref().map_or("", |t| &t[3..35]), parent_span_id = envelope.traceparent.as_deref().map_or("", |t| &t[36..52]), tenant = %envelope.tenant_id, extension = %envelope.extension_id, version = envelope.version_id.as_deref().unwrap_or(""), content_hash = %envelope.content_hash);
    crate::otlp::continue_trace(&span, envelope.traceparent.as_deref());
    let started = std::time::Instant::now();
    let executed = {
        use tracing::Instrument as _;
        state
            .runner
            .execute_reported(&envelope, &request_id)
            .instrument(span.clone())
            .await
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let replayed = executed.replayed;
    let mut response = match executed.result {
        Ok(guest) => {
            span.in_scope(|| tracing::info!(status = guest.status, elapsed_ms, replayed, "executed"));
            let mut headers = serde_json::Map::new();
            for (name, value) in guest.headers {
                headers.insert(name, value.into());
            }
            headers.insert("x-ext-request-id".into(), request_id.clone().into());
            // Also among the answer's headers, for gateways that pass those on.
            if replayed {
                headers.insert(crate::idempotency::REPLAY_HEADER.into(), "true".into());
            }
            span.in_scope(|| tracing::debug!(report = ?guest.report, "execution report"));
            let body = ExecuteBody {
                status: guest.status,
                headers,
                body_b64: guest.body.as_ref().map(|b| BASE64.encode(b)).unwrap_or_default(),
                request_id: None,
                report: &guest.report,
            };
            let mut response = (StatusCode::OK, axum::Json(body)).into_response();
            set_request_id(response.headers_mut(), &request_id);
            response
        }
        Err(Failure { code, message }) => {
            span.in_scope(|| tracing::warn!(code = code.as_str(), elapsed_ms, replayed, "{message}"));
            ApiError::new(code, message, &request_id)
                .with_report(executed.report)
                .into_response()
        }
    };
    if replayed {
        response.headers_mut().insert(
            http::HeaderName::from_static(crate::idempotency::REPLAY_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    response
}

async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"}))).into_response()
}

async fn openapi() -> Response {
    axum::Json(crate::openapi::document()).into_response()
}

/// The registry's OpenMetrics text: every subsystem's families and the
/// values its collectors read now.
async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !state.may_read_metrics(&headers) {
        return ApiError::new(
            ErrorCode::Unauthorized,
            "missing or invalid metrics token (RUNNER_METRICS_TOKEN)",
            inbound_request_id(&headers),
        )
        .into_response();
    }
    let mut response = state.runner.metrics().encode().into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

/// Ready to take traffic: not draining, the cache directory writable, and
/// the registry's database answering when this process runs the registry.
/// The bundle store's reachability is reported (`degraded`) but does not
/// fail readiness: in a store outage cached bundles keep serving (F-01), and
/// every pod turning unready at once would stop that too.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let runner = &state.runner;
    let draining = runner.is_draining();
    let cache = runner.bundles().cache().writable();
    let store = runner.bundles().store_reachable().await;
    let database = match &state.registry {
        Some(registry) => Some(registry.reachable().await),
        None => None,
    };
    let ready = !draining && cache.is_ok() && database.as_ref().is_none_or(Result::is_ok);
    // The reasons go to the log, not to whoever can reach the probe.
    let detail = |what: &str, r: &Result<(), String>| match r {
        Ok(()) => serde_json::json!({"ok": true}),
        Err(why) => {
            tracing::warn!(check = what, error = %why, "readiness check failed");
            serde_json::json!({"ok": false})
        }
    };
    let mut body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "degraded": store.is_err(),
        "draining": draining,
        "engine": {"ok": true},
        "cache": detail("cache", &cache),
        "bundle_store": detail("bundle_store", &store),
    });
    if let Some(database) = &database {
        body["registry_database"] = detail("registry_database", database);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn not_found(request: Request<Body>) -> Response {
    let id = inbound_request_id(request.headers());
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {}", request.uri().path()),
        id,
    )
    .into_response()
}

async fn method_not_allowed(request: Request<Body>) -> Response {
    let id = inbound_request_id(request.headers());
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed here", request.method()),
        id,
    )
    .into_response()
}

/// Which listener a connection came in on (labels its connection metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// `RUNNER_LISTEN`: the service API.
    Service,
    /// `RUNNER_PUBLIC_LISTEN`: UI assets for browsers.
    Public,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Service => "service",
            Listener::Public => "public",
        }
    }
}

/// Serve `router(state)` on `listener` until `shutdown` resolves, then stop
/// accepting, let open connections finish their in-flight requests (up to
/// `grace`) and return. Connections are supervised as
/// [`connections`] describes.
///
/// # Errors
/// None today: per-connection failures never stop the server (kept for
/// callers that may bind inside).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let app = router(state.clone());
    serve_app(listener, Listener::Service, app, &state, shutdown, grace).await
}

/// [`serve`] for any router of this state (e.g. [`public_router`]) on the
/// given kind of listener.
///
/// # Errors
/// As [`serve`].
pub async fn serve_app(
    listener: TcpListener,
    kind: Listener,
    app: Router,
    state: &AppState,
    shutdown: impl Future<Output = ()> + Send,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let limits = connections::ConnectionLimits::new(&state.runner.config().server);
    connections::accept_loop(listener, app, limits, state.connections(kind).clone(), shutdown, grace).await;
    Ok(())
}
