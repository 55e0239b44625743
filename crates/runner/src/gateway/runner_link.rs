//! The gateway's way to the runner: in-process when this process runs the
//! runner role (the grant handed over directly), else `POST
//! {RUNNER_BASE_URL}/v1/execute` with the service token
//! (`GATEWAY_RUNNER_TOKEN`) and a signed grant (`x-ext-grant`,
//! `GATEWAY_GRANT_KEY`), under the gateway's timeout.
//!
//! What the runner answers becomes the gateway's answer by one rule
//! ([`passes_through`]): a code about the extension or the load (403
//! revoked, 404, 413, 429, 502, 503, 504) reaches the user as the runner
//! gave it, `Retry-After` included; a refusal of the call itself (401, 403
//! grant, 400 envelope) is a fault between gateway and runner, so the user
//! gets 502 `runner_unavailable` and the log gets the runner's words.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use crate::envelope::Envelope;
use crate::error::{ErrorCode, Failure};
use crate::execute::Runner;
use crate::grant::{Claims, GRANT_HEADER, GrantSigner};
use crate::limits::ENVELOPE_OVERHEAD_BYTES;

/// The guest's answer as the gateway passes it on.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The guest's allowed headers (the runner's response-header policy).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// How a call ended, and the limit that ended it if one did (for the
/// execution log).
pub struct Outcome {
    pub result: Result<Answer, Failure>,
    pub limit_hit: Option<String>,
    /// The runner answered with the stored answer of an earlier call with
    /// the same idempotency key.
    pub replayed: bool,
}

/// One call's envelope and what it is for.
pub struct Call<'a> {
    /// The envelope's JSON.
    pub envelope: Vec<u8>,
    pub claims: &'a Claims,
    pub request_id: &'a str,
    pub traceparent: Option<&'a str>,
    /// The user's idempotency key, checked; sent as `x-idempotency-key`.
    pub idempotency_key: Option<&'a str>,
}

/// Longest the gateway waits for a TCP connection to the runner: a runner
/// on the same network accepts in well under a millisecond, so a host that
/// does not answer at all is reported (502 `runner_unavailable`) after this,
/// not after the whole call timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub enum RunnerLink {
    Local(Arc<Runner>),
    Remote {
        client: reqwest::Client,
        /// `{RUNNER_BASE_URL}/v1/execute`.
        url: String,
        token: String,
        signer: Arc<GrantSigner>,
    },
}

fn unavailable(why: impl std::fmt::Display) -> Failure {
    Failure::new(
        ErrorCode::RunnerUnavailable,
        format!("the runner could not be reached: {why}"),
    )
}

fn timed_out(timeout: Duration) -> Failure {
    Failure::new(
        ErrorCode::RunnerTimeout,
        format!("the runner did not answer within {} ms", timeout.as_millis()),
    )
}

/// Whether a runner's refusal reaches the user as it is (see the module).
pub fn passes_through(code: ErrorCode) -> bool {
    !matches!(
        code,
        ErrorCode::Unauthorized
            | ErrorCode::GrantInvalid
            | ErrorCode::GrantMismatch
            | ErrorCode::InvalidEnvelope
            | ErrorCode::UnknownCapability
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::HeadersTooLarge
            | ErrorCode::RequestTimeout
    )
}

fn checked(failure: Failure) -> Failure {
    if passes_through(failure.code) {
        failure
    } else {
        tracing::error!(code = failure.code.as_str(), message = %failure.message, "the runner refused the gateway's call");
        Failure::new(
            ErrorCode::RunnerUnavailable,
            format!("the runner refused the call ({})", failure.code.as_str()),
        )
    }
}

impl RunnerLink {
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn remote(base: &str, token: &str, signer: Arc<GrantSigner>) -> anyhow::Result<RunnerLink> {
        Ok(RunnerLink::Remote {
            // Connections are reused; Nagle off (pitfalls: 40 ms stalls).
            client: reqwest::Client::builder()
                .tcp_nodelay(true)
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_idle_timeout(Duration::from_secs(60))
                .build()?,
            url: format!("{}/v1/execute", base.trim_end_matches('/')),
            token: token.to_string(),
            signer,
        })
    }

    /// Run `call` under `timeout`; a guest answer over `max_response_bytes`
    /// is refused, whichever way the runner is reached.
    pub async fn call(&self, call: Call<'_>, timeout: Duration, max_response_bytes: u64) -> Outcome {
        let mut outcome = self.call_runner(call, timeout, max_response_bytes).await;
        if let Ok(answer) = &outcome.result
            && answer.body.len() as u64 > max_response_bytes
        {
            outcome.result = Err(Failure::new(
                ErrorCode::ResponseTooLarge,
                format!("the extension's answer exceeds the gateway's limit of {max_response_bytes} bytes"),
            ));
        }
        outcome
    }

    async fn call_runner(&self, call: Call<'_>, timeout: Duration, max_response_bytes: u64) -> Outcome {
        match self {
            RunnerLink::Local(runner) => local(runner, call, timeout).await,
            RunnerLink::Remote {
                client,
                url,
                token,
                signer,
            } => {
                let remote = remote(client, url, token, signer, call, max_response_bytes);
                match tokio::time::timeout(timeout, remote).await {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome {
                        result: Err(timed_out(timeout)),
                        limit_hit: None,
                        replayed: false,
                    },
                }
            }
        }
    }
}

async fn local(runner: &Runner, call: Call<'_>, timeout: Duration) -> Outcome {
    let failed = |failure: Failure| Outcome {
        result: Err(failure),
        limit_hit: None,
        replayed: false,
    };
    let mut envelope = match Envelope::parse(&call.envelope, runner.config().limits.max_request_bytes) {
        Ok(envelope) => envelope,
        Err(failure) => return failed(checked(failure)),
    };
    // In one process the grant is handed over, not signed and verified.
    if let Err(failure) = call.claims.apply(&mut envelope) {
        return failed(checked(failure));
    }
    envelope.traceparent = call.traceparent.map(str::to_string);
    envelope.idempotency_key = call.idempotency_key.map(str::to_string);
    let Ok(executed) = tokio::time::timeout(timeout, runner.execute_reported(&envelope, call.request_id)).await else {
        return failed(timed_out(timeout));
    };
    let limit_hit = executed.report.as_ref().and_then(|r| r.limit_hit).map(str::to_string);
    let result = executed
        .result
        .map(|guest| Answer {
            status: guest.status,
            headers: guest.headers,
            body: guest.body.unwrap_or_default(),
        })
        .map_err(checked);
    Outcome {
        result,
        limit_hit,
        replayed: executed.replayed,
    }
}

/// `POST /v1/execute`'s answer, success or error.
#[derive(Deserialize)]
struct ExecuteAnswer {
    status: u16,
    #[serde(default)]
    headers: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    body_b64: Option<String>,
    #[serde(default)]
    error: Option<ExecuteError>,
    #[serde(default)]
    report: Option<Report>,
}

#[derive(Deserialize)]
struct ExecuteError {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct Report {
    #[serde(default)]
    limit_hit: Option<String>,
}

async fn remote(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    signer: &GrantSigner,
    call: Call<'_>,
    max_response_bytes: u64,
) -> Outcome {
    let failed = |failure: Failure| Outcome {
        result: Err(failure),
        limit_hit: None,
        replayed: false,
    };
    let grant = match signer.sign(call.claims) {
        Ok(grant) => grant,
        Err(e) => return failed(Failure::new(ErrorCode::Internal, format!("signing the grant: {e:#}"))),
    };
    let mut request = client
        .post(url)
        .bearer_auth(token)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(GRANT_HEADER, grant)
        .header("x-request-id", call.request_id)
        .header("x-alga-tenant", &call.claims.tenant)
        .header("x-alga-extension", &call.claims.extension);
    if let Some(traceparent) = call.traceparent {
        request = request.header("traceparent", traceparent);
    }
    if let Some(key) = call.idempotency_key {
        request = request.header(crate::idempotency::KEY_HEADER, key);
    }
    let response = match request.body(call.envelope).send().await {
        Ok(response) => response,
        Err(e) => return failed(unavailable(e)),
    };
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    let replayed = response
        .headers()
        .get(crate::idempotency::REPLAY_HEADER)
        .is_some_and(|v| v.as_bytes() == b"true");
    // The guest's body travels base64-encoded inside the JSON answer.
    let cap = max_response_bytes / 3 * 4 + 4 + ENVELOPE_OVERHEAD_BYTES;
    let bytes = match read_capped(response, cap).await {
        Ok(bytes) => bytes,
        Err(failure) => return failed(failure),
    };
    let answer: ExecuteAnswer = match serde_json::from_slice(&bytes) {
        Ok(answer) => answer,
        Err(e) => return failed(unavailable(format!("its answer is not an execute answer: {e}"))),
    };
    let limit_hit = answer.report.and_then(|r| r.limit_hit);
    let result = match answer.error {
        Some(error) => {
            let code = match ErrorCode::from_code(&error.code, retry_after) {
                Some(code) => code,
                None => {
                    tracing::error!(code = %error.code, "the runner answered an unknown error code");
                    ErrorCode::RunnerUnavailable
                }
            };
            Err(checked(Failure::new(code, error.message)))
        }
        None => answer_of(answer.status, &answer.headers, answer.body_b64.as_deref()),
    };
    Outcome {
        result,
        limit_hit,
        replayed,
    }
}

/// A successful execute answer as the guest's answer, its headers held to
/// the response-header policy again (a runner elsewhere may not be ours).
fn answer_of(
    status: u16,
    headers: &serde_json::Map<String, serde_json::Value>,
    body_b64: Option<&str>,
) -> Result<Answer, Failure> {
    let body = BASE64
        .decode(body_b64.unwrap_or_default())
        .map_err(|e| unavailable(format!("its body_b64 is not base64: {e}")))?;
    let headers = headers
        .iter()
        .filter_map(|(name, value)| value.as_str().map(|v| (name.clone(), v.to_string())));
    let (headers, _dropped) = crate::execute::filter_response_headers(headers, body.len())?;
    if !(100..=599).contains(&status) {
        return Err(unavailable(format!("the guest status {status} is not an HTTP status")));
    }
    Ok(Answer { status, headers, body })
}

async fn read_capped(response: reqwest::Response, cap: u64) -> Result<Vec<u8>, Failure> {
    use futures_util::StreamExt as _;
    let too_large = || {
        Failure::new(
            ErrorCode::ResponseTooLarge,
            format!("the runner's answer exceeds the gateway's limit of {cap} bytes"),
        )
    };
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(unavailable)?;
        if (bytes.len() + chunk.len()) as u64 > cap {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
