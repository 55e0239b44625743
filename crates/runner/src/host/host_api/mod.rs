//! The one transport of the product interfaces (`scheduler`, `invoicing`,
//! `clients`, `services`): each guest call is one
//! `POST {RUNNER_HOST_API_URL}/api/internal/ext-<svc>/install/{install_id}`
//! to the host product, with the JSON body `{"operation": …, <fields>}`
//! (camelCase, as each interface's `wire.rs` spells them) and the headers
//! `x-runner-auth` (`RUNNER_HOST_API_TOKEN`, never logged), `x-request-id`,
//! `x-alga-tenant` and `x-alga-extension`.
//!
//! No proxies from the environment and no redirects; a call is bounded by
//! [`HOST_API_TIMEOUT`] and the execution's deadline less
//! [`HOST_API_ANSWER_MARGIN`], its answer by [`MAX_HOST_API_RESPONSE_BYTES`]
//! (read chunk by chunk). A 2xx answer's body must be the JSON the
//! operation answers; any other status is a [`Refusal`] ([`refusal`]):
//!
//! | status | refusal | scheduler | clients, services |
//! |---|---|---|---|
//! | 401, 403 | `Denied` | `denied` | `not-allowed` |
//! | 404 | `NotFound` | `not-found` (`none` for `get-*`) | `none` for `get-*`, else `internal` |
//! | 400 | `Invalid` | `validation-failed` | `invalid-input` |
//! | 429 | `QuotaExceeded` | `quota-exceeded` | `internal` |
//! | other, timeout, transport, oversized or malformed body | `Internal` | `internal` | `internal` |
//!
//! Operations that answer a result record (`success`, `error`,
//! `field-errors`) answer failures as `success: false` with the refusal's
//! name as `error` ([`outcome`]).
//!
//! A [`Link`] exists only for an execution granted the capability, on a
//! runner with a host API configured, for a request whose context names an
//! install; without one, every call answers its interface's typed denial.

use std::sync::Arc;

use reqwest::Url;
use reqwest::header::HeaderValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Prepare;
use crate::limits::{
    DEFAULT_PRODUCT_PAGE_SIZE, HOST_API_ANSWER_MARGIN, HOST_API_TIMEOUT, MAX_HOST_API_RESPONSE_BYTES,
    MAX_PRODUCT_PAGE_SIZE,
};

/// `RUNNER_HOST_API_URL` and `RUNNER_HOST_API_TOKEN`: where the product
/// interfaces' calls go and how the runner authenticates there.
#[derive(Clone, Default)]
pub struct Settings {
    /// The host product's base URL (Alga's app origin).
    pub base_url: Option<Url>,
    /// Sent as `x-runner-auth` on every call; a secret.
    pub token: Option<String>,
}

impl Settings {
    /// Both or neither: a URL without a token would only collect 401s, a
    /// token without a URL is a typo.
    pub fn from_source(source: &crate::config::source::Source) -> Settings {
        let base_url = source.http_url("RUNNER_HOST_API_URL").and_then(|text| {
            Url::parse(&text)
                .map_err(|e| source.problem(format!("RUNNER_HOST_API_URL: `{text}` is not a URL: {e}")))
                .ok()
        });
        let token = source
            .text("RUNNER_HOST_API_TOKEN")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if let Some(token) = &token
            && HeaderValue::from_str(token).is_err()
        {
            source.problem("RUNNER_HOST_API_TOKEN: must be printable ASCII (it is sent as a header)");
        }
        if base_url.is_some() != token.is_some() {
            source.problem("RUNNER_HOST_API_URL and RUNNER_HOST_API_TOKEN: set both or neither");
        }
        Settings { base_url, token }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("host_api::Settings")
            .field("base_url", &self.base_url.as_ref().map(Url::as_str))
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// The host product's services, one path segment each (`ext-<svc>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Scheduler,
    Invoicing,
    Clients,
    Services,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Scheduler => "scheduler",
            Service::Invoicing => "invoicing",
            Service::Clients => "clients",
            Service::Services => "services",
        }
    }
}

/// Where calls go, once configured.
struct Endpoint {
    base: Url,
    /// Marked sensitive: never printed by the HTTP stack.
    token: HeaderValue,
}

/// The client every execution's calls share (no proxies from the
/// environment, no redirects) and the configured host API, if any.
pub struct Shared {
    client: reqwest::Client,
    endpoint: Option<Arc<Endpoint>>,
}

impl Shared {
    /// # Errors
    /// The HTTP client cannot be built, or the token is not a header value.
    pub fn new(settings: &Settings) -> anyhow::Result<Shared> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| anyhow::anyhow!("host API client: {e}"))?;
        let endpoint = match (&settings.base_url, &settings.token) {
            (Some(base), Some(token)) => {
                let mut token = HeaderValue::from_str(token)
                    .map_err(|_| anyhow::anyhow!("RUNNER_HOST_API_TOKEN is not a header value"))?;
                token.set_sensitive(true);
                Some(Arc::new(Endpoint {
                    base: base.clone(),
                    token,
                }))
            }
            _ => None,
        };
        Ok(Shared { client, endpoint })
    }

    /// One execution's link to `service`: `None` without a configured host
    /// API or without an install id in the request's context. The caller
    /// checks the grant.
    pub fn link(&self, request: &Prepare<'_>, service: Service) -> Option<Link> {
        let endpoint = self.endpoint.as_ref()?;
        let install_id = request.info.install_id.as_deref().filter(|id| !id.is_empty())?;
        Some(Link {
            client: self.client.clone(),
            url: call_url(&endpoint.base, service, install_id)?,
            endpoint: endpoint.clone(),
            service,
            request_id: request.info.request_id.clone(),
            tenant_id: request.info.tenant_id.clone(),
            extension_id: request.info.extension_id.clone(),
            deadline: request.deadline,
        })
    }
}

/// `{base}/api/internal/ext-<svc>/install/{install_id}`, the install id one
/// percent-encoded segment whatever it holds; the base's query and
/// fragment dropped.
fn call_url(base: &Url, service: Service, install_id: &str) -> Option<Url> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    let service = format!("ext-{}", service.name());
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(["api", "internal", service.as_str(), "install", install_id]);
    Some(url)
}

/// Why a call did not answer what the operation answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 401 or 403.
    Denied,
    /// 404.
    NotFound,
    /// 400, with the answer's body (empty when it could not be read).
    Invalid { body: Vec<u8> },
    /// 429.
    QuotaExceeded,
    /// Any other status, a timeout, a transport error, an oversized or
    /// malformed answer.
    Internal,
}

impl Refusal {
    /// The name a result record's `error` carries (the scheduler's WIT
    /// names, used for invoicing too).
    pub fn name(&self) -> &'static str {
        match self {
            Refusal::Denied => "denied",
            Refusal::NotFound => "not-found",
            Refusal::Invalid { .. } => "validation-failed",
            Refusal::QuotaExceeded => "quota-exceeded",
            Refusal::Internal => "internal",
        }
    }
}

/// The refusal of a non-2xx status, `None` for 2xx (a 400's body is read
/// afterwards).
pub fn refusal(status: u16) -> Option<Refusal> {
    Some(match status {
        200..=299 => return None,
        401 | 403 => Refusal::Denied,
        404 => Refusal::NotFound,
        400 => Refusal::Invalid { body: Vec::new() },
        429 => Refusal::QuotaExceeded,
        _ => Refusal::Internal,
    })
}

/// One execution's calls to one service of the host API.
pub struct Link {
    client: reqwest::Client,
    endpoint: Arc<Endpoint>,
    url: Url,
    service: Service,
    request_id: String,
    tenant_id: String,
    extension_id: String,
    deadline: tokio::time::Instant,
}

/// The body of a call: the operation, then its fields.
#[derive(Serialize)]
struct CallBody<'a, F> {
    operation: &'a str,
    #[serde(flatten)]
    fields: F,
}

/// What went wrong in a call, for the log.
#[derive(Debug, thiserror::Error)]
enum Trouble {
    #[error("the host API answered {0}")]
    Status(u16),
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("transport: {0}")]
    Transport(reqwest::Error),
    #[error("the answer exceeds {MAX_HOST_API_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("the answer is not what `{operation}` answers: {error}")]
    BadBody {
        operation: &'static str,
        error: serde_json::Error,
    },
}

impl Link {
    /// Calls `operation` with `fields` (a struct or map of camelCase fields,
    /// or `()`) and parses a 2xx answer as `T`.
    ///
    /// # Errors
    /// [`Refusal`] for a non-2xx status, a timeout, a transport error, an
    /// oversized answer or one that is not a `T` (logged with the request).
    pub async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        fields: impl Serialize,
    ) -> Result<T, Refusal> {
        let outcome = self.exchange(operation, fields).await.and_then(|body| {
            serde_json::from_slice(&body).map_err(|error| (Trouble::BadBody { operation, error }, Refusal::Internal))
        });
        outcome.map_err(|(trouble, refusal)| {
            tracing::info!(
                target: "ext_runner::host_api",
                request_id = %self.request_id,
                tenant = %self.tenant_id,
                extension = %self.extension_id,
                service = self.service.name(),
                operation,
                error = %trouble,
                "host API call failed"
            );
            refusal
        })
    }

    /// Sends the call and reads a 2xx answer's body (or a 400's, into the
    /// refusal), all within the call's timeout.
    async fn exchange(&self, operation: &'static str, fields: impl Serialize) -> Result<Vec<u8>, (Trouble, Refusal)> {
        let body = serde_json::to_vec(&CallBody { operation, fields })
            .map_err(|error| (Trouble::BadBody { operation, error }, Refusal::Internal))?;
        let remaining = self.deadline.saturating_duration_since(tokio::time::Instant::now());
        let timeout = remaining.saturating_sub(HOST_API_ANSWER_MARGIN).min(HOST_API_TIMEOUT);
        let exchange = async {
            let response = self
                .client
                .post(self.url.clone())
                .header("content-type", "application/json")
                .header("x-runner-auth", self.endpoint.token.clone())
                .header("x-request-id", &self.request_id)
                .header("x-alga-tenant", &self.tenant_id)
                .header("x-alga-extension", &self.extension_id)
                .body(body)
                .send()
                .await
                .map_err(|e| (Trouble::Transport(e.without_url()), Refusal::Internal))?;
            let status = response.status().as_u16();
            match refusal(status) {
                None => read_capped(response).await.map_err(|t| (t, Refusal::Internal)),
                Some(Refusal::Invalid { .. }) => {
                    let body = read_capped(response).await.unwrap_or_default();
                    Err((Trouble::Status(status), Refusal::Invalid { body }))
                }
                Some(refusal) => Err((Trouble::Status(status), refusal)),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err((Trouble::Timeout(timeout), Refusal::Internal)),
        }
    }
}

/// The body, chunk by chunk, never holding more than
/// [`MAX_HOST_API_RESPONSE_BYTES`].
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, Trouble> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_HOST_API_RESPONSE_BYTES as u64)
    {
        return Err(Trouble::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Trouble::Transport(e.without_url()))?
    {
        if body.len() + chunk.len() > MAX_HOST_API_RESPONSE_BYTES {
            return Err(Trouble::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A result record of the host API (`{success, error?, fieldErrors?, …}`)
/// that can also say a call failed.
pub trait Outcome: DeserializeOwned {
    /// `success: false` with `error` and no field errors.
    fn failed(error: &str) -> Self;
    /// Marks a record the host answered with 400 as failed, naming
    /// `validation-failed` as its error if it names none.
    fn rejected(self) -> Self;
}

/// Calls an operation that answers a result record: a 2xx answer is the
/// record as the host gives it; a 400 whose body is such a record keeps
/// its `error` and `fieldErrors`, `success: false`; any other failure is
/// `success: false` with the refusal's name as `error`.
pub async fn outcome<R: Outcome>(link: &Link, operation: &'static str, fields: impl Serialize) -> R {
    match link.call::<R>(operation, fields).await {
        Ok(record) => record,
        Err(Refusal::Invalid { body }) => match serde_json::from_slice::<R>(&body) {
            Ok(record) => record.rejected(),
            Err(_) => R::failed(Refusal::Invalid { body: Vec::new() }.name()),
        },
        Err(refusal) => R::failed(refusal.name()),
    }
}

/// The JSON text a guest gets for a JSON value the host answered
/// (`payload`, `fieldErrors`): `None` for absent or `null`.
pub fn json_text(value: Option<serde_json::Value>) -> Option<String> {
    value.filter(|v| !v.is_null()).map(|v| v.to_string())
}

/// `page` and `page-size` of a list call, defaulted (1 and
/// [`DEFAULT_PRODUCT_PAGE_SIZE`]), or `None` when out of range: `page` ≥ 1,
/// 1 ≤ `page-size` ≤ [`MAX_PRODUCT_PAGE_SIZE`].
pub fn paging(page: Option<u32>, page_size: Option<u32>) -> Option<(u32, u32)> {
    let page = page.unwrap_or(1);
    let page_size = page_size.unwrap_or(DEFAULT_PRODUCT_PAGE_SIZE);
    (page >= 1 && (1..=MAX_PRODUCT_PAGE_SIZE).contains(&page_size)).then_some((page, page_size))
}

/// A `list` call's fields: the guest's input and the caller.
#[derive(Serialize)]
pub struct ListCall<'a, I> {
    pub input: I,
    pub user: Option<Caller<'a>>,
}

/// One page of a `list` answer (`{items, totalCount, page, pageSize}`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total_count: u32,
    pub page: u32,
    pub page_size: u32,
}

/// The caller the host product checks reads against: `{userId, userType}`
/// of the envelope's user, `null` without one.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Caller<'a> {
    pub user_id: &'a str,
    pub user_type: &'a str,
}

impl<'a> Caller<'a> {
    pub fn of(user: Option<&'a super::UserInfo>) -> Option<Caller<'a>> {
        user.map(|u| Caller {
            user_id: &u.user_id,
            user_type: &u.user_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let cases = [
            (200, None),
            (201, None),
            (204, None),
            (400, Some(Refusal::Invalid { body: Vec::new() })),
            (401, Some(Refusal::Denied)),
            (403, Some(Refusal::Denied)),
            (404, Some(Refusal::NotFound)),
            (429, Some(Refusal::QuotaExceeded)),
            (301, Some(Refusal::Internal)),
            (307, Some(Refusal::Internal)),
            (409, Some(Refusal::Internal)),
            (422, Some(Refusal::Internal)),
            (500, Some(Refusal::Internal)),
            (503, Some(Refusal::Internal)),
        ];
        for (status, want) in cases {
            assert_eq!(refusal(status), want, "{status}");
        }
    }

    #[test]
    fn paging_table() {
        let cases = [
            ((None, None), Some((1, 25))),
            ((Some(3), None), Some((3, 25))),
            ((Some(1), Some(1)), Some((1, 1))),
            ((Some(2), Some(100)), Some((2, 100))),
            ((Some(0), None), None),
            ((None, Some(0)), None),
            ((None, Some(101)), None),
            ((Some(u32::MAX), Some(100)), Some((u32::MAX, 100))),
        ];
        for ((page, size), want) in cases {
            assert_eq!(paging(page, size), want, "{page:?} {size:?}");
        }
    }

    #[test]
    fn call_url_keeps_the_base_path_and_encodes_the_install() {
        let url = |base: &str, install: &str| {
            call_url(&Url::parse(base).unwrap(), Service::Clients, install)
                .unwrap()
                .to_string()
        };
        assert_eq!(
            url("http://host:3000", "inst-1"),
            "http://host:3000/api/internal/ext-clients/install/inst-1"
        );
        assert_eq!(
            url("https://host/alga/?x=1#f", "inst-1"),
            "https://host/alga/api/internal/ext-clients/install/inst-1"
        );
        assert_eq!(
            url("http://host", "../../admin?x#y"),
            "http://host/api/internal/ext-clients/install/..%2F..%2Fadmin%3Fx%23y"
        );
    }

    #[test]
    fn settings_need_both_and_redact_the_token() {
        let source = |pairs: &[(&str, &str)]| {
            crate::config::source::Source::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        let both = source(&[
            ("RUNNER_HOST_API_URL", "http://host:3000"),
            ("RUNNER_HOST_API_TOKEN", "s3cret-token"),
        ]);
        let settings = Settings::from_source(&both);
        assert!(both.finish_partial().is_ok());
        assert_eq!(settings.token.as_deref(), Some("s3cret-token"));
        let shown = format!("{settings:?}");
        assert!(shown.contains("[redacted]") && !shown.contains("s3cret"), "{shown}");

        for pairs in [
            &[("RUNNER_HOST_API_URL", "http://host:3000")][..],
            &[("RUNNER_HOST_API_TOKEN", "t")][..],
        ] {
            let one = source(pairs);
            Settings::from_source(&one);
            let problems = one.finish_partial().unwrap_err().problems;
            assert_eq!(
                problems,
                ["RUNNER_HOST_API_URL and RUNNER_HOST_API_TOKEN: set both or neither"],
                "{pairs:?}"
            );
        }
        let neither = source(&[]);
        assert!(Settings::from_source(&neither).base_url.is_none());
        assert!(neither.finish_partial().is_ok());
    }
}
