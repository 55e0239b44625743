//! The `scheduler` service's JSON: what the runner sends and the camelCase
//! records it accepts (unknown fields ignored, absent options `none`;
//! `payload` and `fieldErrors` any JSON, handed to the guest as JSON text).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::host::bindings::types::{
    CreateScheduleInput, CreateScheduleResult, DeleteScheduleResult, EndpointInfo, ScheduleInfo, UpdateScheduleInput,
    UpdateScheduleResult,
};
use crate::host::host_api::{Outcome, json_text};

/// `get` and `delete`'s fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Id<'a> {
    pub schedule_id: &'a str,
}

/// A guest's `payload` that is not JSON text.
#[derive(Debug, PartialEq, Eq)]
pub struct NotJson;

/// The guest's `payload` text as JSON: `None` when absent; in an update
/// (`clears`), `""` is `null`, which clears it.
///
/// # Errors
/// [`NotJson`].
pub fn payload(text: Option<&str>, clears: bool) -> Result<Option<Value>, NotJson> {
    match text {
        None => Ok(None),
        Some("") if clears => Ok(Some(Value::Null)),
        Some(text) => serde_json::from_str(text).map(Some).map_err(|_| NotJson),
    }
}

/// `field-errors` of a payload that is not JSON.
fn payload_errors() -> Value {
    serde_json::json!({"payload": "not valid JSON"})
}

/// `create`'s fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Create<'a> {
    endpoint: &'a str,
    cron: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Value>,
}

impl<'a> Create<'a> {
    pub fn new(input: &'a CreateScheduleInput, payload: Option<Value>) -> Create<'a> {
        Create {
            endpoint: &input.endpoint,
            cron: &input.cron,
            timezone: input.timezone.as_deref(),
            enabled: input.enabled,
            name: input.name.as_deref(),
            payload,
        }
    }
}

/// `update`'s fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Update<'a> {
    schedule_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cron: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// `Some(Value::Null)` (from `""`) is sent as `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Value>,
}

impl<'a> Update<'a> {
    pub fn new(schedule_id: &'a str, input: &'a UpdateScheduleInput, payload: Option<Value>) -> Update<'a> {
        Update {
            schedule_id,
            endpoint: input.endpoint.as_deref(),
            cron: input.cron.as_deref(),
            timezone: input.timezone.as_deref(),
            enabled: input.enabled,
            name: input.name.as_deref(),
            payload,
        }
    }
}

/// `schedule-info` as the host answers it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    id: String,
    endpoint_path: String,
    endpoint_method: String,
    #[serde(default)]
    name: Option<String>,
    cron: String,
    timezone: String,
    enabled: bool,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    last_run_at: Option<String>,
    #[serde(default)]
    last_run_status: Option<String>,
    #[serde(default)]
    last_error: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

impl From<Schedule> for ScheduleInfo {
    fn from(s: Schedule) -> ScheduleInfo {
        ScheduleInfo {
            id: s.id,
            endpoint_path: s.endpoint_path,
            endpoint_method: s.endpoint_method,
            name: s.name,
            cron: s.cron,
            timezone: s.timezone,
            enabled: s.enabled,
            payload: json_text(s.payload),
            last_run_at: s.last_run_at,
            last_run_status: s.last_run_status,
            last_error: s.last_error,
            created_at: s.created_at,
        }
    }
}

/// `endpoint-info` as the host answers it.
#[derive(Deserialize)]
pub struct Endpoint {
    id: String,
    method: String,
    path: String,
    handler: String,
    schedulable: bool,
}

impl From<Endpoint> for EndpointInfo {
    fn from(e: Endpoint) -> EndpointInfo {
        EndpointInfo {
            id: e.id,
            method: e.method,
            path: e.path,
            handler: e.handler,
            schedulable: e.schedulable,
        }
    }
}

/// `create-schedule-result` as the host answers it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateResult {
    success: bool,
    #[serde(default)]
    schedule_id: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    field_errors: Option<Value>,
}

impl CreateResult {
    pub fn invalid_payload() -> CreateResult {
        CreateResult {
            field_errors: Some(payload_errors()),
            ..CreateResult::failed("validation-failed")
        }
    }
}

impl Outcome for CreateResult {
    fn failed(error: &str) -> CreateResult {
        CreateResult {
            success: false,
            schedule_id: None,
            error: Some(error.to_string()),
            field_errors: None,
        }
    }

    fn rejected(self) -> CreateResult {
        CreateResult {
            success: false,
            error: self.error.or_else(|| Some("validation-failed".to_string())),
            ..self
        }
    }
}

impl From<CreateResult> for CreateScheduleResult {
    fn from(r: CreateResult) -> CreateScheduleResult {
        CreateScheduleResult {
            success: r.success,
            schedule_id: r.schedule_id,
            error: r.error,
            field_errors: json_text(r.field_errors),
        }
    }
}

/// `update-schedule-result` as the host answers it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateResult {
    success: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    field_errors: Option<Value>,
}

impl UpdateResult {
    pub fn invalid_payload() -> UpdateResult {
        UpdateResult {
            field_errors: Some(payload_errors()),
            ..UpdateResult::failed("validation-failed")
        }
    }
}

impl Outcome for UpdateResult {
    fn failed(error: &str) -> UpdateResult {
        UpdateResult {
            success: false,
            error: Some(error.to_string()),
            field_errors: None,
        }
    }

    fn rejected(self) -> UpdateResult {
        UpdateResult {
            success: false,
            error: self.error.or_else(|| Some("validation-failed".to_string())),
            ..self
        }
    }
}

impl From<UpdateResult> for UpdateScheduleResult {
    fn from(r: UpdateResult) -> UpdateScheduleResult {
        UpdateScheduleResult {
            success: r.success,
            error: r.error,
            field_errors: json_text(r.field_errors),
        }
    }
}

/// `delete-schedule-result` as the host answers it.
#[derive(Deserialize)]
pub struct DeleteResult {
    success: bool,
    #[serde(default)]
    error: Option<String>,
}

impl Outcome for DeleteResult {
    fn failed(error: &str) -> DeleteResult {
        DeleteResult {
            success: false,
            error: Some(error.to_string()),
        }
    }

    fn rejected(self) -> DeleteResult {
        DeleteResult {
            success: false,
            error: self.error.or_else(|| Some("validation-failed".to_string())),
        }
    }
}

impl From<DeleteResult> for DeleteScheduleResult {
    fn from(r: DeleteResult) -> DeleteScheduleResult {
        DeleteScheduleResult {
            success: r.success,
            error: r.error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_table() {
        assert_eq!(payload(None, false), Ok(None));
        assert_eq!(
            payload(Some(r#"{"a":1}"#), false),
            Ok(Some(serde_json::json!({"a": 1})))
        );
        assert_eq!(payload(Some("null"), false), Ok(Some(Value::Null)));
        assert_eq!(payload(Some(""), true), Ok(Some(Value::Null)));
        assert_eq!(payload(Some(""), false), Err(NotJson));
        assert_eq!(payload(Some("{not json"), true), Err(NotJson));
    }
}
