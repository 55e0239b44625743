/**
 * `cap:scheduler.manage`: schedules that call the install's own endpoints
 * (those its manifest marks `schedulable: true`). A due schedule runs its
 * endpoint with `context.trigger = "schedule"` and its payload as the JSON
 * body.
 *
 * Reads ([[list]], [[get]], [[endpoints]]) throw a [[SchedulerError]];
 * changes ([[create]], [[update]], [[delete]]) never throw for the host's
 * refusals: they answer `success: false` with `error` (the host's message,
 * or a case such as `denied`, `not-found`, `validation-failed`,
 * `quota-exceeded`, `internal`) and, for bad fields, `fieldErrors`.
 *
 * @module
 */

import { SchedulerError } from './errors.js';
import { host, thrownCode } from './host.js';
import { jsonText, parseFieldErrors, parseJsonText, type FieldErrors } from './product.js';
import {
  SCHEDULER_ERROR_CODES,
  type CreateScheduleResult,
  type EndpointInfo,
  type ScheduleInfo,
  type SchedulerImports,
  type UpdateScheduleResult,
} from './wit.js';

/** A schedule (`schedule-info`), its payload parsed. */
export interface Schedule {
  readonly id: string;
  /** The endpoint it calls. */
  readonly endpointPath: string;
  readonly endpointMethod: string;
  readonly name: string | undefined;
  /** A 5-field cron expression. */
  readonly cron: string;
  /** An IANA time zone name. */
  readonly timezone: string;
  readonly enabled: boolean;
  /** The JSON body each firing sends, parsed; `undefined` when there is none (or its text is not JSON). */
  readonly payload: unknown;
  /** The payload as the host gave it (JSON text). */
  readonly payloadText: string | undefined;
  /** The last firing: when (RFC 3339), its status and its error. */
  readonly lastRunAt: string | undefined;
  readonly lastRunStatus: string | undefined;
  readonly lastError: string | undefined;
  readonly createdAt: string | undefined;
}

/** An endpoint of the install's manifest (`endpoint-info`). */
export type Endpoint = Readonly<EndpointInfo>;

/** A schedule to create (`create-schedule-input`). */
export interface NewSchedule {
  /** A schedulable endpoint: `"GET /path"`, or the path when only one method of it is schedulable. */
  endpoint: string;
  /** A 5-field cron expression. */
  cron: string;
  /** An IANA time zone name; the host's default is `UTC`. */
  timezone?: string | undefined;
  enabled?: boolean | undefined;
  name?: string | undefined;
  /** The JSON body each firing sends: any JSON value, sent as its JSON text. `null` or absent: none. */
  payload?: unknown;
}

/** Changes to a schedule (`update-schedule-input`): an absent field is kept. */
export interface ScheduleChanges {
  endpoint?: string | undefined;
  cron?: string | undefined;
  timezone?: string | undefined;
  enabled?: boolean | undefined;
  name?: string | undefined;
  /** A new JSON body; `null` removes the payload (sent as `""`, which clears it). */
  payload?: unknown;
}

/** What [[update]] answers (`update-schedule-result`), field errors parsed. */
export interface UpdateResult {
  readonly success: boolean;
  /** Why it failed. */
  readonly error: string | undefined;
  /** Field → what is wrong with it; `undefined` when none (or the host's text is not a JSON object). */
  readonly fieldErrors: FieldErrors | undefined;
  /** The field errors as the host gave them (JSON text). */
  readonly fieldErrorsText: string | undefined;
}

/** What [[create]] answers (`create-schedule-result`). */
export interface CreateResult extends UpdateResult {
  /** The new schedule's id. */
  readonly scheduleId: string | undefined;
}

/** What [[delete]] answers (`delete-schedule-result`). */
export interface DeleteResult {
  readonly success: boolean;
  readonly error: string | undefined;
}

/** The imports, or `undefined` in a component whose world has no `scheduler`. */
function imports(): SchedulerImports | undefined {
  return host().scheduler;
}

function read<T>(operation: string, f: (scheduler: SchedulerImports) => T): T {
  const scheduler = imports();
  if (scheduler === undefined) throw new SchedulerError('denied', `${operation} (world without scheduler)`);
  try {
    return f(scheduler);
  } catch (thrown) {
    const code = thrownCode(thrown, SCHEDULER_ERROR_CODES);
    if (code === undefined) throw thrown;
    throw new SchedulerError(code, operation);
  }
}

function toSchedule(raw: ScheduleInfo): Schedule {
  return Object.freeze({
    id: raw.id,
    endpointPath: raw.endpointPath,
    endpointMethod: raw.endpointMethod,
    name: raw.name,
    cron: raw.cron,
    timezone: raw.timezone,
    enabled: raw.enabled,
    payload: parseJsonText(raw.payload),
    payloadText: raw.payload,
    lastRunAt: raw.lastRunAt,
    lastRunStatus: raw.lastRunStatus,
    lastError: raw.lastError,
    createdAt: raw.createdAt,
  });
}

function toEndpoint(raw: EndpointInfo): Endpoint {
  return Object.freeze({ id: raw.id, method: raw.method, path: raw.path, handler: raw.handler, schedulable: raw.schedulable });
}

function updateResult(raw: UpdateScheduleResult): UpdateResult {
  const fieldErrorsText = raw.fieldErrors;
  return Object.freeze({
    success: raw.success,
    error: raw.error,
    fieldErrors: parseFieldErrors(fieldErrorsText),
    fieldErrorsText,
  });
}

function createResult(raw: CreateScheduleResult): CreateResult {
  return Object.freeze({ ...updateResult(raw), scheduleId: raw.scheduleId });
}

/** `success: false` with `error: 'denied'`, as the runner answers without the grant. */
const DENIED = { success: false, error: 'denied' } as const;

/**
 * The install's schedules.
 * @throws SchedulerError `denied` (capability not granted), `not-found`,
 * `validation-failed`, `quota-exceeded`, `internal`.
 */
export function list(): Schedule[] {
  return read('scheduler.list-schedules', (s) => s.listSchedules()).map(toSchedule);
}

/**
 * The schedule `scheduleId`, or `undefined` when there is none.
 * @throws SchedulerError as [[list]].
 */
export function get(scheduleId: string): Schedule | undefined {
  const raw = read(`scheduler.get-schedule(${scheduleId})`, (s) => s.getSchedule(scheduleId));
  return raw === undefined ? undefined : toSchedule(raw);
}

/**
 * Creates a schedule. Failures are `success: false` with `error` (a payload
 * that is not JSON text never reaches the host: `validation-failed`,
 * `fieldErrors` `{payload: …}`).
 * @throws ExtError `internal` (a `payload` JSON cannot express, such as a
 * function) or TypeError (a cycle); never for the host's refusals.
 */
export function create(schedule: NewSchedule): CreateResult {
  const scheduler = imports();
  if (scheduler === undefined) return createResult(DENIED);
  return createResult(
    scheduler.createSchedule({
      endpoint: schedule.endpoint,
      cron: schedule.cron,
      timezone: schedule.timezone,
      enabled: schedule.enabled,
      name: schedule.name,
      payload: schedule.payload === null ? undefined : jsonText(schedule.payload),
    }),
  );
}

/**
 * Changes the schedule `scheduleId`. Failures are `success: false` with `error`.
 * @throws as [[create]].
 */
export function update(scheduleId: string, changes: ScheduleChanges): UpdateResult {
  const scheduler = imports();
  if (scheduler === undefined) return updateResult(DENIED);
  return updateResult(
    scheduler.updateSchedule(scheduleId, {
      endpoint: changes.endpoint,
      cron: changes.cron,
      timezone: changes.timezone,
      enabled: changes.enabled,
      name: changes.name,
      payload: changes.payload === null ? '' : jsonText(changes.payload),
    }),
  );
}

/** Deletes the schedule `scheduleId`. Failures (`not-found` included) are `success: false` with `error`. */
function remove(scheduleId: string): DeleteResult {
  const scheduler = imports();
  const raw = scheduler === undefined ? DENIED : scheduler.deleteSchedule(scheduleId);
  return Object.freeze({ success: raw.success, error: raw.error });
}
export { remove as delete };

/**
 * The install's endpoints, with which of them a schedule may call.
 * @throws SchedulerError as [[list]].
 */
export function endpoints(): Endpoint[] {
  return read('scheduler.get-endpoints', (s) => s.getEndpoints()).map(toEndpoint);
}
