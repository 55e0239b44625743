/**
 * `@ext-runner/sdk`: write ext-runner extensions in TypeScript.
 *
 * An extension is a WebAssembly component exporting the `handler` function
 * of the `alga:extension/runner` world. Write a module that exports it with
 * [[defineHandler]], then build it with `ext-build src/index.ts --out dist/main.wasm`:
 *
 * ```ts
 * import { defineHandler, Response, ExtError, log } from '@ext-runner/sdk';
 *
 * export const handler = defineHandler((req) => {
 *   const params = req.matchPath('/hello/:name');
 *   if (req.method !== 'GET' || params === undefined) throw ExtError.notFound('no such route');
 *   log.info(`greeting ${params.name}`);
 *   return Response.json(200, { message: `Hello, ${params.name}!` });
 * });
 * ```
 *
 * Capabilities, one namespace each: [[log]], [[secrets]], [[http]], [[kv]],
 * [[uiProxy]], [[user]], [[metrics]], plus [[context]]; the host product's
 * [[scheduler]], [[invoicing]], [[clients]] and [[services]]. A capability
 * the install was not granted answers its typed error (`denied`,
 * `not-allowed`), thrown as a [[CapabilityError]] subclass whose `code` is
 * the WIT enum case, or, for the operations whose WIT answer is a result
 * record, as `success: false` with `error: 'denied'`.
 *
 * Unit-test handlers in Node.js with `@ext-runner/sdk/testing`.
 *
 * @module
 */

export { defineHandler, errorResponse, type Handler } from './handler.js';
export { Request, matchPath, percentDecode, type Context, type PathParams, type RequestInit } from './request.js';
export { Response, DEFAULT_CONTENT_TYPE } from './response.js';
export {
  CapabilityError,
  ClientReadError,
  ExtError,
  FetchError,
  MetricsError,
  ProxyError,
  SchedulerError,
  SecretError,
  ServiceReadError,
  StorageError,
  UserError,
} from './errors.js';
export type { HeadersInit } from './bytes.js';
export { context } from './context.js';
export { installHost, installedHost, host, type Host } from './host.js';
export * as log from './log.js';
export * as secrets from './secrets.js';
export * as http from './http.js';
export * as kv from './kv.js';
export * as uiProxy from './ui-proxy.js';
export * as user from './user.js';
export * as metrics from './metrics.js';
export * as scheduler from './scheduler.js';
export * as invoicing from './invoicing.js';
export * as clients from './clients.js';
export * as services from './services.js';
export type { FieldErrors } from './product.js';
export type * from './wit.js';
export {
  CLIENT_READ_ERROR_CODES,
  DISCOUNT_TYPES,
  HTTP_ERROR_CODES,
  METRICS_ERROR_CODES,
  PROXY_ERROR_CODES,
  SCHEDULER_ERROR_CODES,
  SECRET_ERROR_CODES,
  SERVICE_BILLING_METHODS,
  SERVICE_ITEM_KINDS,
  SERVICE_READ_ERROR_CODES,
  STORAGE_ERROR_CODES,
  USER_ERROR_CODES,
} from './wit.js';
