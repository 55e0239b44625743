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
