// Unit tests of the handler in Node.js, against the SDK's host mock (no runner).
import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import { invoke, mockHost, type MockHost } from '@ext-runner/sdk/testing';
import { handler } from '../src/index.js';

let host: MockHost;
beforeEach(() => {
  host = mockHost({ context: { tenantId: 'tenant-1', extensionId: 'com.example.hello-ts', requestId: 'req-1' } });
});

test('GET /hello/:name greets by name, with the context, and logs one line', async () => {
  const res = await invoke(handler, { path: '/hello/J%C3%BCrgen' });
  assert.equal(res.status, 200);
  assert.equal(res.header('content-type'), 'application/json');
  assert.deepEqual(res.json(), {
    message: 'Hello, Jürgen!',
    tenant: 'tenant-1',
    extension: 'com.example.hello-ts',
    request_id: 'req-1',
  });
  assert.deepEqual(host.logs, [{ level: 'info', message: 'said hello to Jürgen' }]);
});

test('GET /hello takes ?name= and defaults to world', async () => {
  assert.equal((await invoke(handler, { path: '/hello', query: { name: 'Ada' } })).json<{ message: string }>().message, 'Hello, Ada!');
  assert.equal((await invoke(handler, { path: '/hello?name=' })).json<{ message: string }>().message, 'Hello, world!');
  assert.equal((await invoke(handler, { path: '/hello/' })).json<{ message: string }>().message, 'Hello, world!');
});

test('POST /echo echoes JSON and refuses what is not JSON', async () => {
  const ok = await invoke(handler, { method: 'POST', path: '/echo', json: { a: [1, 2] } });
  assert.deepEqual(ok.json(), { a: [1, 2] });
  const bad = await invoke(handler, { method: 'POST', path: '/echo', body: '{' });
  assert.equal(bad.status, 400);
  assert.equal(bad.json<{ error: string }>().error, 'bad_request');
});

test('unknown routes are 404 JSON', async () => {
  const res = await invoke(handler, { method: 'DELETE', path: '/hello' });
  assert.equal(res.status, 404);
  assert.deepEqual(res.json(), { error: 'not_found', message: 'no route for DELETE /hello' });
});

test('GET /visits counts per store, surviving a lost race', async () => {
  assert.deepEqual((await invoke(handler, { path: '/visits' })).json(), { visits: 1 });
  assert.deepEqual((await invoke(handler, { path: '/visits' })).json(), { visits: 2 });
  // Another writer bumps the revision between our read and our write once.
  const put = host.storage.put;
  let raced = false;
  host.storage.put = (entry) => {
    if (!raced) {
      raced = true;
      put({ ...entry, revision: undefined });
    }
    return put(entry);
  };
  assert.deepEqual((await invoke(handler, { path: '/visits' })).json(), { visits: 4 });
  assert.deepEqual(host.kvSnapshot('hello'), { visits: '4' });
});

test('GET /visits without storage granted is a 500 that logs the denial', async () => {
  host = mockHost({ capabilities: [] });
  const res = await invoke(handler, { path: '/visits' });
  assert.equal(res.status, 500);
  assert.match(host.logs[0]?.message ?? '', /storage\.get\(hello\/visits\) failed: denied/);
});

test('POST /relay sends the secret as a handle and relays the answer', async () => {
  host = mockHost({
    fetch: (req) => ({ status: 200, body: req.headers.some((h) => h.value === '{{secret:api-key}}') ? 'key ok' : 'key missing' }),
  });
  const res = await invoke(handler, { method: 'POST', path: '/relay', json: { url: 'http://127.0.0.1:8090/check' } });
  assert.deepEqual(res.json(), { upstream_status: 200, upstream_body: 'key ok' });
  assert.equal(host.fetches[0]?.url, 'http://127.0.0.1:8090/check');

  host = mockHost();
  const denied = await invoke(handler, { method: 'POST', path: '/relay', json: { url: 'https://api.example.com/' } });
  assert.equal(denied.status, 502);
  assert.deepEqual(denied.json(), { error: 'fetch_failed', message: 'internal error' }, '5xx details stay in the log');
  assert.deepEqual(host.logs, [{ level: 'error', message: 'fetch_failed (502): http.fetch: not-allowed' }]);
  assert.equal((await invoke(handler, { method: 'POST', path: '/relay', json: {} })).status, 400);
});
