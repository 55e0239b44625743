//! The gateway routes' part of the OpenAPI document (`crate::openapi`
//! merges it). OpenAPI has no "any method" and no multi-segment parameter:
//! the call routes are listed for the methods manifests use, and `{path}`
//! stands for the rest of the path (one or more segments).

use serde_json::{Value, json};

use crate::openapi::responses::error_response;

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

/// The answers every user-token route may give.
fn refusals(statuses: &[(u16, &str)]) -> Value {
    let mut responses = json!({
        "401": error_response(401, "No user token, or a bad, expired or unknown-key one"),
        "404": error_response(404, "Not installed for the user's tenant (another tenant's install is invisible), or no such endpoint"),
        "403": error_response(403, "The install is disabled, or its version was revoked"),
        "503": error_response(503, "The registry could not be asked, or the runner is full; retry"),
    });
    for (status, description) in statuses {
        responses[status.to_string()] = error_response(*status, description);
    }
    responses
}

/// One call of an extension endpoint through the gateway.
fn call_operation(summary: &str) -> Value {
    let mut responses = refusals(&[
        (
            400,
            "The request could not be read, or its `x-idempotency-key` / `Idempotency-Key` is invalid",
        ),
        (408, "The request body was not received in time"),
        (
            409,
            "`idempotency_key_in_progress`: the call with this idempotency key still runs; see Retry-After",
        ),
        (
            422,
            "`idempotency_key_reused`: the idempotency key was used with another request",
        ),
        (
            413,
            "The request body exceeds GATEWAY_MAX_REQUEST_BYTES, or the answer the gateway's cap",
        ),
        (
            429,
            "The tenant's gateway rate limit or one of the runner's quotas; see Retry-After",
        ),
        (502, "The runner or the guest failed"),
        (504, "The guest or the runner ran out of time"),
    ]);
    responses["default"] = json!({"description": "The guest's own answer: its status (any, the ones above included), its allowed headers and its body; the gateway's own refusals are the ones above, with the Error body",
                                  "headers": {"x-request-id": {"required": true, "schema": {"type": "string"}},
                                              "x-idempotent-replay": {"required": false, "schema": {"const": "true"},
                                                  "description": "The stored answer of an earlier call with the same idempotency key"}},
                                  "content": {"*/*": {"schema": {}}}});
    json!({
        "summary": summary,
        "security": [{"userToken": []}],
        "parameters": [
            path_param("extension", "The extension's name (reverse-domain)"),
            path_param("path", "The rest of the path, matched against the installed version's api.endpoints"),
            {"name": "x-idempotency-key", "in": "header", "required": false,
             "schema": {"type": "string", "minLength": 1, "maxLength": crate::idempotency::MAX_KEY_BYTES, "pattern": "^[!-~]+$"},
             "description": "Idempotency key, forwarded to the runner (`Idempotency-Key` is read when this is absent): \
                a repeat of the same request with the same key answers the first call's answer"},
        ],
        "requestBody": {"required": false, "content": {"*/*": {"schema": {}}}},
        "responses": responses
    })
}

/// The gateway's paths.
pub fn paths() -> Value {
    let methods = |summary: &str| {
        let mut item = json!({});
        for method in ["get", "post", "put", "patch", "delete"] {
            item[method] = call_operation(summary);
        }
        item
    };
    json!({
        "/api/ext/{extension}/{path}": methods(
            "Call an endpoint of the user's tenant's installed version (a user JWT in Authorization: Bearer)"
        ),
        "/api/ext-proxy/{extension}/{path}": methods(
            "The iframe's apiproxy call of an endpoint (envelope endpoint `ui-proxy:<path>`)"
        ),
        "/api/ext-ui/{extension}": {"get": {
            "summary": "The iframe src of the user's tenant's installed version, on RUNNER_PUBLIC_BASE",
            "security": [{"userToken": []}],
            "parameters": [
                path_param("extension", "The extension's name (reverse-domain)"),
                {"name": "path", "in": "query", "required": false, "description": "The client path the iframe opens (starts with /)", "schema": {"type": "string", "pattern": "^/"}},
                {"name": "parentOrigin", "in": "query", "required": false, "description": "The host page's origin, passed to the iframe", "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {"description": "The iframe URL",
                        "headers": {"x-request-id": {"required": true, "schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": {"type": "object", "required": ["src"],
                            "properties": {"src": {"type": "string", "format": "uri"}}}}}},
                "400": error_response(400, "`path` does not start with /"),
                "401": error_response(401, "No user token, or a bad, expired or unknown-key one"),
                "403": error_response(403, "The install is disabled"),
                "404": error_response(404, "Not installed for the user's tenant, or the version has no UI"),
                "429": error_response(429, "The tenant's gateway rate limit; see Retry-After"),
                "503": error_response(503, "The registry could not be asked; retry")
            }
        }}
    })
}
