//! The HTTP client of the `registry` commands: where the registry is, the
//! caller's token, one call, and the registry's answer or the reason there
//! is none ([`CallError`]).

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, ETAG, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// Where `serve` listens by default.
pub const DEFAULT_REGISTRY_URL: &str = "http://127.0.0.1:8080";

/// A registry that accepts no connection within this time is reported as
/// unreachable rather than waited for.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for the whole answer to a call that sends no bundle: the
/// registry answers those routes within seconds; a bound keeps a stuck
/// server from hanging a script. A publish is not bounded by it (reqwest
/// counts a client-wide read timeout from the moment the request starts,
/// so it would cut off a large bundle still being sent).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Most characters of a non-JSON error body quoted in a message.
const MAX_QUOTED_BODY_CHARS: usize = 200;

/// The registry to talk to and who calls, as the flags give them.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// Base URL of the registry (a path prefix is kept).
    #[arg(long = "registry", env = "REGISTRY_URL", default_value = DEFAULT_REGISTRY_URL, global = true)]
    pub url: String,
    /// Registry token, sent as `Authorization: Bearer` (none: `serve --dev` on loopback).
    #[arg(long, env = "REGISTRY_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

/// Why a call has no answer to show.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The registry answered with its error JSON.
    #[error("registry: {status} {code}: {message} (request {request_id})")]
    Refused {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    /// The registry answered something that is not its JSON (a proxy's
    /// error page, another server on that port).
    #[error("registry at {url}: {status} without the registry's error JSON: {body}")]
    Unexpected { url: String, status: u16, body: String },
    /// No answer at all: refused connection, DNS, TLS, timeout.
    #[error("cannot reach the registry at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// `--registry` is not an http(s) URL.
    #[error("--registry `{url}`: {why}")]
    BadUrl { url: String, why: String },
    /// `--token` cannot be sent in a header (the value is not shown).
    #[error("--token (REGISTRY_TOKEN): {why}")]
    BadToken { why: &'static str },
}

impl CallError {
    /// The error code of a refusal (`precondition_failed`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            CallError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A successful answer: its status, `ETag` and JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub body: Value,
}

/// A registry client: the base URL, the token, and one connection pool.
pub struct Client {
    base: Url,
    /// `Bearer <token>`, marked sensitive; `None` without a token.
    authorization: Option<HeaderValue>,
    http: reqwest::Client,
}

impl Client {
    /// A client for `connection`.
    ///
    /// An empty token (`REGISTRY_TOKEN=`) counts as none.
    ///
    /// # Errors
    /// [`CallError::BadUrl`] for a URL that is not `http(s)://…`;
    /// [`CallError::BadToken`] for a token a header cannot carry.
    pub fn new(connection: &Connection) -> Result<Client, CallError> {
        let bad = |why: &dyn std::fmt::Display| CallError::BadUrl {
            url: connection.url.clone(),
            why: why.to_string(),
        };
        let base = Url::parse(&connection.url).map_err(|e| bad(&e))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad(&"must be an http:// or https:// URL"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| bad(&e))?;
        let token = connection.token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let authorization = match token {
            None => None,
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| CallError::BadToken {
                    why: "holds characters a header cannot carry (control characters, a line break)",
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Client {
            base,
            authorization,
            http,
        })
    }

    /// The URL of the route made of `segments` (each percent-encoded) under
    /// the base URL.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `GET url`.
    ///
    /// # Errors
    /// As [`Client::send`].
    pub async fn get(&self, url: Url) -> Result<Answer, CallError> {
        self.send(Method::GET, url, HeaderMap::new(), None).await
    }

    /// One call: `method url` with `headers` and `body` (none: empty),
    /// answered within [`CALL_TIMEOUT`].
    ///
    /// # Errors
    /// [`CallError`]: the registry's refusal, a foreign answer, or none.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<reqwest::Body>,
    ) -> Result<Answer, CallError> {
        self.call(method, url, headers, body, Some(CALL_TIMEOUT)).await
    }

    /// `POST url` of a bundle: as [`Client::send`], without a time bound
    /// (the upload takes as long as the bundle and the link make it).
    ///
    /// # Errors
    /// As [`Client::send`].
    pub async fn upload(&self, url: Url, headers: HeaderMap, body: reqwest::Body) -> Result<Answer, CallError> {
        self.call(Method::POST, url, headers, Some(body), None).await
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<reqwest::Body>,
        timeout: Option<Duration>,
    ) -> Result<Answer, CallError> {
        let shown = url.to_string();
        let unreachable = |source| CallError::Unreachable {
            url: shown.clone(),
            source,
        };
        let mut request = self.http.request(method, url).headers(headers);
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response.bytes().await.map_err(unreachable)?;
        let json = match bytes.is_empty() {
            true => Some(Value::Null),
            false => serde_json::from_slice::<Value>(&bytes).ok(),
        };
        if status.is_success() {
            return match json {
                Some(body) => Ok(Answer { status, etag, body }),
                None => Err(unexpected(&shown, status, &bytes)),
            };
        }
        let error = json.as_ref().map(|j| &j["error"]).filter(|e| e.is_object());
        match error {
            Some(error) => {
                let text = |field: &str| error[field].as_str().unwrap_or("").to_string();
                Err(CallError::Refused {
                    status: status.as_u16(),
                    code: text("code"),
                    message: text("message"),
                    request_id: error["request_id"]
                        .as_str()
                        .map(str::to_string)
                        .or(request_id)
                        .unwrap_or_else(|| "id unknown".to_string()),
                })
            }
            None => Err(unexpected(&shown, status, &bytes)),
        }
    }
}

fn unexpected(url: &str, status: StatusCode, body: &[u8]) -> CallError {
    let text = String::from_utf8_lossy(body);
    let mut quoted: String = text.chars().take(MAX_QUOTED_BODY_CHARS).collect();
    if text.chars().count() > MAX_QUOTED_BODY_CHARS {
        quoted.push('…');
    }
    CallError::Unexpected {
        url: url.to_string(),
        status: status.as_u16(),
        body: quoted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Result<Client, CallError> {
        Client::new(&Connection {
            url: url.to_string(),
            token: None,
        })
    }

    #[test]
    fn routes_go_under_the_base_url_with_segments_encoded() {
        let cases = [
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/v1/registry/tenants/a%20b",
            ),
            ("http://h/prefix/", "http://h/prefix/v1/registry/tenants/a%20b"),
            ("https://h/prefix", "https://h/prefix/v1/registry/tenants/a%20b"),
        ];
        for (base, expected) in cases {
            let url = client(base).unwrap().url(&["v1", "registry", "tenants", "a b"]);
            assert_eq!(url.as_str(), expected, "{base}");
        }
        for bad in ["127.0.0.1:8080", "ftp://h", "not a url"] {
            let err = client(bad).err().unwrap().to_string();
            assert!(err.starts_with(&format!("--registry `{bad}`")), "{err}");
        }
    }

    #[test]
    fn an_empty_token_is_none_and_an_unsendable_one_is_refused_unshown() {
        let with = |token: &str| {
            Client::new(&Connection {
                url: DEFAULT_REGISTRY_URL.to_string(),
                token: Some(token.to_string()),
            })
        };
        assert!(with("").unwrap().authorization.is_none());
        assert!(with("  ").unwrap().authorization.is_none());
        let sent = with("tok-0123456789abcdef").unwrap().authorization.unwrap();
        assert_eq!(sent, "Bearer tok-0123456789abcdef");
        assert!(sent.is_sensitive());
        let err = with("secret\nvalue").err().unwrap().to_string();
        assert!(
            err.starts_with("--token (REGISTRY_TOKEN)") && !err.contains("secret"),
            "{err}"
        );
    }
}
