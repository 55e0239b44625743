/** Byte and text helpers shared by the request, response and capability wrappers. @module */

import { ExtError } from './errors.js';

const encoder = new TextEncoder();

/** `value` as bytes: strings are UTF-8 encoded, byte arrays kept. */
export function toBytes(value: Uint8Array | string): Uint8Array {
  return typeof value === 'string' ? encoder.encode(value) : value;
}

/** UTF-8 text of `bytes`; invalid sequences become U+FFFD. */
export function utf8(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

/** UTF-8 text of `bytes`, or `undefined` when they are not valid UTF-8. */
export function strictUtf8(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * JSON text of `value`. `bigint`s (storage revisions) become numbers when
 * they are safe integers and strings otherwise, instead of throwing.
 */
export function stringifyJson(value: unknown): string {
  const text = JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'bigint' ? (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v.toString()) : v,
  );
  if (text === undefined) throw ExtError.internal(`value is not JSON-serialisable: ${typeof value}`);
  return text;
}

/** `value` as JSON bytes; see [[stringifyJson]]. */
export function jsonBytes(value: unknown): Uint8Array {
  return encoder.encode(stringifyJson(value));
}

/** Header lines in order, from any of the usual shapes. */
export type HeadersInit = Record<string, string> | [string, string][] | { name: string; value: string }[];

/** [[HeadersInit]] as WIT header records, values coerced to strings. */
export function headerList(init: HeadersInit | undefined): { name: string; value: string }[] {
  if (init === undefined) return [];
  if (Array.isArray(init)) {
    return init.map((h) => (Array.isArray(h) ? { name: String(h[0]), value: String(h[1]) } : { name: String(h.name), value: String(h.value) }));
  }
  return Object.entries(init).map(([name, value]) => ({ name, value: String(value) }));
}

/** The first value of header `name` in `headers`, compared case-insensitively. */
export function findHeader(headers: readonly { name: string; value: string }[], name: string): string | undefined {
  const wanted = name.toLowerCase();
  return headers.find((h) => h.name.toLowerCase() === wanted)?.value;
}
