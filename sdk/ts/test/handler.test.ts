import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';

import { ExtError, Response, SecretError, defineHandler, installHost, secrets, type ExecuteRequest } from '../src/index.js';
import { invoke, mockHost } from '../src/testing.js';

afterEach(() => installHost(undefined));

const raw: ExecuteRequest = {
  context: { tenantId: 't', extensionId: 'e' },
  http: { method: 'GET', url: '/', headers: [] },
};
const body = (r: { body?: Uint8Array | undefined }): unknown => JSON.parse(new TextDecoder().decode(r.body));

test('a thrown ExtError becomes its JSON error, not logged', async () => {
  const host = mockHost();
  const res = await invoke(defineHandler(() => {
    throw ExtError.badRequest('name is required');
  }));
  assert.equal(res.status, 400);
  assert.deepEqual(res.json(), { error: 'bad_request', message: 'name is required' });
  assert.deepEqual(host.logs, []);
});

test('anything else thrown is a 500 that hides the message and logs it', async () => {
  const host = mockHost({ capabilities: [] });
  const res = await invoke(defineHandler(() => ({ denied: secrets.get('api-key') }) as never));
  assert.equal(res.status, 500);
  assert.deepEqual(res.json(), { error: 'internal', message: 'internal error' });
  assert.equal(host.logs.length, 1);
  assert.match(host.logs[0]?.message ?? '', /secrets\.get\("api-key"\) failed: denied/);

  const plain = await invoke(defineHandler(async () => {
    await Promise.resolve();
    throw new TypeError('boom');
  }));
  assert.equal(plain.status, 500);
  assert.match(host.logs[1]?.message ?? '', /TypeError: boom/);
});

test('a non-Response answer or an impossible status is a 500', async () => {
  const host = mockHost();
  assert.equal((await invoke(defineHandler(() => ({ status: 200 }) as never))).status, 500);
  assert.equal((await invoke(defineHandler(() => new Response(42)))).status, 500);
  assert.equal((await invoke(defineHandler(() => new Response(600)))).status, 500);
  assert.equal(host.logs.length, 3);
  assert.match(host.logs[1]?.message ?? '', /status 42/);
});

test('async handlers are awaited', async () => {
  mockHost();
  const res = await invoke(defineHandler(async (req) => {
    await new Promise((resolve) => setTimeout(resolve, 1));
    return Response.text(200, req.method);
  }));
  assert.equal(res.text(), 'GET');
});

test('the export never throws, even with no host to log to', async () => {
  const exported = defineHandler(() => {
    throw new Error('no host here');
  });
  const out = await exported(raw);
  assert.equal(out.status, 500);
  assert.deepEqual(body(out), { error: 'internal', message: 'internal error' });
});

test('capability errors carry the WIT case and the capability', () => {
  const e = new SecretError('expired', 'secrets.get("k")');
  assert.equal(e.code, 'expired');
  assert.equal(e.capability, 'cap:secrets.get');
  assert.equal(e.name, 'SecretError');
  assert.equal(e.message, 'secrets.get("k") failed: expired');
});
