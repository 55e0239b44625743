-- Schema version 3: schedules, the install data behind the guest's
-- `scheduler` interface. A schedule belongs to one install and goes with
-- it on uninstall; `next_run_at` (unix ms, NULL while disabled or when the
-- expression never matches again) is what the scheduler loop looks for: a
-- claim moves it on, conditionally, so each due time is claimed once.
CREATE TABLE schedules (
    schedule_id TEXT PRIMARY KEY,
    install_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    extension TEXT NOT NULL,
    endpoint_method TEXT NOT NULL,
    endpoint_path TEXT NOT NULL,
    name TEXT,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    payload TEXT,
    next_run_at BIGINT,
    last_run_at BIGINT,
    last_run_status TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX schedules_by_install ON schedules (install_id);
CREATE INDEX schedules_due ON schedules (next_run_at);
