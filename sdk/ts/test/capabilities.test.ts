// Every capability wrapper against the host mock: the values, the typed
// errors (the WIT enum cases) and the deny-by-default answers.
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';

import {
  FetchError,
  MetricsError,
  ProxyError,
  StorageError,
  UserError,
  context,
  host,
  http,
  installHost,
  kv,
  log,
  metrics,
  secrets,
  uiProxy,
  user,
} from '../src/index.js';
import { mockHost } from '../src/testing.js';

afterEach(() => installHost(undefined));

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as { code: string }).code;
  }
  assert.fail('expected a throw');
}

test('without a host, capabilities fail with a message naming the fix', () => {
  assert.throws(() => log.info('x'), /no ext-runner host.*mockHost/);
  assert.throws(() => host(), /ext-build/);
});

test('context and logging', () => {
  const mock = mockHost({ context: { tenantId: 't1', installId: 'i1' } });
  assert.deepEqual(context(), { requestId: 'req-test', tenantId: 't1', extensionId: 'com.example.test', installId: 'i1' });
  log.info('a');
  log.warn('b');
  log.error('c');
  assert.deepEqual(mock.logs, [
    { level: 'info', message: 'a' },
    { level: 'warn', message: 'b' },
    { level: 'error', message: 'c' },
  ]);
});

test('kv: put, get, revisions, conflicts, delete, list pages', () => {
  const mock = mockHost();
  assert.equal(kv.get('notes', 'a'), undefined);
  const first = kv.put('notes', 'a', 'one');
  assert.equal(first.revision, 1n);
  assert.equal(kv.get('notes', 'a')?.text(), 'one');
  kv.putJson('notes', 'b', { n: 2 }, { expectedRevision: 0 });
  assert.deepEqual(kv.get('notes', 'b')?.json(), { n: 2 });
  assert.equal(codeOf(() => kv.put('notes', 'a', 'stale', { expectedRevision: 999n })), 'conflict');
  assert.equal(codeOf(() => kv.put('notes', 'a', 'again', { expectedRevision: 0 })), 'conflict');
  const second = kv.put('notes', 'a', 'two', { expectedRevision: first.revision! });
  assert.ok(second.revision! > first.revision!);
  assert.deepEqual(kv.list('notes').map((e) => e.key), ['a', 'b']);
  assert.deepEqual(kv.list('notes', 'a').map((e) => e.key), ['b']);
  assert.deepEqual(mock.kvSnapshot('notes'), { a: 'two', b: '{"n":2}' });
  assert.equal(kv.delete('notes', 'a'), true);
  assert.equal(kv.delete('notes', 'a'), false);
  for (let i = 0; i < 150; i++) kv.put('many', `k${String(i).padStart(3, '0')}`, '');
  const page = kv.list('many');
  assert.equal(page.length, 100);
  assert.equal(kv.list('many', page.at(-1)?.key).length, 50);
});

test('kv without the capability is denied, as a StorageError', () => {
  mockHost({ capabilities: ['cap:log.emit'] });
  assert.throws(() => kv.get('n', 'k'), (e: unknown) => e instanceof StorageError && e.code === 'denied');
  assert.equal(codeOf(() => kv.put('n', 'k', 'v')), 'denied');
  assert.equal(codeOf(() => kv.list('n')), 'denied');
  assert.equal(codeOf(() => kv.delete('n', 'k')), 'denied');
});

test('secrets: value, missing, denied, key list', () => {
  const mock = mockHost({ secrets: { 'api-key': 'sk_1', region: 'eu' }, capabilities: ['secrets.get'] });
  assert.equal(secrets.get('api-key'), 'sk_1');
  assert.equal(codeOf(() => secrets.get('nope')), 'missing');
  assert.equal(secrets.tryGet('nope'), undefined);
  assert.deepEqual(secrets.listKeys(), ['api-key', 'region']);
  assert.deepEqual(mock.secretReads, ['api-key', 'nope', 'nope']);
  mockHost({ secrets: { 'api-key': 'sk_1' }, capabilities: [] });
  assert.equal(codeOf(() => secrets.get('api-key')), 'denied');
  assert.throws(() => secrets.tryGet('api-key'), /failed: denied/);
  assert.deepEqual(secrets.listKeys(), []);
});

test('http.fetch: scripted answers, JSON bodies, typed errors', () => {
  const mock = mockHost({
    fetch: (req) =>
      req.url.endsWith('/down') ? { error: 'transport' } : { status: 201, headers: { 'content-type': 'application/json' }, body: '{"ok":true}' },
  });
  const res = http.postJson('https://api.example.com/items', { a: 1 }, { 'x-api-key': '{{secret:api-key}}' });
  assert.equal(res.status, 201);
  assert.ok(res.ok);
  assert.deepEqual(res.json(), { ok: true });
  assert.equal(res.header('Content-Type'), 'application/json');
  const sent = mock.fetches[0]!;
  assert.equal(sent.method, 'POST');
  assert.deepEqual(sent.headers, [
    { name: 'x-api-key', value: '{{secret:api-key}}' },
    { name: 'content-type', value: 'application/json' },
  ]);
  assert.equal(new TextDecoder().decode(sent.body), '{"a":1}');
  assert.equal(http.get('https://api.example.com/x').status, 201);
  assert.throws(() => http.get('https://api.example.com/down'), (e: unknown) => e instanceof FetchError && e.code === 'transport');
  assert.equal(codeOf(() => http.get('not a url')), 'invalid-url');
  mockHost();
  assert.equal(codeOf(() => http.get('https://api.example.com/')), 'not-allowed', 'no fetch script: nothing allowed');
});

test('ui-proxy: routes, unknown routes, denied', () => {
  const mock = mockHost({
    routes: {
      '/api/echo': (payload) => payload ?? 'none',
      '/api/bad': () => ({ error: 'bad-request' }),
    },
  });
  assert.deepEqual(uiProxy.callRouteJson('/api/echo', { x: 1 }), { x: 1 });
  assert.equal(new TextDecoder().decode(uiProxy.callRoute('/api/echo')), 'none');
  assert.equal(codeOf(() => uiProxy.callRoute('/api/bad')), 'bad-request');
  assert.throws(() => uiProxy.callRoute('/api/missing'), (e: unknown) => e instanceof ProxyError && e.code === 'route-not-found');
  assert.equal(mock.routeCalls.length, 4);
  mockHost({ capabilities: [] });
  assert.equal(codeOf(() => uiProxy.callRoute('/api/echo')), 'denied');
});

test('user: not-available without a user; v1 and v2 shapes', () => {
  mockHost();
  assert.throws(() => user.get(), (e: unknown) => e instanceof UserError && e.code === 'not-available');
  assert.equal(user.current(), undefined);
  mockHost({
    user: {
      tenantId: 't',
      clientName: 'Acme',
      userId: 'u1',
      userEmail: 'a@example.com',
      userName: 'Ada',
      userType: 'internal',
      clientId: 'c1',
      additionalFields: [
        ['z', '1'],
        ['a', '2'],
      ],
    },
  });
  assert.deepEqual(user.get(), { tenantId: 't', clientName: 'Acme', userId: 'u1', userEmail: 'a@example.com', userName: 'Ada', userType: 'internal' });
  assert.deepEqual(user.getV2().additionalFields, [
    ['a', '2'],
    ['z', '1'],
  ]);
  assert.equal(user.current()?.userName, 'Ada');
});

test('metrics: emitted, validated, denied', () => {
  const mock = mockHost();
  metrics.counterAdd('orders_total', 2, { kind: 'refund' });
  metrics.gaugeSet('queue_depth', 17);
  metrics.histogramObserve('upstream_seconds', 0.04, [['upstream', 'billing']]);
  assert.deepEqual(mock.metricsEmitted.map((m) => `${m.kind} ${m.name} ${m.value}`), [
    'counter orders_total 2',
    'gauge queue_depth 17',
    'histogram upstream_seconds 0.04',
  ]);
  assert.equal(codeOf(() => metrics.counterAdd('Bad-Name')), 'invalid');
  assert.equal(codeOf(() => metrics.counterAdd('x', -1)), 'invalid');
  assert.equal(codeOf(() => metrics.gaugeSet('orders_total', 1)), 'invalid', 'a name keeps its kind');
  assert.equal(codeOf(() => metrics.gaugeSet('g', 1, { tenant: 'x' })), 'invalid');
  mockHost({ capabilities: [] });
  assert.throws(() => metrics.gaugeSet('g', 1), (e: unknown) => e instanceof MetricsError && e.code === 'denied');
});

test('an import throwing something that is not a WIT error passes through unchanged', () => {
  const mock = mockHost();
  const weird = new RangeError('engine trouble');
  mock.storage.get = () => {
    throw weird;
  };
  assert.throws(() => kv.get('n', 'k'), (e: unknown) => e === weird);
});
