//! The execute envelope (seed §Interfaces 1, compat §2): parsing, validation
//! with errors that name the field, and the mapping to the guest's request.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ext_bundle::Digest;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ErrorCode;
use crate::error::Failure;
use crate::host::UserInfo;
use crate::limits::{
    MAX_HEADER_BYTES, MAX_HEADER_COUNT, MAX_HEADERS_TOTAL_BYTES, MAX_ID_BYTES, MAX_QUERY_ENTRIES,
    MAX_USER_ADDITIONAL_FIELDS,
};

/// A W3C trace context `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`, ids
/// not all zero.
pub fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

/// A validated execute request.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub request_id: Option<String>,
    pub tenant_id: String,
    pub extension_id: String,
    pub install_id: Option<String>,
    pub version_id: Option<String>,
    pub content_hash: Digest,
    /// Handler path given by the gateway (`dist/handlers/x`), if any.
    pub endpoint: Option<String>,
    pub method: String,
    pub path: String,
    /// Query pairs in the caller's order, repeated keys kept.
    pub query: Vec<(String, String)>,
    /// Lower-cased names, in the caller's order.
    pub headers: Vec<(String, String)>,
    /// `None` when `body_b64` was absent, `Some(vec![])` when it was "".
    pub body: Option<Vec<u8>>,
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub fuel: Option<u64>,
    pub user: Option<UserInfo>,
    /// The install's capability grants (`providers`), canonical; `None`
    /// when absent (the manifest's declaration then stands).
    pub providers: Option<Vec<String>>,
    /// The install's egress list (`egress`), validated patterns; `None`
    /// when absent (manifest ∩ operator then stands). It can only narrow.
    pub egress: Option<Vec<String>>,
    /// W3C `traceparent` of the inbound HTTP request (not from the JSON),
    /// continued on the guest's `http.fetch` calls.
    pub traceparent: Option<String>,
    /// The caller's `x-idempotency-key` (an HTTP header, not in the JSON),
    /// checked ([`crate::idempotency::check_key`]).
    pub idempotency_key: Option<String>,
    /// Sealed secrets for `cap:secrets.get` (opened only on use).
    pub secret_envelope: Option<std::sync::Arc<crate::host::secrets::SecretEnvelope>>,
}

#[derive(Deserialize)]
struct RawEnvelope {
    context: RawContext,
    #[serde(default)]
    endpoint: Option<String>,
    http: RawHttp,
    #[serde(default)]
    limits: Option<RawLimits>,
    #[serde(default)]
    user: Option<RawUser>,
    #[serde(default)]
    providers: Option<Vec<String>>,
    #[serde(default)]
    egress: Option<Vec<String>>,
    #[serde(default)]
    secret_envelope: Option<crate::host::secrets::SecretEnvelope>,
}

#[derive(Deserialize)]
struct RawContext {
    #[serde(default)]
    request_id: Option<String>,
    tenant_id: String,
    extension_id: String,
    #[serde(default)]
    install_id: Option<String>,
    #[serde(default)]
    version_id: Option<String>,
    content_hash: String,
}

#[derive(Deserialize)]
struct RawHttp {
    method: String,
    path: String,
    #[serde(default)]
    query: Option<Value>,
    #[serde(default)]
    headers: Option<Value>,
    #[serde(default)]
    body_b64: Option<String>,
}

#[derive(Deserialize)]
struct RawLimits {
    #[serde(default, deserialize_with = "whole_number")]
    timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "whole_number")]
    memory_mb: Option<u64>,
    #[serde(default, deserialize_with = "whole_number")]
    fuel: Option<u64>,
}

/// A non-negative whole number, also when a JSON encoder wrote it with a
/// fraction of zero (`3000.0`, as JavaScript numbers often arrive).
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    match Option::<serde_json::Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(n) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => Ok(Some(f as u64)),
            _ => Err(D::Error::custom(format!("`{n}` is not a non-negative whole number"))),
        },
    }
}

/// `context.tenant_id` and `context.extension_id`: present, short, printable.
fn check_ids(context: &RawContext) -> Result<(), Failure> {
    for (field, value) in [
        ("context.tenant_id", &context.tenant_id),
        ("context.extension_id", &context.extension_id),
    ] {
        if value.trim().is_empty() {
            return Err(invalid(field, "must not be empty"));
        }
        if value.len() > MAX_ID_BYTES || value.chars().any(char::is_control) {
            return Err(invalid(
                field,
                format!("must be at most {MAX_ID_BYTES} bytes of printable characters"),
            ));
        }
    }
    Ok(())
}

/// `http.method`, upper-cased: letters and `-`, at most 32.
fn check_method(raw: &str) -> Result<String, Failure> {
    let method = raw.trim().to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') || method.len() > 32 {
        return Err(invalid("http.method", format!("`{raw}` is not an HTTP method")));
    }
    Ok(method)
}

/// `http.body_b64`, refused before decoding when it cannot fit the limit.
fn decode_body(text: &str, max_body_bytes: u64) -> Result<Vec<u8>, Failure> {
    if (text.len() as u64 / 4) * 3 > max_body_bytes + 2 {
        return Err(too_large(max_body_bytes));
    }
    let decoded = BASE64
        .decode(text.trim())
        .map_err(|e| invalid("http.body_b64", format!("not valid base64: {e}")))?;
    if decoded.len() as u64 > max_body_bytes {
        return Err(too_large(max_body_bytes));
    }
    Ok(decoded)
}

#[derive(Deserialize)]
struct RawUser {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    user_email: Option<String>,
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default)]
    user_type: Option<String>,
    #[serde(default, alias = "company_name")]
    client_name: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    additional_fields: Option<BTreeMap<String, Value>>,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Failure {
    Failure::new(
        ErrorCode::InvalidEnvelope,
        format!("invalid envelope: field `{field}`: {why}"),
    )
}

impl Envelope {
    /// Parse and validate an envelope; `max_body_bytes` bounds the decoded body.
    ///
    /// # Errors
    /// `invalid_envelope` (400) naming the field, `payload_too_large` (413)
    /// for the body, `headers_too_large` (431) for the header list.
    pub fn parse(bytes: &[u8], max_body_bytes: u64) -> Result<Envelope, Failure> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: RawEnvelope = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                Failure::new(ErrorCode::InvalidEnvelope, format!("invalid envelope: {inner}"))
            } else {
                invalid(&path, inner)
            }
        })?;
        let RawEnvelope {
            context,
            endpoint,
            http,
            limits,
            user,
            providers,
            egress,
            secret_envelope,
        } = raw;

        check_ids(&context)?;
        let content_hash =
            Digest::parse(context.content_hash.trim()).map_err(|e| invalid("context.content_hash", e))?;
        let method = check_method(&http.method)?;
        if !http.path.starts_with('/') || http.path.chars().any(char::is_control) || http.path.len() > 8192 {
            return Err(invalid(
                "http.path",
                "must start with '/' and contain no control characters",
            ));
        }
        let query = match http.query {
            None | Some(Value::Null) => Vec::new(),
            Some(value) => parse_query(value)?,
        };
        let headers = match http.headers {
            None | Some(Value::Null) => Vec::new(),
            Some(value) => parse_headers(value)?,
        };
        check_header_limits(&headers)?;
        let body = http
            .body_b64
            .map(|text| decode_body(&text, max_body_bytes))
            .transpose()?;
        let providers = providers
            .map(|list| {
                crate::host::grants::canonical_providers(&list).map_err(|(index, why)| {
                    Failure::new(
                        ErrorCode::UnknownCapability,
                        format!("invalid envelope: field `providers[{index}]`: {why}"),
                    )
                })
            })
            .transpose()?;
        let egress = egress
            .map(|list| {
                crate::host::http::canonical_egress(&list)
                    .map_err(|(index, why)| invalid(&format!("egress[{index}]"), why))
            })
            .transpose()?;
        if let Some(fields) = user.as_ref().and_then(|u| u.additional_fields.as_ref())
            && fields.len() > MAX_USER_ADDITIONAL_FIELDS
        {
            return Err(invalid(
                "user.additional_fields",
                format!("more than {MAX_USER_ADDITIONAL_FIELDS} entries"),
            ));
        }
        let endpoint = endpoint.map(|e| e.trim().to_string()).filter(|e| !e.is_empty());
        let (timeout_ms, memory_mb, fuel) = match limits {
            Some(l) => (l.timeout_ms, l.memory_mb, l.fuel),
            None => (None, None, None),
        };
        Ok(Envelope {
            request_id: context.request_id,
            tenant_id: context.tenant_id,
            extension_id: context.extension_id,
            install_id: context.install_id,
            version_id: context.version_id,
            content_hash,
            endpoint,
            method,
            path: http.path,
            query,
            headers,
            body,
            timeout_ms,
            memory_mb,
            fuel,
            user: user.map(user_info),
            providers,
            egress,
            secret_envelope: secret_envelope.map(std::sync::Arc::new),
            traceparent: None,
            idempotency_key: None,
        })
    }

    /// The URL the guest sees: path, then `?` and the query in order.
    pub fn guest_url(&self) -> String {
        if self.query.is_empty() {
            return self.path.clone();
        }
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.query {
            serializer.append_pair(k, v);
        }
        let separator = if self.path.contains('?') { '&' } else { '?' };
        format!("{}{separator}{}", self.path, serializer.finish())
    }
}

fn too_large(limit: u64) -> Failure {
    Failure::new(
        ErrorCode::PayloadTooLarge,
        format!("request body exceeds the limit of {limit} bytes"),
    )
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `{"k": "v"}`, `{"k": ["v1", "v2"]}` or `[["k", "v"], ...]`, at most
/// [`MAX_QUERY_ENTRIES`] pairs (refused as soon as one more is seen).
fn parse_query(value: Value) -> Result<Vec<(String, String)>, Failure> {
    pairs(value, "http.query", false, MAX_QUERY_ENTRIES)
}

/// Same shapes as the query, plus `[{"name": .., "value": ..}]`.
fn parse_headers(value: Value) -> Result<Vec<(String, String)>, Failure> {
    // The count cap is a 431 (check_header_limits), not a 400 here.
    let pairs = pairs(value, "http.headers", true, usize::MAX)?;
    for (name, value) in &pairs {
        if !is_header_name(name) {
            return Err(invalid("http.headers", format!("`{name}` is not a valid header name")));
        }
        if !is_header_value(value) {
            return Err(invalid(
                "http.headers",
                format!("value of `{name}` contains CR, LF or NUL"),
            ));
        }
    }
    Ok(pairs)
}

fn pairs(value: Value, field: &str, lowercase: bool, max: usize) -> Result<Vec<(String, String)>, Failure> {
    let key = |k: String| if lowercase { k.to_ascii_lowercase() } else { k };
    let mut out = Vec::new();
    let push = |out: &mut Vec<(String, String)>, pair: (String, String)| {
        if out.len() >= max {
            return Err(invalid(field, format!("more than {max} entries")));
        }
        out.push(pair);
        Ok(())
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Array(items) => {
                        for item in items {
                            let text =
                                scalar(&item).ok_or_else(|| invalid(&format!("{field}.{k}"), "must be a string"))?;
                            push(&mut out, (key(k.clone()), text))?;
                        }
                    }
                    Value::Null => {}
                    other => {
                        let text =
                            scalar(&other).ok_or_else(|| invalid(&format!("{field}.{k}"), "must be a string"))?;
                        push(&mut out, (key(k), text))?;
                    }
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                let pair = match &item {
                    Value::Array(kv) if kv.len() == 2 => scalar(&kv[0]).zip(scalar(&kv[1])),
                    Value::Object(o) => o.get("name").and_then(scalar).zip(o.get("value").and_then(scalar)),
                    _ => None,
                };
                let (k, v) =
                    pair.ok_or_else(|| invalid(&format!("{field}[{i}]"), "must be [name, value] or {name, value}"))?;
                push(&mut out, (key(k), v))?;
            }
        }
        _ => return Err(invalid(field, "must be an object or a list of pairs")),
    }
    Ok(out)
}

/// An HTTP field name: a non-empty RFC 9110 token.
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A field value that cannot split or smuggle headers: no CR, LF or NUL.
pub(crate) fn is_header_value(value: &str) -> bool {
    !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

fn check_header_limits(headers: &[(String, String)]) -> Result<(), Failure> {
    let too_large = |why: String| Failure::new(ErrorCode::HeadersTooLarge, why);
    if headers.len() > MAX_HEADER_COUNT {
        return Err(too_large(format!(
            "more than {MAX_HEADER_COUNT} headers in http.headers"
        )));
    }
    let mut total = 0;
    for (name, value) in headers {
        let size = name.len() + value.len();
        if size > MAX_HEADER_BYTES {
            return Err(too_large(format!("header `{name}` exceeds {MAX_HEADER_BYTES} bytes")));
        }
        total += size;
    }
    if total > MAX_HEADERS_TOTAL_BYTES {
        return Err(too_large(format!(
            "http.headers exceed {MAX_HEADERS_TOTAL_BYTES} bytes in total"
        )));
    }
    Ok(())
}

fn user_info(raw: RawUser) -> UserInfo {
    let mut additional_fields: Vec<(String, String)> = raw
        .additional_fields
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let text = scalar(&v).unwrap_or_else(|| v.to_string());
            (k, text)
        })
        .collect();
    additional_fields.sort();
    UserInfo {
        user_id: raw.user_id.unwrap_or_default(),
        user_email: raw.user_email.unwrap_or_default(),
        user_name: raw.user_name.unwrap_or_default(),
        user_type: raw.user_type.unwrap_or_default(),
        client_name: raw.client_name.unwrap_or_default(),
        client_id: raw.client_id,
        additional_fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(json: Value) -> Result<Envelope, Failure> {
        Envelope::parse(json.to_string().as_bytes(), 1024)
    }

    fn base() -> Value {
        serde_json::json!({
            "context": {"tenant_id": "t1", "extension_id": "com.example.x", "content_hash": format!("sha256:{HASH}")},
            "http": {"method": "get", "path": "/hello"}
        })
    }

    #[test]
    fn accepts_the_seed_example_and_compat_fields() {
        let env = parse(serde_json::json!({
            "context": {
                "request_id": "3d2c3f27", "tenant_id": "tenant-123", "extension_id": "com.example.sales",
                "version_id": "ver_abc123", "content_hash": HASH, "install_id": "i1",
                "config": {"a": "b"}, "trigger": "http", "schedule_id": null
            },
            "endpoint": "dist/handlers/http/sync",
            "http": {
                "method": "POST", "path": "/agreements/sync", "url": "/agreements/sync?force=true",
                "query": {"force": "true", "tag": ["a", "b"]},
                "headers": {"X-Request-Id": "3d2c3f27", "content-type": "application/json"},
                "body_b64": "eyAiZm9vIjogImJhciIgfQ=="
            },
            "limits": {"timeout_ms": 5000, "memory_mb": 64, "fuel": 1000},
            "providers": ["cap:storage.kv"],
            "secret_envelope": {"ciphertext_b64": "e30="},
            "user": {"user_id": "u1", "company_name": "Acme", "additional_fields": {"z": "1", "a": 2}},
            "unknown_top_level": true
        }))
        .unwrap();
        assert_eq!(env.content_hash.hex(), HASH);
        assert_eq!(env.method, "POST");
        assert_eq!(env.guest_url(), "/agreements/sync?force=true&tag=a&tag=b");
        assert_eq!(env.headers[0], ("x-request-id".to_string(), "3d2c3f27".to_string()));
        assert_eq!(env.body.as_deref(), Some(&b"{ \"foo\": \"bar\" }"[..]));
        assert_eq!(env.endpoint.as_deref(), Some("dist/handlers/http/sync"));
        assert_eq!(
            (env.timeout_ms, env.memory_mb, env.fuel),
            (Some(5000), Some(64), Some(1000))
        );
        let user = env.user.unwrap();
        assert_eq!(user.client_name, "Acme");
        assert_eq!(
            user.additional_fields,
            vec![("a".into(), "2".into()), ("z".into(), "1".into())]
        );
    }

    #[test]
    fn body_absent_is_none_and_empty_is_some() {
        assert_eq!(parse(base()).unwrap().body, None);
        let mut v = base();
        v["http"]["body_b64"] = "".into();
        assert_eq!(parse(v).unwrap().body, Some(vec![]));
    }

    #[test]
    fn malformed_envelopes_name_the_field() {
        type Mutation = fn(&mut Value);
        let cases: Vec<(Mutation, &str)> = vec![
            (
                |v| drop(v["context"].as_object_mut().unwrap().remove("tenant_id")),
                "missing field `tenant_id`",
            ),
            (
                |v| v["context"]["tenant_id"] = "".into(),
                "field `context.tenant_id`: must not be empty",
            ),
            (|v| v["context"]["tenant_id"] = 5.into(), "field `context.tenant_id`"),
            (
                |v| v["context"]["content_hash"] = "sha256:xyz".into(),
                "field `context.content_hash`",
            ),
            (|v| v["http"]["method"] = "GET /x".into(), "field `http.method`"),
            (|v| v["http"]["path"] = "nope".into(), "field `http.path`"),
            (
                |v| v["http"]["body_b64"] = "!!!".into(),
                "field `http.body_b64`: not valid base64",
            ),
            (
                |v| v["http"]["headers"] = serde_json::json!({"bad name": "x"}),
                "field `http.headers`",
            ),
            (
                |v| v["http"]["headers"] = serde_json::json!({"x": "a\r\nb"}),
                "contains CR, LF or NUL",
            ),
            (|v| v["http"]["query"] = 5.into(), "field `http.query`"),
            (
                |v| v["limits"] = serde_json::json!({"timeout_ms": "soon"}),
                "field `limits.timeout_ms`",
            ),
        ];
        for (mutate, needle) in cases {
            let mut v = base();
            mutate(&mut v);
            let err = parse(v).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidEnvelope);
            assert!(err.message.contains(needle), "{needle:?} not in {:?}", err.message);
        }
        let err = Envelope::parse(b"{not json", 10).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidEnvelope);
    }

    #[test]
    fn body_and_header_limits() {
        let mut v = base();
        v["http"]["body_b64"] = BASE64.encode(vec![0u8; 1025]).into();
        assert_eq!(parse(v).unwrap_err().code, ErrorCode::PayloadTooLarge);
        let mut v = base();
        v["http"]["body_b64"] = BASE64.encode(vec![0u8; 1024]).into();
        assert!(parse(v).is_ok());

        let mut v = base();
        let many: serde_json::Map<String, Value> =
            (0..=MAX_HEADER_COUNT).map(|i| (format!("x-{i}"), "v".into())).collect();
        v["http"]["headers"] = Value::Object(many);
        assert_eq!(parse(v).unwrap_err().code, ErrorCode::HeadersTooLarge);
        let mut v = base();
        v["http"]["headers"] = serde_json::json!({"x-big": "a".repeat(MAX_HEADER_BYTES)});
        assert_eq!(parse(v).unwrap_err().code, ErrorCode::HeadersTooLarge);
    }

    /// Entry caps of `http.query` and `user.additional_fields` (issue 10,
    /// the envelope's small limits): at the cap accepted, one more → 400
    /// naming the field.
    #[test]
    fn query_and_additional_fields_have_entry_caps() {
        let query = |n: usize| Value::Array((0..n).map(|i| serde_json::json!([format!("k{i}"), "v"])).collect());
        let mut v = base();
        v["http"]["query"] = query(MAX_QUERY_ENTRIES);
        assert_eq!(parse(v).unwrap().query.len(), MAX_QUERY_ENTRIES);
        // Repeated keys count once per value.
        for over in [
            query(MAX_QUERY_ENTRIES + 1),
            serde_json::json!({"tag": vec!["x"; MAX_QUERY_ENTRIES + 1]}),
        ] {
            let mut v = base();
            v["http"]["query"] = over;
            let err = parse(v).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidEnvelope);
            assert_eq!(err.code.status(), http::StatusCode::BAD_REQUEST);
            assert!(err.message.contains("field `http.query`"), "{}", err.message);
        }

        let fields = |n: usize| -> serde_json::Map<String, Value> {
            (0..n).map(|i| (format!("f{i}"), Value::from(i))).collect()
        };
        let mut v = base();
        v["user"] = serde_json::json!({"user_id": "u", "additional_fields": fields(MAX_USER_ADDITIONAL_FIELDS)});
        assert_eq!(
            parse(v).unwrap().user.unwrap().additional_fields.len(),
            MAX_USER_ADDITIONAL_FIELDS
        );
        let mut v = base();
        v["user"] = serde_json::json!({"user_id": "u", "additional_fields": fields(MAX_USER_ADDITIONAL_FIELDS + 1)});
        let err = parse(v).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidEnvelope);
        assert!(
            err.message.contains("field `user.additional_fields`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn header_shapes() {
        let mut v = base();
        v["http"]["headers"] = serde_json::json!([["A", "1"], {"name": "B", "value": "2"}]);
        let env = parse(v).unwrap();
        assert_eq!(env.headers, vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
    }

    #[test]
    fn limits_accept_whole_numbers_written_with_a_zero_fraction() {
        let mut json = base();
        json["limits"] = serde_json::json!({"timeout_ms": 3000.0, "memory_mb": 64, "fuel": 1e6});
        let envelope = parse(json).unwrap();
        assert_eq!(envelope.timeout_ms, Some(3000));
        assert_eq!(envelope.memory_mb, Some(64));
        assert_eq!(envelope.fuel, Some(1_000_000));
        for bad in [serde_json::json!(1.5), serde_json::json!(-1), serde_json::json!("10")] {
            let mut json = base();
            json["limits"] = serde_json::json!({ "timeout_ms": bad });
            let err = parse(json).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidEnvelope, "{bad}");
            assert!(err.message.contains("limits.timeout_ms"), "{}", err.message);
        }
    }
}
