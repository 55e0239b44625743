//! The execute pipeline: envelope → verified bundle → endpoint → compiled
//! component → one sandboxed call under limits → filtered response.
//!
//! [`Runner`] is what the HTTP server, the `exec` command and the benches
//! share; it owns the engine, the bundle cache and the execution slots.
//! `metrics` holds the families each execution is recorded in.

pub(crate) mod metrics;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::Config;
use crate::engine::{
    Admission, ComponentSource, EngineLimits, ExecLimits, ExecutionReport, Failure, GuestInput, Prepared, Runtime,
    SuppliedArtifact,
};
use crate::envelope::{Envelope, is_header_name, is_header_value};
use crate::error::ErrorCode;
use crate::host::bindings::types::{ContextData, ExecuteRequest, ExecuteResponse, HttpHeader, HttpRequest};
use crate::host::grants::Grants;
use crate::host::{Invocation, RequestInfo};
use crate::limits::{self, CONCURRENCY_WAIT, MAX_HEADER_BYTES, MAX_HEADER_COUNT};
use crate::store::{BundleObjects, BundleRef, Bundles, LoadedBundle};

/// A guest's answer after the runner's header policy.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestResponse {
    pub status: u16,
    /// Allowed headers only, lower-case names, duplicates joined with ", ".
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Names of headers the policy removed (for logs and metrics).
    pub dropped_headers: Vec<String>,
    /// What the execution used (the response's `report`).
    pub report: ExecutionReport,
}

/// How one call ended, as callers see it.
#[derive(Debug, Clone)]
pub struct Executed {
    pub result: Result<GuestResponse, Failure>,
    /// The usage report of a guest that ran, also when it failed (a
    /// success carries its report in the response too).
    pub report: Option<ExecutionReport>,
    /// The stored answer of an earlier call with the same idempotency key
    /// (`x-idempotent-replay: true`); the report is that call's.
    pub replayed: bool,
}

impl crate::idempotency::Replayable for Executed {
    fn bytes(&self) -> u64 {
        let text = |pairs: &[(String, String)]| pairs.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
        let answer = match &self.result {
            Ok(guest) => {
                guest.body.as_ref().map_or(0, Vec::len)
                    + text(&guest.headers)
                    + guest.dropped_headers.iter().map(String::len).sum::<usize>()
            }
            Err(failure) => failure.message.len(),
        };
        (answer + 2 * std::mem::size_of::<ExecutionReport>()) as u64
    }

    fn abandoned() -> Self {
        Executed {
            result: Err(Failure::new(
                ErrorCode::Internal,
                "the first call with this idempotency key was cancelled after its guest started; \
                 its outcome is unknown, so it is not run again",
            )),
            report: None,
            replayed: false,
        }
    }
}

/// The runner: engine, bundles and execution slots. One per process.
pub struct Runner {
    config: Config,
    runtime: Runtime,
    /// Shared with the runtime, whose compiled artifacts count against the
    /// bundle cache's disk budget.
    bundles: Arc<Bundles>,
    /// Global cap on executions in flight; sized like the pooling allocator
    /// so instantiation never fails for lack of a slot. Shared with the
    /// in-flight gauge.
    slots: Arc<Semaphore>,
    /// Guest response headers removed by the allowlist since start-up
    /// (shared with its gauge).
    headers_dropped: Arc<AtomicU64>,
    /// Per-tenant and per-extension concurrency caps and the tenant rate
    /// limit (quota.rs), checked before any fetch or compile.
    quotas: crate::quota::Quotas,
    /// The capabilities' shared handles (key-value store, egress engine,
    /// secret settings, ui-proxy client, guest metrics, debug sink).
    host: crate::host::Shared,
    /// The registry behind `/metrics`: every subsystem's families and
    /// collectors, and the guests' (`cap:metrics.emit`).
    metrics: Arc<crate::metrics::Metrics>,
    /// The families each execution is recorded in.
    recorded: metrics::ExecuteMetrics,
    /// Set on SIGTERM; `/readyz` answers 503 from then on.
    draining: std::sync::atomic::AtomicBool,
    /// The guest threads and how tenants share them (fair share, CPU
    /// budget); compiles run at their priority too.
    cpu: crate::cpu::GuestCpu,
    /// Answers kept by idempotency key, and the calls running under one
    /// (`x-idempotency-key`): checked before the quotas, filled once a
    /// guest has started.
    idempotency: crate::idempotency::Idempotency<Executed>,
}

impl Runner {
    /// # Errors
    /// If the engine cannot be built or the cache directory prepared.
    pub fn new(config: Config) -> anyhow::Result<Runner> {
        let metrics: Arc<crate::metrics::Metrics> = Arc::default();
        let objects = BundleObjects::open(&config.storage).map_err(|why| anyhow::anyhow!("bundle store: {why}"))?;
        let revoked = Arc::new(crate::revocation::Revoked::load(&config.data_dir)?);
        metrics.register_gauges(revoked.clone());
        let bundles = Arc::new(Bundles::new(
            objects,
            &config.cache_dir,
            config.bundles.cache_max_bytes,
            config.bundles.verification(),
            revoked,
            &metrics,
        )?);
        metrics.register_gauges(bundles.gauges());
        let cpu = crate::cpu::GuestCpu::new(&config.cpu, &config.quota)?;
        let runtime = Runtime::new(
            EngineLimits::new(&config.engine, &config.limits)?,
            &config.cache_dir,
            bundles.clone(),
            Some(cpu.compile_handle()),
        )?;
        cpu.preempt_with(runtime.engine().clone());
        metrics.register_gauges(runtime.gauges());
        metrics.register_gauges(cpu.gauges());
        let slots = Arc::new(Semaphore::new(config.limits.max_concurrency as usize));
        let quotas = crate::quota::Quotas::new(&config.quota)?;
        metrics.register_gauges(quotas.gauges());
        let headers_dropped = Arc::new(AtomicU64::new(0));
        metrics.register_gauges(metrics::RunnerGauges {
            slots: slots.clone(),
            max_concurrency: config.limits.max_concurrency as usize,
            headers_dropped: headers_dropped.clone(),
        });
        // S-09: the runner's own listeners are never egress destinations.
        let self_addrs: Vec<_> = std::iter::once(config.server.listen)
            .chain(config.server.public_listen)
            .collect();
        let host = crate::host::Shared::new(&config.host, metrics.clone(), &self_addrs)?;
        let idempotency = crate::idempotency::Idempotency::new(&config.idempotency, &metrics);
        Ok(Runner {
            config,
            runtime,
            bundles,
            slots,
            headers_dropped,
            quotas,
            host,
            recorded: metrics::ExecuteMetrics::register(&metrics),
            idempotency,
            metrics,
            draining: std::sync::atomic::AtomicBool::new(false),
            cpu,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Guest response headers the allowlist removed since start-up.
    pub fn headers_dropped(&self) -> u64 {
        self.headers_dropped.load(Ordering::Relaxed)
    }

    /// Tenant quotas: in-flight counts and refusal counters.
    pub fn quotas(&self) -> &crate::quota::Quotas {
        &self.quotas
    }

    /// Compile and artifact-cache counters.
    pub fn engine_stats(&self) -> &crate::engine::Stats {
        self.runtime.stats()
    }

    /// The bundle store this runner fetches from.
    pub fn bundle_objects(&self) -> &BundleObjects {
        self.bundles.objects()
    }

    /// The verified bundles and their disk cache.
    pub fn bundles(&self) -> &Bundles {
        &self.bundles
    }

    /// The key-value store, opening it on first use.
    ///
    /// # Errors
    /// The store cannot be opened (bad URL, database down, locked file).
    pub async fn open_kv(&self) -> Result<&ext_kv::Kv, Failure> {
        self.host.storage.open().await
    }

    /// Keep guests' schedules in this process's registry (see
    /// [`crate::host::Shared::keep_schedules_in`]).
    pub fn keep_schedules_in(&self, registry: ext_registry::Database) {
        self.host.keep_schedules_in(registry);
    }

    /// Executions holding a slot now.
    pub fn in_flight(&self) -> usize {
        (self.config.limits.max_concurrency as usize).saturating_sub(self.slots.available_permits())
    }

    /// Readiness goes false from here on (SIGTERM): load balancers stop
    /// sending while in-flight executions finish.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The guest threads' fair share and the CPU budget.
    pub fn cpu(&self) -> &crate::cpu::GuestCpu {
        &self.cpu
    }

    /// The engine (for `compile`).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The idempotency keys' replay store.
    pub fn idempotency(&self) -> &crate::idempotency::Idempotency<Executed> {
        &self.idempotency
    }

    /// Execute one envelope.
    ///
    /// # Errors
    /// A [`Failure`] carrying the client-facing code (see `error.rs`).
    pub async fn execute(&self, envelope: &Envelope, request_id: &str) -> Result<GuestResponse, Failure> {
        self.execute_reported(envelope, request_id).await.result
    }

    /// [`Runner::execute`], with the usage report of a guest that ran and
    /// whether the answer is a replay. With an idempotency key
    /// (`envelope.idempotency_key`), a stored answer is replayed, a call
    /// running with the same key is waited for (up to this call's own
    /// timeout), and otherwise this call runs and, once its guest has
    /// started, its outcome is kept for the key ([`crate::idempotency`]).
    pub async fn execute_reported(&self, envelope: &Envelope, request_id: &str) -> Executed {
        let started = std::time::Instant::now();
        let lead = match envelope.idempotency_key.as_deref() {
            None => None,
            Some(key) => {
                let deadline = tokio::time::Instant::now() + self.timeout_of(envelope);
                match self.idempotency.claim(envelope, key, deadline).await {
                    Ok(crate::idempotency::Claim::Lead(lead)) => Some(lead),
                    Ok(crate::idempotency::Claim::Replay(stored)) => {
                        tracing::debug!(request_id, "answered with the stored answer of its idempotency key");
                        return Executed {
                            replayed: true,
                            ..(*stored).clone()
                        };
                    }
                    Err(failure) => {
                        let result = Err(failure);
                        self.record(envelope, &result, None, false, started.elapsed());
                        return Executed {
                            result,
                            report: None,
                            replayed: false,
                        };
                    }
                }
            }
        };
        let mut report = None;
        let mut resolved = false;
        let result = self
            .execute_inner(envelope, request_id, &mut report, &mut resolved, lead.as_ref())
            .await;
        self.record(envelope, &result, report.as_ref(), resolved, started.elapsed());
        let executed = Executed {
            result,
            report,
            replayed: false,
        };
        if let Some(lead) = lead {
            // Refused before the guest started: nothing kept, a retry runs.
            let keep = lead.started().then(|| executed.clone());
            lead.finish(keep);
        }
        executed
    }

    /// The envelope's timeout within the operator's ceiling.
    fn timeout_of(&self, envelope: &Envelope) -> Duration {
        Duration::from_millis(limits::clamp(
            envelope.timeout_ms,
            limits::DEFAULT_TIMEOUT_MS,
            self.config.limits.max_timeout_ms,
        ))
    }

    /// The stages: admit (quotas, CPU) → resolve (bundle, component) →
    /// a global slot → prepare (the guest's capabilities and input) →
    /// invoke (on the guest threads) → respond (status, size, headers).
    /// `resolved` is set once the envelope's bundle is verified and its
    /// component prepared: from then on its ids are the bundle's, not only
    /// the caller's claim (M-01).
    async fn execute_inner(
        &self,
        envelope: &Envelope,
        request_id: &str,
        report_slot: &mut Option<ExecutionReport>,
        resolved: &mut bool,
        lead: Option<&crate::idempotency::Lead<Executed>>,
    ) -> Result<GuestResponse, Failure> {
        // Quotas (quota/, A-09): the tenant's and extension's slots and a
        // rate-limit token, refused at once with 429, held to the end.
        let _quota = self.quotas.admit(&envelope.tenant_id, &envelope.extension_id).await?;
        // The tenant's CPU budget and start queue (cpu/), before any fetch
        // or compile; the place in the fair share is held to the end.
        let cpu_share = self.cpu.admit(&envelope.tenant_id).await?;
        let timeout = self.timeout_of(envelope);
        // `bundle` also pins the cache entry (no eviction) while it executes.
        let (bundle, pre) = self.resolve(envelope, request_id, timeout).await?;
        *resolved = true;

        let _slot = tokio::time::timeout(CONCURRENCY_WAIT, self.slots.acquire())
            .await
            .map_err(|_| Failure::new(ErrorCode::Overloaded, "all execution slots are busy; retry shortly"))?
            .map_err(|_| Failure::new(ErrorCode::Internal, "runner is shutting down"))?;

        let request = Arc::new(RequestInfo {
            request_id: request_id.to_string(),
            tenant_id: envelope.tenant_id.clone(),
            extension_id: envelope.extension_id.clone(),
            install_id: envelope.install_id.clone(),
            version_id: envelope.version_id.clone(),
            traceparent: envelope.traceparent.clone(),
        });
        let invocation = self.invocation(envelope, &bundle, request.clone(), timeout).await?;
        let input = self.guest_input(envelope, pre.world(), &request)?;
        let limits = ExecLimits {
            timeout,
            fuel: envelope.fuel,
        };
        // From here the guest may act: whatever follows is its outcome,
        // kept for an idempotency key so that a retry does not act again.
        if let Some(lead) = lead {
            lead.mark_started();
        }
        let guest = self.runtime.execute(pre, invocation, input, limits);
        let ((outcome, mut report), usage) = self.cpu.run(cpu_share, guest).await;
        report.cpu_ms = usage.cpu.as_secs_f64() * 1000.0;
        report.cpu_wait_ms = usage.waited.as_secs_f64() * 1000.0;
        *report_slot = Some(report.clone());
        self.respond(outcome?, report, request_id)
    }

    /// The verified bundle and prepared component the envelope names.
    /// F-02: a cached file that no longer matches its digest is evicted and
    /// the bundle fetched and verified again, once.
    async fn resolve(
        &self,
        envelope: &Envelope,
        request_id: &str,
        timeout: Duration,
    ) -> Result<(Arc<LoadedBundle>, Prepared), Failure> {
        let wanted = BundleRef {
            digest: envelope.content_hash,
            tenant: &envelope.tenant_id,
            extension: &envelope.extension_id,
        };
        // waiting for a compile slot counts against the request's
        // deadline (past it: 503 `compile_busy`).
        let admission = Admission {
            tenant: &envelope.tenant_id,
            deadline: tokio::time::Instant::now() + timeout,
        };
        match self.prepare(wanted, envelope, admission).await {
            Err(failure) if failure.code == ErrorCode::BundleIntegrity => {
                tracing::warn!(request_id, content_hash = %wanted.digest, reason = %failure.message, "cached bundle corrupt; refetching");
                self.bundles.evict(&wanted.digest);
                self.prepare(wanted, envelope, admission).await
            }
            other => other,
        }
    }

    /// The guest's store state: its grants (manifest ∩ providers) and a
    /// slot per granted capability.
    async fn invocation(
        &self,
        envelope: &Envelope,
        bundle: &LoadedBundle,
        request: Arc<RequestInfo>,
        timeout: Duration,
    ) -> Result<Invocation, Failure> {
        let ceilings = &self.config.limits;
        let memory_mb = limits::clamp(envelope.memory_mb, limits::DEFAULT_MEMORY_MB, ceilings.max_memory_mb);
        let grants = Grants::effective(&bundle.manifest.capabilities, envelope.providers.as_deref());
        let prepare = crate::host::Prepare {
            info: &request,
            manifest: &bundle.manifest,
            grants: &grants,
            deadline: tokio::time::Instant::now() + timeout,
            egress: envelope.egress.as_deref(),
        };
        let store_limits = crate::host::StoreLimits {
            memory_bytes: (memory_mb * 1024 * 1024) as usize,
            max_response_bytes: ceilings.max_response_bytes,
        };
        let user = envelope.user.clone().map(Arc::new);
        let secrets = envelope.secret_envelope.clone();
        self.host
            .invocation(prepare, request.clone(), user, secrets, store_limits)
            .await
    }

    /// The guest's input for its world: the `execute-request` record, or a
    /// `wasi:http` incoming request.
    fn guest_input(
        &self,
        envelope: &Envelope,
        world: ext_bundle::World,
        request: &RequestInfo,
    ) -> Result<GuestInput, Failure> {
        Ok(match world {
            ext_bundle::World::Runner => GuestInput::Runner(ExecuteRequest {
                context: ContextData {
                    request_id: Some(request.request_id.clone()),
                    tenant_id: request.tenant_id.clone(),
                    extension_id: request.extension_id.clone(),
                    install_id: request.install_id.clone(),
                    version_id: request.version_id.clone(),
                },
                http: HttpRequest {
                    method: envelope.method.clone(),
                    url: envelope.guest_url(),
                    headers: envelope
                        .headers
                        .iter()
                        .map(|(name, value)| HttpHeader {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                    body: envelope.body.clone(),
                },
            }),
            ext_bundle::World::Proxy => GuestInput::Proxy {
                request: proxy_request(envelope)?,
                max_response_bytes: self.config.limits.max_response_bytes,
            },
        })
    }

    /// The guest's answer after the runner's checks: a valid status, the
    /// body within the cap, headers through the allowlist.
    fn respond(
        &self,
        response: ExecuteResponse,
        report: ExecutionReport,
        request_id: &str,
    ) -> Result<GuestResponse, Failure> {
        let status = response.status;
        if !(100..=599).contains(&status) {
            return Err(Failure::new(
                ErrorCode::ExtensionNoResponse,
                format!("the handler returned without a valid HTTP status (got {status})"),
            ));
        }
        let body_len = response.body.as_ref().map_or(0, Vec::len);
        if body_len as u64 > self.config.limits.max_response_bytes {
            return Err(Failure::new(
                ErrorCode::ResponseTooLarge,
                format!(
                    "response body of {body_len} bytes exceeds the limit of {} bytes",
                    self.config.limits.max_response_bytes
                ),
            ));
        }
        let pairs = response.headers.into_iter().map(|h| (h.name, h.value));
        let (headers, dropped_headers) = filter_response_headers(pairs, body_len)?;
        if !dropped_headers.is_empty() {
            self.headers_dropped
                .fetch_add(dropped_headers.len() as u64, Ordering::Relaxed);
            tracing::debug!(request_id, dropped = ?dropped_headers, "dropped guest response headers outside the allowlist");
        }
        Ok(GuestResponse {
            status,
            headers,
            body: response.body,
            dropped_headers,
            report,
        })
    }
}

impl Runner {
    /// Feed one execution's outcome and usage into the metrics.
    fn record(
        &self,
        envelope: &Envelope,
        result: &Result<GuestResponse, Failure>,
        report: Option<&ExecutionReport>,
        resolved: bool,
        elapsed: Duration,
    ) {
        // M-01: ids are labels only once a verified bundle stands behind
        // them; a flood of requests naming absent bundles adds no series.
        let ids = if resolved {
            metrics::TenantExtension {
                tenant: envelope.tenant_id.as_str().into(),
                extension: envelope.extension_id.as_str().into(),
            }
        } else {
            metrics::TenantExtension {
                tenant: crate::metrics::UNRESOLVED.into(),
                extension: crate::metrics::UNRESOLVED.into(),
            }
        };
        let outcome = result.as_ref().map(drop).map_err(|f| f.code.as_str());
        self.recorded.record(&ids, outcome, report, elapsed);
    }

    /// The verified bundle and the prepared component for this request.
    async fn prepare(
        &self,
        wanted: BundleRef<'_>,
        envelope: &Envelope,
        admission: Admission<'_>,
    ) -> Result<(Arc<LoadedBundle>, Prepared), Failure> {
        let bundle = self.bundles.get(wanted).await?;
        // B-02: a bundle signed for one extension is not run as another.
        if self.config.bundles.require_extension_match && bundle.manifest.name != envelope.extension_id {
            tracing::warn!(content_hash = %bundle.digest, manifest_name = %bundle.manifest.name, extension = %envelope.extension_id, "bundle refused: signed for another extension");
            return Err(Failure::new(
                ErrorCode::BundleSignatureInvalid,
                format!(
                    "bundle {} is signed for extension `{}`, not `{}`",
                    bundle.digest, bundle.manifest.name, envelope.extension_id
                ),
            ));
        }
        let component_path = resolve_component(&bundle, envelope)?;
        let world = bundle.manifest.component_world(&component_path);
        let source = component_source(
            &bundle,
            component_path,
            self.config.bundles.trust_precompiled,
            self.runtime.engine_tag(),
        )?;
        let pre = self.runtime.component(source, world, admission).await?;
        Ok((bundle, pre))
    }
}

/// The component's wasm, plus the bundle's own precompiled artifact when
/// all of these hold: the operator trusts precompiled code, the bundle's
/// signature verified, the component is the bundle's entry, and the
/// artifact's engine tag is this engine's.
///
/// # Errors
/// `bundle_invalid` when the component is not in the bundle's file index.
fn component_source(
    bundle: &Arc<LoadedBundle>,
    path: String,
    trusted: bool,
    engine_tag: &str,
) -> Result<ComponentSource, Failure> {
    let meta = bundle.files.get(&path).cloned().ok_or_else(|| {
        Failure::new(
            ErrorCode::BundleInvalid,
            format!("bundle {}: no file `{path}`", bundle.digest),
        )
    })?;
    let (artifact, tag_file) = crate::engine::precompiled_paths();
    let supplied = bundle.files.get(&artifact).map(|meta| meta.sha256);
    let usable = trusted && bundle.signer.is_some() && path == bundle.manifest.entry;
    // Files are read only when the component is not compiled yet (the
    // closures run on the compile path, not per request).
    let precompiled = match supplied {
        Some(sha256) if usable => {
            let reader = bundle.clone();
            let engine_tag = engine_tag.to_string();
            Some(SuppliedArtifact {
                sha256,
                read: Box::new(move || {
                    let tag = reader.read_verified(&tag_file)?;
                    if String::from_utf8_lossy(&tag).trim() != engine_tag {
                        return Err(Failure::new(
                            ErrorCode::ComponentInvalid,
                            format!(
                                "`{artifact}` was compiled for another engine (`{tag_file}` does not name this one)"
                            ),
                        ));
                    }
                    reader.read_verified(&artifact)
                }),
            })
        }
        _ => None,
    };
    let reader = bundle.clone();
    Ok(ComponentSource {
        bundle: bundle.digest,
        path: path.clone(),
        wasm: Box::new(move || reader.read_verified(&path)),
        precompiled,
        sha256: meta.sha256,
        bytes: meta.size,
    })
}

/// The incoming request a `wasi:http/proxy` component sees: the envelope's
/// method, path and query under `http://localhost`, its headers (already
/// through the request header policy) and body.
fn proxy_request(envelope: &Envelope) -> Result<http::Request<http_body_util::Full<bytes::Bytes>>, Failure> {
    let invalid = |what: String| Failure::new(ErrorCode::InvalidEnvelope, format!("invalid envelope: {what}"));
    let method = http::Method::from_bytes(envelope.method.as_bytes())
        .map_err(|_| invalid(format!("http.method `{}` is not an HTTP method", envelope.method)))?;
    let target = envelope.guest_url();
    let uri: http::Uri = format!("http://localhost{target}")
        .parse()
        .map_err(|e| invalid(format!("http.path `{target}` is not a request target: {e}")))?;
    let mut request = http::Request::builder().method(method).uri(uri);
    for (name, value) in &envelope.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request
        .body(http_body_util::Full::new(bytes::Bytes::from(
            envelope.body.clone().unwrap_or_default(),
        )))
        .map_err(|e| invalid(format!("http.headers: {e}")))
}

/// Which component handles this request: the envelope's `endpoint` if
/// given, else method + path against `api.endpoints`; a manifest without
/// endpoints sends everything to `entry`.
fn resolve_component(bundle: &LoadedBundle, envelope: &Envelope) -> Result<String, Failure> {
    let manifest = &bundle.manifest;
    let not_found = |what: String| Failure::new(ErrorCode::EndpointNotFound, what);
    let path = match &envelope.endpoint {
        Some(endpoint) if endpoint.starts_with("ui-proxy:") => {
            let route = endpoint.trim_start_matches("ui-proxy:");
            let route = if route.starts_with('/') {
                route.to_string()
            } else {
                format!("/{route}")
            };
            match manifest.resolve(&envelope.method, &route) {
                Some(e) => manifest.handler_component(e),
                None if manifest.endpoints.is_empty() => manifest.entry.clone(),
                None => {
                    return Err(not_found(format!(
                        "no endpoint for {} {route} in the manifest",
                        envelope.method
                    )));
                }
            }
        }
        Some(endpoint) => ext_bundle::component_path(endpoint),
        None => match manifest.resolve(&envelope.method, &envelope.path) {
            Some(e) => manifest.handler_component(e),
            None if manifest.endpoints.is_empty() => manifest.entry.clone(),
            None => {
                return Err(not_found(format!(
                    "no endpoint matches {} {} in the manifest of {}",
                    envelope.method, envelope.path, manifest.name
                )));
            }
        },
    };
    if !bundle.files.contains_key(&path) {
        return Err(not_found(format!("handler component `{path}` is not in the bundle")));
    }
    Ok(path)
}

/// Headers kept (name, value) and names dropped by the response policy.
pub type FilteredHeaders = (Vec<(String, String)>, Vec<String>);

/// Apply the response header allowlist: `content-type`, safe
/// `cache-control`, `etag`, `last-modified`, `content-language`, `x-ext-*`.
/// A `content-length` that disagrees with the body is an invalid response.
///
/// # Errors
/// `invalid_response` for a lying `content-length`.
pub fn filter_response_headers(
    headers: impl IntoIterator<Item = (String, String)>,
    body_len: usize,
) -> Result<FilteredHeaders, Failure> {
    let mut kept: Vec<(String, String)> = Vec::new();
    let mut dropped = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let valid = is_header_name(&name) && is_header_value(&value) && name.len() + value.len() <= MAX_HEADER_BYTES;
        if !valid {
            dropped.push(name);
            continue;
        }
        if name == "content-length" {
            if value.trim().parse::<usize>() != Ok(body_len) {
                return Err(Failure::new(
                    ErrorCode::InvalidResponse,
                    format!("content-length `{value}` does not match the body length {body_len}"),
                ));
            }
            dropped.push(name);
            continue;
        }
        let allowed = match name.as_str() {
            "content-type" | "etag" | "last-modified" | "content-language" => true,
            "cache-control" => is_safe_cache_control(&value),
            // The runner sets this itself.
            "x-ext-request-id" => false,
            other => other.starts_with("x-ext-"),
        };
        if !allowed || kept.len() >= MAX_HEADER_COUNT {
            dropped.push(name);
            continue;
        }
        match kept.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            None => kept.push((name, value)),
        }
    }
    Ok((kept, dropped))
}

/// Only `no-store`, `no-cache`, `private`, `public` and `max-age=N`.
fn is_safe_cache_control(value: &str) -> bool {
    value.split(',').map(str::trim).all(|d| {
        let d = d.to_ascii_lowercase();
        matches!(d.as_str(), "no-store" | "no-cache" | "private" | "public")
            || d.strip_prefix("max-age=")
                .is_some_and(|n| !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    /// headers outside the allowlist are dropped, the rest kept.
    #[test]
    fn a15_header_allowlist_table() {
        let (kept, dropped) = filter_response_headers(
            pairs(&[
                ("Content-Type", "text/plain"),
                ("cache-control", "no-store"),
                ("x-ext-custom", "kept"),
                ("x-ext-custom", "again"),
                ("etag", "\"v1\""),
                ("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
                ("content-language", "en"),
                ("set-cookie", "a=b"),
                ("access-control-allow-origin", "*"),
                ("strict-transport-security", "max-age=1"),
                ("content-security-policy", "default-src *"),
                ("connection", "close"),
                ("transfer-encoding", "chunked"),
                ("server", "evil"),
                ("x-powered-by", "x"),
                ("x-ext-request-id", "spoofed"),
                ("x-ext-bad", "a\r\nb"),
                ("content-length", "2"),
            ]),
            2,
        )
        .unwrap();
        assert_eq!(
            kept,
            pairs(&[
                ("content-type", "text/plain"),
                ("cache-control", "no-store"),
                ("x-ext-custom", "kept, again"),
                ("etag", "\"v1\""),
                ("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
                ("content-language", "en"),
            ])
        );
        assert_eq!(dropped.len(), 11);
    }

    #[test]
    fn a15_cache_control_values() {
        for (value, safe) in [
            ("no-store", true),
            ("private, max-age=60", true),
            ("public, max-age=31536000", true),
            ("no-cache", true),
            ("public, max-age=1, s-maxage=99999", false),
            ("immutable", false),
            ("max-age=", false),
            ("max-age=-1", false),
        ] {
            assert_eq!(is_safe_cache_control(value), safe, "{value}");
        }
    }

    #[test]
    fn a15_content_length_mismatch_is_invalid() {
        let err = filter_response_headers(pairs(&[("content-length", "999")]), 2).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidResponse);
        let err = filter_response_headers(pairs(&[("content-length", "2"), ("Content-Length", "3")]), 2).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidResponse);
    }
}
