//! The runner's error vocabulary and the one place it becomes HTTP.
//!
//! Every failure a client can see is an [`ApiError`]: a stable machine code,
//! a human message without internal detail, and the request id. Statuses
//! follow the seed's mapping (404 unknown endpoint, 413 size, 502 runner or
//! guest failure, 504 timeout; 429 for a tenant's quotas and 503 for a full
//! runner, both with `Retry-After`), and the body repeats the status so
//! gateways that only read the JSON see the same outcome.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

/// Stable error codes. The string form is part of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthorized,
    /// `RUNNER_GRANT_KEYS` is set and the execution grant is missing,
    /// malformed, not signed by a configured key, or expired.
    GrantInvalid,
    /// The execution grant is valid but names another tenant, extension,
    /// install, version, content hash, capability set or egress list.
    GrantMismatch,
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
    /// The content hash is revoked (the registry's kill switch): nothing
    /// with it runs or is served, cached or not.
    BundleRevoked,
    BundleIntegrity,
    BundleInvalid,
    BundleInvalidEntry,
    BundleTooLarge,
    ComponentInvalid,
    /// The component file is over `RUNNER_MAX_COMPONENT_BYTES`.
    ComponentTooLarge,
    UnsupportedImport,
    UnsupportedFeature,
    InstantiationFailed,
    ExtensionTrap,
    MemoryLimitExceeded,
    ExtensionNoResponse,
    InvalidResponse,
    ExecutionTimeout,
    FuelExhausted,
    /// The tenant's concurrency cap (quota.rs).
    TenantConcurrencyExceeded,
    /// The (tenant, extension) concurrency cap (quota.rs).
    ExtensionConcurrencyExceeded,
    /// The tenant's token bucket is empty; the next token is this far away.
    RateLimited {
        retry_after_secs: u32,
    },
    /// The tenant's CPU budget is used up, or it is over its share of the
    /// CPU with its start queue full (`cpu`, `quota::cpu_budget`).
    TenantCpuExceeded {
        retry_after_secs: u32,
    },
    /// Every execution slot of this runner is busy (`RUNNER_MAX_CONCURRENCY`).
    Overloaded,
    /// No compile slot freed before the request's deadline
    /// (`RUNNER_COMPILE_CONCURRENCY`, A-21).
    CompileBusy,
    /// A registry request body, query or path segment is malformed (the message names the field).
    InvalidRequest,
    /// The caller's token is valid but its scope does not cover this.
    Forbidden,
    ExtensionNotFound,
    VersionNotFound,
    InstallNotFound,
    /// Published versions are immutable: the version exists with other content.
    VersionExists,
    /// The bundle store holds other bytes at a key a publish writes.
    ObjectConflict,
    /// Another request changed the same data at the same time; retry.
    Conflict,
    /// `If-Match` / `If-None-Match` did not hold.
    PreconditionFailed,
    /// A published archive, manifest or component the runner would refuse.
    BundleRejected,
    /// A publish whose signature is missing, malformed, untrusted or not the namespace's signer.
    SignatureRejected,
    /// Capabilities or egress hosts an install asks for that the manifest does not declare.
    NotDeclared,
    /// The version is yanked or revoked.
    VersionNotInstallable,
    /// No secrets key is configured to seal install secrets with.
    SecretsUnavailable,
    /// The registry's database failed.
    RegistryUnavailable,
    /// An uninstall with purge removed the install but the KV store failed
    /// before its data was gone; the same `DELETE …?purge=true` finishes it.
    PurgeIncomplete,
    ExtensionNotInstalled,
    InstallDisabled,
    RunnerUnavailable,
    /// `x-idempotency-key` (or `Idempotency-Key`) is empty, too long, not
    /// visible ASCII, or given twice with different values.
    IdempotencyKeyInvalid,
    /// The idempotency key was used before with another request (method,
    /// endpoint, path, query or body): never answered with that one's answer.
    IdempotencyKeyReused,
    /// The call with this idempotency key still runs at this call's deadline.
    IdempotencyKeyInProgress,
    RunnerTimeout,
    Internal,
}

/// A failure with the code a client will see and a message safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl ErrorCode {
    /// Every code a client can see (the OpenAPI `error.code` enum); the
    /// `all_lists_every_code` test fails when a variant is missing.
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::Unauthorized,
        ErrorCode::GrantInvalid,
        ErrorCode::GrantMismatch,
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
        ErrorCode::BundleRevoked,
        ErrorCode::BundleIntegrity,
        ErrorCode::BundleInvalid,
        ErrorCode::BundleInvalidEntry,
        ErrorCode::BundleTooLarge,
        ErrorCode::ComponentInvalid,
        ErrorCode::ComponentTooLarge,
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
        ErrorCode::TenantCpuExceeded { retry_after_secs: 1 },
        ErrorCode::Overloaded,
        ErrorCode::CompileBusy,
        ErrorCode::InvalidRequest,
        ErrorCode::Forbidden,
        ErrorCode::ExtensionNotFound,
        ErrorCode::VersionNotFound,
        ErrorCode::InstallNotFound,
        ErrorCode::VersionExists,
        ErrorCode::ObjectConflict,
        ErrorCode::Conflict,
        ErrorCode::PreconditionFailed,
        ErrorCode::BundleRejected,
        ErrorCode::SignatureRejected,
        ErrorCode::NotDeclared,
        ErrorCode::VersionNotInstallable,
        ErrorCode::SecretsUnavailable,
        ErrorCode::RegistryUnavailable,
        ErrorCode::PurgeIncomplete,
        ErrorCode::ExtensionNotInstalled,
        ErrorCode::InstallDisabled,
        ErrorCode::RunnerUnavailable,
        ErrorCode::RunnerTimeout,
        ErrorCode::IdempotencyKeyInvalid,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::IdempotencyKeyInProgress,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::GrantInvalid => "grant_invalid",
            ErrorCode::GrantMismatch => "grant_mismatch",
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
            ErrorCode::BundleRevoked => "bundle_revoked",
            ErrorCode::BundleIntegrity => "bundle_integrity",
            ErrorCode::BundleInvalid => "bundle_invalid",
            ErrorCode::BundleInvalidEntry => "bundle_invalid_entry",
            ErrorCode::BundleTooLarge => "bundle_too_large",
            ErrorCode::ComponentInvalid => "component_invalid",
            ErrorCode::ComponentTooLarge => "component_too_large",
            ErrorCode::UnsupportedImport => "unsupported_import",
            ErrorCode::UnsupportedFeature => "unsupported_feature",
            ErrorCode::InstantiationFailed => "instantiation_failed",
            ErrorCode::ExtensionTrap => "extension_trap",
            ErrorCode::MemoryLimitExceeded => "memory_limit_exceeded",
            ErrorCode::ExtensionNoResponse => "extension_no_response",
            ErrorCode::InvalidResponse => "invalid_response",
            ErrorCode::ExecutionTimeout => "execution_timeout",
            ErrorCode::FuelExhausted => "fuel_exhausted",
            ErrorCode::TenantConcurrencyExceeded => "tenant_concurrency_exceeded",
            ErrorCode::ExtensionConcurrencyExceeded => "extension_concurrency_exceeded",
            ErrorCode::RateLimited { .. } => "rate_limited",
            ErrorCode::TenantCpuExceeded { .. } => "tenant_cpu_exceeded",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::CompileBusy => "compile_busy",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::ExtensionNotFound => "extension_not_found",
            ErrorCode::VersionNotFound => "version_not_found",
            ErrorCode::InstallNotFound => "install_not_found",
            ErrorCode::VersionExists => "version_exists",
            ErrorCode::ObjectConflict => "object_conflict",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::BundleRejected => "bundle_rejected",
            ErrorCode::SignatureRejected => "signature_rejected",
            ErrorCode::NotDeclared => "not_declared",
            ErrorCode::VersionNotInstallable => "version_not_installable",
            ErrorCode::SecretsUnavailable => "secrets_unavailable",
            ErrorCode::RegistryUnavailable => "registry_unavailable",
            ErrorCode::PurgeIncomplete => "purge_incomplete",
            ErrorCode::ExtensionNotInstalled => "extension_not_installed",
            ErrorCode::InstallDisabled => "install_disabled",
            ErrorCode::RunnerUnavailable => "runner_unavailable",
            ErrorCode::RunnerTimeout => "runner_timeout",
            ErrorCode::IdempotencyKeyInvalid => "idempotency_key_invalid",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::IdempotencyKeyInProgress => "idempotency_key_in_progress",
            ErrorCode::Internal => "internal_error",
        }
    }

    /// The HTTP status for this code: the only place statuses are chosen.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized | ErrorCode::GrantInvalid => StatusCode::UNAUTHORIZED,
            ErrorCode::GrantMismatch | ErrorCode::BundleRevoked => StatusCode::FORBIDDEN,
            ErrorCode::InvalidEnvelope | ErrorCode::UnknownCapability => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound | ErrorCode::EndpointNotFound | ErrorCode::ExtensionNotInstalled => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::InstallDisabled => StatusCode::FORBIDDEN,
            ErrorCode::RunnerTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::InvalidRequest | ErrorCode::IdempotencyKeyInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::IdempotencyKeyInProgress => StatusCode::CONFLICT,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::ExtensionNotFound | ErrorCode::VersionNotFound | ErrorCode::InstallNotFound => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::VersionExists
            | ErrorCode::ObjectConflict
            | ErrorCode::Conflict
            | ErrorCode::VersionNotInstallable => StatusCode::CONFLICT,
            ErrorCode::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ErrorCode::BundleRejected | ErrorCode::SignatureRejected | ErrorCode::NotDeclared => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ErrorCode::SecretsUnavailable | ErrorCode::RegistryUnavailable | ErrorCode::PurgeIncomplete => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::PayloadTooLarge | ErrorCode::ResponseTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::ExecutionTimeout | ErrorCode::FuelExhausted => StatusCode::GATEWAY_TIMEOUT,
            // The tenant's own quota: others are served meanwhile.
            ErrorCode::TenantConcurrencyExceeded
            | ErrorCode::ExtensionConcurrencyExceeded
            | ErrorCode::RateLimited { .. }
            | ErrorCode::TenantCpuExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            // The whole runner is full, or the object store or the cache is
            // down: worth retrying.
            ErrorCode::Overloaded | ErrorCode::CompileBusy | ErrorCode::BundleUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::BundleNotFound
            | ErrorCode::BundleSignatureInvalid
            | ErrorCode::BundleIntegrity
            | ErrorCode::BundleInvalid
            | ErrorCode::BundleInvalidEntry
            | ErrorCode::BundleTooLarge
            | ErrorCode::ComponentInvalid
            | ErrorCode::ComponentTooLarge
            | ErrorCode::UnsupportedImport
            | ErrorCode::UnsupportedFeature
            | ErrorCode::InstantiationFailed
            | ErrorCode::ExtensionTrap
            | ErrorCode::MemoryLimitExceeded
            | ErrorCode::ExtensionNoResponse
            | ErrorCode::InvalidResponse
            | ErrorCode::RunnerUnavailable
            | ErrorCode::Internal => StatusCode::BAD_GATEWAY,
        }
    }

    /// The code named `code` (as [`ErrorCode::as_str`] writes it), with
    /// `retry_after` for the codes that carry one: how a gateway reads a
    /// runner's answer.
    pub fn from_code(code: &str, retry_after: Option<u32>) -> Option<ErrorCode> {
        let retry_after_secs = retry_after.unwrap_or(1).max(1);
        ErrorCode::ALL.iter().find(|c| c.as_str() == code).map(|c| match c {
            ErrorCode::RateLimited { .. } => ErrorCode::RateLimited { retry_after_secs },
            ErrorCode::TenantCpuExceeded { .. } => ErrorCode::TenantCpuExceeded { retry_after_secs },
            other => *other,
        })
    }

    /// The `Retry-After` (seconds) this answer carries, if any.
    pub fn retry_after(self) -> Option<u32> {
        match self {
            ErrorCode::TenantConcurrencyExceeded | ErrorCode::ExtensionConcurrencyExceeded | ErrorCode::Overloaded => {
                Some(crate::limits::CONCURRENCY_RETRY_AFTER_SECS)
            }
            ErrorCode::RateLimited { retry_after_secs } | ErrorCode::TenantCpuExceeded { retry_after_secs } => {
                Some(retry_after_secs)
            }
            ErrorCode::BundleUnavailable => Some(5),
            ErrorCode::CompileBusy => Some(crate::limits::COMPILE_BUSY_RETRY_AFTER_SECS),
            ErrorCode::Conflict
            | ErrorCode::RegistryUnavailable
            | ErrorCode::PurgeIncomplete
            | ErrorCode::IdempotencyKeyInProgress => Some(1),
            _ => None,
        }
    }
}

/// An error a client sees: code, message and the request it belongs to.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub request_id: String,
    /// What the guest used before it failed, when it ran (`limit_hit` says
    /// which limit stopped it).
    pub report: Option<crate::report::ExecutionReport>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>, request_id: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            request_id: request_id.into(),
            report: None,
        }
    }

    /// The error of an execution that ran, with its usage report.
    #[must_use]
    pub fn with_report(mut self, report: Option<crate::report::ExecutionReport>) -> Self {
        self.report = report;
        self
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
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<&'a crate::report::ExecutionReport>,
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
            report: self.report.as_ref(),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        // Errors are never cacheable (the replaced system cached them for a year).
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(value) = HeaderValue::from_str(&self.request_id) {
            headers.insert("x-request-id", value.clone());
            headers.insert("x-ext-request-id", value);
        }
        if let Some(secs) = self.code.retry_after() {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new variant does not compile here until it has an index, and then
    /// this fails until it is also in [`ErrorCode::ALL`].
    #[test]
    fn all_lists_every_code() {
        fn index(code: ErrorCode) -> usize {
            match code {
                ErrorCode::Unauthorized => 0,
                ErrorCode::InvalidEnvelope => 1,
                ErrorCode::UnknownCapability => 2,
                ErrorCode::NotFound => 3,
                ErrorCode::MethodNotAllowed => 4,
                ErrorCode::EndpointNotFound => 5,
                ErrorCode::PayloadTooLarge => 6,
                ErrorCode::ResponseTooLarge => 7,
                ErrorCode::HeadersTooLarge => 8,
                ErrorCode::RequestTimeout => 9,
                ErrorCode::BundleUnavailable => 10,
                ErrorCode::BundleNotFound => 11,
                ErrorCode::BundleSignatureInvalid => 12,
                ErrorCode::BundleIntegrity => 13,
                ErrorCode::BundleInvalid => 14,
                ErrorCode::BundleInvalidEntry => 15,
                ErrorCode::BundleTooLarge => 16,
                ErrorCode::ComponentInvalid => 17,
                ErrorCode::UnsupportedImport => 18,
                ErrorCode::UnsupportedFeature => 19,
                ErrorCode::InstantiationFailed => 20,
                ErrorCode::ExtensionTrap => 21,
                ErrorCode::MemoryLimitExceeded => 22,
                ErrorCode::ExtensionNoResponse => 23,
                ErrorCode::InvalidResponse => 24,
                ErrorCode::ExecutionTimeout => 25,
                ErrorCode::FuelExhausted => 26,
                ErrorCode::TenantConcurrencyExceeded => 27,
                ErrorCode::ExtensionConcurrencyExceeded => 28,
                ErrorCode::RateLimited { .. } => 29,
                ErrorCode::Overloaded => 30,
                ErrorCode::Internal => 31,
                ErrorCode::ComponentTooLarge => 32,
                ErrorCode::CompileBusy => 33,
                ErrorCode::TenantCpuExceeded { .. } => 34,
                ErrorCode::InvalidRequest => 35,
                ErrorCode::Forbidden => 36,
                ErrorCode::ExtensionNotFound => 37,
                ErrorCode::VersionNotFound => 38,
                ErrorCode::InstallNotFound => 39,
                ErrorCode::VersionExists => 40,
                ErrorCode::ObjectConflict => 41,
                ErrorCode::Conflict => 42,
                ErrorCode::PreconditionFailed => 43,
                ErrorCode::BundleRejected => 44,
                ErrorCode::SignatureRejected => 45,
                ErrorCode::NotDeclared => 46,
                ErrorCode::VersionNotInstallable => 47,
                ErrorCode::SecretsUnavailable => 48,
                ErrorCode::RegistryUnavailable => 49,
                ErrorCode::GrantInvalid => 50,
                ErrorCode::GrantMismatch => 51,
                ErrorCode::BundleRevoked => 52,
                ErrorCode::PurgeIncomplete => 53,
                ErrorCode::ExtensionNotInstalled => 54,
                ErrorCode::InstallDisabled => 55,
                ErrorCode::RunnerUnavailable => 56,
                ErrorCode::RunnerTimeout => 57,
                ErrorCode::IdempotencyKeyInvalid => 58,
                ErrorCode::IdempotencyKeyReused => 59,
                ErrorCode::IdempotencyKeyInProgress => 60,
            }
        }
        let mut seen: Vec<usize> = ErrorCode::ALL.iter().map(|c| index(*c)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, (0..61).collect::<Vec<_>>());
    }
}
