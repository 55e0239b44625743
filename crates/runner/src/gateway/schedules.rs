//! The scheduler loop: in a process running the gateway and registry
//! roles, due schedules (kept by the registry, see
//! `ext_registry::schedules`) fire through the same path as a user's call
//! — the tenant's install resolved, the envelope, a grant, the runner, the
//! execution log — with no user, `context.trigger = "schedule"` and
//! `context.schedule_id`, the schedule's method and path, its payload as
//! the JSON body, and the guest headers `x-ext-trigger: schedule`,
//! `x-ext-schedule-id` and `x-idempotency-key: schedule:{id}:{due ms}` (one
//! key per firing, also sent as the runner's idempotency key, so a firing
//! runs once). Each due time is claimed once across every process on the
//! database ([`ext_registry::Database::claim_due_schedules`]); missed
//! due times fire once. The outcome is recorded on the schedule
//! (`last-run-at`, `last-run-status` `success` for a 2xx answer, else
//! `error` with `last-error`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ext_registry::{Database, Firing, Schedule, Timestamp};

use super::Gateway;
use super::execution_log::ExecutionRow;
use super::request::{EnvelopeParts, Trigger, envelope, guest_headers};
use super::runner_link::Call;
use crate::error::{ErrorCode, Failure};

/// How often the loop looks for due schedules: cron's resolution is a
/// minute, so a firing starts at most a second late, and an idle fleet
/// costs one indexed query per process per second.
pub const TICK: Duration = Duration::from_secs(1);
/// Firings claimed (and run at once) per tick and process: bounds what
/// one process starts at the top of a busy minute; the rest stay due and
/// go to the next tick or another process.
pub const CLAIM_BATCH: u32 = 32;

/// How one firing went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    pub schedule_id: String,
    pub request_id: String,
    /// The guest's status, or the error's HTTP status when it did not run.
    pub status: u16,
    /// The error code when it did not answer.
    pub error: Option<String>,
}

/// Fires due schedules every [`TICK`] until aborted.
pub async fn run(gateway: Arc<Gateway>, db: Database) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        fire_due(&gateway, &db, Timestamp::now()).await;
    }
}

/// Claims what is due at `now` and fires it, all at once; returns how each
/// went (also recorded on the schedule and in the execution log).
pub async fn fire_due(gateway: &Gateway, db: &Database, now: Timestamp) -> Vec<Fired> {
    let firings = match db.claim_due_schedules(now, CLAIM_BATCH).await {
        Ok(firings) => firings,
        Err(e) => {
            tracing::warn!(target: "ext_runner::scheduler", error = %e, "could not claim due schedules");
            return Vec::new();
        }
    };
    futures_util::future::join_all(firings.iter().map(|firing| fire(gateway, db, firing))).await
}

async fn fire(gateway: &Gateway, db: &Database, firing: &Firing) -> Fired {
    let schedule = &firing.schedule;
    let request_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let mut version = String::new();
    let result = gateway.fire(firing, &request_id, &mut version).await;
    let elapsed = started.elapsed();
    let (status, code, last_error) = match &result {
        Ok(status) if (200..300).contains(status) => (*status, None, None),
        Ok(status) => (*status, None, Some(format!("the extension answered {status}"))),
        Err(Failure { code, message }) => (code.status().as_u16(), Some(*code), Some(message.clone())),
    };
    let run_status = if last_error.is_none() { "success" } else { "error" };
    if let Err(e) = db
        .record_schedule_run(
            &schedule.schedule_id,
            Timestamp::now(),
            run_status,
            last_error.as_deref(),
        )
        .await
    {
        tracing::warn!(target: "ext_runner::scheduler", schedule_id = %schedule.schedule_id, error = %e, "could not record a schedule's run");
    }
    let outcome = code.map_or("ok", ErrorCode::as_str);
    gateway
        .metrics
        .call(&schedule.tenant, &schedule.extension, outcome, elapsed);
    gateway.log.record(ExecutionRow {
        tenant: schedule.tenant.clone(),
        extension: schedule.extension.clone(),
        request_id: request_id.clone(),
        version,
        endpoint: format!("schedule:{} {}", schedule.endpoint_method, schedule.endpoint_path),
        status,
        error_code: code.map(|c| c.as_str().to_string()),
        duration_ms: elapsed.as_millis() as u64,
        limit_hit: None,
        at: Timestamp::now().0,
    });
    tracing::info!(target: "ext_runner::scheduler", schedule_id = %schedule.schedule_id, request_id = %request_id, tenant = %schedule.tenant, extension = %schedule.extension, status, "schedule fired");
    Fired {
        schedule_id: schedule.schedule_id.clone(),
        request_id,
        status,
        error: code.map(|c| c.as_str().to_string()),
    }
}

/// `Failure` of a firing that cannot reach the guest.
fn refused(code: ErrorCode, schedule: &Schedule, why: &str) -> Failure {
    Failure::new(
        code,
        format!(
            "schedule {} ({} {}): {why}",
            schedule.schedule_id, schedule.endpoint_method, schedule.endpoint_path
        ),
    )
}

impl Gateway {
    /// Runs one firing: the install it belongs to (still installed, still
    /// enabled), its endpoint (still declared and `schedulable`), then the
    /// runner. `version` is set once the install is resolved.
    async fn fire(&self, firing: &Firing, request_id: &str, version: &mut String) -> Result<u16, Failure> {
        let schedule = &firing.schedule;
        let (tenant, extension) = (schedule.tenant.as_str(), schedule.extension.as_str());
        let resolved = self
            .installs
            .find(tenant, extension)
            .await?
            .filter(|r| r.target.install_id == schedule.install_id)
            .ok_or_else(|| refused(ErrorCode::ExtensionNotInstalled, schedule, "its install is gone"))?;
        version.clone_from(&resolved.target.version);
        if !resolved.target.enabled {
            return Err(refused(ErrorCode::InstallDisabled, schedule, "the install is disabled"));
        }
        let (method, path) = (schedule.endpoint_method.as_str(), schedule.endpoint_path.as_str());
        let endpoint = resolved
            .manifest
            .resolve(method, path)
            .filter(|e| e.schedulable)
            .ok_or_else(|| {
                refused(
                    ErrorCode::EndpointNotFound,
                    schedule,
                    &format!(
                        "version {} declares no schedulable endpoint for it",
                        resolved.target.version
                    ),
                )
            })?;
        // One key per firing: the runner's idempotency store runs it once,
        // and the guest sees it too (as upstream runners show it).
        let key = format!("schedule:{}:{}", schedule.schedule_id, firing.due.0);
        let mut headers = guest_headers(&http::HeaderMap::new(), request_id, tenant, extension);
        headers.push(("x-ext-trigger".into(), "schedule".into()));
        headers.push(("x-ext-schedule-id".into(), schedule.schedule_id.clone()));
        headers.push((crate::idempotency::KEY_HEADER.into(), key.clone()));
        let body = schedule.payload.as_deref().map(str::as_bytes);
        if body.is_some() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        let target = &resolved.target;
        let envelope = envelope(&EnvelopeParts {
            request_id,
            tenant,
            extension,
            user: None,
            trigger: Trigger::Schedule {
                schedule_id: &schedule.schedule_id,
            },
            target,
            endpoint: endpoint.handler.clone(),
            method,
            path,
            query: Vec::new(),
            headers,
            body,
            timeout_ms: self.settings.runner_timeout_ms(),
            sealed_secrets: resolved.sealed_secrets.as_ref(),
        })?;
        let claims = self.claims(tenant, extension, target, request_id);
        let call = Call {
            envelope,
            claims: &claims,
            request_id,
            traceparent: None,
            idempotency_key: Some(&key),
        };
        let outcome = self
            .runner
            .call(call, self.settings.timeout, self.settings.max_response_bytes)
            .await;
        Ok(outcome.result?.status)
    }
}
