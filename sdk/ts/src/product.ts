/**
 * What the product-interface wrappers (`scheduler`, `invoicing`, `clients`,
 * `services`) share: JSON text both ways, and the `u32` check of paging.
 *
 * @module
 */

import { stringifyJson } from './bytes.js';

/** Field errors of a refused change: field → what is wrong with it (as the host product words it). */
export type FieldErrors = Readonly<Record<string, unknown>>;

/**
 * `text` parsed as JSON; `undefined` when absent or not JSON. Never throws:
 * these texts come with answers (often failures) the caller must still see.
 */
export function parseJsonText(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The `field-errors` JSON text as an object; `undefined` when absent or not a JSON object. */
export function parseFieldErrors(text: string | undefined): FieldErrors | undefined {
  const value = parseJsonText(text);
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as FieldErrors) : undefined;
}

/** JSON text of `value` (bigints as in `Response.json`); `undefined` for `undefined`. */
export function jsonText(value: unknown): string | undefined {
  return value === undefined ? undefined : stringifyJson(value);
}

/** The largest `u32`. */
const U32_MAX = 0xffff_ffff;

/**
 * The name of the first of `fields` that is given but is not a `u32`, if
 * any. The bindings do not refuse such a number, they wrap it (`n >>> 0`:
 * `-1` becomes 4294967295, `1.5` becomes 1), so the host could not see what
 * was meant. Ranges (`page` ≥ 1, 1 ≤ `pageSize` ≤ 100) are the host's to check.
 */
export function notU32(fields: Record<string, number | undefined>): string | undefined {
  for (const [name, value] of Object.entries(fields)) {
    if (value !== undefined && !(Number.isInteger(value) && value >= 0 && value <= U32_MAX)) return `${name} ${String(value)}`;
  }
  return undefined;
}
