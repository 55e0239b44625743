//! `cap:ui.proxy`: call a route of the extension's own UI proxy.

pub use crate::bindings::alga::extension::types::ProxyError;
use crate::bindings::alga::extension::ui_proxy as raw;

/// Calls `route` with an optional payload and returns the response bytes.
///
/// # Errors
/// [`ProxyError::RouteNotFound`], [`ProxyError::Denied`] (without the
/// capability), [`ProxyError::BadRequest`] or [`ProxyError::Internal`].
pub fn call_route(route: &str, payload: Option<&[u8]>) -> Result<Vec<u8>, ProxyError> {
    raw::call_route(route, payload)
}
