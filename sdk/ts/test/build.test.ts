// The pure parts of ext-build (tools/ext-build.mjs). Componentizing itself is
// exercised end to end by crates/runner/tests/all/typescript.rs.
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// Loaded from the source tree (this file runs from build/test/).
const tools: typeof import('../tools/ext-build.mjs') = await import(new URL('../../tools/ext-build.mjs', import.meta.url).href);
const { ALLOWED_WASI_INTERFACES, BuildError, DEFAULT_DISABLED, defaultWitDir, disabledFeatures, entrySource, refusedImports, worldImports } =
  tools;

const repoWit = join(dirname(fileURLToPath(import.meta.url)), '../../../../wit');

test('imports ext-runner links pass, everything else is named', () => {
  const linked = [
    'alga:extension/types',
    'alga:extension/context',
    'alga:extension/metrics',
    'wasi:io/poll@0.2.3',
    'wasi:cli/stdout@0.2.12',
    'wasi:filesystem/preopens@0.2.0',
    'wasi:random/random@0.2.3',
  ];
  assert.deepEqual(refusedImports(linked), []);
  assert.deepEqual(
    refusedImports([
      ...linked,
      'wasi:http/types@0.2.3',
      'wasi:http/outgoing-handler@0.2.3',
      'wasi:sockets/tcp@0.2.3',
      'wasi:io/poll@0.3.0',
      'wasi:io/poll',
      'alga:extension/context@1.0.0',
      'example:other/thing',
    ]),
    [
      'wasi:http/types@0.2.3',
      'wasi:http/outgoing-handler@0.2.3',
      'wasi:sockets/tcp@0.2.3',
      'wasi:io/poll@0.3.0',
      'wasi:io/poll',
      'alga:extension/context@1.0.0',
      'example:other/thing',
    ],
  );
  assert.ok(!ALLOWED_WASI_INTERFACES.some((i) => i.startsWith('wasi:http') || i.startsWith('wasi:sockets')));
});

test('features: defaults leave out wasi:http; all expands; unknown names are refused', () => {
  assert.deepEqual([...DEFAULT_DISABLED].sort(), ['fetch-event', 'http']);
  assert.deepEqual(disabledFeatures(['all']), ['clocks', 'fetch-event', 'http', 'random', 'stdio']);
  assert.deepEqual(disabledFeatures(['http', 'http', 'stdio']), ['http', 'stdio']);
  assert.throws(() => disabledFeatures(['sockets']), (e: unknown) => e instanceof BuildError && /unknown feature "sockets"/.test(e.message));
});

test('the world runner imports the upstream interfaces, product ones included; runner-ext adds metrics', async () => {
  assert.equal(defaultWitDir(), repoWit);
  const upstream = await worldImports(repoWit, 'runner');
  assert.deepEqual(upstream, [
    'context',
    'secrets',
    'http',
    'storage',
    'logging',
    'ui-proxy',
    'user',
    'user-v2',
    'scheduler',
    'invoicing',
    'clients',
    'services',
  ]);
  const ext = await worldImports(repoWit, 'runner-ext');
  assert.deepEqual(ext, [...upstream, 'metrics']);
  await assert.rejects(worldImports(repoWit, 'nope'), /no world "nope"/);
});

test('the generated entry hands exactly the world\'s interfaces to the SDK', () => {
  const source = entrySource('/x/src/index.ts', ['context', 'logging', 'user-v2']);
  assert.match(source, /import \* as context from "alga:extension\/context";/);
  assert.match(source, /import \* as userV2 from "alga:extension\/user-v2";/);
  assert.doesNotMatch(source, /alga:extension\/metrics/);
  assert.match(source, /\{ context, logging, userV2 \}/);
  assert.match(source, /import \{ handler as authorHandler \} from "\/x\/src\/index.ts";/);
});

test('the generated entry hands the product interfaces to the SDK under the Host\'s names', async () => {
  const source = entrySource('/x/src/index.ts', await worldImports(repoWit, 'runner'));
  for (const [name, spec] of [
    ['scheduler', 'scheduler'],
    ['invoicing', 'invoicing'],
    ['clients', 'clients'],
    ['services', 'services'],
    ['uiProxy', 'ui-proxy'],
  ]) {
    assert.match(source, new RegExp(`import \\* as ${name} from "alga:extension/${spec}";`), name);
  }
  assert.match(
    source,
    /\{ context, logging, secrets, http, storage, uiProxy, user, userV2, scheduler, invoicing, clients, services \}/,
  );
  assert.doesNotMatch(source, /metrics/);
});
