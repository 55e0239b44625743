//! The registry routes' part of the OpenAPI document (`crate::openapi`
//! merges it): paths and the schemas of what they answer.

use serde_json::{Value, json};

use crate::openapi::responses::error_response;

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description,
           "headers": {"x-request-id": {"required": true, "schema": {"type": "string"}}},
           "content": {"application/json": {"schema": schema}}})
}

fn list(item: &str) -> Value {
    json!({"type": "object", "required": ["items"],
           "properties": {"items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}}}})
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn no_content(description: &str) -> Value {
    json!({"description": description, "headers": {"x-request-id": {"required": true, "schema": {"type": "string"}}}})
}

/// One operation: its summary, parameters, request body and answers; every
/// one needs a registry token and may be refused 401.
fn operation(summary: &str, parameters: &[Value], body: Option<Value>, responses: Value) -> Value {
    let mut responses = responses;
    responses["401"] = error_response(401, "Missing or invalid registry token (REGISTRY_TOKENS)");
    responses["503"] = error_response(503, "The registry database (or the secrets key) is unavailable; retry");
    let mut op =
        json!({"summary": summary, "security": [{"bearer": []}], "parameters": parameters, "responses": responses});
    if let Some(body) = body {
        op["requestBody"] = json!({"required": true, "content": body});
    }
    op
}

fn path_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

/// What `names::check_tenant` accepts.
fn tenant_schema() -> Value {
    json!({"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]*$",
           "minLength": 1, "maxLength": ext_registry::names::MAX_TENANT_BYTES})
}

/// What `ext_bundle::check_name` accepts.
fn name_schema() -> Value {
    json!({"type": "string", "pattern": "^[a-z0-9_-]+(\\.[a-z0-9_-]+)+$",
           "maxLength": ext_bundle::manifest::MAX_NAME_CHARS})
}

/// A semantic version without build metadata (numbers kept to 15 digits,
/// which always fit semver's u64).
const VERSION_PATTERN: &str = "^(0|[1-9][0-9]{0,14})\\.(0|[1-9][0-9]{0,14})\\.(0|[1-9][0-9]{0,14})\
                               (-(0|[1-9][0-9]{0,14}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)\
                               (\\.(0|[1-9][0-9]{0,14}|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?$";

fn query_param(name: &str, required: bool, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": required, "schema": schema})
}

fn json_body(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// The registry's paths.
pub fn paths() -> Value {
    let tenant = path_param(
        "tenant",
        "A tenant id: 1-128 of [A-Za-z0-9._-], not starting with `.`",
        tenant_schema(),
    );
    let name = path_param(
        "name",
        "An extension name (reverse-domain, as in its manifest)",
        name_schema(),
    );
    let version = path_param(
        "version",
        "A semantic version without build metadata",
        json!({"type": "string", "pattern": VERSION_PATTERN}),
    );
    let bad = |what: &str| error_response(400, what);
    let not_found = |what: &str| error_response(404, what);
    let forbidden = error_response(403, "Outside the token's scope");
    let install_headers = [
        json!({"name": "If-Match", "in": "header", "required": false,
               "schema": {"type": "string", "pattern": "^\"[0-9]+\"$"},
               "description": "Only if the install is at this revision (its ETag, a quoted revision like `\"3\"`)"}),
        json!({"name": "If-None-Match", "in": "header", "required": false, "schema": {"type": "string", "const": "*"},
               "description": "`*`: only a first install (no other value is accepted)"}),
    ];
    let install_params = [
        tenant.clone(),
        name.clone(),
        install_headers[0].clone(),
        install_headers[1].clone(),
    ];
    // An uninstall takes If-Match only: "only if absent" cannot remove anything.
    let uninstall_params = [
        tenant.clone(),
        name.clone(),
        install_headers[0].clone(),
        json!({"name": "purge", "in": "query", "required": false, "schema": {"type": "boolean", "default": false},
               "description": "`true`: also remove the install's KV data (its secrets go with any uninstall); \
                               repeat it to finish a purge answered 503"}),
    ];
    let mut uninstall = operation(
        "Uninstall (with ?purge=true: and remove its data)",
        &uninstall_params,
        None,
        json!({
            "204": no_content("Uninstalled (and purged)"),
            "400": bad("Malformed path, header or query (`purge` other than true or false)"),
            "403": forbidden,
            "404": not_found("No such install (and, for a purge, none pending)"),
            "409": error_response(409, "Changed concurrently; retry"),
            "412": error_response(412, "If-Match did not hold")
        }),
    );
    uninstall["responses"]["503"] = error_response(
        503,
        "The registry database is unavailable, or the install is gone but its KV data is not yet \
         (`purge_incomplete`): repeat the request",
    );
    let install_answer = |description: &str| {
        let mut answer = ok(description, schema("Install"));
        answer["headers"]["etag"] = json!({"required": true, "description": "The install's revision, quoted",
                                            "schema": {"type": "string"}});
        answer
    };
    let version_change = |summary: &str, extra: &[Value]| {
        let mut parameters = vec![name.clone(), version.clone()];
        parameters.extend_from_slice(extra);
        operation(
            summary,
            &parameters,
            None,
            json!({
                "200": ok("The version after the change", schema("Version")),
                "400": bad("Malformed name, version or query"),
                "403": forbidden,
                "404": not_found("No such extension or version"),
                "409": error_response(409, "Changed concurrently; retry")
            }),
        )
    };
    json!({
        "/v1/registry/bundles": {"post": operation(
            "Publish a signed bundle",
            &[json!({"name": "x-ext-signature", "in": "header", "required": false, "schema": {"type": "string"},
                     "description": "Base64 DER signature of the archive (required: without it 422)"}),
              json!({"name": "x-ext-certificates", "in": "header", "required": false, "schema": {"type": "string"},
                     "description": "Base64 of the signer's PEM certificate chain"})],
            Some(json!({"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}})),
            json!({
                "200": ok("The same bundle was published before", schema("Published")),
                "201": ok("Published", schema("Published")),
                "400": bad("The body could not be read"),
                "403": forbidden,
                "409": error_response(409, "The version is published with other bytes, or a store object differs"),
                "413": error_response(413, "Bundle over the bundle size cap"),
                "422": error_response(422, "Not a bundle the runner would load, or a signature that is missing or does not verify")
            }))},
        "/v1/registry/extensions": {"get": operation("The catalogue", &[], None, json!({
            "200": ok("Every extension", list("Extension"))
        }))},
        "/v1/registry/extensions/{name}": {"get": operation("One extension and its versions", std::slice::from_ref(&name), None, json!({
            "200": ok("The extension", schema("ExtensionVersions")),
            "400": bad("Malformed name"),
            "404": not_found("No such extension")
        }))},
        "/v1/registry/extensions/{name}/versions/{version}/yank": {"post": version_change(
            "Yank a version (no new installs); ?undo=true un-yanks",
            &[query_param("undo", false, json!({"type": "boolean"}))])},
        "/v1/registry/extensions/{name}/versions/{version}/revoke": {"post": version_change(
            "Revoke a version: nothing may install or serve it", &[])},
        "/v1/registry/signers/revoke": {"post": operation(
            "Revoke a signer: every version it signed, and its publishes",
            &[], Some(json_body(json!({"type": "object", "required": ["signer"], "additionalProperties": false,
                                       "properties": {"signer": {"type": "string", "minLength": 1, "maxLength": 1024}}}))),
            json!({
                "204": no_content("Revoked"),
                "400": bad("Malformed body"),
                "403": forbidden,
                "409": error_response(409, "Changed concurrently; retry"),
                "413": error_response(413, "Body over 1 MiB")
            }))},
        "/v1/registry/tenants/{tenant}/installs": {"get": operation("A tenant's installs", std::slice::from_ref(&tenant), None, json!({
            "200": ok("The installs", list("Install")),
            "400": bad("Malformed tenant id"),
            "403": forbidden,
            "404": not_found("Another tenant's installs (invisible to a tenant's token)")
        }))},
        "/v1/registry/tenants/{tenant}/installs/{name}": {
            "get": operation("One install", &[tenant.clone(), name.clone()], None, json!({
                "200": install_answer("The install"),
                "400": bad("Malformed tenant id or name"),
                "403": forbidden,
                "404": not_found("No such install")
            })),
            "put": operation(
                "Install, upgrade, roll back, enable, disable or edit",
                &install_params,
                Some(json_body(schema("InstallRequest"))),
                json!({
                    "200": install_answer("Changed (or already so)"),
                    "201": install_answer("Installed"),
                    "400": bad("Malformed path, header or body (the message names the field)"),
                    "403": forbidden,
                    "404": not_found("No such version, or another tenant's install"),
                    "409": error_response(409, "The version is yanked or revoked, changed concurrently, or the purge \
                                                of the previous install is not finished"),
                    "412": error_response(412, "If-Match / If-None-Match did not hold"),
                    "413": error_response(413, "Body over 1 MiB"),
                    "422": error_response(422, "Capabilities or hosts the manifest does not declare")
                })),
            "delete": uninstall
        },
        "/v1/registry/tenants/{tenant}/installs/{name}/history": {"get": operation(
            "An install's changes, oldest first", &[tenant.clone(), name.clone()], None, json!({
                "200": ok("The history", list("HistoryEntry")),
                "400": bad("Malformed tenant id or name"),
                "403": forbidden,
                "404": not_found("Never installed")
            }))},
        "/v1/registry/tenants/{tenant}/installs/{name}/secrets": {"put": operation(
            "Replace an install's secrets (sealed; never returned)",
            &[tenant.clone(), name.clone()],
            Some(json_body(json!({"type": "object", "additionalProperties": {"type": "string"}}))),
            json!({
                "204": no_content("Stored, sealed"),
                "400": bad("Malformed path or body"),
                "403": forbidden,
                "404": not_found("No such install"),
                "409": error_response(409, "Changed concurrently; retry"),
                "413": error_response(413, "Body over 1 MiB")
            }))},
        "/v1/registry/secrets/reseal": {"post": operation(
            "Re-seal every install's secrets under the current secrets key (opened with any accepted key: \
             RUNNER_SECRETS_KEY, then RUNNER_SECRETS_PREVIOUS_KEYS); admin tokens; repeatable",
            &[],
            None,
            json!({
                "200": ok("What was done (counts; failures by install id, never a value)", schema("ResealReport")),
                "403": forbidden
            }))},
        "/v1/registry/tenants/{tenant}/executions": {"get": operation(
            "The tenant's execution log, newest first",
            &[tenant.clone(), query_param("extension", false, name_schema()),
              query_param("limit", false, json!({"type": "integer", "minimum": 1, "maximum": 1000}))],
            None,
            json!({
                "200": ok("Executions", list("Execution")),
                "400": bad("Malformed tenant id, extension or limit"),
                "403": forbidden,
                "404": not_found("Another tenant's log (invisible to a tenant's token)")
            }))},
        "/v1/registry/installs/validate": {"get": operation(
            "Whether a tenant has an extension installed at a content hash (RUNNER_UI_VALIDATE_URL)",
            &[query_param("tenant", true, tenant_schema()),
              query_param("extension", true, name_schema()),
              query_param("content_hash", true, json!({"type": "string", "pattern": "^(sha256:)?[0-9a-fA-F]{64}$"}))],
            None,
            json!({
                "200": ok("Installed, enabled and not revoked at that hash",
                          json!({"type": "object", "required": ["installed"], "properties": {"installed": {"const": true}}})),
                "400": bad("A missing or malformed parameter"),
                "403": forbidden,
                "404": not_found("Not installed at that hash")
            }))},
        "/v1/registry/revocations": {"get": operation(
            "Every revoked content hash (revoked versions and every version of a revoked signer): what runners poll (RUNNER_REVOCATIONS_URL); admin and runner tokens",
            &[],
            None,
            json!({
                "200": ok("The revocation list",
                          json!({"type": "object", "required": ["items"], "properties": {"items": {"type": "array",
                                 "items": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}}}})),
                "403": forbidden
            }))},
        "/v1/registry/audit": {"get": operation(
            "The audit log, newest first",
            &[query_param("limit", false, json!({"type": "integer", "minimum": 1, "maximum": 1000}))],
            None,
            json!({
                "200": ok("Audit entries", list("AuditEntry")),
                "400": bad("Malformed limit"),
                "403": forbidden
            }))}
    })
}

/// The schemas the registry's paths refer to.
pub fn schemas() -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "Published": {"type": "object", "required": ["name", "version", "version_id", "content_hash", "signer"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"}, "version_id": {"type": "string"},
            "content_hash": {"type": "string"}, "signer": {"type": "string"}
        }},
        "Extension": {"type": "object", "required": ["name", "publisher", "created_at"], "properties": {
            "name": {"type": "string"}, "publisher": {"type": "string"}, "created_at": time
        }},
        "ExtensionVersions": {"allOf": [{"$ref": "#/components/schemas/Extension"}], "required": ["versions"], "properties": {
            "versions": {"type": "array", "items": {"$ref": "#/components/schemas/Version"}}
        }},
        "Version": {"type": "object",
                    "required": ["version_id", "version", "content_hash", "signer", "size_bytes", "published_at",
                                 "published_by", "yanked", "revoked"], "properties": {
            "version_id": {"type": "string"}, "version": {"type": "string"}, "content_hash": {"type": "string"},
            "signer": {"type": "string"}, "size_bytes": {"type": "integer", "minimum": 0}, "published_at": time,
            "published_by": {"type": "string"}, "yanked": {"type": "boolean"}, "revoked": {"type": "boolean"}
        }},
        "InstallRequest": {"type": "object", "required": ["version"], "additionalProperties": false, "properties": {
            "version": {"type": "string", "pattern": VERSION_PATTERN,
                        "description": "The version to run (a newer one upgrades, an older one rolls back)"},
            "capabilities": {"type": "array", "items": {"type": "string"},
                             "description": "A subset of the manifest's; absent: all of them"},
            "config": map,
            "egress": {"type": "array", "items": {"type": "string"},
                       "description": "Egress patterns: a subset of the manifest's network.allowed_hosts; absent: all of them. For a manifest without network (upstream manifests): any patterns; absent: none"},
            "enabled": {"type": "boolean"}
        }},
        "Install": {"type": "object",
                    "required": ["install_id", "tenant", "extension", "version", "version_id", "content_hash",
                                 "capabilities", "config", "egress", "enabled", "revision", "secret_names",
                                 "created_at", "updated_at"], "properties": {
            "install_id": {"type": "string"}, "tenant": {"type": "string"}, "extension": {"type": "string"},
            "version": {"type": "string"}, "version_id": {"type": "string"}, "content_hash": {"type": "string"},
            "capabilities": strings, "config": map, "egress": strings, "enabled": {"type": "boolean"},
            "revision": {"type": "integer"}, "secret_names": strings, "created_at": time, "updated_at": time
        }},
        "HistoryEntry": {"type": "object",
                         "required": ["seq", "install_id", "action", "version", "version_id", "capabilities",
                                      "config", "egress", "enabled", "actor", "at"], "properties": {
            "seq": {"type": "integer"}, "install_id": {"type": "string"},
            "action": {"enum": ["install", "upgrade", "rollback", "configure", "enable", "disable", "secrets", "uninstall",
                                "purge"]},
            "version": {"type": "string"}, "version_id": {"type": "string"}, "capabilities": strings,
            "config": map, "egress": strings, "enabled": {"type": "boolean"}, "actor": {"type": "string"}, "at": time
        }},
        "Execution": {"type": "object",
                      "required": ["request_id", "extension", "version", "endpoint", "status", "duration_ms", "at"], "properties": {
            "request_id": {"type": "string"}, "extension": {"type": "string"}, "version": {"type": "string"},
            "endpoint": {"type": "string"}, "status": {"type": "integer"},
            "error_code": {"type": ["string", "null"]}, "duration_ms": {"type": "integer", "minimum": 0},
            "limit_hit": {"type": ["string", "null"]}, "at": time
        }},
        "ResealReport": {"type": "object", "required": ["resealed", "already_current", "failed", "failures"],
                         "properties": {
            "resealed": {"type": "integer", "minimum": 0,
                         "description": "Installs whose secrets were sealed under a previous key and now are under the current one"},
            "already_current": {"type": "integer", "minimum": 0},
            "failed": {"type": "integer", "minimum": 0,
                       "description": "Installs left as they were (no accepted key opens them, or they changed meanwhile)"},
            "failures": {"type": "array", "maxItems": super::installs::MAX_RESEAL_FAILURES_SHOWN, "items": {
                "type": "object", "required": ["install_id", "tenant", "extension", "reason"], "properties": {
                    "install_id": {"type": "string"}, "tenant": {"type": "string"},
                    "extension": {"type": "string"}, "reason": {"type": "string"}
                }}}
        }},
        "AuditEntry": {"type": "object", "required": ["id", "at", "actor", "action", "subject", "detail"], "properties": {
            "id": {"type": "string"}, "at": time, "actor": {"type": "string"}, "action": {"type": "string"},
            "subject": {"type": "string"}, "detail": {}
        }}
    })
}
