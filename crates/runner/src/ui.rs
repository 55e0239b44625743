//! Extension UI assets: `GET`/`HEAD /ext-ui/{extensionId}/{content_hash}/{*path}`.
//!
//! Files come only from the verified bundle's `ui/` file list (recorded with
//! each file's SHA-256 at unpack), never from a path joined with user input:
//! a request path is only ever a *key* into that list (B-06). Responses are
//! immutable by content hash (`Cache-Control: immutable`, a strong `ETag`
//! from the file's SHA-256, `If-None-Match` → 304), byte ranges are served
//! (206/416), precompressed `.br`/`.gz` siblings are used when the client
//! accepts them, HTML gets a Content-Security-Policy, and every response
//! says `nosniff`. Errors are JSON and never cached.
//!
//! Optional install check: with `RUNNER_UI_VALIDATE_URL`, the runner asks
//! that service whether (tenant, extension, hash) is installed; without it
//! the bundle's manifest `name` must equal the URL's extension id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use ext_bundle::Digest;

use crate::engine::Failure;
use crate::error::{ApiError, ErrorCode};
use crate::server::AppState;
use crate::store::{BundleRef, LoadedBundle};

/// Default Content-Security-Policy of UI HTML (`EXT_UI_CONTENT_SECURITY_POLICY`
/// replaces it): only the bundle's own scripts, styles and images; no
/// plugins, no `<base>`, no form posts.
pub const DEFAULT_UI_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'none'";

/// Largest UI file served (`EXT_STATIC_MAX_FILE_BYTES`), else 413.
pub const DEFAULT_STATIC_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// UI files up to this size are kept in memory after their first verified
/// read, so hot assets are not re-read and re-hashed per request.
pub const MEMORY_CACHE_FILE_BYTES: u64 = 1024 * 1024;

/// Total bytes of UI files kept in memory across all bundles; beyond it
/// files are read (and verified) from the disk cache per request.
pub const MEMORY_CACHE_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

/// How long an install check's answer is reused.
pub const VALIDATION_TTL: Duration = Duration::from_secs(30);

/// Time limit of one install-check call.
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(3);

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

/// UI settings (from `Config`).
#[derive(Clone, Debug)]
pub struct UiConfig {
    pub csp: String,
    pub max_file_bytes: u64,
    /// `RUNNER_UI_VALIDATE_URL`.
    pub validate_url: Option<String>,
}

/// (bundle, path) of a UI file kept in memory.
type FileKey = (Digest, String);

/// (tenant, extension, bundle) of an install check.
type InstallKey = (String, String, Digest);

/// Process-wide UI state: verified small files in memory and install-check
/// answers.
#[derive(Default)]
pub struct UiState {
    /// Verified files by (bundle, path), and their total size.
    files: Mutex<(HashMap<FileKey, Bytes>, u64)>,
    validations: Mutex<HashMap<InstallKey, (bool, Instant)>>,
    client: std::sync::OnceLock<reqwest::Client>,
}

#[derive(serde::Deserialize, Default)]
pub struct UiQuery {
    #[serde(default)]
    tenant: Option<String>,
}

/// `/ext-ui/{ext}/{hash}/` (the index).
pub async fn index(
    State(state): State<Arc<AppState>>,
    Path((extension, hash)): Path<(String, String)>,
    Query(query): Query<UiQuery>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let response = serve_asset(&state, &extension, &hash, "", query, &method, &headers).await;
    count(&state, &response);
    response
}

fn count(state: &AppState, response: &Response) {
    state.runner.metrics().inc(
        "ext_runner_ui_requests_total",
        "UI asset requests by response status.",
        &[("status", response.status().as_str())],
        1.0,
    );
}

/// `/ext-ui/{ext}/{hash}/{*path}`.
pub async fn asset(
    State(state): State<Arc<AppState>>,
    Path((extension, hash, path)): Path<(String, String, String)>,
    Query(query): Query<UiQuery>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let response = serve_asset(&state, &extension, &hash, &path, query, &method, &headers).await;
    count(&state, &response);
    response
}

#[allow(clippy::too_many_arguments)]
async fn serve_asset(
    state: &AppState,
    extension: &str,
    hash: &str,
    path: &str,
    query: UiQuery,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let fail = |code: ErrorCode, message: String| ApiError::new(code, message, request_id.clone()).into_response();
    // The hash must be spelled `sha256:<hex64>` (a bare hex is refused here,
    // unlike the envelope, so one asset has exactly one URL).
    let digest = match hash.strip_prefix("sha256:").map(|_| Digest::parse(hash)) {
        Some(Ok(digest)) => digest,
        _ => {
            return fail(
                ErrorCode::InvalidEnvelope,
                "content hash must be sha256:<64 lowercase hex digits>".into(),
            );
        }
    };
    let not_found = || fail(ErrorCode::NotFound, "no such asset".into());
    let Some(requested) = clean_path(path) else {
        return not_found();
    };
    let runner = &state.runner;
    let ui = &runner.config().ui;
    let tenant = query.tenant.unwrap_or_default();
    if let Some(url) = &ui.validate_url {
        match validate(&state.ui, url, &tenant, extension, &digest).await {
            Ok(true) => {}
            Ok(false) => return not_found(),
            Err(why) => {
                tracing::warn!(%digest, extension, reason = %why, "UI install check unavailable");
                return fail(
                    ErrorCode::BundleUnavailable,
                    "install check unavailable; retry later".into(),
                );
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
            return match code {
                ErrorCode::BundleNotFound => not_found(),
                _ => fail(code, message),
            };
        }
    };
    if ui.validate_url.is_none() && bundle.manifest.name != extension {
        // B-06: a hash belonging to another extension.
        return not_found();
    }
    // Extension-less paths are client routes of a single-page app.
    let requested = if requested.is_empty() || !last_segment(&requested).contains('.') {
        "index.html".to_string()
    } else {
        requested
    };
    let Some(mime) = mime_type(&requested) else {
        return not_found();
    };
    let key = format!("ui/{requested}");
    let Some(meta) = bundle.files.get(&key).copied() else {
        return not_found();
    };

    // Precompressed siblings, when accepted and present.
    let accepted = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (served_key, served_meta, encoding) = [("br", ".br"), ("gzip", ".gz")]
        .iter()
        .find_map(|(coding, suffix)| {
            let sibling = format!("{key}{suffix}");
            let accepts = accepted
                .split(',')
                .any(|c| c.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(coding));
            bundle
                .files
                .get(&sibling)
                .filter(|_| accepts)
                .map(|m| (sibling.clone(), *m, Some(*coding)))
        })
        .unwrap_or((key.clone(), meta, None));
    if served_meta.size > ui.max_file_bytes {
        return fail(
            ErrorCode::PayloadTooLarge,
            format!("asset is larger than the {} byte limit", ui.max_file_bytes),
        );
    }

    let etag = format!("\"{}\"", served_meta.sha256.hex());
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    response_headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    response_headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response_headers.insert(header::ETAG, value);
    }
    if let Some(coding) = encoding {
        response_headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
    } else {
        response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if mime.starts_with("text/html")
        && let Ok(value) = HeaderValue::from_str(&ui.csp)
    {
        response_headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    if if_none_match(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, response_headers).into_response();
    }

    let bytes = match read_file(&state.ui, &bundle, &served_key, served_meta.size).await {
        Ok(bytes) => bytes,
        Err(Failure { code, message }) => {
            if code == ErrorCode::BundleIntegrity {
                // F-02: drop the entry; the next request fetches it again.
                runner.bundles().evict(&digest);
            }
            return fail(code, message);
        }
    };
    let total = bytes.len() as u64;
    let range = encoding
        .is_none()
        .then(|| headers.get(header::RANGE).and_then(|v| v.to_str().ok()))
        .flatten();
    let (status, body) = match range.map(|r| parse_range(r, total)) {
        None | Some(RangeAnswer::Ignore) => (StatusCode::OK, bytes),
        Some(RangeAnswer::Unsatisfiable) => {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return (StatusCode::RANGE_NOT_SATISFIABLE, h).into_response();
        }
        Some(RangeAnswer::Part(start, end)) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
                response_headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, bytes.slice(start as usize..=end as usize))
        }
    };
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if method == Method::HEAD {
        return (status, response_headers).into_response();
    }
    (status, response_headers, Body::from(body)).into_response()
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

/// A verified file's bytes: from memory, or read and checked against its
/// recorded SHA-256 (small files are then kept in memory).
async fn read_file(ui: &UiState, bundle: &Arc<LoadedBundle>, key: &str, size: u64) -> Result<Bytes, Failure> {
    let cache_key = (bundle.digest, key.to_string());
    if let Some(bytes) = ui.files.lock().unwrap_or_else(|e| e.into_inner()).0.get(&cache_key) {
        return Ok(bytes.clone());
    }
    let reader = bundle.clone();
    let path = key.to_string();
    let bytes = tokio::task::spawn_blocking(move || reader.read_verified(&path))
        .await
        .map_err(|e| Failure::new(ErrorCode::Internal, format!("read task failed: {e}")))??;
    let bytes = Bytes::from(bytes);
    if size <= MEMORY_CACHE_FILE_BYTES {
        let mut files = ui.files.lock().unwrap_or_else(|e| e.into_inner());
        let (map, total) = &mut *files;
        if *total + size <= MEMORY_CACHE_TOTAL_BYTES && !map.contains_key(&cache_key) {
            *total += size;
            map.insert(cache_key, bytes.clone());
        }
    }
    Ok(bytes)
}

/// Ask `RUNNER_UI_VALIDATE_URL` whether the bundle is installed: 2xx yes,
/// 403/404 no (both cached for [`VALIDATION_TTL`]); anything else is an
/// error and not cached, so a flapping service does not lock users out.
async fn validate(ui: &UiState, url: &str, tenant: &str, extension: &str, digest: &Digest) -> Result<bool, String> {
    let key = (tenant.to_string(), extension.to_string(), *digest);
    if let Some((answer, at)) = ui.validations.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
        && at.elapsed() < VALIDATION_TTL
    {
        return Ok(*answer);
    }
    let client = ui.client.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(VALIDATION_TIMEOUT)
            .no_proxy()
            .build()
            .unwrap_or_default()
    });
    let response = client
        .get(url)
        .query(&[
            ("tenant", tenant),
            ("extension", extension),
            ("content_hash", &digest.to_string()),
        ])
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let answer = match response.status() {
        s if s.is_success() => true,
        StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => false,
        other => return Err(format!("install check answered {other}")),
    };
    ui.validations
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, (answer, Instant::now()));
    Ok(answer)
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
