/**
 * `cap:client.read`: the host product's clients (read-only), as the
 * request's user may see them.
 *
 * Paging: `page` from 1 (default 1), `pageSize` 1 to 100 (default 25); the
 * host refuses anything else with `invalid-input` before asking the product.
 *
 * @module
 */

import { ClientReadError } from './errors.js';
import { host, thrownCode } from './host.js';
import { notU32 } from './product.js';
import { CLIENT_READ_ERROR_CODES, type ClientSummary, type ClientsImports } from './wit.js';

/** What [[list]] asks for; `{}` is the first page of 25 with the host's default filter. */
export interface ListClients {
  /** Text the client's name must contain. */
  search?: string | undefined;
  /** Whether inactive clients are listed too. */
  includeInactive?: boolean | undefined;
  /** Page number, from 1. */
  page?: number | undefined;
  /** Clients per page, 1 to 100. */
  pageSize?: number | undefined;
}

/** One client (`client-summary`). */
export interface Client {
  readonly clientId: string;
  readonly clientName: string;
  /** E.g. `company`. */
  readonly clientType: string | undefined;
  readonly isInactive: boolean;
  /** ISO 4217. */
  readonly defaultCurrencyCode: string | undefined;
  /** The account manager's user id and name. */
  readonly accountManagerId: string | undefined;
  readonly accountManagerName: string | undefined;
  /** Where the client's invoices go. */
  readonly billingEmail: string | undefined;
}

/** One page of clients (`clients-list-result`). */
export interface ClientPage {
  readonly items: readonly Client[];
  /** Clients matching the query on all pages. */
  readonly totalCount: number;
  /** This page's number and the page size used. */
  readonly page: number;
  readonly pageSize: number;
}

function call<T>(operation: string, f: (clients: ClientsImports) => T): T {
  const clients = host().clients;
  if (clients === undefined) throw new ClientReadError('not-allowed', `${operation} (world without clients)`);
  try {
    return f(clients);
  } catch (thrown) {
    const code = thrownCode(thrown, CLIENT_READ_ERROR_CODES);
    if (code === undefined) throw thrown;
    throw new ClientReadError(code, operation);
  }
}

function toClient(raw: ClientSummary): Client {
  return Object.freeze({
    clientId: raw.clientId,
    clientName: raw.clientName,
    clientType: raw.clientType,
    isInactive: raw.isInactive,
    defaultCurrencyCode: raw.defaultCurrencyCode,
    accountManagerId: raw.accountManagerId,
    accountManagerName: raw.accountManagerName,
    billingEmail: raw.billingEmail,
  });
}

/**
 * One page of clients.
 * @throws ClientReadError `not-allowed` (capability not granted, or refused
 * by the host), `invalid-input` (paging out of range, or refused by the
 * host; also, without a call, a `page` or `pageSize` that is not a whole
 * number in `u32` range, which the bindings would silently wrap), `internal`.
 */
export function list(query: ListClients = {}): ClientPage {
  const operation = 'clients.list-clients';
  const bad = notU32({ page: query.page, pageSize: query.pageSize });
  if (bad !== undefined) throw new ClientReadError('invalid-input', `${operation}(${bad} is not a u32)`);
  const raw = call(operation, (c) =>
    c.listClients({ search: query.search, includeInactive: query.includeInactive, page: query.page, pageSize: query.pageSize }),
  );
  return Object.freeze({
    items: Object.freeze(raw.items.map(toClient)),
    totalCount: raw.totalCount,
    page: raw.page,
    pageSize: raw.pageSize,
  });
}

/**
 * The client `clientId`, or `undefined` when there is none.
 * @throws ClientReadError as [[list]].
 */
export function get(clientId: string): Client | undefined {
  const raw = call(`clients.get-client(${clientId})`, (c) => c.getClient(clientId));
  return raw === undefined ? undefined : toClient(raw);
}
