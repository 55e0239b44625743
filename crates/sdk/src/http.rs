//! `cap:http.fetch`: outbound HTTP to hosts the install allows.
//!
//! Redirects are not followed; the response body is always present.

use serde::de::DeserializeOwned;

use crate::bindings::alga::extension::http as raw;
pub use crate::bindings::alga::extension::types::HttpError;
use crate::bindings::alga::extension::types::{HttpHeader, HttpRequest};

/// An outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// HTTP method.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Header lines in order.
    pub headers: Vec<(String, String)>,
    /// Body, if any.
    pub body: Option<Vec<u8>>,
}

impl FetchRequest {
    /// A request with this method and absolute URL.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request with a body.
    pub fn post(url: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", url).body(body)
    }

    /// Adds a header line.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
}

/// The response to a [`fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    /// HTTP status.
    pub status: u16,
    /// Header lines in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl FetchResponse {
    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    /// If the body is not JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Sends `request` through the host.
///
/// # Errors
/// [`HttpError::NotAllowed`] (no capability or host not allowed),
/// [`HttpError::InvalidUrl`], [`HttpError::Transport`], [`HttpError::Internal`].
pub fn fetch(request: FetchRequest) -> Result<FetchResponse, HttpError> {
    let raw_request = HttpRequest {
        method: request.method,
        url: request.url,
        headers: request
            .headers
            .into_iter()
            .map(|(name, value)| HttpHeader { name, value })
            .collect(),
        body: request.body,
    };
    let response = raw::fetch(&raw_request)?;
    Ok(FetchResponse {
        status: response.status,
        headers: response.headers.into_iter().map(|h| (h.name, h.value)).collect(),
        body: response.body.unwrap_or_default(),
    })
}

/// `GET url`; see [`fetch`].
///
/// # Errors
/// As [`fetch`].
pub fn get(url: &str) -> Result<FetchResponse, HttpError> {
    fetch(FetchRequest::get(url))
}
