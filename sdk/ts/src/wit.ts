/**
 * The `alga:extension` world (`wit/alga-extension.wit`) as jco /
 * componentize-js map it to JavaScript. These are the exact shapes the host
 * imports take and return, and the shape of the `handler` export:
 *
 * - record fields are camelCase (`tenant-id` → `tenantId`);
 * - `option<T>` is `T | undefined`;
 * - `list<u8>` is a `Uint8Array` (componentize-js 0.19 accepts nothing else);
 * - `u64` is a `bigint`, `u16` a `number`;
 * - `tuple<a, b>` is `[a, b]`;
 * - enums are string unions of their case names (`'not-allowed'`);
 * - an import returning `result<T, E>` returns `T` on `ok` and throws on
 *   `err`: the thrown value is an `Error` whose `payload` is `E`.
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
/** `metrics-error` (interface `metrics`, an ext-runner addition to the world). */
export type MetricsErrorCode = 'denied' | 'invalid' | 'limit-exceeded';

/** Every case of each enum, for validation and exhaustive tests. */
export const SECRET_ERROR_CODES: readonly SecretErrorCode[] = ['missing', 'denied', 'expired', 'internal'];
export const HTTP_ERROR_CODES: readonly HttpErrorCode[] = ['invalid-url', 'not-allowed', 'transport', 'internal'];
export const STORAGE_ERROR_CODES: readonly StorageErrorCode[] = ['missing', 'conflict', 'denied', 'internal'];
export const PROXY_ERROR_CODES: readonly ProxyErrorCode[] = ['route-not-found', 'denied', 'bad-request', 'internal'];
export const USER_ERROR_CODES: readonly UserErrorCode[] = ['not-available', 'not-allowed'];
export const METRICS_ERROR_CODES: readonly MetricsErrorCode[] = ['denied', 'invalid', 'limit-exceeded'];

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
