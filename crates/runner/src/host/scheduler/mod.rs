//! `cap:scheduler.manage`: the install's schedules of its own endpoints.
//!
//! A [`Backend`] keeps them; today that is the host product, through the
//! host API (`host_api`, service `scheduler`):
//!
//! | function | operation and fields | answer |
//! |---|---|---|
//! | `list-schedules` | `list` | `[schedule]` |
//! | `get-schedule(id)` | `get {scheduleId}` | the schedule or `null` (404: `none` too) |
//! | `create-schedule(input)` | `create {endpoint, cron, timezone?, enabled?, name?, payload?}` | `{success, scheduleId?, error?, fieldErrors?}` |
//! | `update-schedule(id, input)` | `update {scheduleId, endpoint?, cron?, timezone?, enabled?, name?, payload?}` | `{success, error?, fieldErrors?}` |
//! | `delete-schedule(id)` | `delete {scheduleId}` | `{success, error?}` |
//! | `get-endpoints` | `getEndpoints` | `[{id, method, path, handler, schedulable}]` |
//!
//! A schedule is `{id, endpointPath, endpointMethod, name?, cron,
//! timezone, enabled, payload?, lastRunAt?, lastRunStatus?, lastError?,
//! createdAt?}`. `payload` is JSON text for the guest and JSON on the
//! wire: the guest's text is parsed before the call (not JSON:
//! `success: false`, `validation-failed`, `field-errors`
//! `{"payload":"not valid JSON"}`, no call), and the host's value is
//! handed back as its JSON text; in `update`, `""` clears it (`null` on the
//! wire). Without the grant, a host API or an install id: `denied` (result
//! records: `success: false`, `error: "denied"`).
//!
//! - `wire`: the JSON both ways.

pub mod kept;
pub mod wire;

use super::bindings::alga::extension::scheduler;
use super::bindings::types::{
    CreateScheduleInput, CreateScheduleResult, DeleteScheduleResult, EndpointInfo, ScheduleInfo, SchedulerError,
    UpdateScheduleInput, UpdateScheduleResult,
};
use super::host_api::{self, Outcome, Refusal, Service};
use super::{Invocation, Prepare};

pub const CAPABILITY: &str = "cap:scheduler.manage";

/// Where one execution's schedules are kept.
pub enum Backend {
    /// This process's registry (the registry role runs here): see `kept`.
    Registry(kept::Kept),
    /// The host product keeps them (`ext-scheduler` of the host API).
    HostApi(host_api::Link),
}

/// One execution's backend (its settings are the host API's).
pub type State = Backend;

/// Only when granted and for a request whose context names an install:
/// kept by `registry` when this process runs the registry role, else by
/// the host API when one is configured.
pub fn prepare(
    host_api: &host_api::Shared,
    registry: Option<&ext_registry::Database>,
    request: &Prepare<'_>,
) -> Option<State> {
    if !request.grants.allows(CAPABILITY) {
        return None;
    }
    match (registry, request.info.install_id.as_deref().filter(|id| !id.is_empty())) {
        (Some(db), Some(install_id)) => Some(Backend::Registry(kept::Kept {
            db: db.clone(),
            install_id: install_id.to_string(),
            endpoints: request.manifest.endpoints.clone(),
        })),
        (Some(_), None) => None,
        (None, _) => host_api.link(request, Service::Scheduler).map(Backend::HostApi),
    }
}

fn error(refusal: Refusal) -> SchedulerError {
    match refusal {
        Refusal::Denied => SchedulerError::Denied,
        Refusal::NotFound => SchedulerError::NotFound,
        Refusal::Invalid { .. } => SchedulerError::ValidationFailed,
        Refusal::QuotaExceeded => SchedulerError::QuotaExceeded,
        Refusal::Internal => SchedulerError::Internal,
    }
}

impl Backend {
    async fn list(&self) -> Result<Vec<ScheduleInfo>, SchedulerError> {
        match self {
            Backend::Registry(kept) => kept.list().await,
            Backend::HostApi(link) => link
                .call::<Vec<wire::Schedule>>("list", ())
                .await
                .map(|list| list.into_iter().map(ScheduleInfo::from).collect())
                .map_err(error),
        }
    }

    async fn get(&self, schedule_id: &str) -> Result<Option<ScheduleInfo>, SchedulerError> {
        match self {
            Backend::Registry(kept) => kept.get(schedule_id).await,
            Backend::HostApi(link) => match link
                .call::<Option<wire::Schedule>>("get", wire::Id { schedule_id })
                .await
            {
                Ok(schedule) => Ok(schedule.map(ScheduleInfo::from)),
                Err(Refusal::NotFound) => Ok(None),
                Err(refusal) => Err(error(refusal)),
            },
        }
    }

    async fn create(&self, input: &CreateScheduleInput) -> CreateScheduleResult {
        let payload = match wire::payload(input.payload.as_deref(), false) {
            Ok(payload) => payload,
            Err(wire::NotJson) => return wire::CreateResult::invalid_payload().into(),
        };
        match self {
            Backend::Registry(kept) => kept.create(input).await,
            Backend::HostApi(link) => {
                host_api::outcome::<wire::CreateResult>(link, "create", wire::Create::new(input, payload))
                    .await
                    .into()
            }
        }
    }

    async fn update(&self, schedule_id: &str, input: &UpdateScheduleInput) -> UpdateScheduleResult {
        let payload = match wire::payload(input.payload.as_deref(), true) {
            Ok(payload) => payload,
            Err(wire::NotJson) => return wire::UpdateResult::invalid_payload().into(),
        };
        match self {
            Backend::Registry(kept) => kept.update(schedule_id, input).await,
            Backend::HostApi(link) => {
                host_api::outcome::<wire::UpdateResult>(link, "update", wire::Update::new(schedule_id, input, payload))
                    .await
                    .into()
            }
        }
    }

    async fn delete(&self, schedule_id: &str) -> DeleteScheduleResult {
        match self {
            Backend::Registry(kept) => kept.delete(schedule_id).await,
            Backend::HostApi(link) => host_api::outcome::<wire::DeleteResult>(link, "delete", wire::Id { schedule_id })
                .await
                .into(),
        }
    }

    async fn endpoints(&self) -> Result<Vec<EndpointInfo>, SchedulerError> {
        match self {
            Backend::Registry(kept) => Ok(kept.endpoints()),
            Backend::HostApi(link) => link
                .call::<Vec<wire::Endpoint>>("getEndpoints", ())
                .await
                .map(|list| list.into_iter().map(EndpointInfo::from).collect())
                .map_err(error),
        }
    }
}

impl Invocation {
    /// The execution's backend, if granted and linked.
    fn schedules(&mut self) -> Option<&Backend> {
        self.count("scheduler");
        self.caps.scheduler.as_ref().filter(|_| self.grants.allows(CAPABILITY))
    }
}

impl scheduler::Host for Invocation {
    async fn list_schedules(&mut self) -> wasmtime::Result<Result<Vec<ScheduleInfo>, SchedulerError>> {
        let Some(backend) = self.schedules() else {
            return Ok(Err(SchedulerError::Denied));
        };
        Ok(backend.list().await)
    }

    async fn get_schedule(
        &mut self,
        schedule_id: String,
    ) -> wasmtime::Result<Result<Option<ScheduleInfo>, SchedulerError>> {
        let Some(backend) = self.schedules() else {
            return Ok(Err(SchedulerError::Denied));
        };
        Ok(backend.get(&schedule_id).await)
    }

    async fn create_schedule(&mut self, input: CreateScheduleInput) -> wasmtime::Result<CreateScheduleResult> {
        let Some(backend) = self.schedules() else {
            return Ok(wire::CreateResult::failed("denied").into());
        };
        Ok(backend.create(&input).await)
    }

    async fn update_schedule(
        &mut self,
        schedule_id: String,
        input: UpdateScheduleInput,
    ) -> wasmtime::Result<UpdateScheduleResult> {
        let Some(backend) = self.schedules() else {
            return Ok(wire::UpdateResult::failed("denied").into());
        };
        Ok(backend.update(&schedule_id, &input).await)
    }

    async fn delete_schedule(&mut self, schedule_id: String) -> wasmtime::Result<DeleteScheduleResult> {
        let Some(backend) = self.schedules() else {
            return Ok(wire::DeleteResult::failed("denied").into());
        };
        Ok(backend.delete(&schedule_id).await)
    }

    async fn get_endpoints(&mut self) -> wasmtime::Result<Result<Vec<EndpointInfo>, SchedulerError>> {
        let Some(backend) = self.schedules() else {
            return Ok(Err(SchedulerError::Denied));
        };
        Ok(backend.endpoints().await)
    }
}
