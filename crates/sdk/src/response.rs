//! [`Response`]: what a handler answers, and [`IntoResponse`].

use serde::Serialize;

use crate::Error;
use crate::bindings::alga::extension::types::{ExecuteResponse, HttpHeader};

/// Content type given to a response that has a body but no `content-type` header.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// An HTTP response, built with a few chained calls.
///
/// ```
/// use ext_sdk::Response;
/// let r = Response::text(201, "created").header("x-id", "42");
/// assert_eq!(r.status_code(), 201);
/// assert_eq!(r.get_header("X-Id"), Some("42"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Response {
    /// A response with this status, no headers and no body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    /// `value` serialised as JSON, with `content-type: application/json`.
    ///
    /// If `value` cannot be serialised (a map with non-string keys), the
    /// response is a `500` JSON error instead.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(status).header("content-type", "application/json").body(body),
            Err(e) => Error::internal(format!("response is not serialisable: {e}")).to_response(),
        }
    }

    /// A UTF-8 text body with `content-type: text/plain; charset=utf-8`.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body.into())
    }

    /// Sets header `name`, replacing any earlier value (names compare case-insensitively).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(key, _)| !key.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Adds a header line, keeping earlier ones of the same name (e.g. `set-cookie`).
    pub fn append_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets the status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The status.
    pub fn status_code(&self) -> u16 {
        self.status
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// All headers in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body bytes (empty when there is none).
    pub fn body_bytes(&self) -> &[u8] {
        self.body.as_deref().unwrap_or_default()
    }

    /// Converts to the wire type, adding [`DEFAULT_CONTENT_TYPE`] to a body without a content type.
    pub fn into_raw(mut self) -> ExecuteResponse {
        if self.body.is_some() && self.get_header("content-type").is_none() {
            self.headers
                .push(("content-type".to_owned(), DEFAULT_CONTENT_TYPE.to_owned()));
        }
        ExecuteResponse {
            status: self.status,
            headers: self
                .headers
                .into_iter()
                .map(|(name, value)| HttpHeader { name, value })
                .collect(),
            body: self.body,
        }
    }
}

/// Anything a handler may return.
pub trait IntoResponse {
    /// Turns `self` into the response sent back to the caller.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for Error {
    /// The JSON error response; a 5xx error's message is also written to the log.
    fn into_response(self) -> Response {
        if self.status() >= 500 {
            log_handler_error(&self);
        }
        self.to_response()
    }
}

impl<R: IntoResponse, E: Into<Error>> IntoResponse for Result<R, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(response) => response.into_response(),
            Err(error) => error.into().into_response(),
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn log_handler_error(error: &Error) {
    crate::log::error(format!("handler failed: {error}"));
}

/// Outside wasm there is no host to log to (native unit tests of handlers).
#[cfg(not(target_arch = "wasm32"))]
fn log_handler_error(_error: &Error) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_headers(r: &ExecuteResponse) -> Vec<(&str, &str)> {
        r.headers.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect()
    }

    #[test]
    fn new_has_nothing() {
        let raw = Response::new(0).into_raw();
        assert_eq!(raw.status, 0);
        assert!(raw.headers.is_empty());
        assert!(raw.body.is_none());
    }

    #[test]
    fn json_sets_content_type_and_body() {
        let raw = Response::json(201, &serde_json::json!({"a": 1})).into_raw();
        assert_eq!(raw.status, 201);
        assert_eq!(raw_headers(&raw), vec![("content-type", "application/json")]);
        assert_eq!(raw.body.as_deref(), Some(&br#"{"a":1}"#[..]));
    }

    #[test]
    fn json_serialisation_failure_is_500() {
        let mut map = std::collections::HashMap::new();
        map.insert((1, 2), 3);
        assert_eq!(Response::json(200, &map).status_code(), 500);
    }

    #[test]
    fn body_without_content_type_gets_default() {
        let raw = Response::new(200).body(b"x".to_vec()).into_raw();
        assert_eq!(raw_headers(&raw), vec![("content-type", DEFAULT_CONTENT_TYPE)]);
        let raw = Response::new(200)
            .header("Content-Type", "image/png")
            .body(b"x".to_vec())
            .into_raw();
        assert_eq!(raw_headers(&raw), vec![("Content-Type", "image/png")]);
    }

    #[test]
    fn header_replaces_append_keeps() {
        let r = Response::text(200, "x")
            .header("X-A", "1")
            .header("x-a", "2")
            .append_header("set-cookie", "a=1")
            .append_header("set-cookie", "b=2");
        assert_eq!(
            r.headers(),
            &[
                ("content-type".into(), "text/plain; charset=utf-8".into()),
                ("x-a".into(), "2".into()),
                ("set-cookie".into(), "a=1".into()),
                ("set-cookie".into(), "b=2".into()),
            ]
        );
    }

    #[test]
    fn results_map_errors() {
        let ok: Result<Response, Error> = Ok(Response::new(204));
        assert_eq!(ok.into_response().status_code(), 204);
        let err: Result<Response, Error> = Err(Error::not_found("nope"));
        assert_eq!(err.into_response().status_code(), 404);
        let io: Result<Response, std::io::Error> = Err(std::io::Error::other("disk"));
        assert_eq!(io.into_response().status_code(), 500);
    }
}
