//! `wasi:http/proxy` components: the incoming request built from the
//! execute envelope, and outbound `wasi:http` requests sent through the same
//! egress engine and policy as `http.fetch`.
//!
//! Outbound requests need `cap:http.fetch` like `http.fetch` does; without
//! it the guest gets `HTTP-request-denied`. A granted request is checked by
//! ext-egress exactly as a fetch is (allowlists, address table, timeouts
//! inside the execution deadline, size caps, request count). Both bodies
//! stream (item 10): the guest's outgoing body is sent as it writes it, and
//! the response is handed over at its head, its body read as the guest reads
//! it, so a guest may pipe its upstream's echo back before it finishes its
//! request body (Wasmtime's "double-echo"), and no response sits whole in
//! host memory outside the guest's limit. Secret handles
//! (`{{secret:NAME}}`) are an `alga:extension` feature and are not expanded
//! here: a proxy component has no secrets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::HttpAccess;
use crate::host::RequestInfo;

/// What egress one execution used: bytes of `http.fetch` and of outbound
/// `wasi:http`, and the count of the latter (read for the report after the
/// store is done; wasi:http requests run on tasks of their own).
#[derive(Debug, Default)]
pub struct OutboundUsage {
    pub requests: AtomicU32,
    pub bytes: AtomicU64,
}

/// The store's `wasi:http` hooks: where `outgoing-handler.handle` goes.
pub struct OutboundHooks {
    pub(crate) access: Option<Arc<HttpAccess>>,
    pub(crate) request: Arc<RequestInfo>,
    pub(crate) usage: Arc<OutboundUsage>,
}

impl OutboundHooks {
    pub fn new(request: Arc<RequestInfo>) -> Self {
        OutboundHooks {
            access: None,
            request,
            usage: Arc::default(),
        }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    /// ext-egress writes `host` from the vetted URL; a guest-chosen one is
    /// never sent.
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        self.usage.requests.fetch_add(1, Ordering::Relaxed);
        let access = self.access.clone();
        let info = self.request.clone();
        let usage = self.usage.clone();
        Box::new(async move {
            let (parts, body) = request.into_parts();
            let Some(access) = access else {
                tracing::info!(target: "ext_runner::egress", request_id = %info.request_id, tenant = %info.tenant_id, extension = %info.extension_id, "outbound wasi:http refused: cap:http.fetch not granted");
                tokio::spawn(discard(body));
                return Err(HttpError::HttpRequestDenied);
            };
            let body = keep_accepting(body, access.deadline);
            let mut headers: Vec<(String, String)> = Vec::with_capacity(parts.headers.len());
            for (name, value) in &parts.headers {
                let value = value.to_str().map_err(|_| HttpError::HttpRequestHeaderSize {
                    field_name: Some(name.to_string()),
                    field_size: None,
                })?;
                headers.push((name.to_string(), value.to_string()));
            }
            if let Some(parent) = &info.traceparent
                && !headers.iter().any(|(name, _)| name == "traceparent")
            {
                headers.push(("traceparent".to_string(), crate::otlp::child_traceparent(parent)));
            }
            // Both directions are counted as their bytes pass.
            let sent_usage = usage.clone();
            let body = body.map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    sent_usage.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                frame
            });
            let egress_request = ext_egress::EgressRequest {
                method: parts.method.to_string(),
                url: parts.uri.to_string(),
                headers,
                body: None,
            };
            let no_secrets = ext_egress::StaticSecrets(Default::default());
            let context = ext_egress::FetchContext {
                deadline: access.deadline,
                tenant: &info.tenant_id,
                policy: &access.policy,
                budget: &access.budget,
                secrets: &no_secrets,
            };
            let streamed = ext_egress::StreamedBody::new(body);
            let response = match access.egress.fetch_streamed(egress_request, streamed, context).await {
                Ok(response) => response,
                Err(error) => {
                    tracing::info!(target: "ext_runner::egress", request_id = %info.request_id, tenant = %info.tenant_id, extension = %info.extension_id, code = error.code(), error = %error, "outbound wasi:http refused or failed");
                    return Err(wasi_error(&error));
                }
            };
            let mut builder = http::Response::builder().status(response.status);
            for (name, value) in response.headers {
                builder = builder.header(name, value);
            }
            let body = response
                .body
                .map_frame(move |frame| {
                    if let Some(data) = frame.data_ref() {
                        usage.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    frame
                })
                .map_err(|error| {
                    tracing::info!(target: "ext_runner::egress", code = error.code(), error = %error, "outbound wasi:http response body failed");
                    wasi_error(&error)
                })
                .boxed_unsync();
            let response = builder
                .body(body)
                .map_err(|e| HttpError::InternalError(Some(format!("upstream response: {e}"))))?;
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// The guest's outgoing body, passed on through a channel; when the egress
/// side stops reading it (a refusal before the body is sent, an upstream
/// that answered early), the rest is read and dropped until the guest
/// finishes it or the deadline passes. A guest writing its body while it
/// waits for the response (as `wstd`'s client does) then sees the request's
/// own error code rather than a reset stream, whatever order the two tasks
/// run in.
fn keep_accepting<B>(
    body: B,
    deadline: tokio::time::Instant,
) -> impl hyper::body::Body<Data = bytes::Bytes, Error = HttpError>
where
    B: hyper::body::Body<Data = bytes::Bytes, Error = HttpError> + Send + Unpin + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut body = body;
        let pump = async {
            while let Some(frame) = body.frame().await {
                if sender.send(frame).await.is_err() {
                    break;
                }
            }
            discard(body).await;
        };
        let _ = tokio::time::timeout_at(deadline, pump).await;
    });
    let frames = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|frame| (frame, receiver))
    });
    http_body_util::StreamBody::new(frames)
}

/// Read `body` to its end, dropping what it carries (bounded by the guest:
/// its store, and so the body, ends at the execution's deadline).
async fn discard<B: hyper::body::Body + Unpin>(mut body: B) {
    while let Some(Ok(_)) = body.frame().await {}
}

/// The `wasi:http` error code for an egress refusal or failure. Address
/// refusals keep their own code (`destination-IP-prohibited`); every other
/// policy refusal is `HTTP-request-denied`.
fn wasi_error(error: &ext_egress::EgressError) -> HttpError {
    use ext_egress::EgressError as E;
    match error {
        E::DestinationIpProhibited { .. } | E::IpLiteralNotAllowed { .. } | E::SelfConnection { .. } => {
            HttpError::DestinationIpProhibited
        }
        E::InvalidUrl { .. } => HttpError::HttpRequestUriInvalid,
        E::InvalidMethod { .. } => HttpError::HttpRequestMethodInvalid,
        E::InvalidHeader { .. } => HttpError::HttpProtocolError,
        E::RequestTooLarge { .. } => HttpError::HttpRequestBodySize(None),
        E::DnsTimeout { .. } => HttpError::DnsTimeout,
        E::Dns { .. } => HttpError::DnsError {
            rcode: None,
            info_code: None,
        },
        E::Connect { .. } => HttpError::ConnectionRefused,
        E::Timeout { phase } => match phase {
            ext_egress::Phase::Connect => HttpError::ConnectionTimeout,
            ext_egress::Phase::Idle => HttpError::ConnectionReadTimeout,
            _ => HttpError::HttpResponseTimeout,
        },
        E::Tls { .. } => HttpError::TlsProtocolError,
        E::Http { .. } => HttpError::HttpProtocolError,
        E::ResponseTooLarge { .. } | E::ResponseBudgetExceeded { .. } => HttpError::HttpResponseBodySize(None),
        E::RequestBody { .. } => HttpError::HttpProtocolError,
        E::Internal { .. } => HttpError::InternalError(None),
        _ if error.is_denial() => HttpError::HttpRequestDenied,
        _ => HttpError::InternalError(None),
    }
}
