//! The OpenAPI 3.1 description of every runner endpoint, built in code next
//! to the handlers and served at `GET /openapi.json`. The committed
//! `openapi.json` at the repository root is this document; a test fails
//! when they drift.

use serde_json::{Value, json};

use crate::error::ErrorCode;

/// Every error code a client can see (the `error.code` enum). A new
/// [`ErrorCode`] variant must be added here: `every_error_code_is_listed`
/// checks the match below is exhaustive.
const ERROR_CODES: &[ErrorCode] = &[
    ErrorCode::Unauthorized,
    ErrorCode::InvalidEnvelope,
    ErrorCode::UnknownCapability,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::EndpointNotFound,
    ErrorCode::PayloadTooLarge,
    ErrorCode::ResponseTooLarge,
    ErrorCode::HeadersTooLarge,
    ErrorCode::RequestTimeout,
    ErrorCode::BundleUnavailable,
    ErrorCode::BundleNotFound,
    ErrorCode::BundleSignatureInvalid,
    ErrorCode::BundleIntegrity,
    ErrorCode::BundleInvalid,
    ErrorCode::BundleInvalidEntry,
    ErrorCode::BundleTooLarge,
    ErrorCode::ComponentInvalid,
    ErrorCode::UnsupportedImport,
    ErrorCode::UnsupportedFeature,
    ErrorCode::InstantiationFailed,
    ErrorCode::ExtensionTrap,
    ErrorCode::MemoryLimitExceeded,
    ErrorCode::ExtensionNoResponse,
    ErrorCode::InvalidResponse,
    ErrorCode::ExecutionTimeout,
    ErrorCode::FuelExhausted,
    ErrorCode::TenantConcurrencyExceeded,
    ErrorCode::ExtensionConcurrencyExceeded,
    ErrorCode::RateLimited { retry_after_secs: 1 },
    ErrorCode::Overloaded,
    ErrorCode::Internal,
];

/// Compile-time exhaustiveness: adding a variant breaks this match until
/// it is also added to [`ERROR_CODES`].
#[allow(dead_code)]
fn listed(code: ErrorCode) -> bool {
    match code {
        ErrorCode::Unauthorized
        | ErrorCode::InvalidEnvelope
        | ErrorCode::UnknownCapability
        | ErrorCode::NotFound
        | ErrorCode::MethodNotAllowed
        | ErrorCode::EndpointNotFound
        | ErrorCode::PayloadTooLarge
        | ErrorCode::ResponseTooLarge
        | ErrorCode::HeadersTooLarge
        | ErrorCode::RequestTimeout
        | ErrorCode::BundleUnavailable
        | ErrorCode::BundleNotFound
        | ErrorCode::BundleSignatureInvalid
        | ErrorCode::BundleIntegrity
        | ErrorCode::BundleInvalid
        | ErrorCode::BundleInvalidEntry
        | ErrorCode::BundleTooLarge
        | ErrorCode::ComponentInvalid
        | ErrorCode::UnsupportedImport
        | ErrorCode::UnsupportedFeature
        | ErrorCode::InstantiationFailed
        | ErrorCode::ExtensionTrap
        | ErrorCode::MemoryLimitExceeded
        | ErrorCode::ExtensionNoResponse
        | ErrorCode::InvalidResponse
        | ErrorCode::ExecutionTimeout
        | ErrorCode::FuelExhausted
        | ErrorCode::TenantConcurrencyExceeded
        | ErrorCode::ExtensionConcurrencyExceeded
        | ErrorCode::RateLimited { .. }
        | ErrorCode::Overloaded
        | ErrorCode::Internal => true,
    }
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "headers": {"x-request-id": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// The document.
pub fn document() -> Value {
    let mut codes: Vec<&str> = ERROR_CODES.iter().map(|c| c.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    let asset = |method: &str| {
        json!({
            "summary": format!("{method} an extension UI asset by content hash"),
            "parameters": [
                {"name": "extensionId", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "contentHash", "in": "path", "required": true, "description": "sha256:<64 lowercase hex>",
                 "schema": {"type": "string"}},
                {"name": "path", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "tenant", "in": "query", "required": false, "schema": {"type": "string"}},
                {"name": "If-None-Match", "in": "header", "required": false, "schema": {"type": "string"}},
                {"name": "Range", "in": "header", "required": false, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {"description": "The asset (immutable; strong ETag)",
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                "206": {"description": "A byte range", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                "304": {"description": "Not modified"},
                "400": error_response("Malformed content hash"),
                "404": error_response("No such asset, type not served, or another extension's bundle"),
                "413": error_response("Asset over EXT_STATIC_MAX_FILE_BYTES"),
                "416": {"description": "Range not satisfiable"},
                "502": error_response("The bundle failed verification"),
                "503": error_response("Bundle store or install check unavailable; retry")
            }
        })
    };
    json!({
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
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}},
                "responses": {
                    "200": {"description": "The handler's answer (its own status is in the body)",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecuteResponse"}}}},
                    "400": error_response("Invalid envelope or unknown capability"),
                    "401": error_response("Missing or invalid service token"),
                    "404": error_response("No endpoint for this method and path"),
                    "408": error_response("Request body not received in time"),
                    "413": error_response("Request or response body over its limit"),
                    "429": error_response("Tenant or extension concurrency or rate limit; see Retry-After"),
                    "431": error_response("Too many or too large headers in the envelope"),
                    "502": error_response("Bundle or guest failure"),
                    "503": error_response("Busy, overloaded or bundle store unavailable; see Retry-After"),
                    "504": error_response("Execution timed out or ran out of fuel")
                }
            }},
            "/ext-ui/{extensionId}/{contentHash}/{path}": {"get": asset("GET"), "head": asset("HEAD")},
            "/healthz": {"get": {"summary": "Process alive", "responses": {"200": {
                "description": "Alive", "content": {"application/json": {"schema": {"type": "object",
                    "properties": {"status": {"const": "ok"}}, "required": ["status"]}}}}}}},
            "/readyz": {"get": {"summary": "Ready for traffic", "responses": {
                "200": {"description": "Ready", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}},
                "503": {"description": "Not ready (draining or cache not writable)",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}}
            }}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
                "description": "Text exposition format 0.0.4", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {
                "description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}}
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "serviceToken": {"type": "apiKey", "in": "header", "name": "x-runner-service-token"}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["status", "error"], "properties": {
                    "status": {"type": "integer"},
                    "error": {"type": "object", "required": ["code", "message", "request_id"], "properties": {
                        "code": {"type": "string", "enum": codes},
                        "message": {"type": "string"},
                        "request_id": {"type": "string"}
                    }}
                }},
                "Envelope": {"type": "object", "required": ["context", "http"], "properties": {
                    "context": {"type": "object", "required": ["tenant_id", "extension_id", "content_hash"], "properties": {
                        "request_id": {"type": "string"},
                        "tenant_id": {"type": "string", "minLength": 1, "maxLength": 256},
                        "extension_id": {"type": "string", "minLength": 1, "maxLength": 256},
                        "install_id": {"type": "string"},
                        "version_id": {"type": "string"},
                        "content_hash": {"type": "string", "description": "sha256:<hex64> or <hex64>"}
                    }},
                    "endpoint": {"type": "string"},
                    "http": {"type": "object", "required": ["method", "path"], "properties": {
                        "method": {"type": "string"},
                        "path": {"type": "string", "pattern": "^/"},
                        "query": {"type": "object"},
                        "headers": {"oneOf": [{"type": "object"}, {"type": "array"}]},
                        "body_b64": {"type": "string"}
                    }},
                    "limits": {"type": "object", "properties": {
                        "timeout_ms": {"type": "integer", "minimum": 0},
                        "memory_mb": {"type": "integer", "minimum": 0},
                        "fuel": {"type": "integer", "minimum": 0}
                    }},
                    "providers": {"type": "array", "items": {"type": "string"}},
                    "secret_envelope": {"type": "object", "required": ["ciphertext_b64"], "properties": {
                        "ciphertext_b64": {"type": "string"},
                        "algorithm": {"type": "string"},
                        "expires_at": {"type": "string"},
                        "key_path": {"type": "string"},
                        "mount": {"type": "string"}
                    }},
                    "user": {"type": "object"}
                }},
                "ExecuteResponse": {"type": "object", "required": ["status", "headers", "body_b64", "report"], "properties": {
                    "status": {"type": "integer", "minimum": 100, "maximum": 599},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "body_b64": {"type": "string"},
                    "report": {"type": "object", "required": ["wall_ms", "fuel_used", "peak_memory_bytes", "host_calls",
                                                              "egress_bytes", "logs_truncated"], "properties": {
                        "wall_ms": {"type": "number"},
                        "fuel_used": {"type": "integer"},
                        "peak_memory_bytes": {"type": "integer"},
                        "host_calls": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "egress_bytes": {"type": "integer"},
                        "logs_truncated": {"type": "boolean"},
                        "limit_hit": {"type": "string"}
                    }}
                }},
                "Readiness": {"type": "object", "required": ["status", "draining"], "properties": {
                    "status": {"enum": ["ready", "not_ready"]},
                    "degraded": {"type": "boolean"},
                    "draining": {"type": "boolean"},
                    "engine": {"type": "object"},
                    "cache": {"type": "object"},
                    "bundle_store": {"type": "object"}
                }}
            }
        }
    })
}

#[cfg(test)]
mod tests {
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
