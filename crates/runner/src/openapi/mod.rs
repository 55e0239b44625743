//! The OpenAPI 3.1 description of every endpoint (the registry's from
//! `registry/openapi.rs`, error answers from [`responses`]), built in code next
//! to the handlers and served at `GET /openapi.json`. The committed
//! `openapi.json` at the repository root is this document; a test fails
//! when they drift.

use serde_json::{Value, json};

use crate::error::ErrorCode;
use responses::error_response;

pub(crate) mod responses;

/// `http.query` and `http.headers`: an object (a value or a list of values
/// per name; `null` skips the name) or a list of `[name, value]` /
/// `{"name", "value"}` pairs, in order. Values are strings, numbers or
/// booleans (numbers and booleans are sent as their text).
fn pairs_schema(name: Value, value: Value, description: &str) -> Value {
    json!({
        "description": description,
        "oneOf": [
            {"type": "object", "propertyNames": name,
             "additionalProperties": {"anyOf": [value, {"type": "null"}, {"type": "array", "items": value}]}},
            {"type": "array", "items": {"oneOf": [
                {"type": "array", "prefixItems": [name, value], "minItems": 2, "maxItems": 2},
                {"type": "object", "required": ["name", "value"], "properties": {"name": name, "value": value}}
            ]}}
        ]
    })
}

/// Unicode control characters (`char::is_control`) as a regex class body:
/// ids and paths must not contain them.
const CONTROL_CHARACTERS: &str = "\\u0000-\\u001f\\u007f-\\u009f";

/// Add `more`'s entries to the object `into`.
fn merge(into: &mut Value, more: Value) {
    if let (Some(into), Value::Object(more)) = (into.as_object_mut(), more) {
        into.extend(more);
    }
}

/// The document.
pub fn document() -> Value {
    let mut codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    // Not empty after trimming, no control characters.
    let id_pattern = format!("^[^{CONTROL_CHARACTERS}]*[^\\s{CONTROL_CHARACTERS}][^{CONTROL_CHARACTERS}]*$");
    let scalar = json!({"type": ["string", "number", "boolean"]});
    // RFC 9110 token; a value without CR, LF or NUL.
    let header_name = json!({"type": "string", "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"});
    let header_value =
        json!({"anyOf": [{"type": "string", "pattern": "^[^\\r\\n\\u0000]*$"}, {"type": ["number", "boolean"]}]});
    let ui_parameters = |with_path: bool| {
        let mut parameters = vec![
            json!({"name": "extensionId", "in": "path", "required": true,
                   "description": "Must be the bundle's manifest `name` (or installed, with RUNNER_UI_VALIDATE_URL)",
                   "schema": {"type": "string", "minLength": 1}}),
            json!({"name": "contentHash", "in": "path", "required": true,
                   "description": "sha256:<64 hex digits>, URL-encoded or not",
                   "schema": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}}),
        ];
        if with_path {
            parameters.push(json!({"name": "path", "in": "path", "required": true,
                "description": "A file below the bundle's ui/ (a path without an extension serves index.html)",
                "schema": {"type": "string", "minLength": 1}}));
        }
        parameters.extend([
            json!({"name": "tenant", "in": "query", "required": false, "schema": {"type": "string"}}),
            json!({"name": "If-None-Match", "in": "header", "required": false, "schema": {"type": "string"}}),
            json!({"name": "Range", "in": "header", "required": false, "schema": {"type": "string"}}),
        ]);
        parameters
    };
    let asset = |method: &str, with_path: bool| {
        let what = if with_path {
            "an extension UI asset"
        } else {
            "an extension UI's index.html"
        };
        json!({
            "summary": format!("{method} {what} by content hash"),
            "parameters": ui_parameters(with_path),
            "responses": {
                "200": {"description": "The asset (immutable; strong ETag)",
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                "206": {"description": "A byte range", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                "304": {"description": "Not modified"},
                "400": error_response(400, "Malformed content hash, or a tenant or extension id over 256 bytes"),
                "403": error_response(403, "`bundle_revoked`: the registry revoked this content hash"),
                "404": error_response(404, "No such asset, type not served, unknown bundle, another extension's bundle, \
                    or (with an install check) not installed for the tenant"),
                "413": error_response(413, "Asset over EXT_STATIC_MAX_FILE_BYTES"),
                "416": {"description": "Range not satisfiable"},
                "502": error_response(502, "The bundle failed verification"),
                "503": error_response(503, "Bundle store or install check unavailable, or install checks over their rate or concurrency limit; retry")
            }
        })
    };
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ext-runner",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Runs extension handlers as sandboxed WebAssembly components and serves their UI assets."
        },
        "paths": {
            "/v1/execute": {"post": {
                "summary": "Execute an extension handler",
                "security": [{"bearer": []}, {"serviceToken": []}],
                "parameters": [{"name": "x-ext-grant", "in": "header", "required": false, "schema": {"type": "string"},
                    "description": "Execution grant (compact JWS, EdDSA); required when RUNNER_GRANT_KEYS is set"},
                    {"name": "x-idempotency-key", "in": "header", "required": false,
                     "schema": {"type": "string", "minLength": 1, "maxLength": crate::idempotency::MAX_KEY_BYTES, "pattern": "^[!-~]+$"},
                     "description": "Idempotency key: a repeat of the same request with the same key (same tenant, \
                        extension, install and user) answers the first call's answer with `x-idempotent-replay: true` \
                        and never runs the guest again; a call while the first still runs waits for it"}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}},
                "responses": {
                    "200": {"description": "The handler's answer (its own status is in the body)",
                            "headers": {"x-request-id": {"required": true, "schema": {"type": "string"}},
                                        "x-idempotent-replay": {"required": false, "schema": {"const": "true"},
                                            "description": "The stored answer of an earlier call with the same idempotency key \
                                                (also on a replayed error)"}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecuteResponse"}}}},
                    "400": error_response(400, "Invalid envelope, unknown capability, or an invalid `x-idempotency-key`"),
                    "401": error_response(401, "Missing or invalid service token, or (`grant_invalid`) a missing, \
                        unverifiable or expired execution grant"),
                    "403": error_response(403, "`grant_mismatch`: the execution grant names another tenant, extension, \
                        install, version, content hash, capability set or egress list; `bundle_revoked`: the registry \
                        revoked this content hash"),
                    "404": error_response(404, "No endpoint for this method and path"),
                    "408": error_response(408, "Request body not received in time"),
                    "409": error_response(409, "`idempotency_key_in_progress`: the call with this idempotency key \
                        still runs at this call's deadline; see Retry-After"),
                    "413": error_response(413, "Request or response body over its limit"),
                    "422": error_response(422, "`idempotency_key_reused`: the idempotency key was used with another \
                        request (method, endpoint, path, query or body)"),
                    "429": error_response(429, "Tenant or extension concurrency or rate limit; see Retry-After"),
                    "431": error_response(431, "Too many or too large headers in the envelope"),
                    "502": error_response(502, "The bundle cannot be loaded (e.g. `bundle_not_found` for a content hash \
                        that was never published) or the guest failed"),
                    "503": error_response(503, "Overloaded, no compile slot before the deadline, or bundle store unavailable; see Retry-After"),
                    "504": error_response(504, "Execution timed out or ran out of fuel")
                }
            }},
            "/ext-ui/{extensionId}/{contentHash}/": {"get": asset("GET", false), "head": asset("HEAD", false)},
            "/ext-ui/{extensionId}/{contentHash}/{path}": {"get": asset("GET", true), "head": asset("HEAD", true)},
            "/healthz": {"get": {"summary": "Process alive", "responses": {"200": {
                "description": "Alive", "content": {"application/json": {"schema": {"type": "object",
                    "properties": {"status": {"const": "ok"}}, "required": ["status"]}}}}}}},
            "/readyz": {"get": {"summary": "Ready for traffic", "responses": {
                "200": {"description": "Ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}},
                "503": {"description": "Not ready (draining, cache not writable, or the registry database not answering)",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}}
            }}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                "description": "Open unless RUNNER_METRICS_TOKEN is set; then that token is required (as a bearer token)",
                "responses": {
                    "200": {"description": "OpenMetrics 1.0 text (application/openmetrics-text; version=1.0.0)", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}},
                    "401": error_response(401, "RUNNER_METRICS_TOKEN is set and was not presented")
                }}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {
                "description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}}
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "userToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                              "description": "An end user's token (HS256, ES256, RS256 or EdDSA) with `tenant` and `exp` claims"},
                "serviceToken": {"type": "apiKey", "in": "header", "name": "x-runner-service-token"}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["status", "error"], "properties": {
                    "status": {"type": "integer", "minimum": 400, "maximum": 599, "description": "The HTTP status, repeated"},
                    "error": {"type": "object", "required": ["code", "message", "request_id"], "properties": {
                        "code": {"type": "string", "enum": codes},
                        "message": {"type": "string"},
                        "request_id": {"type": "string"}
                    }},
                    "report": {"$ref": "#/components/schemas/ExecutionReport"}
                }},
                "Envelope": {"type": "object", "required": ["context", "http"],
                             "description": "Unknown fields are ignored.", "properties": {
                    "context": {"type": "object", "required": ["tenant_id", "extension_id", "content_hash"], "properties": {
                        "request_id": {"type": "string", "description": "Echoed as x-request-id when it is 1-128 of [A-Za-z0-9-_.:]"},
                        "tenant_id": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": id_pattern,
                                      "description": "At most 256 bytes, not blank, no control characters"},
                        "extension_id": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": id_pattern,
                                         "description": "At most 256 bytes, not blank, no control characters"},
                        "install_id": {"type": "string"},
                        "version_id": {"type": "string"},
                        "content_hash": {"type": "string", "pattern": "^(sha256:)?[0-9a-fA-F]{64}$",
                                         "description": "The bundle's SHA-256: sha256:<hex64> or <hex64>"}
                    }},
                    "endpoint": {"type": "string",
                                 "description": "Handler component (`dist/x` → `dist/x.wasm`, `ui-proxy:<path>`); else matched from the manifest"},
                    "http": {"type": "object", "required": ["method", "path"], "properties": {
                        "method": {"type": "string", "pattern": "^[A-Za-z-]{1,32}$"},
                        "path": {"type": "string", "maxLength": 8192, "pattern": format!("^/[^{CONTROL_CHARACTERS}]*$")},
                        "query": pairs_schema(json!({"type": "string"}), scalar.clone(),
                                              "Query parameters; repeated names kept in order"),
                        "headers": pairs_schema(header_name, header_value,
                            "Request headers (names lower-cased); at most 100, 8 KiB each and 64 KiB in all, else 431"),
                        "body_b64": {"type": "string", "contentEncoding": "base64",
                                     "description": "The request body, standard base64 with padding; absent: no body",
                                     "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"}
                    }},
                    "limits": {"type": "object", "description": "Clamped to 1..the operator's maxima", "properties": {
                        "timeout_ms": {"type": "integer", "minimum": 0, "maximum": u64::MAX},
                        "memory_mb": {"type": "integer", "minimum": 0, "maximum": u64::MAX},
                        "fuel": {"type": "integer", "minimum": 0, "maximum": u64::MAX}
                    }},
                    "providers": {"type": "array", "description": "The install's capability grants (short forms such as \
                                  `storage.kv` are accepted too); absent: as the manifest declares",
                                  "items": {"enum": crate::host::registry::known_names().collect::<Vec<_>>()}},
                    "egress": {"type": "array", "maxItems": crate::host::http::MAX_EGRESS_ENTRIES, "description": "The install's \
                               egress patterns (`https://api.example.com`, `https://*.example.org:8443`); they narrow manifest ∩ \
                               operator; with a grant they must be the grant's", "items": {"type": "string", "minLength": 1,
                               "maxLength": crate::host::http::MAX_EGRESS_ENTRY_BYTES}},
                    "secret_envelope": {"type": "object", "required": ["ciphertext_b64"], "properties": {
                        "ciphertext_b64": {"type": "string"},
                        "algorithm": {"type": "string"},
                        "version": {},
                        "expires_at": {"type": "string"},
                        "key_path": {"type": "string"},
                        "mount": {"type": "string"}
                    }},
                    "user": {"type": "object", "description": "`company_name` is accepted for `client_name` (not both)", "properties": {
                        "user_id": {"type": "string"},
                        "user_email": {"type": "string"},
                        "user_name": {"type": "string"},
                        "user_type": {"type": "string"},
                        "client_name": {"type": "string"},
                        "client_id": {"type": "string"},
                        "additional_fields": {"type": "object"}
                    }}
                }},
                "ExecuteResponse": {"type": "object", "required": ["status", "headers", "body_b64", "report"], "properties": {
                    "status": {"type": "integer", "minimum": 100, "maximum": 599},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body_b64": {"type": "string", "contentEncoding": "base64"},
                    "report": {"$ref": "#/components/schemas/ExecutionReport"}
                }},
                "ExecutionReport": {"type": "object", "required": ["wall_ms", "fuel_used", "cpu_ms", "cpu_wait_ms",
                                                                   "peak_memory_bytes", "host_calls", "egress_bytes",
                                                                   "logs_truncated"],
                                    "description": "What the execution used; on an error, present when the guest ran",
                                    "properties": {
                    "wall_ms": {"type": "number", "minimum": 0},
                    "fuel_used": {"type": "integer", "minimum": 0},
                    "cpu_ms": {"type": "number", "minimum": 0,
                               "description": "Thread CPU time spent running the guest, charged to the tenant"},
                    "cpu_wait_ms": {"type": "number", "minimum": 0,
                                    "description": "Time the guest was ready to run but waited for a CPU slice"},
                    "peak_memory_bytes": {"type": "integer", "minimum": 0},
                    "host_calls": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                    "egress_bytes": {"type": "integer", "minimum": 0},
                    "logs_truncated": {"type": "boolean"},
                    "limit_hit": {"enum": ["timeout", "fuel", "memory"], "description": "The limit that stopped the guest"}
                }},
                "Readiness": {"type": "object", "required": ["status", "draining"], "properties": {
                    "status": {"enum": ["ready", "not_ready"]},
                    "degraded": {"type": "boolean"},
                    "draining": {"type": "boolean"},
                    "engine": {"$ref": "#/components/schemas/Check"},
                    "cache": {"$ref": "#/components/schemas/Check"},
                    "bundle_store": {"$ref": "#/components/schemas/Check"},
                    "registry_database": {"$ref": "#/components/schemas/Check"}
                }},
                "Check": {"type": "object", "required": ["ok"], "properties": {
                    "ok": {"type": "boolean"},
                    "error": {"type": "string"}
                }}
            }
        }
    });
    // The registry and gateway roles' routes (served when the process runs them).
    merge(&mut document["paths"], crate::registry::openapi::paths());
    merge(&mut document["paths"], crate::gateway::openapi::paths());
    merge(
        &mut document["components"]["schemas"],
        crate::registry::openapi::schemas(),
    );
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented error answer names at least one code, and its
    /// codes are exactly those whose status it is.
    #[test]
    fn error_answers_list_the_codes_of_their_status() {
        let document = document();
        let mut seen = 0;
        let mut listed = std::collections::BTreeSet::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    let schema = &response["content"]["application/json"]["schema"];
                    if schema.get("allOf").is_none() {
                        continue;
                    }
                    seen += 1;
                    let codes = schema["properties"]["error"]["properties"]["code"]["enum"]
                        .as_array()
                        .unwrap();
                    assert!(!codes.is_empty(), "{method} {path} {status}");
                    listed.extend(codes.iter().filter_map(Value::as_str).map(str::to_string));
                    for code in codes {
                        let code = ErrorCode::ALL.iter().find(|c| c.as_str() == code).unwrap();
                        assert_eq!(code.status().as_str(), status, "{method} {path}");
                    }
                }
            }
        }
        assert!(seen > 10, "{seen}");
        // Every code is documented on some operation, except the router's 405.
        for code in ErrorCode::ALL {
            if matches!(code, ErrorCode::MethodNotAllowed) {
                continue;
            }
            assert!(listed.contains(code.as_str()), "{}", code.as_str());
        }
    }

    /// The committed `openapi.json` is exactly what the code serves;
    /// regenerate with `UPDATE_OPENAPI=1 cargo test -p ext-runner --lib openapi`.
    #[test]
    fn committed_openapi_json_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
        let generated = format!("{}\n", serde_json::to_string_pretty(&super::document()).unwrap());
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "openapi.json is out of date: run UPDATE_OPENAPI=1 cargo test -p ext-runner --lib openapi"
        );
    }
}
