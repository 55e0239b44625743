// Unit tests of the handler in Node.js, against the SDK's host mock (no runner).
import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import { invoke, mockHost } from '@ext-runner/sdk/testing';
import { handler } from '../src/index.js';

beforeEach(() => {
  mockHost({ context: { tenantId: 'tenant-1', extensionId: '{{name}}', requestId: 'req-1' } });
});

test('GET /hello greets by name or the world', async () => {
  const res = await invoke(handler, { path: '/hello', query: { name: 'Ada' } });
  assert.equal(res.status, 200);
  assert.deepEqual(res.json(), { message: 'Hello, Ada!', extension: '{{name}}' });
  assert.equal((await invoke(handler, { path: '/hello' })).json<{ message: string }>().message, 'Hello, world!');
});

test('POST /echo echoes JSON and refuses what is not JSON', async () => {
  const ok = await invoke(handler, { method: 'POST', path: '/echo', json: { a: [1, 2] } });
  assert.deepEqual(ok.json(), { a: [1, 2] });
  const bad = await invoke(handler, { method: 'POST', path: '/echo', body: '{' });
  assert.equal(bad.status, 400);
});

test('unknown routes are 404 JSON', async () => {
  const res = await invoke(handler, { method: 'DELETE', path: '/hello' });
  assert.equal(res.status, 404);
  assert.deepEqual(res.json(), { error: 'not_found', message: 'no route for DELETE /hello' });
});
