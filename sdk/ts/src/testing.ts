/**
 * `@ext-runner/sdk/testing`: run handlers in Node.js without a runner.
 *
 * [[mockHost]] installs an in-memory host that behaves like the runner's
 * capabilities (grants, typed errors, KV revisions and conflicts, secrets,
 * scripted `http.fetch`, `ui-proxy` and product-interface answers) and
 * records what the handler did; [[invoke]] calls a `handler` export the way the runner does.
 *
 * ```ts
 * import { test } from 'node:test';
 * import assert from 'node:assert/strict';
 * import { invoke, mockHost } from '@ext-runner/sdk/testing';
 * import { handler } from '../src/index.js';
 *
 * test('greets', async () => {
 *   const host = mockHost({ context: { tenantId: 't1' } });
 *   const res = await invoke(handler, { path: '/hello/Ada' });
 *   assert.equal(res.status, 200);
 *   assert.equal(res.json<{ message: string }>().message, 'Hello, Ada!');
 *   assert.deepEqual(host.logs, [{ level: 'info', message: 'said hello to Ada' }]);
 * });
 * ```
 *
 * @module
 */

import { findHeader, headerList, strictUtf8, toBytes, utf8, type HeadersInit } from './bytes.js';
import { installHost, installedHost, type Host } from './host.js';
import type {
  ClientReadErrorCode,
  ClientSummary,
  ClientsListInput,
  ClientsListResult,
  ContextData,
  CreateManualInvoiceInput,
  CreateManualInvoiceResult,
  CreateScheduleInput,
  CreateScheduleResult,
  DeleteScheduleResult,
  EndpointInfo,
  ExecuteRequest,
  HandlerExport,
  HttpErrorCode,
  HttpHeader,
  HttpRequest,
  HttpResponse,
  ProxyErrorCode,
  ScheduleInfo,
  SchedulerErrorCode,
  ServiceReadErrorCode,
  ServiceSummary,
  ServicesListInput,
  ServicesListResult,
  StorageEntry,
  StorageErrorCode,
  UpdateScheduleInput,
  UpdateScheduleResult,
  UserDataV2,
} from './wit.js';

/** The capabilities a manifest can declare (short forms are accepted too). */
export const CAPABILITIES = [
  'cap:secrets.get',
  'cap:http.fetch',
  'cap:storage.kv',
  'cap:ui.proxy',
  'cap:metrics.emit',
  'cap:scheduler.manage',
  'cap:invoice.manual.create',
  'cap:client.read',
  'cap:service.read',
] as const;

/** Entries per `list-entries` page, as the runner's store. */
export const LIST_PAGE_SIZE = 100;

/** `page-size` of `list-clients` / `list-services` when none is given, as the runner. */
export const DEFAULT_PRODUCT_PAGE_SIZE = 25;

/** The largest `page-size` the runner lets through to the host product. */
export const MAX_PRODUCT_PAGE_SIZE = 100;

/** What a scripted `http.fetch` answers: a response, or `{error}` to fail with that WIT case. */
export type MockFetchAnswer =
  | { status?: number; headers?: HeadersInit; body?: Uint8Array | string }
  | { error: HttpErrorCode };

/** What a scripted `ui-proxy` route answers: a body, or `{error}` to fail with that WIT case. */
export type MockRouteAnswer = Uint8Array | string | { error: ProxyErrorCode };

/** What a scripted read of a product interface answers: the value, or `{error}` to fail with that WIT case. */
export type MockAnswer<T, E extends string> = T | { error: E };

/** A record the host product answers; absent fields are `none`. */
type MockRecord<T extends { success: boolean }> = Pick<T, 'success'> & Partial<T>;

/**
 * Scripted answers of `scheduler`, by host API operation. Each function is
 * what the host product would answer; an operation without one answers as
 * the runner does without a host API (`denied`, or `success: false` with
 * `error: 'denied'`).
 */
export interface MockScheduler {
  list?: () => MockAnswer<ScheduleInfo[], SchedulerErrorCode>;
  /** `undefined`: no such schedule. */
  get?: (scheduleId: string) => MockAnswer<ScheduleInfo | undefined, SchedulerErrorCode>;
  /** Not called when `payload` is not JSON text (the runner answers `validation-failed` itself). */
  create?: (input: CreateScheduleInput) => MockRecord<CreateScheduleResult>;
  /** As `create`; `payload: ''` (clear) is passed on. */
  update?: (scheduleId: string, input: UpdateScheduleInput) => MockRecord<UpdateScheduleResult>;
  delete?: (scheduleId: string) => MockRecord<DeleteScheduleResult>;
  getEndpoints?: () => MockAnswer<EndpointInfo[], SchedulerErrorCode>;
}

/** The caller the runner names to the host product for reads: the request's user. */
export interface MockCaller {
  userId: string;
  userType: string;
}

/** `list-clients` input as the runner sends it on: paging defaulted. */
export type MockClientsQuery = ClientsListInput & { page: number; pageSize: number };
/** `list-services` input as the runner sends it on: paging defaulted. */
export type MockServicesQuery = ServicesListInput & { page: number; pageSize: number };

/** Scripted answers of `clients`; without one, an operation is `not-allowed` (no host API). */
export interface MockClients {
  /** Not called for paging out of range (the runner answers `invalid-input` itself). */
  list?: (query: MockClientsQuery, caller: MockCaller | undefined) => MockAnswer<ClientsListResult, ClientReadErrorCode>;
  /** `undefined`: no such client. */
  get?: (clientId: string, caller: MockCaller | undefined) => MockAnswer<ClientSummary | undefined, ClientReadErrorCode>;
}

/** Scripted answers of `services`; as [[MockClients]]. */
export interface MockServices {
  list?: (query: MockServicesQuery, caller: MockCaller | undefined) => MockAnswer<ServicesListResult, ServiceReadErrorCode>;
  get?: (serviceId: string, caller: MockCaller | undefined) => MockAnswer<ServiceSummary | undefined, ServiceReadErrorCode>;
}

/** A `scheduler` call the handler made. */
export type SchedulerCall =
  | { operation: 'list-schedules' }
  | { operation: 'get-schedule'; scheduleId: string }
  | { operation: 'create-schedule'; input: CreateScheduleInput }
  | { operation: 'update-schedule'; scheduleId: string; input: UpdateScheduleInput }
  | { operation: 'delete-schedule'; scheduleId: string }
  | { operation: 'get-endpoints' };

/** A `clients` call the handler made. */
export type ClientsCall = { operation: 'list-clients'; input: ClientsListInput } | { operation: 'get-client'; clientId: string };

/** A `services` call the handler made. */
export type ServicesCall = { operation: 'list-services'; input: ServicesListInput } | { operation: 'get-service'; serviceId: string };

/** Options of [[mockHost]]. */
export interface MockHostOptions {
  /** Overrides of the invocation context (default tenant `tenant-test`, extension `com.example.test`, request `req-test`). */
  context?: Partial<ContextData>;
  /**
   * Granted capabilities, as the manifest declares them (`cap:storage.kv`
   * or `storage.kv`). Default: all of [[CAPABILITIES]]. A capability not
   * granted answers its typed deny error, as in the runner.
   */
  capabilities?: string[];
  /** The install's secrets. */
  secrets?: Record<string, string>;
  /** Answers `http.fetch`. Without it every fetch is `not-allowed`. */
  fetch?: (request: HttpRequest) => MockFetchAnswer;
  /** Answers `ui-proxy.call-route`, by route. An unknown route is `route-not-found`. */
  routes?: Record<string, (payload: Uint8Array | undefined) => MockRouteAnswer>;
  /** The user of the request; without it `user.get-user` is `not-available`. */
  user?: UserDataV2;
  /** Answers `scheduler` calls, by operation. */
  scheduler?: MockScheduler;
  /** Answers `invoicing.create-manual-invoice`; without it every call is `success: false`, `error: 'denied'`. */
  invoicing?: (input: CreateManualInvoiceInput) => MockRecord<CreateManualInvoiceResult>;
  /** Answers `clients` calls, by operation. */
  clients?: MockClients;
  /** Answers `services` calls, by operation. */
  services?: MockServices;
}

/** A metric the handler emitted. */
export interface EmittedMetric {
  kind: 'counter' | 'gauge' | 'histogram';
  name: string;
  value: number;
  labels: [string, string][];
}

/** Metric and label names the runner accepts (see `@ext-runner/sdk` metrics). */
const METRIC_NAME = /^[a-z][a-z0-9_]{0,63}$/;
const LABEL_NAME = /^[a-z][a-z0-9_]{0,31}$/;

/** A line the handler logged. */
export interface LoggedLine {
  level: 'info' | 'warn' | 'error';
  message: string;
}

/** The error jco throws for an `err` result: an `Error` whose `payload` is the WIT case. */
function witError(code: string): Error {
  const error = new Error(code);
  Object.defineProperty(error, 'payload', { value: code, enumerable: false });
  return error;
}

/** `answer` as a scripted read answers it: the value, or thrown as its WIT error. */
function answered<T>(answer: MockAnswer<T, string>): T {
  if (typeof answer === 'object' && answer !== null && !Array.isArray(answer) && 'error' in answer) throw witError(answer.error);
  return answer as T;
}

/**
 * `value` with exactly the fields `keys`, absent ones `undefined`: a record
 * as the bindings hand it over (the runner drops fields the WIT lacks).
 */
function record<T>(value: Partial<T>, keys: readonly (keyof T)[]): T {
  return Object.fromEntries(keys.map((key) => [key, value[key]])) as T;
}

const SCHEDULE_INFO_KEYS = [
  'id',
  'endpointPath',
  'endpointMethod',
  'name',
  'cron',
  'timezone',
  'enabled',
  'payload',
  'lastRunAt',
  'lastRunStatus',
  'lastError',
  'createdAt',
] as const satisfies readonly (keyof ScheduleInfo)[];
const ENDPOINT_INFO_KEYS = ['id', 'method', 'path', 'handler', 'schedulable'] as const satisfies readonly (keyof EndpointInfo)[];
const CREATE_SCHEDULE_RESULT_KEYS = ['success', 'scheduleId', 'error', 'fieldErrors'] as const satisfies readonly (keyof CreateScheduleResult)[];
const UPDATE_SCHEDULE_RESULT_KEYS = ['success', 'error', 'fieldErrors'] as const satisfies readonly (keyof UpdateScheduleResult)[];
const DELETE_SCHEDULE_RESULT_KEYS = ['success', 'error'] as const satisfies readonly (keyof DeleteScheduleResult)[];
const INVOICE_RESULT_KEYS = [
  'success',
  'invoiceId',
  'invoiceNumber',
  'status',
  'subtotal',
  'tax',
  'total',
  'error',
  'fieldErrors',
] as const satisfies readonly (keyof CreateManualInvoiceResult)[];
const CLIENT_SUMMARY_KEYS = [
  'clientId',
  'clientName',
  'clientType',
  'isInactive',
  'defaultCurrencyCode',
  'accountManagerId',
  'accountManagerName',
  'billingEmail',
] as const satisfies readonly (keyof ClientSummary)[];
const SERVICE_SUMMARY_KEYS = [
  'serviceId',
  'serviceName',
  'itemKind',
  'billingMethod',
  'serviceTypeId',
  'serviceTypeName',
  'defaultRate',
  'unitOfMeasure',
  'isActive',
  'sku',
] as const satisfies readonly (keyof ServiceSummary)[];

const PAGE_KEYS = ['items', 'totalCount', 'page', 'pageSize'] as const satisfies readonly (keyof ClientsListResult & keyof ServicesListResult)[];

/** The runner's paging rule for the host product's lists: `[page, pageSize]` defaulted, or `undefined` when out of range. */
function paging(page: number | undefined, pageSize: number | undefined): [number, number] | undefined {
  const p = page ?? 1;
  const size = pageSize ?? DEFAULT_PRODUCT_PAGE_SIZE;
  return p >= 1 && size >= 1 && size <= MAX_PRODUCT_PAGE_SIZE ? [p, size] : undefined;
}

/** The `field-errors` the runner answers for a schedule `payload` that is not JSON text. */
const NOT_JSON_PAYLOAD = '{"payload":"not valid JSON"}';

/** Whether `text` (a schedule's `payload`) is JSON, as the runner checks it before any call. */
function isJsonText(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function normalise(capability: string): string {
  return capability.startsWith('cap:') ? capability : `cap:${capability}`;
}

/** An in-memory host; see [[mockHost]]. Its fields record what the handler did. */
export class MockHost implements Host {
  /** Lines logged through `log.*`, in order. */
  readonly logs: LoggedLine[] = [];
  /** Requests sent through `http.fetch`, in order (denied ones included). */
  readonly fetches: HttpRequest[] = [];
  /** `ui-proxy` calls, in order. */
  readonly routeCalls: { route: string; payload: Uint8Array | undefined }[] = [];
  /** Metrics emitted, in order (refused ones are not recorded). */
  readonly metricsEmitted: EmittedMetric[] = [];
  /** Secrets asked for, by name, in order (values are not recorded). */
  readonly secretReads: string[] = [];
  /** `scheduler` calls, in order, with the arguments as the guest passed them (refused ones included). */
  readonly schedulerCalls: SchedulerCall[] = [];
  /** `invoicing.create-manual-invoice` inputs, in order (refused ones included). */
  readonly invoiceCalls: CreateManualInvoiceInput[] = [];
  /** `clients` calls, in order (refused ones included). */
  readonly clientCalls: ClientsCall[] = [];
  /** `services` calls, in order (refused ones included). */
  readonly serviceCalls: ServicesCall[] = [];
  /** The context `get-context` answers, and [[invoke]] sends. */
  readonly contextData: ContextData;

  readonly #granted: Set<string>;
  readonly #secrets: Map<string, string>;
  readonly #kv = new Map<string, Map<string, { value: Uint8Array; revision: bigint }>>();
  #lastRevision = 0n;
  readonly #options: MockHostOptions;

  constructor(options: MockHostOptions = {}) {
    this.#options = options;
    this.contextData = {
      requestId: 'req-test',
      tenantId: 'tenant-test',
      extensionId: 'com.example.test',
      ...options.context,
    };
    this.#granted = new Set((options.capabilities ?? CAPABILITIES).map(normalise));
    this.#secrets = new Map(Object.entries(options.secrets ?? {}));
  }

  /** Whether `capability` is granted. */
  granted(capability: string): boolean {
    return this.#granted.has(normalise(capability));
  }

  /** The stored entries of `namespace` as text, by key (for assertions). */
  kvSnapshot(namespace: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [key, { value }] of [...(this.#kv.get(namespace) ?? new Map())].sort(([a], [b]) => (a < b ? -1 : 1))) {
      out[key] = utf8(value);
    }
    return out;
  }

  readonly context = {
    getContext: (): ContextData => ({ ...this.contextData }),
  };

  readonly logging = {
    logInfo: (message: string): void => void this.logs.push({ level: 'info', message }),
    logWarn: (message: string): void => void this.logs.push({ level: 'warn', message }),
    logError: (message: string): void => void this.logs.push({ level: 'error', message }),
  };

  readonly secrets = {
    get: (key: string): string => {
      this.secretReads.push(key);
      if (!this.granted('cap:secrets.get')) throw witError('denied');
      const value = this.#secrets.get(key);
      if (value === undefined) throw witError('missing');
      return value;
    },
    listKeys: (): string[] => (this.granted('cap:secrets.get') ? [...this.#secrets.keys()].sort() : []),
  };

  readonly http = {
    fetch: (request: HttpRequest): HttpResponse => {
      this.fetches.push(request);
      if (!this.granted('cap:http.fetch') || this.#options.fetch === undefined) throw witError('not-allowed');
      if (!/^https?:\/\/[^/]/i.test(request.url)) throw witError('invalid-url');
      const answer = this.#options.fetch(request);
      if ('error' in answer) throw witError(answer.error);
      return {
        status: answer.status ?? 200,
        headers: headerList(answer.headers),
        body: answer.body === undefined ? new Uint8Array() : toBytes(answer.body),
      };
    },
  };

  #kvCheck(): void {
    if (!this.granted('cap:storage.kv')) throw witError('denied' satisfies StorageErrorCode);
  }

  readonly storage = {
    get: (namespace: string, key: string): StorageEntry => {
      this.#kvCheck();
      const found = this.#kv.get(namespace)?.get(key);
      if (found === undefined) throw witError('missing');
      return { namespace, key, value: found.value.slice(), revision: found.revision };
    },
    put: (entry: StorageEntry): StorageEntry => {
      this.#kvCheck();
      if (!(entry.value instanceof Uint8Array)) throw new TypeError('storage-entry.value must be a Uint8Array');
      const space = this.#kv.get(entry.namespace) ?? new Map<string, { value: Uint8Array; revision: bigint }>();
      const stored = space.get(entry.key)?.revision ?? 0n;
      if (entry.revision !== undefined && entry.revision !== stored) throw witError('conflict');
      this.#lastRevision += 1n;
      space.set(entry.key, { value: entry.value.slice(), revision: this.#lastRevision });
      this.#kv.set(entry.namespace, space);
      return { namespace: entry.namespace, key: entry.key, value: entry.value.slice(), revision: this.#lastRevision };
    },
    delete: (namespace: string, key: string): void => {
      this.#kvCheck();
      const space = this.#kv.get(namespace);
      if (space === undefined || !space.delete(key)) throw witError('missing');
      if (space.size === 0) this.#kv.delete(namespace);
    },
    listEntries: (namespace: string, cursor: string | undefined): StorageEntry[] => {
      this.#kvCheck();
      return [...(this.#kv.get(namespace) ?? new Map<string, { value: Uint8Array; revision: bigint }>())]
        .filter(([key]) => cursor === undefined || key > cursor)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .slice(0, LIST_PAGE_SIZE)
        .map(([key, { value, revision }]) => ({ namespace, key, value: value.slice(), revision }));
    },
  };

  readonly uiProxy = {
    callRoute: (route: string, payload: Uint8Array | undefined): Uint8Array => {
      this.routeCalls.push({ route, payload });
      if (!this.granted('cap:ui.proxy')) throw witError('denied');
      const answer = this.#options.routes?.[route]?.(payload);
      if (answer === undefined) throw witError('route-not-found');
      if (typeof answer === 'object' && !(answer instanceof Uint8Array)) throw witError(answer.error);
      return toBytes(answer);
    },
  };

  readonly user = {
    getUser: () => {
      const { clientId: _clientId, additionalFields: _fields, ...v1 } = this.userV2.getUser();
      return v1;
    },
  };

  readonly userV2 = {
    getUser: (): UserDataV2 => {
      if (this.#options.user === undefined) throw witError('not-available');
      const user = this.#options.user;
      return {
        ...user,
        additionalFields: [...user.additionalFields].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      };
    },
  };

  /** The scheduler script of `operation` when granted; `undefined` means the runner's denial. */
  #scheduler<K extends keyof MockScheduler>(operation: K): MockScheduler[K] | undefined {
    return this.granted('cap:scheduler.manage') ? this.#options.scheduler?.[operation] : undefined;
  }

  /** The caller the runner names to the host product: the request's user, if any. */
  #caller(): MockCaller | undefined {
    const user = this.#options.user;
    return user === undefined ? undefined : { userId: user.userId, userType: user.userType };
  }

  readonly scheduler = {
    listSchedules: (): ScheduleInfo[] => {
      this.schedulerCalls.push({ operation: 'list-schedules' });
      const script = this.#scheduler('list');
      if (script === undefined) throw witError('denied' satisfies SchedulerErrorCode);
      return answered(script()).map((s) => record(s, SCHEDULE_INFO_KEYS));
    },
    getSchedule: (scheduleId: string): ScheduleInfo | undefined => {
      this.schedulerCalls.push({ operation: 'get-schedule', scheduleId });
      const script = this.#scheduler('get');
      if (script === undefined) throw witError('denied' satisfies SchedulerErrorCode);
      const found = answered(script(scheduleId));
      return found === undefined ? undefined : record(found, SCHEDULE_INFO_KEYS);
    },
    createSchedule: (input: CreateScheduleInput): CreateScheduleResult => {
      this.schedulerCalls.push({ operation: 'create-schedule', input });
      const script = this.#scheduler('create');
      if (script === undefined) return record<CreateScheduleResult>({ success: false, error: 'denied' }, CREATE_SCHEDULE_RESULT_KEYS);
      if (input.payload !== undefined && !isJsonText(input.payload)) {
        return record<CreateScheduleResult>({ success: false, error: 'validation-failed', fieldErrors: NOT_JSON_PAYLOAD }, CREATE_SCHEDULE_RESULT_KEYS);
      }
      return record<CreateScheduleResult>(script(input), CREATE_SCHEDULE_RESULT_KEYS);
    },
    updateSchedule: (scheduleId: string, input: UpdateScheduleInput): UpdateScheduleResult => {
      this.schedulerCalls.push({ operation: 'update-schedule', scheduleId, input });
      const script = this.#scheduler('update');
      if (script === undefined) return record<UpdateScheduleResult>({ success: false, error: 'denied' }, UPDATE_SCHEDULE_RESULT_KEYS);
      if (input.payload !== undefined && input.payload !== '' && !isJsonText(input.payload)) {
        return record<UpdateScheduleResult>({ success: false, error: 'validation-failed', fieldErrors: NOT_JSON_PAYLOAD }, UPDATE_SCHEDULE_RESULT_KEYS);
      }
      return record<UpdateScheduleResult>(script(scheduleId, input), UPDATE_SCHEDULE_RESULT_KEYS);
    },
    deleteSchedule: (scheduleId: string): DeleteScheduleResult => {
      this.schedulerCalls.push({ operation: 'delete-schedule', scheduleId });
      const script = this.#scheduler('delete');
      if (script === undefined) return record<DeleteScheduleResult>({ success: false, error: 'denied' }, DELETE_SCHEDULE_RESULT_KEYS);
      return record<DeleteScheduleResult>(script(scheduleId), DELETE_SCHEDULE_RESULT_KEYS);
    },
    getEndpoints: (): EndpointInfo[] => {
      this.schedulerCalls.push({ operation: 'get-endpoints' });
      const script = this.#scheduler('getEndpoints');
      if (script === undefined) throw witError('denied' satisfies SchedulerErrorCode);
      return answered(script()).map((e) => record(e, ENDPOINT_INFO_KEYS));
    },
  };

  readonly invoicing = {
    createManualInvoice: (input: CreateManualInvoiceInput): CreateManualInvoiceResult => {
      this.invoiceCalls.push(input);
      const script = this.granted('cap:invoice.manual.create') ? this.#options.invoicing : undefined;
      if (script === undefined) return record<CreateManualInvoiceResult>({ success: false, error: 'denied' }, INVOICE_RESULT_KEYS);
      for (const [i, item] of input.items.entries()) {
        const field = !Number.isFinite(item.quantity) ? 'quantity' : !Number.isFinite(item.rate) ? 'rate' : undefined;
        if (field !== undefined) {
          const fieldErrors = JSON.stringify({ [`items[${i}].${field}`]: 'must be a finite number' });
          return record<CreateManualInvoiceResult>({ success: false, error: 'validation-failed', fieldErrors }, INVOICE_RESULT_KEYS);
        }
      }
      return record<CreateManualInvoiceResult>(script(input), INVOICE_RESULT_KEYS);
    },
  };

  readonly clients = {
    listClients: (input: ClientsListInput): ClientsListResult => {
      this.clientCalls.push({ operation: 'list-clients', input });
      const script = this.granted('cap:client.read') ? this.#options.clients?.list : undefined;
      if (script === undefined) throw witError('not-allowed' satisfies ClientReadErrorCode);
      const pages = paging(input.page, input.pageSize);
      if (pages === undefined) throw witError('invalid-input' satisfies ClientReadErrorCode);
      const page = answered(script({ ...input, page: pages[0], pageSize: pages[1] }, this.#caller()));
      return { ...record(page, PAGE_KEYS), items: page.items.map((c) => record(c, CLIENT_SUMMARY_KEYS)) };
    },
    getClient: (clientId: string): ClientSummary | undefined => {
      this.clientCalls.push({ operation: 'get-client', clientId });
      const script = this.granted('cap:client.read') ? this.#options.clients?.get : undefined;
      if (script === undefined) throw witError('not-allowed' satisfies ClientReadErrorCode);
      const found = answered(script(clientId, this.#caller()));
      return found === undefined ? undefined : record(found, CLIENT_SUMMARY_KEYS);
    },
  };

  readonly services = {
    listServices: (input: ServicesListInput): ServicesListResult => {
      this.serviceCalls.push({ operation: 'list-services', input });
      const script = this.granted('cap:service.read') ? this.#options.services?.list : undefined;
      if (script === undefined) throw witError('not-allowed' satisfies ServiceReadErrorCode);
      const pages = paging(input.page, input.pageSize);
      if (pages === undefined) throw witError('invalid-input' satisfies ServiceReadErrorCode);
      const page = answered(script({ ...input, page: pages[0], pageSize: pages[1] }, this.#caller()));
      return { ...record(page, PAGE_KEYS), items: page.items.map((s) => record(s, SERVICE_SUMMARY_KEYS)) };
    },
    getService: (serviceId: string): ServiceSummary | undefined => {
      this.serviceCalls.push({ operation: 'get-service', serviceId });
      const script = this.granted('cap:service.read') ? this.#options.services?.get : undefined;
      if (script === undefined) throw witError('not-allowed' satisfies ServiceReadErrorCode);
      const found = answered(script(serviceId, this.#caller()));
      return found === undefined ? undefined : record(found, SERVICE_SUMMARY_KEYS);
    },
  };

  #emit(kind: EmittedMetric['kind'], name: string, value: number, labels: [string, string][]): void {
    if (!this.granted('cap:metrics.emit')) throw witError('denied');
    const badName = !METRIC_NAME.test(name) || /_(bucket|sum|count)$/.test(name);
    const badLabels =
      labels.length > 8 ||
      labels.some(([k, v]) => !LABEL_NAME.test(k) || ['tenant', 'extension', 'le'].includes(k) || new TextEncoder().encode(v).length > 128);
    const earlier = this.metricsEmitted.find((m) => m.name === name);
    if (badName || badLabels || !Number.isFinite(value) || (earlier !== undefined && earlier.kind !== kind)) throw witError('invalid');
    this.metricsEmitted.push({ kind, name, value, labels });
  }

  readonly metrics = {
    counterAdd: (name: string, value: bigint, labels: [string, string][]): void => this.#emit('counter', name, Number(value), labels),
    gaugeSet: (name: string, value: number, labels: [string, string][]): void => this.#emit('gauge', name, value, labels),
    histogramObserve: (name: string, value: number, labels: [string, string][]): void =>
      this.#emit('histogram', name, value, labels),
  };

  /** Removes this host if it is the installed one. */
  uninstall(): void {
    if (installedHost() === this) installHost(undefined);
  }
}

/** Creates a [[MockHost]] and installs it as the host the SDK calls. */
export function mockHost(options: MockHostOptions = {}): MockHost {
  const mock = new MockHost(options);
  installHost(mock);
  return mock;
}

/** What [[invoke]] sends: a path with optional query, headers and a body. */
export interface InvokeInit {
  /** Default `GET`. */
  method?: string;
  /** Path, optionally with `?query`. Default `/`. */
  path?: string;
  /** Query parameters appended to `path` (arrays repeat the key). */
  query?: Record<string, string | string[]>;
  headers?: HeadersInit;
  body?: Uint8Array | string;
  /** A JSON body; sets `content-type: application/json`. */
  json?: unknown;
}

/** The response [[invoke]] got. */
export class TestResponse {
  readonly status: number;
  readonly headers: readonly HttpHeader[];
  readonly body: Uint8Array | undefined;

  constructor(raw: { status: number; headers: HttpHeader[]; body?: Uint8Array | undefined }) {
    this.status = raw.status;
    this.headers = raw.headers;
    this.body = raw.body;
  }

  /** The first value of header `name`, compared case-insensitively. */
  header(name: string): string | undefined {
    return findHeader(this.headers, name);
  }

  /** The body as text (empty when none). */
  text(): string {
    return utf8(this.body ?? new Uint8Array());
  }

  /** The body parsed as JSON. */
  json<T = unknown>(): T {
    const text = strictUtf8(this.body ?? new Uint8Array());
    if (text === undefined) throw new SyntaxError('response body is not UTF-8');
    return JSON.parse(text) as T;
  }
}

/**
 * Calls `handler` (a `handler` export, e.g. from [[defineHandler]]) as the
 * runner would, with the context of `host` (default: the installed
 * [[MockHost]], or a fresh one). The answer is checked the way the
 * component's bindings check it, so a response that would trap in the runner
 * fails here too.
 */
export async function invoke(handler: HandlerExport, init: InvokeInit = {}, host?: MockHost): Promise<TestResponse> {
  const mock = host ?? currentMock() ?? mockHost();
  let url = init.path ?? '/';
  const pairs = Object.entries(init.query ?? {}).flatMap(([key, value]) =>
    (Array.isArray(value) ? value : [value]).map((v) => `${encodeURIComponent(key)}=${encodeURIComponent(v)}`),
  );
  if (pairs.length > 0) url += (url.includes('?') ? '&' : '?') + pairs.join('&');
  const headers = headerList(init.headers).map((h) => ({ name: h.name.toLowerCase(), value: h.value }));
  let body = init.body === undefined ? undefined : toBytes(init.body);
  if (init.json !== undefined) {
    body = toBytes(JSON.stringify(init.json));
    if (findHeader(headers, 'content-type') === undefined) headers.push({ name: 'content-type', value: 'application/json' });
  }
  const request: ExecuteRequest = {
    context: { ...mock.contextData },
    http: { method: init.method ?? 'GET', url, headers, body },
  };
  const raw = await handler(request);
  checkResponse(raw);
  return new TestResponse(raw);
}

function currentMock(): MockHost | undefined {
  const installed = installedHost();
  return installed instanceof MockHost ? installed : undefined;
}

/** The checks the component's bindings make on the export's answer (a failure there traps). */
function checkResponse(raw: unknown): asserts raw is { status: number; headers: HttpHeader[]; body?: Uint8Array } {
  const fail = (why: string): never => {
    throw new TypeError(`handler answer would trap in the runner: ${why}`);
  };
  if (typeof raw !== 'object' || raw === null) fail('not an object');
  const r = raw as { status?: unknown; headers?: unknown; body?: unknown };
  if (typeof r.status !== 'number' || !Number.isInteger(r.status) || r.status < 0 || r.status > 65535) {
    fail(`status ${String(r.status)} is not a u16`);
  }
  if (!Array.isArray(r.headers)) fail('headers is not a list');
  for (const h of r.headers as unknown[]) {
    const header = h as { name?: unknown; value?: unknown };
    if (typeof header?.name !== 'string' || typeof header?.value !== 'string') fail('a header is not {name, value} strings');
  }
  if (r.body !== undefined && r.body !== null && !(r.body instanceof Uint8Array)) fail('body is not a Uint8Array');
}
