//! `POST /v1/execute`'s input as an extractor: the body read under its cap
//! a declared length over it is refused before reading) and its
//! read timeout (slowloris), parsed and validated into an [`Envelope`], and
//! held against its execution grant when the runner requires grants
//! (G-02). The `x-idempotency-key` header is checked and carried on the
//! envelope. Its rejection is the one `ApiError`, under the request's id.

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use http_body_util::BodyExt as _;

use super::AppState;
use super::request_id::{id_of, valid_request_id};
use crate::envelope::Envelope;
use crate::error::{ApiError, ErrorCode, Failure};
use crate::limits::ENVELOPE_OVERHEAD_BYTES;

/// One execute request: its envelope and the id it is answered under (the
/// envelope's `request_id` when it is one we echo, else the request's).
pub struct ExecuteCall {
    pub envelope: Envelope,
    pub request_id: String,
}

impl FromRequest<Arc<AppState>> for ExecuteCall {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let request_id = id_of(&request);
        let fail = |code: ErrorCode, message: String| ApiError::new(code, message, request_id.clone());
        let traceparent = request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .filter(|v| crate::envelope::is_traceparent(v))
            .map(str::to_string);
        let config = state.runner.config();
        // The guest body travels base64-encoded inside the JSON envelope.
        let max_envelope = config.limits.max_request_bytes / 3 * 4 + ENVELOPE_OVERHEAD_BYTES;
        let too_large = || format!("request exceeds the limit of {max_envelope} bytes");
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max_envelope) {
            return Err(fail(ErrorCode::PayloadTooLarge, too_large()));
        }
        // Checked before the body is read: a bad key is refused at once.
        let idempotency_key = crate::idempotency::key_of(request.headers(), false)
            .map_err(|Failure { code, message }| fail(code, message))?;
        let (parts, body) = request.into_parts();
        let headers = parts.headers;
        let limited = http_body_util::Limited::new(body, max_envelope as usize);
        let bytes = match tokio::time::timeout(config.server.body_read_timeout, limited.collect()).await {
            Err(_) => {
                return Err(fail(
                    ErrorCode::RequestTimeout,
                    "request body was not received in time".into(),
                ));
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(fail(ErrorCode::PayloadTooLarge, too_large()));
            }
            Ok(Err(e)) => {
                return Err(fail(
                    ErrorCode::InvalidEnvelope,
                    format!("could not read the request body: {e}"),
                ));
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        let mut envelope = Envelope::parse(&bytes, config.limits.max_request_bytes)
            .map_err(|Failure { code, message }| fail(code, message))?;
        if let Some(keys) = &config.grants.keys {
            crate::grant::enforce(keys, &headers, &mut envelope, crate::grant::now_secs())
                .map_err(|Failure { code, message }| fail(code, message))?;
        }
        envelope.traceparent = traceparent;
        envelope.idempotency_key = idempotency_key;
        let request_id = match envelope.request_id.as_deref().filter(|id| valid_request_id(id)) {
            Some(id) => id.to_string(),
            None => request_id,
        };
        Ok(ExecuteCall { envelope, request_id })
    }
}
