/**
 * [[Response]]: what a handler answers.
 *
 * @module
 */

import { findHeader, jsonBytes, toBytes } from './bytes.js';
import type { ExecuteResponse, HttpHeader } from './wit.js';

/** Content type given to a response that has a body but no `content-type` header. */
export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

/**
 * An HTTP response, built with a few chained calls:
 *
 * ```ts
 * Response.json(201, { id }).header('x-ext-id', id)
 * ```
 *
 * The runner keeps only `content-type`, `cache-control`, `etag`,
 * `last-modified`, `content-language` and `x-ext-*` response headers.
 */
export class Response {
  /** The HTTP status (100–599). */
  status: number;
  /** Header lines in order. */
  readonly headers: HttpHeader[] = [];
  /** The body, or `undefined` for none. */
  body: Uint8Array | undefined;

  constructor(status = 200, body?: Uint8Array | string) {
    this.status = status;
    this.body = body === undefined ? undefined : toBytes(body);
  }

  /**
   * `value` serialised as JSON with `content-type: application/json`.
   * `bigint`s (storage revisions) become numbers, or strings when not safe integers.
   */
  static json(status: number, value: unknown): Response {
    return new Response(status, jsonBytes(value)).header('content-type', 'application/json');
  }

  /** A UTF-8 text body with `content-type: text/plain; charset=utf-8`. */
  static text(status: number, text: string): Response {
    return new Response(status, text).header('content-type', 'text/plain; charset=utf-8');
  }

  /** A response with no body (default `204`). */
  static empty(status = 204): Response {
    return new Response(status);
  }

  /** Sets header `name`, replacing earlier values (names compare case-insensitively). */
  header(name: string, value: string): this {
    const lower = name.toLowerCase();
    for (let i = this.headers.length - 1; i >= 0; i--) {
      if ((this.headers[i] as HttpHeader).name.toLowerCase() === lower) this.headers.splice(i, 1);
    }
    this.headers.push({ name, value: String(value) });
    return this;
  }

  /** Adds a header line, keeping earlier ones of the same name. */
  appendHeader(name: string, value: string): this {
    this.headers.push({ name, value: String(value) });
    return this;
  }

  /** Sets the body (strings are UTF-8 encoded). */
  withBody(body: Uint8Array | string): this {
    this.body = toBytes(body);
    return this;
  }

  /** Sets the status. */
  withStatus(status: number): this {
    this.status = status;
    return this;
  }

  /** The first value of header `name`, compared case-insensitively. */
  getHeader(name: string): string | undefined {
    return findHeader(this.headers, name);
  }

  /** The wire record; a body without a content type gets [[DEFAULT_CONTENT_TYPE]]. */
  toRaw(): ExecuteResponse {
    const headers = this.headers.map((h) => ({ name: h.name, value: h.value }));
    if (this.body !== undefined && findHeader(headers, 'content-type') === undefined) {
      headers.push({ name: 'content-type', value: DEFAULT_CONTENT_TYPE });
    }
    return { status: this.status, headers, body: this.body };
  }
}
