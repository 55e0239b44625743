//! The registry's HTTP routes (`/v1/registry/…`): each handler
//! authenticates the caller ([`Call`]), checks names and the caller's scope,
//! asks the database, and answers JSON (lists as `{items: [...]}`); every
//! failure is an [`ApiError`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use ext_registry::{Action, Install, Precondition, Published};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::Registry;
use super::installs::InstallRequest;
use super::publish::Signature;
use super::tokens::{Caller, Scope};
use crate::error::{ApiError, ErrorCode, Failure};
use crate::server::request_id::{RequestId, inbound_request_id};

/// Largest JSON body of a registry call (installs, secrets): a few KiB is
/// typical; the caps on config and secrets stay well under this.
pub const MAX_JSON_BODY_BYTES: usize = 1024 * 1024;

/// Longest list a `limit=` may ask for (the database caps it again).
const MAX_LIST_LIMIT: u32 = 1000;
/// Rows a list returns without `limit=`.
const DEFAULT_LIST_LIMIT: u32 = 100;

/// The registry's routes, for the API router (its layers give each request
/// its id and `no-store`).
pub fn router<S: Clone + Send + Sync + 'static>(registry: Arc<Registry>) -> Router<S> {
    let bundle_limit = usize::try_from(crate::store::MAX_BUNDLE_BYTES).unwrap_or(usize::MAX);
    Router::new()
        .route(
            "/v1/registry/bundles",
            post(publish).layer(DefaultBodyLimit::max(bundle_limit)),
        )
        .route("/v1/registry/extensions", get(extensions))
        .route("/v1/registry/extensions/{name}", get(extension))
        .route("/v1/registry/extensions/{name}/versions/{version}/yank", post(yank))
        .route("/v1/registry/extensions/{name}/versions/{version}/revoke", post(revoke))
        .route("/v1/registry/signers/revoke", post(revoke_signer))
        .route("/v1/registry/tenants/{tenant}/installs", get(installs))
        .route(
            "/v1/registry/tenants/{tenant}/installs/{name}",
            put(put_install).get(install).delete(uninstall),
        )
        .route("/v1/registry/tenants/{tenant}/installs/{name}/history", get(history))
        .route(
            "/v1/registry/tenants/{tenant}/installs/{name}/secrets",
            put(put_secrets),
        )
        .route("/v1/registry/secrets/reseal", post(reseal))
        .route("/v1/registry/tenants/{tenant}/executions", get(executions))
        .route(
            "/v1/registry/tenants/{tenant}/installs/{name}/call",
            get(install_for_call),
        )
        .route("/v1/registry/executions", post(record_executions))
        .route("/v1/registry/installs/validate", get(validate))
        .route("/v1/registry/revocations", get(revocations))
        .route("/v1/registry/audit", get(audit))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .with_state(registry)
}

/// An authenticated registry request: who calls, under which request id.
pub struct Call {
    caller: Caller,
    request_id: String,
}

impl FromRequestParts<Arc<Registry>> for Call {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, registry: &Arc<Registry>) -> Result<Call, ApiError> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map_or_else(|| inbound_request_id(&parts.headers), |id| id.0.clone());
        let caller = registry
            .caller(&parts.headers)
            .map_err(|f| ApiError::new(f.code, f.message, request_id.clone()))?;
        // A `runner` token reaches its few routes only, whatever a handler checks.
        let route = parts.extensions.get::<MatchedPath>().map_or("", MatchedPath::as_str);
        if !caller.may_call(route) {
            let message = format!(
                "token `{}` (scope {}) may not call {route}",
                caller.name,
                caller.scope.name()
            );
            return Err(ApiError::new(ErrorCode::Forbidden, message, request_id));
        }
        Ok(Call { caller, request_id })
    }
}

/// What a handler's body returns: the answer, or the failure the request id
/// is added to.
type Answer = Result<Response, Failure>;

fn invalid(field: &str, why: impl std::fmt::Display) -> Failure {
    Failure::new(ErrorCode::InvalidRequest, format!("{field}: {why}"))
}

fn check_extension(name: &str) -> Result<(), Failure> {
    ext_registry::names::check_extension(name).map_err(|why| invalid("extension", why))
}

impl Call {
    /// The answer as the client sees it.
    fn answer(&self, answer: Answer) -> Response {
        answer.unwrap_or_else(|f| ApiError::new(f.code, f.message, &self.request_id).into_response())
    }

    /// The answer, counted under `operation` by its outcome.
    fn counted(&self, registry: &Registry, operation: &'static str, answer: Answer) -> Response {
        let response = self.answer(answer);
        registry.metrics.count(operation, response.status());
        response
    }

    fn forbidden(&self, what: impl std::fmt::Display) -> Failure {
        Failure::new(
            ErrorCode::Forbidden,
            format!("token `{}` may not {what}", self.caller.name),
        )
    }

    /// The caller may manage `tenant` (a valid id). Another tenant's
    /// installs are invisible to a tenant's token (404, as if there were
    /// none: G-03); a publisher's token manages no tenant (403).
    fn tenant(&self, tenant: &str) -> Result<(), Failure> {
        ext_registry::names::check_tenant(tenant).map_err(|why| invalid("tenant", why))?;
        if self.caller.may_manage(tenant) {
            return Ok(());
        }
        if matches!(self.caller.scope, Scope::Tenant(_)) {
            return Err(Failure::new(
                ErrorCode::InstallNotFound,
                format!("token `{}` sees no installs of tenant `{tenant}`", self.caller.name),
            ));
        }
        Err(self.forbidden(format_args!("manage tenant `{tenant}`")))
    }
}

/// A JSON body, with the field a mistake is in.
fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, Failure> {
    let body = raw_body(body)?;
    let mut deserializer = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body" } else { path.as_str() };
        invalid(field, e.inner())
    })
}

fn raw_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Failure> {
    body.map_err(|rejection| {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::PayloadTooLarge
        } else {
            ErrorCode::InvalidRequest
        };
        Failure::new(code, format!("body: {}", rejection.body_text()))
    })
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, Failure> {
    query.map(|Query(q)| q).map_err(|e| invalid("query", e.body_text()))
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}

fn items<T: serde::Serialize>(items: &[T]) -> Answer {
    Ok(json(StatusCode::OK, &serde_json::json!({ "items": items })))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn publish(
    State(registry): State<Arc<Registry>>,
    call: Call,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = async {
        let archive = raw_body(body)?;
        let signature = Signature {
            signature: header(&headers, "x-ext-signature"),
            certificates_b64: header(&headers, "x-ext-certificates"),
        };
        let published = registry.publish(&call.caller, archive, signature).await?;
        let status = match &published {
            Published::Created(_) => StatusCode::CREATED,
            Published::Existing(_) => StatusCode::OK,
        };
        let v = published.version();
        Ok(json(
            status,
            &serde_json::json!({
                "name": v.extension,
                "version": v.version,
                "version_id": v.version_id,
                "content_hash": v.content_hash,
                "signer": v.signer,
            }),
        ))
    };
    call.counted(&registry, "publish", answer.await)
}

async fn extensions(State(registry): State<Arc<Registry>>, call: Call) -> Response {
    let answer = async { items(&registry.db.extensions().await?) };
    call.answer(answer.await)
}

async fn extension(State(registry): State<Arc<Registry>>, call: Call, Path(name): Path<String>) -> Response {
    let answer = async {
        check_extension(&name)?;
        let Some((extension, versions)) = registry.db.extension(&name).await? else {
            return Err(Failure::new(
                ErrorCode::ExtensionNotFound,
                format!("extension `{name}` not found"),
            ));
        };
        let mut body = serde_json::to_value(&extension).unwrap_or_default();
        body["versions"] = serde_json::to_value(&versions).unwrap_or_default();
        Ok(json(StatusCode::OK, &body))
    };
    call.answer(answer.await)
}

/// `…/versions/{version}/yank?undo=true` un-yanks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YankQuery {
    #[serde(default)]
    undo: bool,
}

async fn yank(
    State(registry): State<Arc<Registry>>,
    call: Call,
    Path((name, version)): Path<(String, String)>,
    yank: Result<Query<YankQuery>, QueryRejection>,
) -> Response {
    let answer = async {
        let YankQuery { undo } = query(yank)?;
        check_version_path(&call, &name, &version)?;
        let v = registry
            .db
            .set_yanked(&name, &version, !undo, &call.caller.name)
            .await?;
        Ok(json(StatusCode::OK, &v))
    };
    call.counted(&registry, "yank", answer.await)
}

async fn revoke(
    State(registry): State<Arc<Registry>>,
    call: Call,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    let answer = async {
        check_version_path(&call, &name, &version)?;
        let v = registry.db.revoke_version(&name, &version, &call.caller.name).await?;
        registry.apply_revocations().await;
        Ok(json(StatusCode::OK, &v))
    };
    call.counted(&registry, "revoke", answer.await)
}

/// A valid name and version, and a caller who publishes that name.
fn check_version_path(call: &Call, name: &str, version: &str) -> Result<(), Failure> {
    check_extension(name)?;
    ext_registry::names::parse_version(version).map_err(|why| invalid("version", why))?;
    if !call.caller.may_publish(name) {
        return Err(call.forbidden(format_args!("change versions of `{name}`")));
    }
    Ok(())
}

/// Longest signer identity (`certificate:<subject>`).
const MAX_SIGNER_BYTES: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeSigner {
    signer: String,
}

async fn revoke_signer(
    State(registry): State<Arc<Registry>>,
    call: Call,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = async {
        if !call.caller.is_admin() {
            return Err(call.forbidden("revoke signers"));
        }
        let RevokeSigner { signer } = json_body(body)?;
        if signer.is_empty() || signer.len() > MAX_SIGNER_BYTES {
            return Err(invalid(
                "signer",
                format!("must be 1-{MAX_SIGNER_BYTES} bytes (as the version's `signer` shows it)"),
            ));
        }
        registry.db.revoke_signer(&signer, &call.caller.name).await?;
        registry.apply_revocations().await;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    call.counted(&registry, "revoke_signer", answer.await)
}

async fn installs(State(registry): State<Arc<Registry>>, call: Call, Path(tenant): Path<String>) -> Response {
    let answer = async {
        call.tenant(&tenant)?;
        items(&registry.db.installs(&tenant).await?)
    };
    call.answer(answer.await)
}

fn no_install(tenant: &str, name: &str) -> Failure {
    Failure::new(
        ErrorCode::InstallNotFound,
        format!("tenant `{tenant}` has no install of `{name}`"),
    )
}

/// The tenant's install of `name`, for a caller who manages the tenant.
async fn find_install(registry: &Registry, call: &Call, tenant: &str, name: &str) -> Result<Install, Failure> {
    call.tenant(tenant)?;
    check_extension(name)?;
    registry
        .db
        .install(tenant, name)
        .await?
        .ok_or_else(|| no_install(tenant, name))
}

/// The install with its revision as the `ETag` (what `If-Match` takes).
fn install_response(status: StatusCode, install: &Install) -> Response {
    let mut response = json(status, install);
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", install.revision)) {
        response.headers_mut().insert(http::header::ETAG, etag);
    }
    response
}

async fn install(
    State(registry): State<Arc<Registry>>,
    call: Call,
    Path((tenant, name)): Path<(String, String)>,
) -> Response {
    let answer = async {
        let install = find_install(&registry, &call, &tenant, &name).await?;
        Ok(install_response(StatusCode::OK, &install))
    };
    call.answer(answer.await)
}

/// `If-None-Match: *` (only a first install) or `If-Match: "<revision>"`
/// (only that revision).
fn precondition(headers: &HeaderMap) -> Result<Precondition, Failure> {
    if let Some(value) = header(headers, "if-none-match") {
        return match value.trim() {
            "*" => Ok(Precondition::Absent),
            _ => Err(invalid("If-None-Match", "only `*` is supported")),
        };
    }
    match header(headers, "if-match") {
        None => Ok(Precondition::None),
        Some(value) => value
            .trim()
            .trim_matches('"')
            .parse::<i64>()
            .map(Precondition::Revision)
            .map_err(|_| invalid("If-Match", "must be the install's ETag, a quoted revision like \"3\"")),
    }
}

async fn put_install(
    State(registry): State<Arc<Registry>>,
    call: Call,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut operation = "install";
    let answer = async {
        // A tenant's token probing another tenant gets 404 (G-03) before
        // anything else is looked at.
        call.tenant(&tenant)?;
        check_extension(&name)?;
        let precondition = precondition(&headers)?;
        let request: InstallRequest = json_body(body)?;
        let applied = registry
            .put_install(&call.caller, &tenant, &name, &request, precondition)
            .await?;
        if let Some(action) = applied.action {
            operation = action.as_str();
        }
        let status = match applied.action {
            Some(Action::Install) => StatusCode::CREATED,
            _ => StatusCode::OK,
        };
        Ok(install_response(status, &applied.install))
    };
    let answer = answer.await;
    call.counted(&registry, operation, answer)
}

async fn history(
    State(registry): State<Arc<Registry>>,
    call: Call,
    Path((tenant, name)): Path<(String, String)>,
) -> Response {
    let answer = async {
        call.tenant(&tenant)?;
        check_extension(&name)?;
        let entries = registry.db.history(&tenant, &name).await?;
        if entries.is_empty() {
            return Err(Failure::new(
                ErrorCode::InstallNotFound,
                format!("tenant `{tenant}` never installed `{name}`"),
            ));
        }
        items(&entries)
    };
    call.answer(answer.await)
}

async fn put_secrets(
    State(registry): State<Arc<Registry>>,
    call: Call,
    Path((tenant, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = async {
        find_install(&registry, &call, &tenant, &name).await?;
        let secrets: BTreeMap<String, String> = json_body(body)?;
        let sealed = registry.seal_secrets(&tenant, &name, &secrets)?;
        let names: Vec<String> = secrets.into_keys().collect();
        registry
            .db
            .put_secrets(&tenant, &name, &sealed, &names, &call.caller.name)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    call.counted(&registry, "secrets", answer.await)
}

/// `POST /v1/registry/secrets/reseal` (admins): every install's secrets
/// re-sealed under the current secrets key, with the counts.
async fn reseal(State(registry): State<Arc<Registry>>, call: Call) -> Response {
    let answer = async {
        if !call.caller.is_admin() {
            return Err(call.forbidden("re-seal install secrets"));
        }
        let report = registry.reseal_secrets(&call.caller.name).await?;
        Ok(json(StatusCode::OK, &report))
    };
    call.counted(&registry, "reseal", answer.await)
}

/// `DELETE …/installs/{name}?purge=true` also removes the install's data
/// (`super::purge`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UninstallQuery {
    #[serde(default)]
    purge: Option<String>,
}

impl UninstallQuery {
    /// Only `true` and `false`: a typo must not quietly keep the data.
    fn purge(&self) -> Result<bool, Failure> {
        match self.purge.as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(invalid("purge", "must be `true` or `false`")),
        }
    }
}

async fn uninstall(
    State(registry): State<Arc<Registry>>,
    call: Call,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
    asked: Result<Query<UninstallQuery>, QueryRejection>,
) -> Response {
    let purge = query(asked).and_then(|q| q.purge());
    let operation = if matches!(purge, Ok(true)) {
        "purge"
    } else {
        "uninstall"
    };
    let answer = async {
        let purge = purge?;
        call.tenant(&tenant)?;
        check_extension(&name)?;
        let precondition = precondition(&headers)?;
        let done = match purge {
            true => registry.purge(&tenant, &name, precondition, &call.caller.name).await?,
            false => registry
                .db
                .uninstall(&tenant, &name, precondition, &call.caller.name)
                .await?
                .is_some(),
        };
        match done {
            true => Ok(StatusCode::NO_CONTENT.into_response()),
            false => Err(no_install(&tenant, &name)),
        }
    };
    call.counted(&registry, operation, answer.await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateQuery {
    tenant: String,
    extension: String,
    content_hash: String,
}

/// The runner's `RUNNER_UI_VALIDATE_URL` contract: 200 when the tenant has
/// the extension installed (enabled, not revoked) at that hash, else 404.
async fn validate(
    State(registry): State<Arc<Registry>>,
    call: Call,
    asked: Result<Query<ValidateQuery>, QueryRejection>,
) -> Response {
    let answer = async {
        let asked = query(asked)?;
        ext_registry::names::check_tenant(&asked.tenant).map_err(|why| invalid("tenant", why))?;
        if !call.caller.may_check_installs(&asked.tenant) {
            call.tenant(&asked.tenant)?;
        }
        check_extension(&asked.extension)?;
        let digest = ext_bundle::Digest::parse(&asked.content_hash).map_err(|why| invalid("content_hash", why))?;
        if registry
            .db
            .installed_at(&asked.tenant, &asked.extension, &digest.to_string())
            .await?
        {
            Ok(json(StatusCode::OK, &serde_json::json!({"installed": true})))
        } else {
            Err(Failure::new(
                ErrorCode::InstallNotFound,
                "no enabled install of that extension at that content hash",
            ))
        }
    };
    call.answer(answer.await)
}

/// What a gateway elsewhere needs for one call of `tenant`'s install of
/// `name` (`gateway` tokens and admins): the install, its sealed secrets
/// (only a runner with the secrets key opens them) and the version's
/// manifest.
async fn install_for_call(
    State(registry): State<Arc<Registry>>,
    call: Call,
    Path((tenant, name)): Path<(String, String)>,
) -> Response {
    let answer = async {
        if !(call.caller.is_admin() || call.caller.scope == Scope::Gateway) {
            return Err(call.forbidden("read installs for calls"));
        }
        ext_registry::names::check_tenant(&tenant).map_err(|why| invalid("tenant", why))?;
        check_extension(&name)?;
        let not_found = || {
            Failure::new(
                ErrorCode::InstallNotFound,
                format!("tenant `{tenant}` has no install of `{name}`"),
            )
        };
        let (install, sealed) = registry
            .db
            .install_for_call(&tenant, &name)
            .await?
            .ok_or_else(not_found)?;
        let version = registry
            .db
            .version_by_id(&install.version_id)
            .await?
            .ok_or_else(not_found)?;
        let answer = crate::gateway::installs::CallAnswer {
            target: crate::gateway::installs::CallTarget::new(install, sealed),
            manifest: version.manifest,
        };
        Ok(json(StatusCode::OK, &answer))
    };
    call.answer(answer.await)
}

/// The body of `POST /v1/registry/executions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecutionBatch {
    items: Vec<crate::gateway::execution_log::ExecutionRow>,
}

/// A gateway elsewhere appends to the execution log (`gateway` tokens and
/// admins), at most [`crate::gateway::execution_log::MAX_BATCH_ROWS`] rows.
async fn record_executions(
    State(registry): State<Arc<Registry>>,
    call: Call,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = async {
        if !(call.caller.is_admin() || call.caller.scope == Scope::Gateway) {
            return Err(call.forbidden("append to the execution log"));
        }
        let batch: ExecutionBatch = json_body(body)?;
        let max = crate::gateway::execution_log::MAX_BATCH_ROWS;
        if batch.items.len() > max {
            return Err(invalid("items", format!("at most {max} rows per request")));
        }
        for (index, row) in batch.items.iter().enumerate() {
            row.check()
                .map_err(|(field, why)| invalid(&format!("items[{index}].{field}"), why))?;
        }
        let rows: Vec<ext_registry::Execution> = batch.items.into_iter().map(Into::into).collect();
        registry.db.record_executions(&rows).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    call.answer(answer.await)
}

/// What runners poll: every revoked content hash (`{items: [...]}`), for
/// admins and `runner` tokens.
async fn revocations(State(registry): State<Arc<Registry>>, call: Call) -> Response {
    let answer = async {
        if !(call.caller.is_admin() || call.caller.scope == Scope::Runner) {
            return Err(call.forbidden("read the revocation list"));
        }
        let items: Vec<String> = registry
            .revoked_hashes()
            .await?
            .iter()
            .map(ToString::to_string)
            .collect();
        Ok(json(StatusCode::OK, &crate::revocation::RevocationList { items }))
    };
    call.answer(answer.await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    extension: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

impl ListQuery {
    fn limit(&self) -> Result<u32, Failure> {
        match self.limit {
            None => Ok(DEFAULT_LIST_LIMIT),
            Some(n @ 1..=MAX_LIST_LIMIT) => Ok(n),
            Some(_) => Err(invalid("limit", format!("must be 1-{MAX_LIST_LIMIT}"))),
        }
    }
}

async fn executions(
    State(registry): State<Arc<Registry>>,
    call: Call,
    Path(tenant): Path<String>,
    asked: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let answer = async {
        let asked = query(asked)?;
        call.tenant(&tenant)?;
        if let Some(extension) = &asked.extension {
            check_extension(extension)?;
        }
        let limit = asked.limit()?;
        items(
            &registry
                .db
                .executions(&tenant, asked.extension.as_deref(), limit)
                .await?,
        )
    };
    call.answer(answer.await)
}

async fn audit(
    State(registry): State<Arc<Registry>>,
    call: Call,
    asked: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let answer = async {
        let asked = query(asked)?;
        if !call.caller.is_admin() {
            return Err(call.forbidden("read the audit log"));
        }
        items(&registry.db.audit_log(asked.limit()?).await?)
    };
    call.answer(answer.await)
}
