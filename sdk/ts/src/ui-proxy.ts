/**
 * `cap:ui.proxy`: calls a route of the host product's API (the operator's
 * `UI_PROXY_BASE_URL`), as the extension's iframe UI would.
 *
 * @module
 */

import { jsonBytes, strictUtf8, toBytes } from './bytes.js';
import { ProxyError } from './errors.js';
import { host, thrownCode } from './host.js';
import { PROXY_ERROR_CODES } from './wit.js';

/**
 * POSTs `payload` to `route` (an absolute path) and returns the answer's body.
 * @throws ProxyError `route-not-found`, `denied` (capability not granted, or
 * refused upstream), `bad-request`, `internal`.
 */
export function callRoute(route: string, payload?: Uint8Array | string): Uint8Array {
  try {
    return host().uiProxy.callRoute(route, payload === undefined ? undefined : toBytes(payload));
  } catch (thrown) {
    const code = thrownCode(thrown, PROXY_ERROR_CODES);
    if (code === undefined) throw thrown;
    throw new ProxyError(code, `ui-proxy.call-route(${route})`);
  }
}

/**
 * [[callRoute]] with a JSON payload (when given) and a JSON answer.
 * @throws ProxyError as [[callRoute]]; SyntaxError when the answer is not JSON.
 */
export function callRouteJson<T = unknown>(route: string, value?: unknown): T {
  const answer = callRoute(route, value === undefined ? undefined : jsonBytes(value));
  const text = strictUtf8(answer);
  if (text === undefined) throw new SyntaxError(`answer of ${route} is not UTF-8`);
  return JSON.parse(text) as T;
}
