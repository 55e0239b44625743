/**
 * [[defineHandler]]: turns a function of [[Request]] into the world's
 * `handler` export.
 *
 * @module
 */

import { CapabilityError, ExtError } from './errors.js';
import { host } from './host.js';
import { Request } from './request.js';
import { Response } from './response.js';
import type { ExecuteRequest, ExecuteResponse, HandlerExport } from './wit.js';

/** A request handler: sync or async, answering with a [[Response]] or throwing. */
export type Handler = (request: Request) => Response | Promise<Response>;

/**
 * The `handler` export of the `alga:extension/runner` world, from `fn`:
 *
 * ```ts
 * export const handler = defineHandler(async (req) => Response.json(200, { ok: true }));
 * ```
 *
 * Whatever `fn` does, the export answers and never throws (an exception
 * escaping a componentize-js export traps the whole instance, which the
 * runner reports as `502 extension_trap`):
 *
 * - a thrown [[ExtError]] becomes its JSON error response;
 * - anything else thrown (capability errors included) becomes `500`
 *   `{"error": "internal", "message": "internal error"}`, and its message
 *   goes to the extension's log;
 * - a status outside 100–599 or a value that is not a [[Response]] becomes `500` too.
 */
export function defineHandler(fn: Handler): HandlerExport {
  return async (raw: ExecuteRequest): Promise<ExecuteResponse> => {
    let response: Response;
    try {
      const answer: unknown = await fn(Request.fromRaw(raw));
      response = answer instanceof Response ? answer : internal(`handler returned ${describe(answer)}, not a Response`);
    } catch (e) {
      response = errorResponse(e);
    }
    if (!Number.isInteger(response.status) || response.status < 100 || response.status > 599) {
      response = internal(`handler answered status ${String(response.status)}, not 100-599`);
    }
    return response.toRaw();
  };
}

/** The response for an error thrown by a handler; a 5xx is also logged. */
export function errorResponse(error: unknown): Response {
  const ext =
    error instanceof ExtError
      ? error
      : ExtError.internal(error instanceof CapabilityError ? error.message : `unhandled ${describe(error)}`, error);
  if (ext.status >= 500) {
    logQuietly(`${ext.code} (${ext.status}): ${ext.message}`);
  }
  const message = ext.status >= 500 ? 'internal error' : ext.message;
  return Response.json(ext.status, { error: ext.code, message });
}

function internal(message: string): Response {
  return errorResponse(ExtError.internal(message));
}

function describe(value: unknown): string {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (value === null) return 'null';
  if (typeof value === 'object') return `an object (${Object.prototype.toString.call(value)})`;
  return `${typeof value} ${String(value)}`;
}

/** Logs at error level, ignoring failures: reporting an error must not raise another. */
function logQuietly(message: string): void {
  try {
    host().logging.logError(message);
  } catch {
    // No host (a bare unit test): nothing to report to.
  }
}
