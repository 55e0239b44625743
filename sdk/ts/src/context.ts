/** `cap:context.read` (always granted). @module */

import { host } from './host.js';
import type { Context } from './request.js';

/** The context of the current invocation; the same values as [[Request.context]], asked of the host again. */
export function context(): Context {
  return Object.freeze({ ...host().context.getContext() });
}
