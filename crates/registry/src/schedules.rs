//! Schedules: an install's timed invocations of its own endpoints (the
//! guest's `scheduler` interface keeps them here when the registry role
//! runs). A schedule is a 5-field cron expression read in an IANA time zone,
//! the endpoint (method and path) it invokes and an optional JSON payload;
//! it belongs to one install and is removed with it.
//!
//! Validation happens here, field by field ([`Error::InvalidSchedule`]
//! names each bad field), so every caller gets the same rules; whether the
//! endpoint exists and is `schedulable` is the caller's to check against
//! the install's manifest. An install holds at most [`MAX_SCHEDULES_PER_INSTALL`].
//!
//! `next_run_at` is the next time the expression matches after the last
//! change or firing, in UTC milliseconds; `None` while disabled.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use chrono::{TimeZone as _, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::Database;
use crate::error::Error;
use crate::model::Timestamp;

/// Schedules one install may hold: a guest that creates one per request
/// must not grow a table every process scans; upstream products allow a
/// few dozen per install.
pub const MAX_SCHEDULES_PER_INSTALL: i64 = 50;
/// Largest payload (JSON text) a schedule keeps: it becomes the request
/// body of every firing, which the runner caps far higher; 64 KiB is ample
/// for parameters and bounds what a schedule list answers.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Longest schedule name, in bytes (a label for people).
pub const MAX_NAME_BYTES: usize = 200;
/// Longest cron expression, in bytes: five fields with lists and steps fit
/// in far less.
pub const MAX_CRON_BYTES: usize = 256;
/// Longest endpoint path, in bytes (the manifest's own paths are shorter).
pub const MAX_ENDPOINT_PATH_BYTES: usize = 1024;

/// A stored schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub schedule_id: String,
    pub install_id: String,
    pub tenant: String,
    pub extension: String,
    pub endpoint_method: String,
    pub endpoint_path: String,
    pub name: Option<String>,
    pub cron: String,
    /// IANA name (`UTC` unless given).
    pub timezone: String,
    pub enabled: bool,
    /// JSON text.
    pub payload: Option<String>,
    pub next_run_at: Option<Timestamp>,
    pub last_run_at: Option<Timestamp>,
    pub last_run_status: Option<String>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A new schedule, as the guest asks for it (endpoint already resolved to
/// its method and path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub endpoint_method: String,
    pub endpoint_path: String,
    pub cron: String,
    /// `None`: `UTC`.
    pub timezone: Option<String>,
    /// `None`: enabled.
    pub enabled: Option<bool>,
    pub name: Option<String>,
    /// JSON text.
    pub payload: Option<String>,
}

/// A change to a schedule: `None` keeps a field; `Some(None)` clears an
/// optional one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleEdit {
    /// Method and path.
    pub endpoint: Option<(String, String)>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub enabled: Option<bool>,
    pub name: Option<Option<String>>,
    pub payload: Option<Option<String>>,
}

/// One due time of one schedule, claimed by one caller of
/// [`Database::claim_due_schedules`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firing {
    /// The schedule as it was when claimed (its `next_run_at` the due time).
    pub schedule: Schedule,
    /// The due time claimed: with the schedule id, what names this firing
    /// (its idempotency key).
    pub due: Timestamp,
}

/// A cron expression read in a time zone: when it fires next.
#[derive(Clone, Debug)]
pub struct Timing {
    cron: croner::Cron,
    zone: chrono_tz::Tz,
}

impl Timing {
    /// Parses `cron` (exactly five fields: minute, hour, day of month,
    /// month, day of week) and `timezone` (an IANA name), naming each bad
    /// field in `fields`.
    fn parse(cron: &str, timezone: &str, fields: &mut BTreeMap<String, String>) -> Option<Timing> {
        let parsed = if cron.len() > MAX_CRON_BYTES {
            Err(format!("longer than {MAX_CRON_BYTES} bytes"))
        } else if cron.split_whitespace().count() != 5 {
            Err("must have five fields: minute hour day-of-month month day-of-week".to_string())
        } else {
            croner::Cron::from_str(cron).map_err(|e| format!("not a valid cron expression: {e}"))
        };
        let zone = chrono_tz::Tz::from_str(timezone).map_err(|_| format!("`{timezone}` is not an IANA time zone"));
        match (parsed, zone) {
            (Ok(cron), Ok(zone)) => Some(Timing { cron, zone }),
            (cron, zone) => {
                if let Err(why) = cron {
                    fields.insert("cron".into(), why);
                }
                if let Err(why) = zone {
                    fields.insert("timezone".into(), why);
                }
                None
            }
        }
    }

    /// The first time after `after` that the expression matches, in its
    /// zone; `None` when it never matches again.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let after = Utc.timestamp_millis_opt(after.0).single()?.with_timezone(&self.zone);
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        Some(Timestamp(next.with_timezone(&Utc).timestamp_millis()))
    }
}

/// The checks of every text field but the cron and time zone.
fn check_texts(
    method: Option<&str>,
    path: Option<&str>,
    name: Option<&str>,
    payload: Option<&str>,
    fields: &mut BTreeMap<String, String>,
) {
    if let Some(method) = method
        && (method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()))
    {
        fields.insert("endpoint".into(), format!("method `{method}` is not an HTTP method"));
    }
    if let Some(path) = path
        && (!path.starts_with('/') || path.len() > MAX_ENDPOINT_PATH_BYTES)
    {
        fields.insert(
            "endpoint".into(),
            format!("the path must start with `/` and be at most {MAX_ENDPOINT_PATH_BYTES} bytes"),
        );
    }
    if let Some(name) = name
        && name.len() > MAX_NAME_BYTES
    {
        fields.insert("name".into(), format!("longer than {MAX_NAME_BYTES} bytes"));
    }
    if let Some(payload) = payload {
        if payload.len() > MAX_PAYLOAD_BYTES {
            fields.insert("payload".into(), format!("longer than {MAX_PAYLOAD_BYTES} bytes"));
        } else if serde_json::from_str::<serde::de::IgnoredAny>(payload).is_err() {
            fields.insert("payload".into(), "not valid JSON".into());
        }
    }
}

const SELECT_SCHEDULES: &str = "SELECT schedule_id, install_id, tenant, extension, endpoint_method, endpoint_path, \
     name, cron, timezone, enabled, payload, next_run_at, last_run_at, last_run_status, last_error, created_at, \
     updated_at FROM schedules";

fn schedule_from(row: &AnyRow) -> Result<Schedule, Error> {
    let time = |column: &str| -> Result<Option<Timestamp>, Error> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(Timestamp))
    };
    Ok(Schedule {
        schedule_id: row.try_get("schedule_id")?,
        install_id: row.try_get("install_id")?,
        tenant: row.try_get("tenant")?,
        extension: row.try_get("extension")?,
        endpoint_method: row.try_get("endpoint_method")?,
        endpoint_path: row.try_get("endpoint_path")?,
        name: row.try_get("name")?,
        cron: row.try_get("cron")?,
        timezone: row.try_get("timezone")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        payload: row.try_get("payload")?,
        next_run_at: time("next_run_at")?,
        last_run_at: time("last_run_at")?,
        last_run_status: row.try_get("last_run_status")?,
        last_error: row.try_get("last_error")?,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

fn not_found(schedule_id: &str) -> Error {
    Error::NotFound {
        what: "schedule",
        name: schedule_id.to_string(),
    }
}

impl Database {
    /// The install's schedules, oldest first.
    ///
    /// # Errors
    /// The database's.
    pub async fn schedules(&self, install_id: &str) -> Result<Vec<Schedule>, Error> {
        let sql = format!("{SELECT_SCHEDULES} WHERE install_id = $1 ORDER BY created_at, schedule_id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(install_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(schedule_from).collect()
    }

    /// One of the install's schedules; another install's is `None`.
    ///
    /// # Errors
    /// The database's.
    pub async fn schedule(&self, install_id: &str, schedule_id: &str) -> Result<Option<Schedule>, Error> {
        let sql = format!("{SELECT_SCHEDULES} WHERE install_id = $1 AND schedule_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(install_id)
            .bind(schedule_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(schedule_from).transpose()
    }

    /// Creates a schedule for the install, first due at the expression's
    /// next match from now.
    ///
    /// # Errors
    /// [`Error::InvalidSchedule`] naming each bad field,
    /// [`Error::NotFound`] without the install, [`Error::ScheduleQuota`]
    /// at [`MAX_SCHEDULES_PER_INSTALL`], the database's.
    pub async fn create_schedule(&self, install_id: &str, spec: &ScheduleSpec) -> Result<Schedule, Error> {
        let timezone = spec.timezone.as_deref().unwrap_or("UTC");
        let mut fields = BTreeMap::new();
        let timing = Timing::parse(&spec.cron, timezone, &mut fields);
        check_texts(
            Some(&spec.endpoint_method),
            Some(&spec.endpoint_path),
            spec.name.as_deref(),
            spec.payload.as_deref(),
            &mut fields,
        );
        let Some(timing) = timing.filter(|_| fields.is_empty()) else {
            return Err(Error::InvalidSchedule { fields });
        };
        let enabled = spec.enabled.unwrap_or(true);
        let now = Timestamp::now();
        let next_run_at = enabled.then(|| timing.next_after(now)).flatten();

        let mut tx = self.write().await?;
        let install = sqlx::query("SELECT tenant, extension FROM installs WHERE install_id = $1")
            .bind(install_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "install",
                name: install_id.to_string(),
            })?;
        let (tenant, extension): (String, String) = (install.try_get("tenant")?, install.try_get("extension")?);
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schedules WHERE install_id = $1")
            .bind(install_id)
            .fetch_one(&mut *tx)
            .await?;
        if held >= MAX_SCHEDULES_PER_INSTALL {
            return Err(Error::ScheduleQuota {
                limit: MAX_SCHEDULES_PER_INSTALL,
            });
        }
        let schedule_id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO schedules (schedule_id, install_id, tenant, extension, endpoint_method, endpoint_path, name, \
             cron, timezone, enabled, payload, next_run_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
        )
        .bind(&schedule_id)
        .bind(install_id)
        .bind(&tenant)
        .bind(&extension)
        .bind(&spec.endpoint_method)
        .bind(&spec.endpoint_path)
        .bind(spec.name.clone())
        .bind(&spec.cron)
        .bind(timezone)
        .bind(i64::from(enabled))
        .bind(spec.payload.clone())
        .bind(next_run_at.map(|t| t.0))
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        // Not counted in `changes`: schedules decide no call's answer.
        tx.commit().await?;
        Ok(Schedule {
            schedule_id,
            install_id: install_id.to_string(),
            tenant,
            extension,
            endpoint_method: spec.endpoint_method.clone(),
            endpoint_path: spec.endpoint_path.clone(),
            name: spec.name.clone(),
            cron: spec.cron.clone(),
            timezone: timezone.to_string(),
            enabled,
            payload: spec.payload.clone(),
            next_run_at,
            last_run_at: None,
            last_run_status: None,
            last_error: None,
            created_at: now,
            updated_at: now,
        })
    }

    /// Applies `edit` to one of the install's schedules. A change of the
    /// expression, time zone or `enabled` recomputes `next_run_at` from now.
    ///
    /// # Errors
    /// [`Error::InvalidSchedule`], [`Error::NotFound`] (also for another
    /// install's schedule), the database's.
    pub async fn update_schedule(
        &self,
        install_id: &str,
        schedule_id: &str,
        edit: &ScheduleEdit,
    ) -> Result<Schedule, Error> {
        let mut tx = self.write().await?;
        let sql = format!("{SELECT_SCHEDULES} WHERE install_id = $1 AND schedule_id = $2");
        let current = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(install_id)
            .bind(schedule_id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(schedule_from)
            .transpose()?
            .ok_or_else(|| not_found(schedule_id))?;

        let (method, path) = edit
            .endpoint
            .clone()
            .unwrap_or((current.endpoint_method.clone(), current.endpoint_path.clone()));
        let cron = edit.cron.clone().unwrap_or(current.cron.clone());
        let timezone = edit.timezone.clone().unwrap_or(current.timezone.clone());
        let enabled = edit.enabled.unwrap_or(current.enabled);
        let name = edit.name.clone().unwrap_or(current.name.clone());
        let payload = edit.payload.clone().unwrap_or(current.payload.clone());
        let mut fields = BTreeMap::new();
        let timing = Timing::parse(&cron, &timezone, &mut fields);
        check_texts(
            edit.endpoint.as_ref().map(|(m, _)| m.as_str()),
            edit.endpoint.as_ref().map(|(_, p)| p.as_str()),
            name.as_deref(),
            edit.payload.as_ref().and_then(Option::as_deref),
            &mut fields,
        );
        let Some(timing) = timing.filter(|_| fields.is_empty()) else {
            return Err(Error::InvalidSchedule { fields });
        };
        let now = Timestamp::now();
        let retimed = edit.cron.is_some() || edit.timezone.is_some() || edit.enabled.is_some();
        let next_run_at = match (enabled, retimed) {
            (false, _) => None,
            (true, true) => timing.next_after(now),
            (true, false) => current.next_run_at,
        };
        sqlx::query(
            "UPDATE schedules SET endpoint_method = $1, endpoint_path = $2, name = $3, cron = $4, timezone = $5, \
             enabled = $6, payload = $7, next_run_at = $8, updated_at = $9 WHERE schedule_id = $10",
        )
        .bind(&method)
        .bind(&path)
        .bind(name.clone())
        .bind(&cron)
        .bind(&timezone)
        .bind(i64::from(enabled))
        .bind(payload.clone())
        .bind(next_run_at.map(|t| t.0))
        .bind(now.0)
        .bind(schedule_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Schedule {
            endpoint_method: method,
            endpoint_path: path,
            name,
            cron,
            timezone,
            enabled,
            payload,
            next_run_at,
            updated_at: now,
            ..current
        })
    }

    /// Claims the enabled schedules due at `now` (at most `limit`, the
    /// longest overdue first) and moves each one's `next_run_at` to the
    /// expression's first match after `now`: a schedule that missed several
    /// due times while nothing ran is fired once, not once per missed time.
    /// The move is conditional on the due time read, so of concurrent
    /// callers on one database (several gateway processes on one
    /// PostgreSQL) exactly one claims each due time; PostgreSQL callers skip
    /// rows another caller holds. A schedule whose stored expression no
    /// longer parses is not claimed and stops being due.
    ///
    /// # Errors
    /// The database's.
    pub async fn claim_due_schedules(&self, now: Timestamp, limit: u32) -> Result<Vec<Firing>, Error> {
        let mut tx = self.write().await?;
        let lock = match self.backend() {
            crate::db::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            crate::db::Backend::Sqlite => "",
        };
        let sql = format!(
            "{SELECT_SCHEDULES} WHERE enabled = 1 AND next_run_at IS NOT NULL AND next_run_at <= $1 \
             ORDER BY next_run_at, schedule_id LIMIT $2{lock}"
        );
        let due: Vec<Schedule> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now.0)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(schedule_from)
            .collect::<Result<_, _>>()?;
        let mut claimed = Vec::with_capacity(due.len());
        for schedule in due {
            let Some(at) = schedule.next_run_at else { continue };
            let timing = Timing::parse(&schedule.cron, &schedule.timezone, &mut BTreeMap::new());
            let next = timing.as_ref().and_then(|timing| timing.next_after(now));
            let moved =
                sqlx::query("UPDATE schedules SET next_run_at = $1 WHERE schedule_id = $2 AND next_run_at = $3")
                    .bind(next.map(|t| t.0))
                    .bind(&schedule.schedule_id)
                    .bind(at.0)
                    .execute(&mut *tx)
                    .await?;
            if moved.rows_affected() == 1 && timing.is_some() {
                claimed.push(Firing { schedule, due: at });
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Records how a firing of the schedule went (`status` such as
    /// `success` or `error`, and the error's words); a schedule deleted
    /// meanwhile is left deleted.
    ///
    /// # Errors
    /// The database's.
    pub async fn record_schedule_run(
        &self,
        schedule_id: &str,
        at: Timestamp,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), Error> {
        sqlx::query(
            "UPDATE schedules SET last_run_at = $1, last_run_status = $2, last_error = $3 WHERE schedule_id = $4",
        )
        .bind(at.0)
        .bind(status)
        .bind(error)
        .bind(schedule_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes one of the install's schedules; `false` when it had none of
    /// that id.
    ///
    /// # Errors
    /// The database's.
    pub async fn delete_schedule(&self, install_id: &str, schedule_id: &str) -> Result<bool, Error> {
        let done = sqlx::query("DELETE FROM schedules WHERE install_id = $1 AND schedule_id = $2")
            .bind(install_id)
            .bind(schedule_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(cron: &str, timezone: &str) -> Result<Timing, BTreeMap<String, String>> {
        let mut fields = BTreeMap::new();
        Timing::parse(cron, timezone, &mut fields).ok_or(fields)
    }

    /// 2026-03-28 12:00:00 UTC, a Saturday; Europe/Berlin moves to summer
    /// time on the 29th at 02:00.
    const SATURDAY_NOON: i64 = 1_774_699_200_000;
    /// Monday 2026-03-30 09:30 in Berlin (summer time): 07:30 UTC.
    const MONDAY_0930_BERLIN: i64 = 1_774_855_800_000;

    #[test]
    fn next_runs_are_read_in_the_schedules_zone() {
        let hourly = parse("0 * * * *", "UTC").unwrap();
        assert_eq!(
            hourly.next_after(Timestamp(SATURDAY_NOON)),
            Some(Timestamp(SATURDAY_NOON + 3_600_000))
        );
        // 09:30 in Berlin on Monday the 30th is 07:30 UTC (summer time).
        let berlin = parse("30 9 * * 1", "Europe/Berlin").unwrap();
        assert_eq!(
            berlin.next_after(Timestamp(SATURDAY_NOON)),
            Some(Timestamp(MONDAY_0930_BERLIN))
        );
        // Strictly after: a schedule due now fires next time, not again.
        assert_eq!(
            hourly.next_after(Timestamp(SATURDAY_NOON - 3_600_000)),
            Some(Timestamp(SATURDAY_NOON))
        );
    }

    #[test]
    fn bad_cron_and_zones_name_their_fields() {
        for cron in ["* * * *", "0 * * * * *", "61 * * * *", "nonsense", ""] {
            let fields = parse(cron, "UTC").unwrap_err();
            assert_eq!(fields.keys().collect::<Vec<_>>(), ["cron"], "{cron}: {fields:?}");
        }
        let fields = parse("0 * * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(fields["timezone"], "`Mars/Olympus` is not an IANA time zone");
        let both = parse("x", "y").unwrap_err();
        assert_eq!(both.keys().collect::<Vec<_>>(), ["cron", "timezone"]);
        assert!(parse(&"1,".repeat(200), "UTC").unwrap_err()["cron"].contains("longer than"));
    }

    #[test]
    fn texts_are_checked() {
        let mut fields = BTreeMap::new();
        check_texts(
            Some("get"),
            Some("nope"),
            Some(&"n".repeat(201)),
            Some("{"),
            &mut fields,
        );
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["endpoint", "name", "payload"]);
        assert_eq!(fields["payload"], "not valid JSON");
        let mut fine = BTreeMap::new();
        check_texts(
            Some("POST"),
            Some("/sync"),
            Some("nightly"),
            Some(r#"{"full":true}"#),
            &mut fine,
        );
        assert!(fine.is_empty(), "{fine:?}");
    }
}
