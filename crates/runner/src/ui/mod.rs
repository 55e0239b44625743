//! Extension UI assets: `GET`/`HEAD /ext-ui/{extensionId}/{content_hash}/{*path}`.
//!
//! Files come only from the verified bundle's `ui/` file list (recorded with
//! each file's SHA-256 at unpack), never from a path joined with user input:
//! a request path is only ever a *key* into that list (B-06). Responses are
//! immutable by content hash (`Cache-Control: immutable`, a strong `ETag`
//! from the file's SHA-256, `If-None-Match` → 304), byte ranges are served
//! (206/416), precompressed `.br`/`.gz` siblings are used when the client
//! accepts them, HTML (and SVG, which can script too) gets a
//! Content-Security-Policy with a `sandbox` directive (U-03), and every
//! response says `nosniff`. Errors are JSON and never cached. Tenant and
//! extension ids longer than [`crate::limits::MAX_ID_BYTES`] are a 400.
//!
//! - `files`: where the bytes come from and what is re-checked (small files
//!   verified into memory, large ones streamed from the verified cache, U-02).
//! - `install_check`: the optional install check. With
//!   `RUNNER_UI_VALIDATE_URL`, the runner asks that service whether (tenant,
//!   extension, hash) is installed, through a bounded cache, single-flight
//!   and rate and concurrency limits (U-01); without it the bundle's
//!   manifest `name` must equal the URL's extension id.

mod files;
mod install_check;
mod metrics;
pub mod settings;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ext_bundle::Digest;

use crate::error::Failure;
use crate::error::{ApiError, ErrorCode};
use crate::limits::MAX_ID_BYTES;
use crate::store::BundleRef;

pub use files::{
    LARGE_FILE_CHUNK_BYTES, MAX_CONCURRENT_LARGE_FILE_READS, MEMORY_CACHE_FILE_BYTES, MEMORY_CACHE_TOTAL_BYTES,
};
pub use install_check::{
    DEFAULT_VALIDATIONS_PER_SECOND, MAX_CONCURRENT_VALIDATIONS, MAX_VALIDATION_CACHE_BYTES,
    MAX_VALIDATION_CACHE_ENTRIES, VALIDATION_SLOT_WAIT, VALIDATION_TIMEOUT, VALIDATION_TTL,
};
pub use settings::{DEFAULT_STATIC_MAX_FILE_BYTES, DEFAULT_UI_CSP, UI_CSP_SANDBOX, UiConfig, with_sandbox};

/// Immutable for a year: the URL names the content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Extension → MIME type. Anything else is not served.
const MIME_TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("ico", "image/x-icon"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("txt", "text/plain; charset=utf-8"),
    ("wasm", "application/wasm"),
];

/// What the UI handlers need: the runner (bundles, settings, metrics) and
/// the UI's own state. The server's state hands it out (axum `FromRef`),
/// so this module does not know the server.
#[derive(Clone)]
pub struct UiContext {
    pub runner: Arc<crate::Runner>,
    pub ui: Arc<UiState>,
    /// This process's registry role: without `RUNNER_UI_VALIDATE_URL`, a
    /// request naming `?tenant=` is served only for that tenant's installs.
    pub registry: Option<Arc<crate::registry::Registry>>,
}

/// Process-wide UI state, shared by every UI request.
pub struct UiState {
    /// Small verified files in memory, the large-read slots (U-02).
    files: files::UiFiles,
    /// Install-check answers and the bounds on outbound checks (U-01).
    checks: install_check::InstallChecks,
    /// Requests by status, for `/metrics` (every handler counts its answer).
    metrics: metrics::UiMetrics,
}

impl UiState {
    /// The UI's families go to `metrics` (one `UiState` per registry).
    pub fn new(metrics: &crate::metrics::Metrics) -> UiState {
        UiState {
            files: files::UiFiles::default(),
            checks: install_check::InstallChecks::default(),
            metrics: metrics::UiMetrics::register(metrics),
        }
    }

    /// Install-check answers cached now (at most [`MAX_VALIDATION_CACHE_ENTRIES`]).
    pub fn install_checks_cached(&self) -> usize {
        self.checks.cached_entries()
    }

    /// Bytes charged to cached install-check answers (at most
    /// [`MAX_VALIDATION_CACHE_BYTES`]).
    pub fn install_checks_cached_bytes(&self) -> usize {
        self.checks.cached_bytes()
    }

    /// Install checks sent to `RUNNER_UI_VALIDATE_URL` since start-up.
    pub fn install_checks_sent(&self) -> u64 {
        self.checks.sent()
    }

    /// Bytes of UI files read from the disk cache since start-up.
    pub fn disk_bytes_read(&self) -> u64 {
        self.files.disk_bytes_read()
    }
}

#[derive(serde::Deserialize, Default)]
pub struct UiQuery {
    #[serde(default)]
    tenant: Option<String>,
}

/// `/ext-ui/{ext}/{hash}/` (the index).
pub async fn index(
    State(state): State<UiContext>,
    Path((extension, hash)): Path<(String, String)>,
    Query(query): Query<UiQuery>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let response = serve_asset(&state, &extension, &hash, "", query, &method, &headers).await;
    count(&state, &response);
    response
}

fn count(state: &UiContext, response: &Response) {
    state.ui.metrics.answered(response.status());
}

/// `/ext-ui/{ext}/{hash}/{*path}`.
pub async fn asset(
    State(state): State<UiContext>,
    Path((extension, hash, path)): Path<(String, String, String)>,
    Query(query): Query<UiQuery>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let response = serve_asset(&state, &extension, &hash, &path, query, &method, &headers).await;
    count(&state, &response);
    response
}

/// An asset found in a verified bundle.
struct Found {
    bundle: Arc<crate::store::LoadedBundle>,
    digest: Digest,
    /// `ui/…` in the bundle's file index.
    key: String,
    mime: &'static str,
    meta: ext_bundle::FileMeta,
}

/// The file that answers: the asset or a precompressed sibling.
struct Served {
    key: String,
    meta: ext_bundle::FileMeta,
    encoding: Option<&'static str>,
}

#[allow(clippy::too_many_arguments)]
async fn serve_asset(
    state: &UiContext,
    extension: &str,
    hash: &str,
    path: &str,
    query: UiQuery,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let fail = |code: ErrorCode, message: String| ApiError::new(code, message, request_id.clone()).into_response();
    let found = match find(state, extension, hash, path, query.tenant.unwrap_or_default(), &fail).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let ui = &state.runner.config().ui;
    let served = precompressed(&found, headers);
    if served.meta.size > ui.max_file_bytes {
        return fail(
            ErrorCode::PayloadTooLarge,
            format!("asset is larger than the {} byte limit", ui.max_file_bytes),
        );
    }
    let etag = format!("\"{}\"", served.meta.sha256.hex());
    let mut response_headers = asset_headers(found.mime, &served, &etag, &ui.csp);
    if if_none_match(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, response_headers).into_response();
    }
    let Some((status, start, len)) = byte_range(headers, &served, &mut response_headers) else {
        return unsatisfiable(served.meta.size);
    };
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let integrity_failure = |failure: Failure| {
        if failure.code == ErrorCode::BundleIntegrity {
            // F-02: drop the entry; the next request fetches it again.
            state.runner.bundles().evict(&found.digest);
        }
        fail(failure.code, failure.message)
    };
    let total = served.meta.size;
    if total > MEMORY_CACHE_FILE_BYTES {
        // U-02: streamed from the verified cache, never hashed per request;
        // HEAD reads nothing, a range only its bytes.
        if method == Method::HEAD {
            return (status, response_headers).into_response();
        }
        let file = match state.ui.files.open_large(&found.bundle, &served.key, total).await {
            Ok(file) => file,
            Err(failure) => return integrity_failure(failure),
        };
        let body = Body::from_stream(state.ui.files.stream(file, start, len));
        return (status, response_headers, body).into_response();
    }
    let bytes = match state.ui.files.small(&found.bundle, &served.key, total).await {
        Ok(bytes) => bytes,
        Err(failure) => return integrity_failure(failure),
    };
    if method == Method::HEAD {
        return (status, response_headers).into_response();
    }
    let body = bytes.slice(start as usize..(start + len) as usize);
    (status, response_headers, Body::from(body)).into_response()
}

/// The verified bundle behind `hash`, checked against the tenant's install
/// (a validate URL, else this process's registry) or the extension id
/// (B-06), and the asset in it.
async fn find(
    state: &UiContext,
    extension: &str,
    hash: &str,
    path: &str,
    tenant: String,
    fail: &impl Fn(ErrorCode, String) -> Response,
) -> Result<Found, Response> {
    // The hash must be spelled `sha256:<hex64>` (a bare hex is refused here,
    // unlike the envelope, so one asset has exactly one URL).
    let digest = match hash.strip_prefix("sha256:").map(|_| Digest::parse(hash)) {
        Some(Ok(digest)) => digest,
        _ => {
            let message = "content hash must be sha256:<64 lowercase hex digits>";
            return Err(fail(ErrorCode::InvalidEnvelope, message.into()));
        }
    };
    let not_found = || fail(ErrorCode::NotFound, "no such asset".into());
    let requested = clean_path(path).ok_or_else(not_found)?;
    let runner = &state.runner;
    let ui = &runner.config().ui;
    // U-01: ids become cache and store keys; refuse absurd ones first.
    for (what, id) in [("tenant", tenant.as_str()), ("extension id", extension)] {
        if id.len() > MAX_ID_BYTES {
            let message = format!("{what} must be at most {MAX_ID_BYTES} bytes");
            return Err(fail(ErrorCode::InvalidEnvelope, message));
        }
    }
    if let Some(url) = &ui.validate_url {
        let token = runner.config().revocations.registry_token.as_deref();
        let check = state
            .ui
            .checks
            .check(url, token, ui.validate_per_second, &tenant, extension, &digest);
        match check.await {
            Ok(true) => {}
            Ok(false) => return Err(not_found()),
            Err(install_check::CheckError::Busy(why)) => {
                tracing::warn!(%digest, extension, reason = why, "UI install check refused here");
                return Err(fail(ErrorCode::Overloaded, format!("{why}; retry shortly")));
            }
            Err(install_check::CheckError::Unavailable(why)) => {
                tracing::warn!(%digest, extension, reason = %why, "UI install check unavailable");
                let message = "install check unavailable; retry later";
                return Err(fail(ErrorCode::BundleUnavailable, message.into()));
            }
        }
    } else if let Some(registry) = state.registry.as_ref().filter(|_| !tenant.is_empty()) {
        // In one process an install change applies to the very next request.
        // Only a request naming its tenant is checked: browsers fetch the
        // UI's own scripts and styles without the page's `?tenant=`, and
        // those get the manifest-name rule below.
        match registry
            .database()
            .installed_at(&tenant, extension, &digest.to_string())
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(not_found()),
            Err(e) => {
                tracing::warn!(%digest, extension, error = %e, "UI install check: registry unavailable");
                let message = "install check unavailable; retry later";
                return Err(fail(ErrorCode::BundleUnavailable, message.into()));
            }
        }
    }
    let wanted = BundleRef {
        digest,
        tenant: &tenant,
        extension,
    };
    let bundle = match runner.bundles().get(wanted).await {
        Ok(bundle) => bundle,
        Err(Failure { code, message }) => {
            return Err(match code {
                ErrorCode::BundleNotFound => not_found(),
                _ => fail(code, message),
            });
        }
    };
    let install_checked = ui.validate_url.is_some() || (state.registry.is_some() && !tenant.is_empty());
    if !install_checked && bundle.manifest.name != extension {
        // B-06: a hash belonging to another extension.
        return Err(not_found());
    }
    // Extension-less paths are client routes of a single-page app.
    let requested = if requested.is_empty() || !last_segment(&requested).contains('.') {
        "index.html".to_string()
    } else {
        requested
    };
    let mime = mime_type(&requested).ok_or_else(not_found)?;
    let key = format!("ui/{requested}");
    let meta = bundle.files.get(&key).copied().ok_or_else(not_found)?;
    Ok(Found {
        bundle,
        digest,
        key,
        mime,
        meta,
    })
}

/// A precompressed sibling (`.br`, then `.gz`) when the client accepts it
/// and the bundle has it, else the asset itself.
fn precompressed(found: &Found, headers: &HeaderMap) -> Served {
    let accepted = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    [("br", ".br"), ("gzip", ".gz")]
        .iter()
        .find_map(|(coding, suffix)| {
            let sibling = format!("{}{suffix}", found.key);
            let accepts = accepted
                .split(',')
                .any(|c| c.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(coding));
            found.bundle.files.get(&sibling).filter(|_| accepts).map(|m| Served {
                key: sibling.clone(),
                meta: *m,
                encoding: Some(*coding),
            })
        })
        .unwrap_or_else(|| Served {
            key: found.key.clone(),
            meta: found.meta,
            encoding: None,
        })
}

/// Type, caching, validator, encoding and (for documents) the CSP sandbox.
fn asset_headers(mime: &'static str, served: &Served, etag: &str, csp: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    match served.encoding {
        Some(coding) => headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding)),
        None => headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    };
    // SVG documents can run scripts too when opened directly.
    if (mime.starts_with("text/html") || mime == "image/svg+xml")
        && let Ok(value) = HeaderValue::from_str(csp)
    {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers
}

/// Status, first byte and length of the answer: the whole file, or the
/// one range asked for (uncompressed files only); `None` when it cannot be met.
fn byte_range(
    headers: &HeaderMap,
    served: &Served,
    response_headers: &mut HeaderMap,
) -> Option<(StatusCode, u64, u64)> {
    let total = served.meta.size;
    let range = served
        .encoding
        .is_none()
        .then(|| headers.get(header::RANGE).and_then(|v| v.to_str().ok()))
        .flatten();
    match range.map(|r| parse_range(r, total)) {
        None | Some(RangeAnswer::Ignore) => Some((StatusCode::OK, 0, total)),
        Some(RangeAnswer::Unsatisfiable) => None,
        Some(RangeAnswer::Part(start, end)) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
                response_headers.insert(header::CONTENT_RANGE, v);
            }
            Some((StatusCode::PARTIAL_CONTENT, start, end - start + 1))
        }
    }
}

/// 416 for a range outside a file of `total` bytes.
fn unsatisfiable(total: u64) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
        headers.insert(header::CONTENT_RANGE, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response()
}

/// The request path as a key below `ui/`, or `None` if it has a segment
/// that no verified path can have (`..`, `.`, empty, backslash, NUL,
/// absolute). Percent-decoding happened once in the router; what remains
/// (`%2e%2e` from `%252e%252e`) is a literal name that simply is not there.
fn clean_path(path: &str) -> Option<String> {
    if path.is_empty() {
        return Some(String::new());
    }
    if path.starts_with('/') || path.contains(['\\', '\0']) {
        return None;
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return None;
    }
    Some(trimmed.to_string())
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn mime_type(path: &str) -> Option<&'static str> {
    let name = last_segment(path);
    let (_, extension) = name.rsplit_once('.')?;
    let extension = extension.to_ascii_lowercase();
    MIME_TYPES.iter().find(|(e, _)| *e == extension).map(|(_, m)| *m)
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag))
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    /// Not a single byte range we serve: answer 200 with everything.
    Ignore,
    Unsatisfiable,
    /// Inclusive start and end.
    Part(u64, u64),
}

fn parse_range(value: &str, total: u64) -> RangeAnswer {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Ignore;
    };
    if spec.contains(',') {
        return RangeAnswer::Ignore;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeAnswer::Ignore;
    };
    let (start, end) = (start.trim(), end.trim());
    let parsed = match (start.is_empty(), end.is_empty()) {
        (true, true) => return RangeAnswer::Ignore,
        // Suffix: the last N bytes.
        (true, false) => match end.parse::<u64>() {
            Ok(0) => return RangeAnswer::Unsatisfiable,
            Ok(n) => (total.saturating_sub(n), total.saturating_sub(1)),
            Err(_) => return RangeAnswer::Ignore,
        },
        (false, true) => match start.parse::<u64>() {
            Ok(s) => (s, total.saturating_sub(1)),
            Err(_) => return RangeAnswer::Ignore,
        },
        (false, false) => match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(s), Ok(e)) if s <= e => (s, e.min(total.saturating_sub(1))),
            _ => return RangeAnswer::Ignore,
        },
    };
    if total == 0 || parsed.0 >= total {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Part(parsed.0, parsed.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b06_paths_that_cannot_name_a_verified_file() {
        for bad in [
            "../secret",
            "a/../../secret",
            "./index.html",
            "a//b.js",
            "/etc/passwd",
            "..\\secret",
            "a\0.js",
            "..",
        ] {
            assert_eq!(clean_path(bad), None, "{bad}");
        }
        assert_eq!(clean_path("assets/app.js").as_deref(), Some("assets/app.js"));
        assert_eq!(clean_path("settings/").as_deref(), Some("settings"));
        // Double-encoded dots arrive as a literal name: harmless, just absent.
        assert_eq!(clean_path("%2e%2e/secret").as_deref(), Some("%2e%2e/secret"));
    }

    /// U-03: every UI CSP carries a `sandbox` without `allow-same-origin`.
    #[test]
    fn u03_csp_always_sandboxes_ui_documents() {
        assert_eq!(with_sandbox(DEFAULT_UI_CSP).unwrap(), DEFAULT_UI_CSP);
        assert!(DEFAULT_UI_CSP.ends_with(UI_CSP_SANDBOX));
        assert_eq!(
            with_sandbox("default-src 'self';").unwrap(),
            format!("default-src 'self'; {UI_CSP_SANDBOX}")
        );
        assert_eq!(with_sandbox("").unwrap(), UI_CSP_SANDBOX);
        assert_eq!(
            with_sandbox("default-src 'none'; Sandbox allow-scripts").unwrap(),
            "default-src 'none'; Sandbox allow-scripts"
        );
        for bad in [
            "default-src 'self'; sandbox allow-scripts allow-same-origin",
            "sandbox allow-top-navigation-by-user-activation",
        ] {
            assert!(with_sandbox(bad).unwrap_err().contains("must not grant"), "{bad}");
        }
    }

    #[test]
    fn only_listed_types_have_a_mime_type() {
        assert_eq!(mime_type("index.html"), Some("text/html; charset=utf-8"));
        assert_eq!(mime_type("a/b/APP.JS"), Some("text/javascript; charset=utf-8"));
        assert_eq!(mime_type("x.wasm"), Some("application/wasm"));
        for refused in ["run.sh", "x.php", "noext", "archive.tar.zst", "page.xhtml"] {
            assert_eq!(mime_type(refused), None, "{refused}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAnswer::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeAnswer::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeAnswer::Part(90, 99));
        assert_eq!(parse_range("bytes=50-1000", 100), RangeAnswer::Part(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeAnswer::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAnswer::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeAnswer::Ignore);
        assert_eq!(parse_range("bytes=9-3", 100), RangeAnswer::Ignore);
    }
}
