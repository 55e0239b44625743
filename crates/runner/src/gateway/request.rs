//! The inbound request as the guest will see it: the path checked so that
//! no spelling reaches an endpoint it should not, the user's credentials
//! and the platform's own headers stripped, and the envelope the runner
//! gets.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::installs::CallTarget;
use super::users::UserClaims;
use crate::error::{ErrorCode, Failure};
use crate::host::ui_proxy::route::percent_decode;

/// The path after `/api/ext/{extension}` as the guest sees it (`/` plus
/// the rest), refused when a segment is `.` or `..` (also percent-encoded,
/// in any case), or holds an encoded `/` or `\`, a raw `\`, a control
/// character, a malformed escape or an escape that is not UTF-8: such a path could name one endpoint
/// to the gateway and another to whatever resolves it next.
///
/// # Errors
/// [`ErrorCode::EndpointNotFound`] naming what is wrong.
pub fn guest_path(rest: &str) -> Result<String, Failure> {
    let refuse = |why: &str| Failure::new(ErrorCode::EndpointNotFound, format!("no endpoint for this path: {why}"));
    for segment in rest.split('/') {
        let decoded = percent_decode(segment).ok_or_else(|| refuse("a malformed percent escape or not UTF-8"))?;
        if decoded == "." || decoded == ".." {
            return Err(refuse("`.` and `..` segments are not allowed"));
        }
        if decoded.contains(['/', '\\']) || segment.contains('\\') {
            return Err(refuse("encoded slashes and backslashes are not allowed"));
        }
        if decoded.chars().any(char::is_control) {
            return Err(refuse("control characters are not allowed"));
        }
    }
    Ok(format!("/{rest}"))
}

/// Inbound headers the guest never sees: the user's credentials (the
/// gateway consumed them), hop-by-hop headers, and the names the platform
/// sets itself (a caller must not pose as the gateway to the guest).
fn is_stripped(name: &str) -> bool {
    matches!(
        name,
        "authorization"
            | "proxy-authorization"
            | "cookie"
            | "host"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "x-request-id"
            | "traceparent"
            | "tracestate"
            | "forwarded"
    ) || name.starts_with("x-alga-")
        || name.starts_with("x-ext-")
        || name.starts_with("x-runner-")
        || name.starts_with("x-forwarded-")
        || name.starts_with("proxy-")
}

/// The headers passed to the guest, then the platform's own:
/// `x-request-id`, `x-alga-tenant`, `x-alga-extension`.
pub fn guest_headers(
    headers: &http::HeaderMap,
    request_id: &str,
    tenant: &str,
    extension: &str,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| !is_stripped(name.as_str()))
        .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str().to_string(), v.to_string())))
        .collect();
    out.push(("x-request-id".into(), request_id.into()));
    out.push(("x-alga-tenant".into(), tenant.into()));
    out.push(("x-alga-extension".into(), extension.into()));
    out
}

/// The query as decoded pairs, repeated keys and their order kept.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// What started a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger<'a> {
    /// A signed-in user's request.
    Http,
    /// A firing of the install's schedule.
    Schedule { schedule_id: &'a str },
}

/// What one envelope is built from.
pub struct EnvelopeParts<'a> {
    pub request_id: &'a str,
    pub tenant: &'a str,
    pub extension: &'a str,
    /// `None` for a scheduled firing: no user is signed in.
    pub user: Option<&'a UserClaims>,
    pub trigger: Trigger<'a>,
    pub target: &'a CallTarget,
    /// The handler component, or `ui-proxy:<path>`.
    pub endpoint: String,
    pub method: &'a str,
    pub path: &'a str,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// `None` for a request without a body (`GET`, `HEAD`, nothing sent).
    pub body: Option<&'a [u8]>,
    pub timeout_ms: u64,
    /// The install's sealed secrets, parsed once per install answer
    /// ([`super::installs::Resolved`]).
    pub sealed_secrets: Option<&'a Value>,
}

/// The execute envelope as the gateway writes it (compat §2): serialized
/// straight from borrowed fields, never built as a `serde_json::Value`.
#[derive(Serialize)]
struct Wire<'a> {
    context: WireContext<'a>,
    endpoint: &'a str,
    http: WireHttp<'a>,
    limits: WireLimits,
    providers: &'a [String],
    egress: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<WireUser<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_envelope: Option<&'a Value>,
}

#[derive(Serialize)]
struct WireContext<'a> {
    request_id: &'a str,
    tenant_id: &'a str,
    extension_id: &'a str,
    install_id: &'a str,
    version_id: &'a str,
    content_hash: &'a str,
    config: &'a BTreeMap<String, String>,
    /// `http` or `schedule` (compat §2).
    trigger: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule_id: Option<&'a str>,
}

#[derive(Serialize)]
struct WireHttp<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a [(String, String)],
    headers: &'a [(String, String)],
    #[serde(skip_serializing_if = "Option::is_none")]
    body_b64: Option<String>,
}

#[derive(Serialize)]
struct WireLimits {
    timeout_ms: u64,
}

#[derive(Serialize)]
struct WireUser<'a> {
    user_id: &'a str,
    user_email: &'a str,
    user_name: &'a str,
    user_type: &'a str,
    client_name: &'a str,
    client_id: Option<&'a str>,
}

fn text(field: &Option<String>) -> &str {
    field.as_deref().unwrap_or_default()
}

/// The execute envelope (compat §2): the install's ids, config, what
/// triggered it, capabilities as `providers`, egress, sealed secrets and
/// the user (none for a scheduled firing).
///
/// # Errors
/// `internal_error` when the envelope cannot be encoded.
pub fn envelope(parts: &EnvelopeParts<'_>) -> Result<Vec<u8>, Failure> {
    let target = parts.target;
    let (trigger, schedule_id) = match parts.trigger {
        Trigger::Http => ("http", None),
        Trigger::Schedule { schedule_id } => ("schedule", Some(schedule_id)),
    };
    let wire = Wire {
        context: WireContext {
            request_id: parts.request_id,
            tenant_id: parts.tenant,
            extension_id: parts.extension,
            install_id: &target.install_id,
            version_id: &target.version_id,
            content_hash: &target.content_hash,
            config: &target.config,
            trigger,
            schedule_id,
        },
        endpoint: &parts.endpoint,
        http: WireHttp {
            method: parts.method,
            path: parts.path,
            query: &parts.query,
            headers: &parts.headers,
            body_b64: parts.body.map(|body| BASE64.encode(body)),
        },
        limits: WireLimits {
            timeout_ms: parts.timeout_ms,
        },
        providers: &target.capabilities,
        egress: &target.egress,
        user: parts.user.map(|user| WireUser {
            user_id: text(&user.sub),
            user_email: text(&user.email),
            user_name: text(&user.name),
            user_type: text(&user.user_type),
            client_name: text(&user.client_name),
            client_id: user.client_id.as_deref(),
        }),
        secret_envelope: parts.sealed_secrets,
    };
    serde_json::to_vec(&wire).map_err(|e| Failure::new(ErrorCode::Internal, format!("encoding the envelope: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_encoded_slashes_never_reach_an_endpoint() {
        assert_eq!(guest_path("visits").unwrap(), "/visits");
        assert_eq!(guest_path("a/b%20c").unwrap(), "/a/b%20c");
        assert_eq!(guest_path("").unwrap(), "/");
        for bad in [
            "..", "a/../b", "%2e%2e/x", "%2E%2e", ".%2e", "a/./b", "a%2fb", "a%2Fb", "a%5cb", "a\\b", "a%00b", "a%zz",
            "a%2",
        ] {
            let err = guest_path(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::EndpointNotFound, "{bad}");
        }
    }

    #[test]
    fn credentials_and_platform_headers_are_stripped() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer user"),
            ("cookie", "session=1"),
            ("x-alga-tenant", "someone-else"),
            ("x-ext-grant", "forged"),
            ("x-runner-service-token", "guess"),
            ("x-forwarded-for", "1.2.3.4"),
            ("accept", "application/json"),
            ("x-custom", "kept"),
        ] {
            headers.insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_static(value),
            );
        }
        let out = guest_headers(&headers, "req-1", "t1", "com.example.hello");
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "accept",
                "x-custom",
                "x-request-id",
                "x-alga-tenant",
                "x-alga-extension"
            ]
        );
        assert!(out.contains(&("x-alga-tenant".into(), "t1".into())));
    }

    #[test]
    fn repeated_query_keys_keep_their_order() {
        assert_eq!(
            query_pairs(Some("b=2&a=1&b=3&c=%20x")),
            [("b", "2"), ("a", "1"), ("b", "3"), ("c", " x")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .to_vec()
        );
        assert!(query_pairs(None).is_empty());
    }
}
