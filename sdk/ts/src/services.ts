/**
 * `cap:service.read`: the host product's services and products
 * (read-only), as the request's user may see them.
 *
 * Paging as in `clients`: `page` from 1 (default 1), `pageSize` 1 to 100
 * (default 25); the host refuses anything else with `invalid-input`.
 *
 * @module
 */

import { ServiceReadError } from './errors.js';
import { host, thrownCode } from './host.js';
import { notU32 } from './product.js';
import {
  SERVICE_READ_ERROR_CODES,
  type ServiceBillingMethod,
  type ServiceItemKind,
  type ServiceSummary,
  type ServicesImports,
} from './wit.js';

/** What [[list]] asks for; `{}` is the first page of 25 with the host's default filter. */
export interface ListServices {
  /** Text the service's name must contain. */
  search?: string | undefined;
  /** Only services, or only products. */
  itemKind?: ServiceItemKind | undefined;
  /** Only active (`true`) or inactive (`false`) ones. */
  isActive?: boolean | undefined;
  /** Only those billed this way. */
  billingMethod?: ServiceBillingMethod | undefined;
  /** Page number, from 1. */
  page?: number | undefined;
  /** Services per page, 1 to 100. */
  pageSize?: number | undefined;
}

/** One service or product (`service-summary`). */
export interface Service {
  readonly serviceId: string;
  readonly serviceName: string;
  readonly itemKind: ServiceItemKind;
  readonly billingMethod: ServiceBillingMethod;
  readonly serviceTypeId: string | undefined;
  readonly serviceTypeName: string | undefined;
  readonly defaultRate: number;
  /** The unit the rate is per (e.g. `hour`). */
  readonly unitOfMeasure: string;
  readonly isActive: boolean;
  readonly sku: string | undefined;
}

/** One page of services (`services-list-result`). */
export interface ServicePage {
  readonly items: readonly Service[];
  /** Services matching the query on all pages. */
  readonly totalCount: number;
  /** This page's number and the page size used. */
  readonly page: number;
  readonly pageSize: number;
}

function call<T>(operation: string, f: (services: ServicesImports) => T): T {
  const services = host().services;
  if (services === undefined) throw new ServiceReadError('not-allowed', `${operation} (world without services)`);
  try {
    return f(services);
  } catch (thrown) {
    const code = thrownCode(thrown, SERVICE_READ_ERROR_CODES);
    if (code === undefined) throw thrown;
    throw new ServiceReadError(code, operation);
  }
}

function toService(raw: ServiceSummary): Service {
  return Object.freeze({
    serviceId: raw.serviceId,
    serviceName: raw.serviceName,
    itemKind: raw.itemKind,
    billingMethod: raw.billingMethod,
    serviceTypeId: raw.serviceTypeId,
    serviceTypeName: raw.serviceTypeName,
    defaultRate: raw.defaultRate,
    unitOfMeasure: raw.unitOfMeasure,
    isActive: raw.isActive,
    sku: raw.sku,
  });
}

/**
 * One page of services.
 * @throws ServiceReadError `not-allowed` (capability not granted, or
 * refused by the host), `invalid-input` (paging out of range, or refused by
 * the host; also, without a call, a `page` or `pageSize` that is not a
 * whole number in `u32` range, which the bindings would silently wrap),
 * `internal`.
 */
export function list(query: ListServices = {}): ServicePage {
  const operation = 'services.list-services';
  const bad = notU32({ page: query.page, pageSize: query.pageSize });
  if (bad !== undefined) throw new ServiceReadError('invalid-input', `${operation}(${bad} is not a u32)`);
  const raw = call(operation, (s) =>
    s.listServices({
      search: query.search,
      itemKind: query.itemKind,
      isActive: query.isActive,
      billingMethod: query.billingMethod,
      page: query.page,
      pageSize: query.pageSize,
    }),
  );
  return Object.freeze({
    items: Object.freeze(raw.items.map(toService)),
    totalCount: raw.totalCount,
    page: raw.page,
    pageSize: raw.pageSize,
  });
}

/**
 * The service `serviceId`, or `undefined` when there is none.
 * @throws ServiceReadError as [[list]].
 */
export function get(serviceId: string): Service | undefined {
  const raw = call(`services.get-service(${serviceId})`, (s) => s.getService(serviceId));
  return raw === undefined ? undefined : toService(raw);
}
