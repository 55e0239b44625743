//! The layers around the API routes: the service-token check and
//! `no-store` on answers about this moment (the request id's layer is in
//! [`super::request_id`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::request_id::id_of;
use crate::error::{ApiError, ErrorCode};

/// Only callers presenting a service token get through (401 otherwise).
pub async fn require_service_token(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if !state.authorized(request.headers()) {
        let id = id_of(&request);
        return ApiError::new(ErrorCode::Unauthorized, "missing or invalid service token", id).into_response();
    }
    next.run(request).await
}

/// `cache-control: no-store`, unless the response already says how to cache.
pub async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(axum::http::header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static("no-store"));
    response
}
