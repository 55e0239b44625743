// The product-interface wrappers (scheduler, invoicing, clients, services)
// against the host mock: arguments as the guest passes them, answers mapped,
// every typed error, the denial without the grant, paging, payload JSON.
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';

import {
  CLIENT_READ_ERROR_CODES,
  ClientReadError,
  Response,
  SCHEDULER_ERROR_CODES,
  SERVICE_READ_ERROR_CODES,
  SchedulerError,
  ServiceReadError,
  clients,
  defineHandler,
  host,
  installHost,
  invoicing,
  scheduler,
  services,
  type ClientSummary,
  type Host,
  type ScheduleInfo,
  type ServiceSummary,
} from '../src/index.js';
import { CAPABILITIES, MockHost, invoke, mockHost, type MockClientsQuery, type MockServicesQuery } from '../src/testing.js';

afterEach(() => installHost(undefined));

/** The error `f` throws (failing when it returns). */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  assert.fail('expected a throw');
}

const ACME: ClientSummary = {
  clientId: 'c1',
  clientName: 'Acme',
  clientType: 'company',
  isInactive: false,
  defaultCurrencyCode: 'EUR',
  accountManagerId: 'u9',
  accountManagerName: 'Grace',
  billingEmail: 'billing@acme.test',
};

/** A client with only the required fields, as the bindings hand it over (every key present). */
const BARE: ClientSummary = {
  clientId: 'c2',
  clientName: 'Bare',
  clientType: undefined,
  isInactive: true,
  defaultCurrencyCode: undefined,
  accountManagerId: undefined,
  accountManagerName: undefined,
  billingEmail: undefined,
};

const HOURS: ServiceSummary = {
  serviceId: 'svc-1',
  serviceName: 'Consulting',
  itemKind: 'service',
  billingMethod: 'hourly',
  serviceTypeId: 'st-1',
  serviceTypeName: 'Professional',
  defaultRate: 125.5,
  unitOfMeasure: 'hour',
  isActive: true,
  sku: undefined,
};

const NIGHTLY: ScheduleInfo = {
  id: 'sch-1',
  endpointPath: '/sync',
  endpointMethod: 'POST',
  name: 'nightly',
  cron: '0 2 * * *',
  timezone: 'Europe/Berlin',
  enabled: true,
  payload: '{"full":true,"limit":10}',
  lastRunAt: '2025-01-02T02:00:00Z',
  lastRunStatus: 'ok',
  lastError: undefined,
  createdAt: '2025-01-01T12:00:00Z',
};

const USER = {
  tenantId: 't',
  clientName: 'Acme',
  userId: 'u1',
  userEmail: 'ada@acme.test',
  userName: 'Ada',
  userType: 'internal',
  clientId: 'c1',
  additionalFields: [],
};

test('the mock grants the four product capabilities by default', () => {
  assert.deepEqual(CAPABILITIES.slice(-4), ['cap:scheduler.manage', 'cap:invoice.manual.create', 'cap:client.read', 'cap:service.read']);
  const mock = mockHost();
  for (const cap of ['scheduler.manage', 'invoice.manual.create', 'client.read', 'service.read']) assert.equal(mock.granted(cap), true, cap);
});

// ---- clients ----

test('clients.list: the input passes through, the host sees paging defaulted and the caller, the page is mapped', () => {
  const seen: [MockClientsQuery, unknown][] = [];
  const mock = mockHost({
    user: USER,
    clients: {
      list: (query, caller) => {
        seen.push([query, caller]);
        return { items: [ACME, BARE], totalCount: 42, page: query.page, pageSize: query.pageSize };
      },
    },
  });
  const page = clients.list({ search: 'ac', includeInactive: true, page: 2 });
  assert.deepEqual(mock.clientCalls, [
    { operation: 'list-clients', input: { search: 'ac', includeInactive: true, page: 2, pageSize: undefined } },
  ]);
  assert.deepEqual(seen, [[{ search: 'ac', includeInactive: true, page: 2, pageSize: 25 }, { userId: 'u1', userType: 'internal' }]]);
  assert.deepEqual(page, { items: [ACME, BARE], totalCount: 42, page: 2, pageSize: 25 });
  assert.ok(Object.isFrozen(page) && Object.isFrozen(page.items) && Object.isFrozen(page.items[0]));

  clients.list();
  assert.deepEqual(mock.clientCalls[1], {
    operation: 'list-clients',
    input: { search: undefined, includeInactive: undefined, page: undefined, pageSize: undefined },
  });
  assert.deepEqual(seen[1], [{ search: undefined, includeInactive: undefined, page: 1, pageSize: 25 }, { userId: 'u1', userType: 'internal' }]);
});

test('clients.get: the client, undefined when there is none; no user means no caller', () => {
  const callers: unknown[] = [];
  const mock = mockHost({
    clients: {
      get: (id, caller) => {
        callers.push(caller);
        return id === 'c1' ? ACME : undefined;
      },
    },
  });
  assert.deepEqual(clients.get('c1'), ACME);
  assert.equal(clients.get('nope'), undefined);
  assert.deepEqual(mock.clientCalls, [
    { operation: 'get-client', clientId: 'c1' },
    { operation: 'get-client', clientId: 'nope' },
  ]);
  assert.deepEqual(callers, [undefined, undefined]);
});

test('clients: every client-read-error case is a ClientReadError with that code', () => {
  assert.deepEqual(CLIENT_READ_ERROR_CODES, ['not-allowed', 'invalid-input', 'internal']);
  for (const code of CLIENT_READ_ERROR_CODES) {
    mockHost({ clients: { list: () => ({ error: code }), get: () => ({ error: code }) } });
    for (const [what, f] of [
      ['list', () => clients.list()],
      ['get', () => clients.get('c1')],
    ] as const) {
      const e = thrown(f);
      assert.ok(e instanceof ClientReadError, `${code} ${what}`);
      assert.equal(e.code, code);
      assert.equal(e.capability, 'cap:client.read');
      assert.equal(e.name, 'ClientReadError');
    }
    assert.equal((thrown(() => clients.get('c9')) as Error).message, `clients.get-client(c9) failed: ${code}`);
  }
});

test('clients without the grant, or without a host answer, are not-allowed and never reach the host', () => {
  let asked = 0;
  const script = {
    list: () => {
      asked++;
      return { items: [], totalCount: 0, page: 1, pageSize: 25 };
    },
    get: () => {
      asked++;
      return ACME;
    },
  };
  const mock = mockHost({ capabilities: ['cap:service.read', 'cap:storage.kv'], clients: script });
  assert.equal((thrown(() => clients.list()) as ClientReadError).code, 'not-allowed');
  assert.equal((thrown(() => clients.get('c1')) as ClientReadError).code, 'not-allowed');
  assert.equal(asked, 0);
  assert.equal(mock.clientCalls.length, 2, 'refused calls are recorded too');
  mockHost({ clients: { list: script.list } });
  assert.equal((thrown(() => clients.get('c1')) as ClientReadError).code, 'not-allowed', 'no script for get: as without a host API');
  assert.equal(clients.list().totalCount, 0);
  assert.equal(asked, 1);
});

test('clients paging: the host refuses out-of-range pages; the wrapper refuses what a u32 cannot hold', () => {
  let asked = 0;
  const mock = mockHost({
    clients: {
      list: (q) => {
        asked++;
        return { items: [], totalCount: 0, page: q.page, pageSize: q.pageSize };
      },
    },
  });
  for (const query of [{ page: 0 }, { pageSize: 0 }, { pageSize: 101 }, { page: 0, pageSize: 100 }]) {
    assert.equal((thrown(() => clients.list(query)) as ClientReadError).code, 'invalid-input', JSON.stringify(query));
  }
  assert.equal(asked, 0);
  assert.equal(mock.clientCalls.length, 4, 'range checks are the host\'s: the calls reached it');
  assert.deepEqual(clients.list({ page: 4294967295, pageSize: 100 }), { items: [], totalCount: 0, page: 4294967295, pageSize: 100 });
  assert.deepEqual(clients.list({ pageSize: 1 }), { items: [], totalCount: 0, page: 1, pageSize: 1 });

  for (const [query, named] of [
    [{ page: -1 }, 'page -1'],
    [{ page: 1.5 }, 'page 1.5'],
    [{ page: 4294967296 }, 'page 4294967296'],
    [{ pageSize: Number.NaN }, 'pageSize NaN'],
    [{ page: 2, pageSize: 25.5 }, 'pageSize 25.5'],
  ] as const) {
    const e = thrown(() => clients.list(query));
    assert.ok(e instanceof ClientReadError && e.code === 'invalid-input', named);
    assert.equal(e.message, `clients.list-clients(${named} is not a u32) failed: invalid-input`);
  }
  assert.equal(mock.clientCalls.length, 6, 'numbers the bindings would wrap never reach the host');
});

test('clients in a handler: the page answers as JSON', async () => {
  mockHost({ clients: { list: (q) => ({ items: [ACME], totalCount: 1, page: q.page, pageSize: q.pageSize }) } });
  const handler = defineHandler((req) => {
    const page = clients.list({ search: req.query('q') });
    return Response.json(200, { names: page.items.map((c) => c.clientName), total: page.totalCount });
  });
  const res = await invoke(handler, { path: '/clients', query: { q: 'ac' } });
  assert.equal(res.status, 200);
  assert.deepEqual(res.json(), { names: ['Acme'], total: 1 });
});

// ---- services ----

test('services.list: filters and enums pass through, paging defaulted for the host, the page is mapped', () => {
  const seen: MockServicesQuery[] = [];
  const mock = mockHost({
    services: {
      list: (query) => {
        seen.push(query);
        return { items: [HOURS], totalCount: 1, page: query.page, pageSize: query.pageSize };
      },
    },
  });
  const page = services.list({ search: 'cons', itemKind: 'product', isActive: false, billingMethod: 'usage', pageSize: 100 });
  assert.deepEqual(mock.serviceCalls, [
    {
      operation: 'list-services',
      input: { search: 'cons', itemKind: 'product', isActive: false, billingMethod: 'usage', page: undefined, pageSize: 100 },
    },
  ]);
  assert.deepEqual(seen, [{ search: 'cons', itemKind: 'product', isActive: false, billingMethod: 'usage', page: 1, pageSize: 100 }]);
  assert.deepEqual(page, { items: [HOURS], totalCount: 1, page: 1, pageSize: 100 });
  assert.equal(page.items[0]?.defaultRate, 125.5);
});

test('services.get: the service, undefined when there is none', () => {
  const mock = mockHost({ services: { get: (id) => (id === 'svc-1' ? HOURS : undefined) } });
  assert.deepEqual(services.get('svc-1'), HOURS);
  assert.equal(services.get('svc-2'), undefined);
  assert.deepEqual(mock.serviceCalls, [
    { operation: 'get-service', serviceId: 'svc-1' },
    { operation: 'get-service', serviceId: 'svc-2' },
  ]);
});

test('services: every service-read-error case is a ServiceReadError with that code', () => {
  assert.deepEqual(SERVICE_READ_ERROR_CODES, ['not-allowed', 'invalid-input', 'internal']);
  for (const code of SERVICE_READ_ERROR_CODES) {
    mockHost({ services: { list: () => ({ error: code }), get: () => ({ error: code }) } });
    for (const f of [() => services.list(), () => services.get('svc-1')]) {
      const e = thrown(f);
      assert.ok(e instanceof ServiceReadError);
      assert.equal(e.code, code);
      assert.equal(e.capability, 'cap:service.read');
    }
  }
});

test('services without the grant are not-allowed; paging as clients', () => {
  let asked = 0;
  const list = (q: MockServicesQuery) => {
    asked++;
    return { items: [], totalCount: 0, page: q.page, pageSize: q.pageSize };
  };
  mockHost({ capabilities: ['cap:client.read'], services: { list, get: () => HOURS } });
  assert.equal((thrown(() => services.list()) as ServiceReadError).code, 'not-allowed');
  assert.equal((thrown(() => services.get('svc-1')) as ServiceReadError).code, 'not-allowed');
  const mock = mockHost({ services: { list } });
  assert.equal((thrown(() => services.list({ pageSize: 101 })) as ServiceReadError).code, 'invalid-input');
  assert.equal((thrown(() => services.list({ page: -3 })) as ServiceReadError).message, 'services.list-services(page -3 is not a u32) failed: invalid-input');
  assert.equal(asked, 0);
  assert.equal(mock.serviceCalls.length, 1);
  assert.equal(services.list({ page: 7 }).page, 7);
});

// ---- scheduler ----

test('scheduler.list and get: schedules mapped, payload parsed beside its text', () => {
  const odd = { ...NIGHTLY, id: 'sch-2', payload: 'not json', name: undefined, lastRunAt: undefined, lastRunStatus: undefined };
  const bare = { ...NIGHTLY, id: 'sch-3', payload: undefined };
  const mock = mockHost({
    scheduler: { list: () => [NIGHTLY, odd, bare], get: (id) => (id === 'sch-1' ? NIGHTLY : undefined) },
  });
  const [first, second, third] = scheduler.list();
  assert.deepEqual(first, {
    id: 'sch-1',
    endpointPath: '/sync',
    endpointMethod: 'POST',
    name: 'nightly',
    cron: '0 2 * * *',
    timezone: 'Europe/Berlin',
    enabled: true,
    payload: { full: true, limit: 10 },
    payloadText: '{"full":true,"limit":10}',
    lastRunAt: '2025-01-02T02:00:00Z',
    lastRunStatus: 'ok',
    lastError: undefined,
    createdAt: '2025-01-01T12:00:00Z',
  });
  assert.equal(second?.payload, undefined, 'text that is not JSON: no value');
  assert.equal(second?.payloadText, 'not json');
  assert.equal(second?.name, undefined);
  assert.equal(third?.payload, undefined);
  assert.equal(third?.payloadText, undefined);
  assert.deepEqual(scheduler.get('sch-1'), first);
  assert.equal(scheduler.get('sch-9'), undefined);
  assert.deepEqual(mock.schedulerCalls, [
    { operation: 'list-schedules' },
    { operation: 'get-schedule', scheduleId: 'sch-1' },
    { operation: 'get-schedule', scheduleId: 'sch-9' },
  ]);
});

test('scheduler.create: the payload goes as JSON text, the answer is mapped', () => {
  const mock = mockHost({ scheduler: { create: () => ({ success: true, scheduleId: 'sch-7' }) } });
  const created = scheduler.create({
    endpoint: 'POST /sync',
    cron: '*/5 * * * *',
    timezone: 'UTC',
    enabled: false,
    name: 'every five',
    payload: { full: false, ids: [1, 2], big: 9007199254740993n, note: 'ä "q"' },
  });
  assert.deepEqual(created, { success: true, error: undefined, fieldErrors: undefined, fieldErrorsText: undefined, scheduleId: 'sch-7' });
  assert.deepEqual(mock.schedulerCalls, [
    {
      operation: 'create-schedule',
      input: {
        endpoint: 'POST /sync',
        cron: '*/5 * * * *',
        timezone: 'UTC',
        enabled: false,
        name: 'every five',
        payload: '{"full":false,"ids":[1,2],"big":"9007199254740993","note":"ä \\"q\\""}',
      },
    },
  ]);
  scheduler.create({ endpoint: '/a', cron: '0 * * * *' });
  scheduler.create({ endpoint: '/b', cron: '0 * * * *', payload: null });
  scheduler.create({ endpoint: '/c', cron: '0 * * * *', payload: 'text' });
  scheduler.create({ endpoint: '/d', cron: '0 * * * *', payload: 0 });
  const payloads = mock.schedulerCalls.slice(1).map((c) => (c.operation === 'create-schedule' ? c.input.payload : 'other'));
  assert.deepEqual(payloads, [undefined, undefined, '"text"', '0']);
});

test('scheduler payload JSON round trip: what create sends comes back as the same value', () => {
  const stored: ScheduleInfo[] = [];
  mockHost({
    scheduler: {
      create: (input) => {
        stored.push({ ...NIGHTLY, id: `sch-${stored.length + 1}`, payload: input.payload });
        return { success: true, scheduleId: `sch-${stored.length}` };
      },
      get: (id) => stored.find((s) => s.id === id),
    },
  });
  const value = { nested: { list: [1, 'two', null, true], empty: {} }, n: -0.25, s: '\u2028' };
  const { scheduleId } = scheduler.create({ endpoint: '/sync', cron: '0 2 * * *', payload: value });
  assert.equal(scheduleId, 'sch-1');
  assert.deepEqual(scheduler.get('sch-1')?.payload, value);
});

test('scheduler.create failures: success false, field errors parsed, a bad payload never reaches the host', () => {
  let asked = 0;
  mockHost({
    scheduler: {
      create: (input) => {
        asked++;
        return input.cron === 'bad'
          ? { success: false, error: 'validation-failed', fieldErrors: '{"cron":"must have 5 fields","endpoint":["unknown"]}' }
          : { success: false, error: 'quota-exceeded', fieldErrors: '["not an object"]' };
      },
    },
  });
  assert.deepEqual(scheduler.create({ endpoint: '/sync', cron: 'bad' }), {
    success: false,
    error: 'validation-failed',
    fieldErrors: { cron: 'must have 5 fields', endpoint: ['unknown'] },
    fieldErrorsText: '{"cron":"must have 5 fields","endpoint":["unknown"]}',
    scheduleId: undefined,
  });
  const quota = scheduler.create({ endpoint: '/sync', cron: '0 * * * *' });
  assert.equal(quota.error, 'quota-exceeded');
  assert.equal(quota.fieldErrors, undefined, 'field errors that are not a JSON object: no value');
  assert.equal(quota.fieldErrorsText, '["not an object"]');
  assert.equal(asked, 2);
  // The runner refuses payload text that is not JSON before any call (the wrapper always sends JSON; the raw import need not).
  assert.deepEqual(host().scheduler?.createSchedule({ endpoint: '/sync', cron: '0 * * * *', payload: '{oops' }), {
    success: false,
    scheduleId: undefined,
    error: 'validation-failed',
    fieldErrors: '{"payload":"not valid JSON"}',
  });
  assert.equal(asked, 2);
});

test('scheduler.update: absent fields are kept, null clears the payload, the answer is mapped', () => {
  const mock = mockHost({
    scheduler: {
      update: (id) => (id === 'sch-1' ? { success: true } : { success: false, error: 'not-found' }),
    },
  });
  assert.deepEqual(scheduler.update('sch-1', { cron: '0 3 * * *', payload: { full: true } }), {
    success: true,
    error: undefined,
    fieldErrors: undefined,
    fieldErrorsText: undefined,
  });
  assert.deepEqual(scheduler.update('sch-1', { payload: null, enabled: true }).success, true);
  assert.deepEqual(scheduler.update('sch-2', {}), { success: false, error: 'not-found', fieldErrors: undefined, fieldErrorsText: undefined });
  assert.deepEqual(mock.schedulerCalls, [
    {
      operation: 'update-schedule',
      scheduleId: 'sch-1',
      input: { endpoint: undefined, cron: '0 3 * * *', timezone: undefined, enabled: undefined, name: undefined, payload: '{"full":true}' },
    },
    {
      operation: 'update-schedule',
      scheduleId: 'sch-1',
      input: { endpoint: undefined, cron: undefined, timezone: undefined, enabled: true, name: undefined, payload: '' },
    },
    {
      operation: 'update-schedule',
      scheduleId: 'sch-2',
      input: { endpoint: undefined, cron: undefined, timezone: undefined, enabled: undefined, name: undefined, payload: undefined },
    },
  ]);
});

test('scheduler.delete and endpoints', () => {
  const mock = mockHost({
    scheduler: {
      delete: (id) => (id === 'sch-1' ? { success: true } : { success: false, error: 'not-found' }),
      getEndpoints: () => [
        { id: 'POST /sync', method: 'POST', path: '/sync', handler: 'main', schedulable: true },
        { id: 'GET /status', method: 'GET', path: '/status', handler: 'main', schedulable: false },
      ],
    },
  });
  assert.deepEqual(scheduler.delete('sch-1'), { success: true, error: undefined });
  assert.deepEqual(scheduler.delete('sch-2'), { success: false, error: 'not-found' });
  assert.deepEqual(scheduler.endpoints(), [
    { id: 'POST /sync', method: 'POST', path: '/sync', handler: 'main', schedulable: true },
    { id: 'GET /status', method: 'GET', path: '/status', handler: 'main', schedulable: false },
  ]);
  assert.deepEqual(mock.schedulerCalls, [
    { operation: 'delete-schedule', scheduleId: 'sch-1' },
    { operation: 'delete-schedule', scheduleId: 'sch-2' },
    { operation: 'get-endpoints' },
  ]);
});

test('scheduler: every scheduler-error case is a SchedulerError with that code, from each read', () => {
  assert.deepEqual(SCHEDULER_ERROR_CODES, ['not-found', 'validation-failed', 'quota-exceeded', 'denied', 'internal']);
  for (const code of SCHEDULER_ERROR_CODES) {
    mockHost({ scheduler: { list: () => ({ error: code }), get: () => ({ error: code }), getEndpoints: () => ({ error: code }) } });
    for (const [operation, f] of [
      ['scheduler.list-schedules', () => scheduler.list()],
      ['scheduler.get-schedule(sch-1)', () => scheduler.get('sch-1')],
      ['scheduler.get-endpoints', () => scheduler.endpoints()],
    ] as const) {
      const e = thrown(f);
      assert.ok(e instanceof SchedulerError, operation);
      assert.equal(e.code, code);
      assert.equal(e.capability, 'cap:scheduler.manage');
      assert.equal(e.message, `${operation} failed: ${code}`);
    }
  }
});

test('scheduler without the grant: reads are denied, changes success false with error denied, the host never asked', () => {
  let asked = 0;
  const ask = () => {
    asked++;
    return { success: true };
  };
  const mock = mockHost({
    capabilities: ['cap:client.read'],
    scheduler: { list: () => [NIGHTLY], get: () => NIGHTLY, getEndpoints: () => [], create: ask, update: ask, delete: ask },
  });
  for (const f of [() => scheduler.list(), () => scheduler.get('sch-1'), () => scheduler.endpoints()]) {
    const e = thrown(f);
    assert.ok(e instanceof SchedulerError && e.code === 'denied');
  }
  const denied = { success: false, error: 'denied', fieldErrors: undefined, fieldErrorsText: undefined };
  assert.deepEqual(scheduler.create({ endpoint: '/sync', cron: '0 * * * *', payload: 1 }), { ...denied, scheduleId: undefined });
  assert.deepEqual(scheduler.update('sch-1', { enabled: false }), denied);
  assert.deepEqual(scheduler.delete('sch-1'), { success: false, error: 'denied' });
  assert.equal(asked, 0);
  assert.equal(mock.schedulerCalls.length, 6);
});

// ---- invoicing ----

test('invoicing.createManualInvoice: the invoice passes through, the answer is mapped', () => {
  const mock = mockHost({
    invoicing: () => ({ success: true, invoiceId: 'inv-1', invoiceNumber: 'INV-0001', status: 'draft', subtotal: 250, tax: 47.5, total: 297.5 }),
  });
  const result = invoicing.createManualInvoice({
    clientId: 'c1',
    items: [
      { serviceId: 'svc-1', quantity: 2, description: 'Consulting', rate: 125 },
      {
        serviceId: 'svc-1',
        quantity: 1,
        description: 'Loyalty',
        rate: 10,
        isDiscount: true,
        discountType: 'percentage',
        appliesToItemId: 'item-1',
        appliesToServiceId: 'svc-1',
      },
    ],
    invoiceDate: '2025-03-01',
    dueDate: '2025-03-31',
    poNumber: 'PO-7',
  });
  assert.deepEqual(result, {
    success: true,
    invoiceId: 'inv-1',
    invoiceNumber: 'INV-0001',
    status: 'draft',
    subtotal: 250,
    tax: 47.5,
    total: 297.5,
    error: undefined,
    fieldErrors: undefined,
    fieldErrorsText: undefined,
  });
  assert.deepEqual(mock.invoiceCalls, [
    {
      clientId: 'c1',
      items: [
        {
          serviceId: 'svc-1',
          quantity: 2,
          description: 'Consulting',
          rate: 125,
          isDiscount: undefined,
          discountType: undefined,
          appliesToItemId: undefined,
          appliesToServiceId: undefined,
        },
        {
          serviceId: 'svc-1',
          quantity: 1,
          description: 'Loyalty',
          rate: 10,
          isDiscount: true,
          discountType: 'percentage',
          appliesToItemId: 'item-1',
          appliesToServiceId: 'svc-1',
        },
      ],
      invoiceDate: '2025-03-01',
      dueDate: '2025-03-31',
      poNumber: 'PO-7',
    },
  ]);
});

test('invoicing failures: the host\'s field errors parsed; a non-finite amount refused before any call', () => {
  let asked = 0;
  mockHost({
    invoicing: () => {
      asked++;
      return { success: false, error: 'Client not found', fieldErrors: '{"clientId":"unknown client"}' };
    },
  });
  const item = { serviceId: 'svc-1', quantity: 1, description: 'x', rate: 1 };
  assert.deepEqual(invoicing.createManualInvoice({ clientId: 'zz', items: [item] }), {
    success: false,
    invoiceId: undefined,
    invoiceNumber: undefined,
    status: undefined,
    subtotal: undefined,
    tax: undefined,
    total: undefined,
    error: 'Client not found',
    fieldErrors: { clientId: 'unknown client' },
    fieldErrorsText: '{"clientId":"unknown client"}',
  });
  const infinite = invoicing.createManualInvoice({ clientId: 'c1', items: [item, { ...item, rate: Number.POSITIVE_INFINITY }] });
  assert.equal(infinite.error, 'validation-failed');
  assert.deepEqual(infinite.fieldErrors, { 'items[1].rate': 'must be a finite number' });
  assert.deepEqual(invoicing.createManualInvoice({ clientId: 'c1', items: [{ ...item, quantity: Number.NaN }] }).fieldErrors, {
    'items[0].quantity': 'must be a finite number',
  });
  assert.equal(asked, 1);
});

test('invoicing without the grant, or without a host answer, is success false with error denied', () => {
  const denied = {
    success: false,
    invoiceId: undefined,
    invoiceNumber: undefined,
    status: undefined,
    subtotal: undefined,
    tax: undefined,
    total: undefined,
    error: 'denied',
    fieldErrors: undefined,
    fieldErrorsText: undefined,
  };
  let asked = 0;
  const mock = mockHost({
    capabilities: ['cap:scheduler.manage'],
    invoicing: () => {
      asked++;
      return { success: true };
    },
  });
  assert.deepEqual(invoicing.createManualInvoice({ clientId: 'c1', items: [] }), denied);
  assert.equal(asked, 0);
  assert.equal(mock.invoiceCalls.length, 1);
  mockHost();
  assert.deepEqual(invoicing.createManualInvoice({ clientId: 'c1', items: [] }), denied);
});

// ---- a world without the product interfaces ----

test('a host without the product interfaces (an older WIT) answers each one\'s denial', () => {
  const m = new MockHost();
  const old: Host = {
    context: m.context,
    logging: m.logging,
    secrets: m.secrets,
    http: m.http,
    storage: m.storage,
    uiProxy: m.uiProxy,
    user: m.user,
    userV2: m.userV2,
  };
  installHost(old);
  const s = thrown(() => scheduler.list());
  assert.ok(s instanceof SchedulerError && s.code === 'denied');
  assert.equal(s.message, 'scheduler.list-schedules (world without scheduler) failed: denied');
  assert.deepEqual(scheduler.delete('x'), { success: false, error: 'denied' });
  assert.equal(scheduler.create({ endpoint: '/a', cron: '* * * * *' }).error, 'denied');
  assert.equal(scheduler.update('x', {}).error, 'denied');
  assert.equal(invoicing.createManualInvoice({ clientId: 'c', items: [] }).error, 'denied');
  const c = thrown(() => clients.get('c1'));
  assert.ok(c instanceof ClientReadError && c.code === 'not-allowed');
  const v = thrown(() => services.list());
  assert.ok(v instanceof ServiceReadError && v.code === 'not-allowed');
});
