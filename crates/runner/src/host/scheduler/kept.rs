//! Schedules kept by this process's registry (`ext_registry::schedules`):
//! the backend when the registry role runs here. The install is the
//! execution's; the endpoints are its version's manifest's.
//!
//! - `endpoint` (create, update) is `"METHOD /path"` or a path alone, and
//!   must name one of the manifest's endpoints marked `schedulable`; a path
//!   alone must name exactly one such endpoint. Otherwise
//!   `validation-failed` with `field-errors` `{"endpoint": …}`.
//! - `get-endpoints` lists the manifest's endpoints, `id` `"METHOD /path"`.
//! - The registry's field errors (cron, time zone, payload, name) come back
//!   as `validation-failed` with `field-errors`; a full install is
//!   `quota-exceeded`; an unknown schedule id `not-found`; the database
//!   failing `internal` (logged).
//! - Times are RFC 3339 (`last-run-at`, `created-at`).

use std::collections::BTreeMap;

use ext_registry::{Database, Schedule, ScheduleEdit, ScheduleSpec};

use crate::host::bindings::types::{
    CreateScheduleInput, CreateScheduleResult, DeleteScheduleResult, EndpointInfo, ScheduleInfo, SchedulerError,
    UpdateScheduleInput, UpdateScheduleResult,
};

/// One execution's schedules: its install's, in this process's registry.
pub struct Kept {
    pub db: Database,
    pub install_id: String,
    pub endpoints: Vec<ext_bundle::Endpoint>,
}

/// Why a create or update did not apply: the result record's `error` and
/// `field-errors`.
struct Refused {
    error: &'static str,
    fields: Option<BTreeMap<String, String>>,
}

impl Refused {
    fn field(field: &str, why: String) -> Refused {
        Refused {
            error: "validation-failed",
            fields: Some(BTreeMap::from([(field.to_string(), why)])),
        }
    }

    fn field_errors(&self) -> Option<String> {
        self.fields
            .as_ref()
            .map(|f| serde_json::to_string(f).unwrap_or_default())
    }
}

impl From<ext_registry::Error> for Refused {
    fn from(error: ext_registry::Error) -> Refused {
        use ext_registry::Error as E;
        match error {
            E::InvalidSchedule { fields } => Refused {
                error: "validation-failed",
                fields: Some(fields),
            },
            E::ScheduleQuota { .. } => Refused {
                error: "quota-exceeded",
                fields: None,
            },
            E::NotFound { .. } => Refused {
                error: "not-found",
                fields: None,
            },
            other => {
                tracing::warn!(target: "ext_runner::scheduler", error = %other, "schedule change failed");
                Refused {
                    error: "internal",
                    fields: None,
                }
            }
        }
    }
}

fn read_error(error: ext_registry::Error) -> SchedulerError {
    tracing::warn!(target: "ext_runner::scheduler", error = %error, "schedule read failed");
    SchedulerError::Internal
}

fn info(s: Schedule) -> ScheduleInfo {
    ScheduleInfo {
        id: s.schedule_id,
        endpoint_path: s.endpoint_path,
        endpoint_method: s.endpoint_method,
        name: s.name,
        cron: s.cron,
        timezone: s.timezone,
        enabled: s.enabled,
        payload: s.payload,
        last_run_at: s.last_run_at.map(|t| t.rfc3339()),
        last_run_status: s.last_run_status,
        last_error: s.last_error,
        created_at: Some(s.created_at.rfc3339()),
    }
}

/// `""` clears an optional text in an update; anything else sets it.
fn cleared(text: &Option<String>) -> Option<Option<String>> {
    text.as_ref().map(|t| Some(t.clone()).filter(|t| !t.is_empty()))
}

impl Kept {
    /// The schedulable endpoint `endpoint` names: its method and path.
    fn endpoint(&self, endpoint: &str) -> Result<(String, String), Refused> {
        let endpoint = endpoint.trim();
        let (method, path) = match endpoint.split_once(' ') {
            Some((method, path)) => (Some(method.trim()), path.trim()),
            None => (None, endpoint),
        };
        let named: Vec<&ext_bundle::Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| e.path == path && method.is_none_or(|m| e.method == m))
            .collect();
        let schedulable: Vec<&&ext_bundle::Endpoint> = named.iter().filter(|e| e.schedulable).collect();
        match (named.is_empty(), schedulable.as_slice()) {
            (true, _) => Err(Refused::field(
                "endpoint",
                format!("`{endpoint}` is not an endpoint of this extension"),
            )),
            (false, [one]) => Ok((one.method.clone(), one.path.clone())),
            (false, []) => Err(Refused::field(
                "endpoint",
                format!("`{endpoint}` is not marked schedulable in the manifest"),
            )),
            (false, _) => Err(Refused::field(
                "endpoint",
                format!("`{endpoint}` names several schedulable endpoints: give the method too (`POST {path}`)"),
            )),
        }
    }

    pub async fn list(&self) -> Result<Vec<ScheduleInfo>, SchedulerError> {
        let schedules = self.db.schedules(&self.install_id).await.map_err(read_error)?;
        Ok(schedules.into_iter().map(info).collect())
    }

    pub async fn get(&self, schedule_id: &str) -> Result<Option<ScheduleInfo>, SchedulerError> {
        let schedule = self
            .db
            .schedule(&self.install_id, schedule_id)
            .await
            .map_err(read_error)?;
        Ok(schedule.map(info))
    }

    pub async fn create(&self, input: &CreateScheduleInput) -> CreateScheduleResult {
        let created = async {
            let (endpoint_method, endpoint_path) = self.endpoint(&input.endpoint)?;
            let spec = ScheduleSpec {
                endpoint_method,
                endpoint_path,
                cron: input.cron.clone(),
                timezone: input.timezone.clone(),
                enabled: input.enabled,
                name: input.name.clone(),
                payload: input.payload.clone(),
            };
            Ok::<_, Refused>(self.db.create_schedule(&self.install_id, &spec).await?)
        };
        match created.await {
            Ok(schedule) => CreateScheduleResult {
                success: true,
                schedule_id: Some(schedule.schedule_id),
                error: None,
                field_errors: None,
            },
            Err(refused) => CreateScheduleResult {
                success: false,
                schedule_id: None,
                error: Some(refused.error.to_string()),
                field_errors: refused.field_errors(),
            },
        }
    }

    pub async fn update(&self, schedule_id: &str, input: &UpdateScheduleInput) -> UpdateScheduleResult {
        let updated = async {
            let endpoint = input.endpoint.as_deref().map(|e| self.endpoint(e)).transpose()?;
            let edit = ScheduleEdit {
                endpoint,
                cron: input.cron.clone(),
                timezone: input.timezone.clone(),
                enabled: input.enabled,
                name: cleared(&input.name),
                payload: cleared(&input.payload),
            };
            Ok::<_, Refused>(self.db.update_schedule(&self.install_id, schedule_id, &edit).await?)
        };
        match updated.await {
            Ok(_) => UpdateScheduleResult {
                success: true,
                error: None,
                field_errors: None,
            },
            Err(refused) => UpdateScheduleResult {
                success: false,
                error: Some(refused.error.to_string()),
                field_errors: refused.field_errors(),
            },
        }
    }

    pub async fn delete(&self, schedule_id: &str) -> DeleteScheduleResult {
        let (success, error) = match self.db.delete_schedule(&self.install_id, schedule_id).await {
            Ok(true) => (true, None),
            Ok(false) => (false, Some("not-found")),
            Err(e) => (false, Some(Refused::from(e).error)),
        };
        DeleteScheduleResult {
            success,
            error: error.map(str::to_string),
        }
    }

    pub fn endpoints(&self) -> Vec<EndpointInfo> {
        self.endpoints
            .iter()
            .map(|e| EndpointInfo {
                id: format!("{} {}", e.method, e.path),
                method: e.method.clone(),
                path: e.path.clone(),
                handler: e.handler.clone(),
                schedulable: e.schedulable,
            })
            .collect()
    }
}
