/**
 * `cap:user.read` (always granted): the user the gateway named for this
 * request, if any.
 *
 * @module
 */

import { UserError } from './errors.js';
import { host, thrownCode } from './host.js';
import { USER_ERROR_CODES, type UserData, type UserDataV2 } from './wit.js';

function call<T>(operation: string, f: () => T): T {
  try {
    return f();
  } catch (thrown) {
    const code = thrownCode(thrown, USER_ERROR_CODES);
    if (code === undefined) throw thrown;
    throw new UserError(code, operation);
  }
}

/**
 * The user (`user.get-user`).
 * @throws UserError `not-available` when the request names no user, `not-allowed`.
 */
export function get(): Readonly<UserData> {
  return Object.freeze({ ...call('user.get-user', () => host().user.getUser()) });
}

/**
 * The user with client id and extra fields (`user-v2.get-user`).
 * @throws UserError as [[get]].
 */
export function getV2(): Readonly<UserDataV2> {
  return Object.freeze({ ...call('user-v2.get-user', () => host().userV2.getUser()) });
}

/** The user, or `undefined` when the request names none; other errors throw as in [[get]]. */
export function current(): Readonly<UserData> | undefined {
  try {
    return get();
  } catch (e) {
    if (e instanceof UserError && e.code === 'not-available') return undefined;
    throw e;
  }
}
