//! Error answers as the document describes them, shared by every role's
//! paths.

use serde_json::{Value, json};

use crate::error::ErrorCode;

/// An error answer with HTTP status `status`: the `Error` schema narrowed to
/// that status and to the codes [`ErrorCode::status`] maps to it, so a
/// response's code always agrees with its status.
pub fn error_response(status: u16, description: &str) -> Value {
    let mut codes: Vec<&str> = ErrorCode::ALL
        .iter()
        .filter(|c| c.status().as_u16() == status)
        .map(|c| c.as_str())
        .collect();
    codes.sort_unstable();
    codes.dedup();
    let mut headers = json!({
        "x-request-id": {"required": true, "description": "The request id (also in the body)", "schema": {"type": "string"}},
        "cache-control": {"required": true, "description": "Errors are never cached", "schema": {"const": "no-store"}}
    });
    // 429 and 503 answers all say when to retry.
    let with_status = || ErrorCode::ALL.iter().filter(|c| c.status().as_u16() == status);
    if with_status().all(|c| c.retry_after().is_some()) {
        headers["retry-after"] = json!({"required": true, "description": "Seconds to wait before retrying",
                                        "schema": {"type": "string", "pattern": "^[0-9]+$"}});
    }
    json!({
        "description": description,
        "headers": headers,
        "content": {"application/json": {"schema": {
            "allOf": [{"$ref": "#/components/schemas/Error"}],
            "properties": {
                "status": {"const": status},
                "error": {"properties": {"code": {"enum": codes}}}
            }
        }}}
    })
}
