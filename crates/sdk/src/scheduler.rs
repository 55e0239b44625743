//! `cap:scheduler.manage`: schedules that call the install's own
//! endpoints (those its manifest marks `schedulable`).

use serde::Serialize;

use crate::bindings::alga::extension::scheduler as raw;
pub use crate::bindings::alga::extension::types::SchedulerError;
use crate::bindings::alga::extension::types::{
    CreateScheduleInput, CreateScheduleResult, DeleteScheduleResult, EndpointInfo, ScheduleInfo, UpdateScheduleInput,
    UpdateScheduleResult,
};

/// A schedule (`schedule-info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// The schedule's id.
    pub id: String,
    /// The endpoint it calls.
    pub endpoint_path: String,
    pub endpoint_method: String,
    /// Its name, if any.
    pub name: Option<String>,
    /// A 5-field cron expression.
    pub cron: String,
    /// An IANA time zone name.
    pub timezone: String,
    /// Whether it fires.
    pub enabled: bool,
    /// The JSON body each firing sends, as JSON text.
    pub payload: Option<String>,
    /// The last firing: when, its status and its error, if any.
    pub last_run_at: Option<String>,
    pub last_run_status: Option<String>,
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: Option<String>,
}

/// An endpoint of the install's manifest (`endpoint-info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// The endpoint's id.
    pub id: String,
    /// Its method and path.
    pub method: String,
    pub path: String,
    /// The component that handles it.
    pub handler: String,
    /// Whether a schedule may call it.
    pub schedulable: bool,
}

/// A schedule to create (`create-schedule-input`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSchedule {
    /// A schedulable endpoint: `"GET /path"` or the path.
    pub endpoint: String,
    /// A 5-field cron expression.
    pub cron: String,
    /// An IANA time zone name (the host's default: `UTC`).
    pub timezone: Option<String>,
    pub enabled: Option<bool>,
    pub name: Option<String>,
    /// The JSON body each firing sends, as JSON text (not JSON: refused).
    pub payload: Option<String>,
}

/// Changes to a schedule (`update-schedule-input`): `None` keeps a field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleChanges {
    pub endpoint: Option<String>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub enabled: Option<bool>,
    pub name: Option<String>,
    /// JSON text; `Some("")` clears the payload.
    pub payload: Option<String>,
}

/// What [`create`] answers (`create-schedule-result`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateResult {
    /// Whether the schedule was created.
    pub success: bool,
    /// The new schedule's id.
    pub schedule_id: Option<String>,
    /// Why it failed: the host's message, or `denied`, `not-found`,
    /// `validation-failed`, `quota-exceeded`, `internal`.
    pub error: Option<String>,
    /// Field errors as JSON text (an object of field → message).
    pub field_errors: Option<String>,
}

/// What [`update`] answers (`update-schedule-result`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateResult {
    /// Whether the schedule was changed.
    pub success: bool,
    /// Why it failed, as in [`CreateResult::error`].
    pub error: Option<String>,
    /// Field errors as JSON text.
    pub field_errors: Option<String>,
}

/// What [`delete`] answers (`delete-schedule-result`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteResult {
    /// Whether the schedule was deleted.
    pub success: bool,
    /// Why it failed, as in [`CreateResult::error`].
    pub error: Option<String>,
}

impl From<ScheduleInfo> for Schedule {
    fn from(raw: ScheduleInfo) -> Self {
        Self {
            id: raw.id,
            endpoint_path: raw.endpoint_path,
            endpoint_method: raw.endpoint_method,
            name: raw.name,
            cron: raw.cron,
            timezone: raw.timezone,
            enabled: raw.enabled,
            payload: raw.payload,
            last_run_at: raw.last_run_at,
            last_run_status: raw.last_run_status,
            last_error: raw.last_error,
            created_at: raw.created_at,
        }
    }
}

impl From<EndpointInfo> for Endpoint {
    fn from(raw: EndpointInfo) -> Self {
        Self {
            id: raw.id,
            method: raw.method,
            path: raw.path,
            handler: raw.handler,
            schedulable: raw.schedulable,
        }
    }
}

/// The install's schedules.
///
/// # Errors
/// [`SchedulerError::Denied`] without the capability, or the host's
/// refusal (`not-found`, `validation-failed`, `quota-exceeded`,
/// `internal`).
pub fn list() -> Result<Vec<Schedule>, SchedulerError> {
    raw::list_schedules().map(|list| list.into_iter().map(Schedule::from).collect())
}

/// The schedule `schedule_id`, or `None` if there is none.
///
/// # Errors
/// As [`list`].
pub fn get(schedule_id: &str) -> Result<Option<Schedule>, SchedulerError> {
    raw::get_schedule(schedule_id).map(|schedule| schedule.map(Schedule::from))
}

/// Creates a schedule. Failures are `success: false` with `error`.
pub fn create(schedule: &NewSchedule) -> CreateResult {
    let input = CreateScheduleInput {
        endpoint: schedule.endpoint.clone(),
        cron: schedule.cron.clone(),
        timezone: schedule.timezone.clone(),
        enabled: schedule.enabled,
        name: schedule.name.clone(),
        payload: schedule.payload.clone(),
    };
    let CreateScheduleResult {
        success,
        schedule_id,
        error,
        field_errors,
    } = raw::create_schedule(&input);
    CreateResult {
        success,
        schedule_id,
        error,
        field_errors,
    }
}

/// Changes the schedule `schedule_id`. Failures are `success: false`
/// with `error`.
pub fn update(schedule_id: &str, changes: &ScheduleChanges) -> UpdateResult {
    let input = UpdateScheduleInput {
        endpoint: changes.endpoint.clone(),
        cron: changes.cron.clone(),
        timezone: changes.timezone.clone(),
        enabled: changes.enabled,
        name: changes.name.clone(),
        payload: changes.payload.clone(),
    };
    let UpdateScheduleResult {
        success,
        error,
        field_errors,
    } = raw::update_schedule(schedule_id, &input);
    UpdateResult {
        success,
        error,
        field_errors,
    }
}

/// Deletes the schedule `schedule_id`. Failures are `success: false` with
/// `error`.
pub fn delete(schedule_id: &str) -> DeleteResult {
    let DeleteScheduleResult { success, error } = raw::delete_schedule(schedule_id);
    DeleteResult { success, error }
}

/// The install's endpoints, with which of them a schedule may call.
///
/// # Errors
/// As [`list`].
pub fn endpoints() -> Result<Vec<Endpoint>, SchedulerError> {
    raw::get_endpoints().map(|list| list.into_iter().map(Endpoint::from).collect())
}
