/**
 * Errors: [[ExtError]], which a handler throws to answer with an HTTP error,
 * and one typed error per capability, carrying the WIT enum case as `code`.
 *
 * @module
 */

import type {
  ClientReadErrorCode,
  HttpErrorCode,
  MetricsErrorCode,
  ProxyErrorCode,
  SchedulerErrorCode,
  SecretErrorCode,
  ServiceReadErrorCode,
  StorageErrorCode,
  UserErrorCode,
} from './wit.js';

/**
 * An error that becomes a JSON response `{"error": code, "message": message}`
 * with `status`. Throw it from a handler (or let a capability error, which
 * becomes `500 internal`, propagate).
 *
 * For statuses of 500 and above the body says `"internal error"` instead of
 * the message (it may hold details the caller should not see); the message
 * goes to the extension's log.
 */
export class ExtError extends Error {
  /** The HTTP status of the response. */
  readonly status: number;
  /** The machine-readable code (`bad_request`, `not_found`, `internal`, ...). */
  readonly code: string;

  constructor(status: number, code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ExtError';
    this.status = status;
    this.code = code;
  }

  /** `400 bad_request`: the request cannot be handled as sent. */
  static badRequest(message: string): ExtError {
    return new ExtError(400, 'bad_request', message);
  }

  /** `404 not_found`: no such route or resource. */
  static notFound(message: string): ExtError {
    return new ExtError(404, 'not_found', message);
  }

  /** `500 internal`: something failed inside the extension. */
  static internal(message: string, cause?: unknown): ExtError {
    return new ExtError(500, 'internal', message, cause === undefined ? undefined : { cause });
  }
}

/** A capability answered with one of its WIT error cases. */
export abstract class CapabilityError<C extends string> extends Error {
  /** The WIT enum case, e.g. `'denied'`. */
  readonly code: C;
  /** The capability that failed, e.g. `'cap:secrets.get'`. */
  abstract readonly capability: string;

  constructor(code: C, operation: string) {
    super(`${operation} failed: ${code}`);
    this.code = code;
  }
}

/** `cap:secrets.get` failed: `missing`, `denied`, `expired` or `internal`. */
export class SecretError extends CapabilityError<SecretErrorCode> {
  readonly capability = 'cap:secrets.get';
  override readonly name = 'SecretError';
}

/** `cap:http.fetch` failed: `invalid-url`, `not-allowed`, `transport` or `internal`. */
export class FetchError extends CapabilityError<HttpErrorCode> {
  readonly capability = 'cap:http.fetch';
  override readonly name = 'FetchError';
}

/** `cap:storage.kv` failed: `missing`, `conflict`, `denied` or `internal`. */
export class StorageError extends CapabilityError<StorageErrorCode> {
  readonly capability = 'cap:storage.kv';
  override readonly name = 'StorageError';
}

/** `cap:ui.proxy` failed: `route-not-found`, `denied`, `bad-request` or `internal`. */
export class ProxyError extends CapabilityError<ProxyErrorCode> {
  readonly capability = 'cap:ui.proxy';
  override readonly name = 'ProxyError';
}

/** `cap:user.read` failed: `not-available` (no user in the request) or `not-allowed`. */
export class UserError extends CapabilityError<UserErrorCode> {
  readonly capability = 'cap:user.read';
  override readonly name = 'UserError';
}

/** `cap:metrics.emit` failed: `denied`, `invalid` (name, label or value) or `limit-exceeded`. */
export class MetricsError extends CapabilityError<MetricsErrorCode> {
  readonly capability = 'cap:metrics.emit';
  override readonly name = 'MetricsError';
}

/**
 * `cap:scheduler.manage` failed: `not-found`, `validation-failed`,
 * `quota-exceeded`, `denied` or `internal`. Only the reads throw it; changes
 * answer `success: false` with the case (or the host's message) as `error`.
 */
export class SchedulerError extends CapabilityError<SchedulerErrorCode> {
  readonly capability = 'cap:scheduler.manage';
  override readonly name = 'SchedulerError';
}

/** `cap:client.read` failed: `not-allowed`, `invalid-input` or `internal`. */
export class ClientReadError extends CapabilityError<ClientReadErrorCode> {
  readonly capability = 'cap:client.read';
  override readonly name = 'ClientReadError';
}

/** `cap:service.read` failed: `not-allowed`, `invalid-input` or `internal`. */
export class ServiceReadError extends CapabilityError<ServiceReadErrorCode> {
  readonly capability = 'cap:service.read';
  override readonly name = 'ServiceReadError';
}
