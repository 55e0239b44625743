/**
 * [[Request]]: the inbound HTTP request and the context it runs in.
 *
 * @module
 */

import { findHeader, headerList, strictUtf8, toBytes, type HeadersInit } from './bytes.js';
import { ExtError } from './errors.js';
import type { ContextData, ExecuteRequest, HttpHeader } from './wit.js';

/** Who and what an invocation is for: tenant, extension, install, version, request. */
export type Context = Readonly<ContextData>;

/** What [[Request]]'s constructor takes; everything is optional (tests build requests by hand). */
export interface RequestInit {
  /** Default `GET`. */
  method?: string;
  /** Path, then `?` and the query if any, as the runner passes it. Default `/`. */
  url?: string;
  headers?: HeadersInit;
  /** Absent means "no body", which differs from an empty one. */
  body?: Uint8Array | string;
  /** Default tenant `tenant`, extension `extension`. */
  context?: Partial<ContextData>;
}

/** Values captured by [[Request.matchPath]], percent-decoded. */
export type PathParams = Record<string, string>;

/** An HTTP request routed to the extension. */
export class Request {
  /** Tenant, extension, install, version and request id. */
  readonly context: Context;
  /** The HTTP method as sent (`GET`, `POST`, ...). */
  readonly method: string;
  /** The URL as the runner passed it: the path, then `?` and the query if any. */
  readonly url: string;
  /** All headers in the order received (the runner lower-cases names). */
  readonly headers: readonly HttpHeader[];
  /** The body; `undefined` when the request had none, empty when it had an empty one. */
  readonly body: Uint8Array | undefined;

  constructor(init: RequestInit = {}) {
    this.context = Object.freeze({ tenantId: 'tenant', extensionId: 'extension', ...init.context });
    this.method = init.method ?? 'GET';
    this.url = init.url ?? '/';
    this.headers = Object.freeze(headerList(init.headers));
    this.body = init.body === undefined ? undefined : toBytes(init.body);
  }

  /** The request the `handler` export received. */
  static fromRaw(raw: ExecuteRequest): Request {
    return new Request({
      method: raw.http.method,
      url: raw.http.url,
      headers: raw.http.headers,
      ...(raw.http.body === undefined ? {} : { body: raw.http.body }),
      context: raw.context,
    });
  }

  /**
   * The path part of the URL, still percent-encoded (`/hello/J%C3%BCrgen`).
   * An absolute URL (`https://host/p?q`) yields its path (`/p`).
   */
  get path(): string {
    let rest = this.url;
    const schemeEnd = rest.indexOf('://');
    if (schemeEnd >= 0 && !rest.slice(0, schemeEnd).includes('/')) {
      const after = rest.slice(schemeEnd + 3);
      const slash = after.indexOf('/');
      rest = slash < 0 ? '/' : after.slice(slash);
    }
    const end = rest.search(/[?#]/);
    return end < 0 ? rest : rest.slice(0, end);
  }

  /** The raw query string (without `?`), or `undefined` when the URL has none. */
  get queryString(): string | undefined {
    const at = this.url.indexOf('?');
    if (at < 0) return undefined;
    const after = this.url.slice(at + 1);
    const hash = after.indexOf('#');
    return hash < 0 ? after : after.slice(0, hash);
  }

  /** Decoded query pairs in order, repeated keys kept (`+` is a space). */
  queryPairs(): [string, string][] {
    const query = this.queryString;
    if (query === undefined) return [];
    return query
      .split('&')
      .filter((pair) => pair !== '')
      .map((pair) => {
        const eq = pair.indexOf('=');
        const [name, value] = eq < 0 ? [pair, ''] : [pair.slice(0, eq), pair.slice(eq + 1)];
        return [decode(name, true), decode(value, true)];
      });
  }

  /** The first value of query parameter `name`, decoded. */
  query(name: string): string | undefined {
    return this.queryPairs().find(([key]) => key === name)?.[1];
  }

  /** Every value of query parameter `name`, in order. */
  queryAll(name: string): string[] {
    return this.queryPairs()
      .filter(([key]) => key === name)
      .map(([, value]) => value);
  }

  /**
   * Matches the path against a pattern with `:param` segments, as in the
   * manifest: `req.matchPath('/hello/:name')` on `/hello/J%C3%BCrgen` gives
   * `{name: 'Jürgen'}`; no match gives `undefined`. One trailing slash is
   * ignored on either side.
   */
  matchPath(pattern: string): PathParams | undefined {
    return matchPath(pattern, this.path);
  }

  /** The first value of header `name`, compared case-insensitively. */
  header(name: string): string | undefined {
    return findHeader(this.headers, name);
  }

  /** The body bytes; empty when there is none. */
  bytes(): Uint8Array {
    return this.body ?? new Uint8Array();
  }

  /**
   * The body as UTF-8 text.
   * @throws ExtError `400 bad_request` if the body is not valid UTF-8.
   */
  text(): string {
    const text = strictUtf8(this.bytes());
    if (text === undefined) throw ExtError.badRequest('body is not UTF-8');
    return text;
  }

  /**
   * The body parsed as JSON (not validated against `T`: check what you rely on).
   * @throws ExtError `400 bad_request` if there is no body or it is not JSON.
   */
  json<T = unknown>(): T {
    if (this.body === undefined) throw ExtError.badRequest('a JSON body is required');
    const text = this.text();
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw ExtError.badRequest(`invalid JSON body: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

/** Matches `path` against `pattern` (`:param` segments); see [[Request.matchPath]]. */
export function matchPath(pattern: string, path: string): PathParams | undefined {
  const trim = (s: string): string => (s.length > 1 && s.endsWith('/') ? s.slice(0, -1) : s);
  const want = trim(pattern).split('/');
  const have = trim(path).split('/');
  if (want.length !== have.length) return undefined;
  const params: PathParams = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i] as string;
    const h = have[i] as string;
    if (w.startsWith(':')) {
      if (h === '') return undefined;
      params[w.slice(1)] = percentDecode(h);
    } else if (w !== h) {
      return undefined;
    }
  }
  return params;
}

/** Decodes `%XX` escapes (invalid ones are kept as written); invalid UTF-8 becomes U+FFFD. */
export function percentDecode(input: string): string {
  return decode(input, false);
}

function decode(input: string, plusIsSpace: boolean): string {
  const source = new TextEncoder().encode(input);
  const out: number[] = [];
  for (let i = 0; i < source.length; i++) {
    const byte = source[i] as number;
    if (byte === 0x25 && i + 2 < source.length) {
      const hi = hexValue(source[i + 1] as number);
      const lo = hexValue(source[i + 2] as number);
      if (hi !== undefined && lo !== undefined) {
        out.push((hi << 4) | lo);
        i += 2;
        continue;
      }
    }
    out.push(plusIsSpace && byte === 0x2b ? 0x20 : byte);
  }
  return new TextDecoder().decode(Uint8Array.from(out));
}

function hexValue(byte: number): number | undefined {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x61 + 10;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x41 + 10;
  return undefined;
}
