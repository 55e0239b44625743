/**
 * `cap:log.emit` (always granted): lines in the runner's log, attributed to
 * the tenant, the extension and the request. At most 1,000 lines of 8 KiB
 * per execution are kept.
 *
 * @module
 */

import { host } from './host.js';

/** Logs `message` at info level. */
export function info(message: string): void {
  host().logging.logInfo(String(message));
}

/** Logs `message` at warn level. */
export function warn(message: string): void {
  host().logging.logWarn(String(message));
}

/** Logs `message` at error level. */
export function error(message: string): void {
  host().logging.logError(String(message));
}
