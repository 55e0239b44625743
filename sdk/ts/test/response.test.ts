import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DEFAULT_CONTENT_TYPE, Response } from '../src/index.js';

const text = (bytes: Uint8Array | undefined): string => new TextDecoder().decode(bytes);

test('json sets the content type and serialises bigints', () => {
  const raw = Response.json(201, { revision: 7n, huge: 2n ** 64n }).toRaw();
  assert.equal(raw.status, 201);
  assert.deepEqual(raw.headers, [{ name: 'content-type', value: 'application/json' }]);
  assert.equal(text(raw.body), '{"revision":7,"huge":"18446744073709551616"}');
});

test('header replaces case-insensitively, appendHeader keeps', () => {
  const r = Response.text(200, 'hi').header('X-Ext-A', '1').header('x-ext-a', '2').appendHeader('x-ext-b', '1').appendHeader('x-ext-b', '2');
  assert.deepEqual(
    r.headers.map((h) => `${h.name}: ${h.value}`),
    ['content-type: text/plain; charset=utf-8', 'x-ext-a: 2', 'x-ext-b: 1', 'x-ext-b: 2'],
  );
  assert.equal(r.getHeader('X-EXT-A'), '2');
});

test('a body without a content type gets the default; no body gets none', () => {
  assert.deepEqual(new Response(200, 'x').toRaw().headers, [{ name: 'content-type', value: DEFAULT_CONTENT_TYPE }]);
  const empty = Response.empty().toRaw();
  assert.equal(empty.status, 204);
  assert.equal(empty.body, undefined);
  assert.deepEqual(empty.headers, []);
});

test('builders chain', () => {
  const raw = new Response().withStatus(202).withBody(new Uint8Array([1, 2])).toRaw();
  assert.equal(raw.status, 202);
  assert.deepEqual(raw.body, new Uint8Array([1, 2]));
});
