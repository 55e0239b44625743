/**
 * The `alga:extension` world (`wit/alga-extension.wit`) as jco /
 * componentize-js map it to JavaScript. These are the exact shapes the host
 * imports take and return, and the shape of the `handler` export:
 *
 * - record fields are camelCase (`tenant-id` → `tenantId`);
 * - `option<T>` is `T | undefined`;
 * - `list<u8>` is a `Uint8Array` (componentize-js 0.19 accepts nothing else);
 * - `u64` is a `bigint`; `u16`, `u32` and `f64` are `number`s (the
 *   bindings wrap a number given for a `u32` with `n >>> 0` rather than
 *   refusing it);
 * - `tuple<a, b>` is `[a, b]`;
 * - enums are string unions of their case names (`'not-allowed'`);
 * - an import returning `result<T, E>` returns `T` on `ok` and throws on
 *   `err`: the thrown value is an `Error` whose `payload` is `E`;
 *   `result<option<T>, E>` returns `T | undefined`.
 *
 * Prefer the wrappers exported from `@ext-runner/sdk`; these types are for
 * authors who want the raw world (and for the host mock).
 *
 * @module
 */

/** `context-data`: who and what an invocation is for. */
export interface ContextData {
  requestId?: string | undefined;
  tenantId: string;
  extensionId: string;
  installId?: string | undefined;
  versionId?: string | undefined;
}

/** `http-header`. */
export interface HttpHeader {
  name: string;
  value: string;
}

/** `http-request`: the inbound request, and the argument of `http.fetch`. */
export interface HttpRequest {
  method: string;
  url: string;
  headers: HttpHeader[];
  body?: Uint8Array | undefined;
}

/** `http-response`: what `http.fetch` returns (its body is always present). */
export interface HttpResponse {
  status: number;
  headers: HttpHeader[];
  body?: Uint8Array | undefined;
}

/** `execute-request`: the argument of the `handler` export. */
export interface ExecuteRequest {
  context: ContextData;
  http: HttpRequest;
}

/** `execute-response`: what the `handler` export returns. */
export interface ExecuteResponse {
  status: number;
  headers: HttpHeader[];
  body?: Uint8Array | undefined;
}

/** `storage-entry`. `revision` is the host's; pass it back to `put` for a conditional write. */
export interface StorageEntry {
  namespace: string;
  key: string;
  value: Uint8Array;
  revision?: bigint | undefined;
}

/** `user-data`. */
export interface UserData {
  tenantId: string;
  clientName: string;
  userId: string;
  userEmail: string;
  userName: string;
  userType: string;
}

/** `user-data-v2`: `user-data` plus the client id and extra fields (sorted by key). */
export interface UserDataV2 extends UserData {
  clientId?: string | undefined;
  additionalFields: [string, string][];
}

/** `schedule-info`: a schedule of the install's own endpoint. `payload` is JSON text. */
export interface ScheduleInfo {
  id: string;
  endpointPath: string;
  endpointMethod: string;
  name?: string | undefined;
  cron: string;
  timezone: string;
  enabled: boolean;
  payload?: string | undefined;
  lastRunAt?: string | undefined;
  lastRunStatus?: string | undefined;
  lastError?: string | undefined;
  createdAt?: string | undefined;
}

/** `endpoint-info`: an endpoint of the install's manifest. */
export interface EndpointInfo {
  id: string;
  method: string;
  path: string;
  handler: string;
  schedulable: boolean;
}

/** `create-schedule-input`. `payload` is JSON text. */
export interface CreateScheduleInput {
  endpoint: string;
  cron: string;
  timezone?: string | undefined;
  enabled?: boolean | undefined;
  name?: string | undefined;
  payload?: string | undefined;
}

/** `create-schedule-result`. `fieldErrors` is the JSON text of an object. */
export interface CreateScheduleResult {
  success: boolean;
  scheduleId?: string | undefined;
  error?: string | undefined;
  fieldErrors?: string | undefined;
}

/** `update-schedule-input`: absent fields are kept; `payload: ''` clears the payload. */
export interface UpdateScheduleInput {
  endpoint?: string | undefined;
  cron?: string | undefined;
  timezone?: string | undefined;
  enabled?: boolean | undefined;
  name?: string | undefined;
  payload?: string | undefined;
}

/** `update-schedule-result`. */
export interface UpdateScheduleResult {
  success: boolean;
  error?: string | undefined;
  fieldErrors?: string | undefined;
}

/** `delete-schedule-result`. */
export interface DeleteScheduleResult {
  success: boolean;
  error?: string | undefined;
}

/** `discount-type`. */
export type DiscountType = 'percentage' | 'fixed';

/** `manual-invoice-item-input` (`quantity` and `rate` are `f64`). */
export interface ManualInvoiceItemInput {
  serviceId: string;
  quantity: number;
  description: string;
  rate: number;
  isDiscount?: boolean | undefined;
  discountType?: DiscountType | undefined;
  appliesToItemId?: string | undefined;
  appliesToServiceId?: string | undefined;
}

/** `create-manual-invoice-input`. Dates are `YYYY-MM-DD`. */
export interface CreateManualInvoiceInput {
  clientId: string;
  items: ManualInvoiceItemInput[];
  invoiceDate?: string | undefined;
  dueDate?: string | undefined;
  poNumber?: string | undefined;
}

/** `create-manual-invoice-result`. `fieldErrors` is the JSON text of an object. */
export interface CreateManualInvoiceResult {
  success: boolean;
  invoiceId?: string | undefined;
  invoiceNumber?: string | undefined;
  status?: string | undefined;
  subtotal?: number | undefined;
  tax?: number | undefined;
  total?: number | undefined;
  error?: string | undefined;
  fieldErrors?: string | undefined;
}

/** `client-summary`. */
export interface ClientSummary {
  clientId: string;
  clientName: string;
  clientType?: string | undefined;
  isInactive: boolean;
  defaultCurrencyCode?: string | undefined;
  accountManagerId?: string | undefined;
  accountManagerName?: string | undefined;
  billingEmail?: string | undefined;
}

/** `clients-list-input` (`page`, `pageSize` are `u32`). */
export interface ClientsListInput {
  search?: string | undefined;
  includeInactive?: boolean | undefined;
  page?: number | undefined;
  pageSize?: number | undefined;
}

/** `clients-list-result`. */
export interface ClientsListResult {
  items: ClientSummary[];
  totalCount: number;
  page: number;
  pageSize: number;
}

/** `service-item-kind`. */
export type ServiceItemKind = 'service' | 'product';
/** `service-billing-method`. */
export type ServiceBillingMethod = 'fixed' | 'hourly' | 'usage';

/** `service-summary` (`defaultRate` is `f64`). */
export interface ServiceSummary {
  serviceId: string;
  serviceName: string;
  itemKind: ServiceItemKind;
  billingMethod: ServiceBillingMethod;
  serviceTypeId?: string | undefined;
  serviceTypeName?: string | undefined;
  defaultRate: number;
  unitOfMeasure: string;
  isActive: boolean;
  sku?: string | undefined;
}

/** `services-list-input` (`page`, `pageSize` are `u32`). */
export interface ServicesListInput {
  search?: string | undefined;
  itemKind?: ServiceItemKind | undefined;
  isActive?: boolean | undefined;
  billingMethod?: ServiceBillingMethod | undefined;
  page?: number | undefined;
  pageSize?: number | undefined;
}

/** `services-list-result`. */
export interface ServicesListResult {
  items: ServiceSummary[];
  totalCount: number;
  page: number;
  pageSize: number;
}

/** `secret-error`. */
export type SecretErrorCode = 'missing' | 'denied' | 'expired' | 'internal';
/** `http-error`. */
export type HttpErrorCode = 'invalid-url' | 'not-allowed' | 'transport' | 'internal';
/** `storage-error`. */
export type StorageErrorCode = 'missing' | 'conflict' | 'denied' | 'internal';
/** `proxy-error`. */
export type ProxyErrorCode = 'route-not-found' | 'denied' | 'bad-request' | 'internal';
/** `user-error`. */
export type UserErrorCode = 'not-available' | 'not-allowed';
/** `scheduler-error`. */
export type SchedulerErrorCode = 'not-found' | 'validation-failed' | 'quota-exceeded' | 'denied' | 'internal';
/** `client-read-error`. */
export type ClientReadErrorCode = 'not-allowed' | 'invalid-input' | 'internal';
/** `service-read-error`. */
export type ServiceReadErrorCode = 'not-allowed' | 'invalid-input' | 'internal';
/** `metrics-error` (interface `metrics`, an ext-runner addition to the world). */
export type MetricsErrorCode = 'denied' | 'invalid' | 'limit-exceeded';

/** Every case of each enum, for validation and exhaustive tests. */
export const SECRET_ERROR_CODES: readonly SecretErrorCode[] = ['missing', 'denied', 'expired', 'internal'];
export const HTTP_ERROR_CODES: readonly HttpErrorCode[] = ['invalid-url', 'not-allowed', 'transport', 'internal'];
export const STORAGE_ERROR_CODES: readonly StorageErrorCode[] = ['missing', 'conflict', 'denied', 'internal'];
export const PROXY_ERROR_CODES: readonly ProxyErrorCode[] = ['route-not-found', 'denied', 'bad-request', 'internal'];
export const USER_ERROR_CODES: readonly UserErrorCode[] = ['not-available', 'not-allowed'];
export const METRICS_ERROR_CODES: readonly MetricsErrorCode[] = ['denied', 'invalid', 'limit-exceeded'];
export const SCHEDULER_ERROR_CODES: readonly SchedulerErrorCode[] = ['not-found', 'validation-failed', 'quota-exceeded', 'denied', 'internal'];
export const CLIENT_READ_ERROR_CODES: readonly ClientReadErrorCode[] = ['not-allowed', 'invalid-input', 'internal'];
export const SERVICE_READ_ERROR_CODES: readonly ServiceReadErrorCode[] = ['not-allowed', 'invalid-input', 'internal'];
export const DISCOUNT_TYPES: readonly DiscountType[] = ['percentage', 'fixed'];
export const SERVICE_ITEM_KINDS: readonly ServiceItemKind[] = ['service', 'product'];
export const SERVICE_BILLING_METHODS: readonly ServiceBillingMethod[] = ['fixed', 'hourly', 'usage'];

/** `alga:extension/context` (cap:context.read, always granted). */
export interface ContextImports {
  getContext(): ContextData;
}

/** `alga:extension/logging` (cap:log.emit, always granted). */
export interface LoggingImports {
  logInfo(message: string): void;
  logWarn(message: string): void;
  logError(message: string): void;
}

/** `alga:extension/secrets` (cap:secrets.get). `get` throws `{payload: SecretErrorCode}`. */
export interface SecretsImports {
  get(key: string): string;
  listKeys(): string[];
}

/** `alga:extension/http` (cap:http.fetch). `fetch` throws `{payload: HttpErrorCode}`. */
export interface HttpImports {
  fetch(request: HttpRequest): HttpResponse;
}

/** `alga:extension/storage` (cap:storage.kv). Every function throws `{payload: StorageErrorCode}`. */
export interface StorageImports {
  get(namespace: string, key: string): StorageEntry;
  put(entry: StorageEntry): StorageEntry;
  delete(namespace: string, key: string): void;
  listEntries(namespace: string, cursor: string | undefined): StorageEntry[];
}

/** `alga:extension/ui-proxy` (cap:ui.proxy). `callRoute` throws `{payload: ProxyErrorCode}`. */
export interface UiProxyImports {
  callRoute(route: string, payload: Uint8Array | undefined): Uint8Array;
}

/** `alga:extension/user` (cap:user.read, always granted). `getUser` throws `{payload: UserErrorCode}`. */
export interface UserImports {
  getUser(): UserData;
}

/** `alga:extension/user-v2` (cap:user.read, always granted). `getUser` throws `{payload: UserErrorCode}`. */
export interface UserV2Imports {
  getUser(): UserDataV2;
}

/**
 * `alga:extension/scheduler` (cap:scheduler.manage). `listSchedules`,
 * `getSchedule` and `getEndpoints` throw `{payload: SchedulerErrorCode}`;
 * the others answer failures as `success: false` records.
 */
export interface SchedulerImports {
  listSchedules(): ScheduleInfo[];
  getSchedule(scheduleId: string): ScheduleInfo | undefined;
  createSchedule(input: CreateScheduleInput): CreateScheduleResult;
  updateSchedule(scheduleId: string, input: UpdateScheduleInput): UpdateScheduleResult;
  deleteSchedule(scheduleId: string): DeleteScheduleResult;
  getEndpoints(): EndpointInfo[];
}

/** `alga:extension/invoicing` (cap:invoice.manual.create). Failures are `success: false` records; it never throws. */
export interface InvoicingImports {
  createManualInvoice(input: CreateManualInvoiceInput): CreateManualInvoiceResult;
}

/** `alga:extension/clients` (cap:client.read). Both functions throw `{payload: ClientReadErrorCode}`. */
export interface ClientsImports {
  listClients(input: ClientsListInput): ClientsListResult;
  getClient(clientId: string): ClientSummary | undefined;
}

/** `alga:extension/services` (cap:service.read). Both functions throw `{payload: ServiceReadErrorCode}`. */
export interface ServicesImports {
  listServices(input: ServicesListInput): ServicesListResult;
  getService(serviceId: string): ServiceSummary | undefined;
}

/**
 * `alga:extension/metrics` (cap:metrics.emit): ext-runner's addition to the
 * world; upstream-built guests do not import it. Every function throws
 * `{payload: MetricsErrorCode}`.
 */
export interface MetricsImports {
  counterAdd(name: string, value: bigint, labels: [string, string][]): void;
  gaugeSet(name: string, value: number, labels: [string, string][]): void;
  histogramObserve(name: string, value: number, labels: [string, string][]): void;
}

/** The world-level export: `handler: func(request: execute-request) -> execute-response`.
 * componentize-js awaits a returned promise before answering the host. */
export type HandlerExport = (request: ExecuteRequest) => ExecuteResponse | Promise<ExecuteResponse>;
