//! [`Error`]: what a handler returns when it cannot answer normally.

use std::borrow::Cow;
use std::fmt;

use crate::Response;

/// An error a handler can return; it becomes a JSON response.
///
/// Any `std::error::Error` (capability errors such as [`crate::SecretError`],
/// `serde_json::Error`, your own types) converts into an internal error with
/// `?`. Client errors are built explicitly: [`Error::bad_request`],
/// [`Error::not_found`] or [`Error::new`].
///
/// The response body is `{"error": code, "message": message}`. For statuses of
/// 500 and above the message is replaced by `"internal error"` in the body (it
/// may hold details the caller should not see) and written to the extension's
/// log instead.
///
/// Like `anyhow::Error`, this type does not implement `std::error::Error`
/// itself; that is what lets every error convert into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: u16,
    code: Cow<'static, str>,
    message: String,
}

impl Error {
    /// An error with an explicit HTTP status and machine-readable code.
    pub fn new(status: u16, code: impl Into<Cow<'static, str>>, message: impl fmt::Display) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.to_string(),
        }
    }

    /// `400 bad_request`: the request cannot be handled as sent.
    pub fn bad_request(message: impl fmt::Display) -> Self {
        Self::new(400, "bad_request", message)
    }

    /// `404 not_found`: no such route or resource.
    pub fn not_found(message: impl fmt::Display) -> Self {
        Self::new(404, "not_found", message)
    }

    /// `500 internal`: something failed inside the extension.
    pub fn internal(message: impl fmt::Display) -> Self {
        Self::new(500, "internal", message)
    }

    /// The HTTP status of the response this error becomes.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The machine-readable code (`bad_request`, `not_found`, `internal`, ...).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The response for this error, without logging anything.
    pub(crate) fn to_response(&self) -> Response {
        let message = if self.status >= 500 {
            "internal error"
        } else {
            self.message.as_str()
        };
        Response::json(
            self.status,
            &serde_json::json!({ "error": self.code, "message": message }),
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        Self::internal(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_keep_their_message() {
        let response = Error::bad_request("name is required").to_response();
        assert_eq!(response.status_code(), 400);
        let body: serde_json::Value = serde_json::from_slice(response.body_bytes()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "error": "bad_request", "message": "name is required" })
        );
    }

    #[test]
    fn server_errors_hide_their_message() {
        let error = Error::from(crate::SecretError::Denied);
        assert_eq!(error.status(), 500);
        assert!(error.message().starts_with("denied"), "{}", error.message());
        let response = error.to_response();
        let body: serde_json::Value = serde_json::from_slice(response.body_bytes()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "error": "internal", "message": "internal error" })
        );
    }
}
