//! The runner's error vocabulary and the one place it becomes HTTP.
//!
//! Every failure a client can see is an [`ApiError`]: a stable machine code,
//! a human message without internal detail, and the request id. Statuses
//! follow the seed's mapping (404 unknown endpoint, 413 size, 502 runner or
//! guest failure, 504 timeout), and the body repeats the status so gateways
//! that only read the JSON see the same outcome.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

/// Stable error codes. The string form is part of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthorized,
    InvalidEnvelope,
    UnknownCapability,
    NotFound,
    MethodNotAllowed,
    EndpointNotFound,
    PayloadTooLarge,
    ResponseTooLarge,
    HeadersTooLarge,
    RequestTimeout,
    BundleUnavailable,
    BundleNotFound,
    BundleSignatureInvalid,
    BundleIntegrity,
    BundleInvalid,
    BundleInvalidEntry,
    BundleTooLarge,
    ComponentInvalid,
    UnsupportedImport,
    UnsupportedFeature,
    InstantiationFailed,
    ExtensionTrap,
    MemoryLimitExceeded,
    ExtensionNoResponse,
    InvalidResponse,
    ExecutionTimeout,
    FuelExhausted,
    RunnerBusy,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidEnvelope => "invalid_envelope",
            ErrorCode::UnknownCapability => "unknown_capability",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::EndpointNotFound => "endpoint_not_found",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::ResponseTooLarge => "response_too_large",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::BundleUnavailable => "bundle_unavailable",
            ErrorCode::BundleNotFound => "bundle_not_found",
            ErrorCode::BundleSignatureInvalid => "bundle_signature_invalid",
            ErrorCode::BundleIntegrity => "bundle_integrity",
            ErrorCode::BundleInvalid => "bundle_invalid",
            ErrorCode::BundleInvalidEntry => "bundle_invalid_entry",
            ErrorCode::BundleTooLarge => "bundle_too_large",
            ErrorCode::ComponentInvalid => "component_invalid",
            ErrorCode::UnsupportedImport => "unsupported_import",
            ErrorCode::UnsupportedFeature => "unsupported_feature",
            ErrorCode::InstantiationFailed => "instantiation_failed",
            ErrorCode::ExtensionTrap => "extension_trap",
            ErrorCode::MemoryLimitExceeded => "memory_limit_exceeded",
            ErrorCode::ExtensionNoResponse => "extension_no_response",
            ErrorCode::InvalidResponse => "invalid_response",
            ErrorCode::ExecutionTimeout => "execution_timeout",
            ErrorCode::FuelExhausted => "fuel_exhausted",
            ErrorCode::RunnerBusy => "runner_busy",
            ErrorCode::Internal => "internal_error",
        }
    }

    /// The HTTP status for this code: the only place statuses are chosen.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidEnvelope | ErrorCode::UnknownCapability => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound | ErrorCode::EndpointNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::PayloadTooLarge | ErrorCode::ResponseTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::ExecutionTimeout | ErrorCode::FuelExhausted => StatusCode::GATEWAY_TIMEOUT,
            // The object store or the cache is down: worth retrying.
            ErrorCode::RunnerBusy | ErrorCode::BundleUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::BundleNotFound
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
            | ErrorCode::Internal => StatusCode::BAD_GATEWAY,
        }
    }
}

/// An error a client sees: code, message and the request it belongs to.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub request_id: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>, request_id: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            request_id: request_id.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: u16,
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    request_id: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            status: status.as_u16(),
            error: ErrorDetail {
                code: self.code.as_str(),
                message: &self.message,
                request_id: &self.request_id,
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        // Errors are never cacheable (the replaced system cached them for a year).
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(value) = HeaderValue::from_str(&self.request_id) {
            headers.insert("x-request-id", value.clone());
            headers.insert("x-ext-request-id", value);
        }
        match self.code {
            ErrorCode::RunnerBusy => {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ErrorCode::BundleUnavailable => {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}
