//! The request id every answer carries: the caller's `x-request-id` when we
//! echo it, else a new one, in the request's extensions and the answer's
//! headers. Its own module so the roles' routes can read it without the
//! router's state.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// Longest caller-chosen request id echoed back.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// The request's id, in its extensions: the caller's `x-request-id` when it
/// is one we echo, else a new UUID. A handler that answers under another id
/// (the envelope's `request_id`) sets the response's headers itself.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// A request id we are willing to echo: short, printable, no separators.
pub fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The caller's `x-request-id` if we echo it, else a new UUID.
pub fn inbound_request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| valid_request_id(id))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// `x-request-id` and `x-ext-request-id` (the upstream runner's name).
pub fn set_request_id(headers: &mut HeaderMap, request_id: &str) {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value.clone());
        headers.insert("x-ext-request-id", value);
    }
}

/// Give the request its id, and the answer the id unless it has one.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = inbound_request_id(request.headers());
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if !response.headers().contains_key("x-request-id") {
        set_request_id(response.headers_mut(), &id);
    }
    response
}

/// The id [`request_id`] gave the request (a new one outside that layer).
pub fn id_of(request: &Request) -> String {
    request
        .extensions()
        .get::<RequestId>()
        .map_or_else(|| inbound_request_id(request.headers()), |id| id.0.clone())
}
