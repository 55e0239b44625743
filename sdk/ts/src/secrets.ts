/**
 * `cap:secrets.get`: the install's secrets, opened by the host only when
 * asked. Values never appear in logs or errors; keep it that way.
 *
 * @module
 */

import { SecretError } from './errors.js';
import { host, thrownCode } from './host.js';
import { SECRET_ERROR_CODES } from './wit.js';

/**
 * The secret named `name`.
 * @throws SecretError `missing` (no such secret, or no secrets at all),
 * `denied` (capability not granted), `expired`, `internal`.
 */
export function get(name: string): string {
  try {
    return host().secrets.get(name);
  } catch (thrown) {
    const code = thrownCode(thrown, SECRET_ERROR_CODES);
    if (code === undefined) throw thrown;
    throw new SecretError(code, `secrets.get(${JSON.stringify(name)})`);
  }
}

/** The secret named `name`, or `undefined` when it is `missing`; other errors throw as in [[get]]. */
export function tryGet(name: string): string | undefined {
  try {
    return get(name);
  } catch (e) {
    if (e instanceof SecretError && e.code === 'missing') return undefined;
    throw e;
  }
}

/** The names of the install's secrets; empty without the capability. */
export function listKeys(): string[] {
  return host().secrets.listKeys();
}
