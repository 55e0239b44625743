/**
 * `cap:http.fetch`: outbound HTTP to hosts the manifest's
 * `network.allowed_hosts` and the operator's allowlist both allow.
 *
 * The call is synchronous (the host does the I/O); `await` on it is harmless.
 * Redirects are not followed. Header values may carry `{{secret:NAME}}`
 * handles, which the host fills in for the upstream (https only, by default).
 *
 * @module
 */

import { findHeader, headerList, jsonBytes, strictUtf8, toBytes, utf8, type HeadersInit } from './bytes.js';
import { FetchError } from './errors.js';
import { host, thrownCode } from './host.js';
import { HTTP_ERROR_CODES, type HttpHeader, type HttpResponse } from './wit.js';

/** Options of [[fetch]]. */
export interface FetchInit {
  /** Default `GET`, or `POST` when there is a body. */
  method?: string;
  headers?: HeadersInit;
  /** A body (strings are UTF-8 encoded). */
  body?: Uint8Array | string;
  /** A JSON body; sets `content-type: application/json` unless given. */
  json?: unknown;
}

/** The answer of [[fetch]]. */
export class FetchResponse {
  readonly status: number;
  readonly headers: readonly HttpHeader[];
  readonly body: Uint8Array;

  constructor(raw: HttpResponse) {
    this.status = raw.status;
    this.headers = Object.freeze(raw.headers.slice());
    this.body = raw.body ?? new Uint8Array();
  }

  /** Whether the status is 2xx. */
  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  /** The first value of header `name`, compared case-insensitively. */
  header(name: string): string | undefined {
    return findHeader(this.headers, name);
  }

  /** The body as text, invalid UTF-8 replaced. */
  text(): string {
    return utf8(this.body);
  }

  /**
   * The body parsed as JSON.
   * @throws SyntaxError when the body is not UTF-8 JSON.
   */
  json<T = unknown>(): T {
    const text = strictUtf8(this.body);
    if (text === undefined) throw new SyntaxError('response body is not UTF-8');
    return JSON.parse(text) as T;
  }
}

/**
 * Sends a request through the host.
 * @throws FetchError `not-allowed` (capability not granted, or destination
 * not allowed), `invalid-url`, `transport`, `internal`.
 */
export function fetch(url: string, init: FetchInit = {}): FetchResponse {
  const headers = headerList(init.headers);
  let body = init.body === undefined ? undefined : toBytes(init.body);
  if (init.json !== undefined) {
    body = jsonBytes(init.json);
    if (findHeader(headers, 'content-type') === undefined) {
      headers.push({ name: 'content-type', value: 'application/json' });
    }
  }
  const method = init.method ?? (body === undefined ? 'GET' : 'POST');
  try {
    return new FetchResponse(host().http.fetch({ method, url, headers, body }));
  } catch (thrown) {
    const code = thrownCode(thrown, HTTP_ERROR_CODES);
    if (code === undefined) throw thrown;
    throw new FetchError(code, `http.fetch(${method} ${url})`);
  }
}

/** `GET url`; see [[fetch]]. */
export function get(url: string, headers?: HeadersInit): FetchResponse {
  return fetch(url, headers === undefined ? {} : { headers });
}

/** `POST url` with a JSON body; see [[fetch]]. */
export function postJson(url: string, value: unknown, headers?: HeadersInit): FetchResponse {
  return fetch(url, headers === undefined ? { json: value } : { json: value, headers });
}
