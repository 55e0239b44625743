import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ExtError, Request, percentDecode } from '../src/index.js';

const get = (url: string) => new Request({ url });

test('path strips query, fragment and origin', () => {
  const cases: [string, string][] = [
    ['/hello', '/hello'],
    ['/hello?name=x', '/hello'],
    ['/hello#frag', '/hello'],
    ['/a/b?x=1#f', '/a/b'],
    ['https://example.com/p/q?x', '/p/q'],
    ['https://example.com', '/'],
    ['/redirect?to=https://x/y', '/redirect'],
    ['', ''],
  ];
  for (const [url, path] of cases) assert.equal(get(url).path, path, url);
});

test('query pairs decode, keep order and repeats', () => {
  const req = get('/x?a=1&b=two+words&a=3&empty=&flag&&c=%E2%9C%93&bad=%zz%4#frag');
  assert.deepEqual(req.queryPairs(), [
    ['a', '1'],
    ['b', 'two words'],
    ['a', '3'],
    ['empty', ''],
    ['flag', ''],
    ['c', '✓'],
    ['bad', '%zz%4'],
  ]);
  assert.equal(req.query('a'), '1');
  assert.deepEqual(req.queryAll('a'), ['1', '3']);
  assert.equal(req.query('missing'), undefined);
  assert.deepEqual(get('/x').queryPairs(), []);
  assert.equal(get('/x').queryString, undefined);
  assert.equal(get('/x?').queryString, '');
});

test('matchPath table', () => {
  const cases: [string, string, Record<string, string> | undefined][] = [
    ['/hello', '/hello', {}],
    ['/hello', '/hello/', {}],
    ['/hello/', '/hello', {}],
    ['/hello', '/hello/x', undefined],
    ['/hello/:name', '/hello', undefined],
    ['/hello/:name', '/hello/', undefined],
    ['/hello/:name', '/hello/bob', { name: 'bob' }],
    ['/hello/:name', '/hello/J%C3%BCrgen', { name: 'Jürgen' }],
    ['/hello/:name', '/hello/a+b', { name: 'a+b' }],
    ['/a/:x/b/:y', '/a/1/b/2', { x: '1', y: '2' }],
    ['/a/:x/b/:y', '/a/1/c/2', undefined],
    ['/', '/', {}],
    ['/', '/x', undefined],
  ];
  for (const [pattern, path, want] of cases) {
    assert.deepEqual(get(path).matchPath(pattern), want, `${pattern} ~ ${path}`);
  }
});

test('percentDecode edge cases', () => {
  assert.equal(percentDecode('%41%4a%4A'), 'AJJ');
  assert.equal(percentDecode('%'), '%');
  assert.equal(percentDecode('%4'), '%4');
  assert.equal(percentDecode('100%'), '100%');
  assert.equal(percentDecode('%ff'), '\uFFFD');
  assert.equal(percentDecode('a+b'), 'a+b');
});

test('headers compare case-insensitively, first wins', () => {
  const req = new Request({
    headers: [
      ['Content-Type', 'application/json'],
      ['X-Multi', '1'],
      ['x-multi', '2'],
    ],
  });
  assert.equal(req.header('content-type'), 'application/json');
  assert.equal(req.header('X-MULTI'), '1');
  assert.equal(req.header('absent'), undefined);
  assert.equal(req.headers.length, 3);
  assert.deepEqual(new Request({ headers: { a: 'b' } }).headers, [{ name: 'a', value: 'b' }]);
});

test('no body differs from an empty one', () => {
  assert.equal(get('/').body, undefined);
  assert.deepEqual(get('/').bytes(), new Uint8Array());
  assert.deepEqual(new Request({ body: '' }).body, new Uint8Array());
});

test('text and json failures are 400s', () => {
  assert.deepEqual(new Request({ body: '{"n": 7}' }).json(), { n: 7 });
  const status = (f: () => unknown): number | undefined => {
    try {
      f();
      return undefined;
    } catch (e) {
      assert.ok(e instanceof ExtError, String(e));
      return e.status;
    }
  };
  assert.equal(status(() => get('/').json()), 400);
  assert.equal(status(() => new Request({ body: '{' }).json()), 400);
  assert.equal(status(() => new Request({ body: new Uint8Array([0xff]) }).text()), 400);
  assert.equal(new Request({ body: 'hi' }).text(), 'hi');
});

test('fromRaw keeps the wire request', () => {
  const req = Request.fromRaw({
    context: { tenantId: 't', extensionId: 'e', requestId: 'r' },
    http: { method: 'POST', url: '/p?q=1', headers: [{ name: 'a', value: 'b' }], body: new Uint8Array([104, 105]) },
  });
  assert.equal(req.method, 'POST');
  assert.equal(req.path, '/p');
  assert.equal(req.context.requestId, 'r');
  assert.equal(req.text(), 'hi');
});
