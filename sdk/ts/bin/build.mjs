#!/usr/bin/env node
// ext-build: compile a TypeScript (or JavaScript) extension handler to a
// WebAssembly component for ext-runner.
//
//   ext-build src/index.ts --out dist/main.wasm
//   ext-build --check dist/main.wasm
//
// See `ext-build --help` and sdk/ts/README.md.

import { parseArgs } from 'node:util';
import { relative } from 'node:path';
import { BuildError, DEFAULT_DISABLED, FEATURES, build, check } from '../tools/ext-build.mjs';

const HELP = `usage: ext-build <entry.ts> [--out dist/main.wasm] [options]
       ext-build --check <component.wasm>

Bundles <entry.ts> (which must export \`handler\`, e.g. from defineHandler)
with esbuild, componentizes it with componentize-js against the
alga:extension world (world \`runner\`), and checks that ext-runner accepts
every import of the result. Skips the slow step when nothing changed.

options:
  -o, --out <file>        component to write (default dist/main.wasm)
      --wit <dir>         WIT directory (default: the SDK's alga-extension.wit)
      --world <name>      world to build (default runner)
  -d, --disable <feature> engine feature to leave out, repeatable:
                          ${FEATURES.join(', ')}, all (default: ${DEFAULT_DISABLED.join(', ')})
      --force             rebuild even when up to date
      --check             only list and check the imports of a built component
  -q, --quiet             print nothing but errors
  -h, --help              this text`;

function fail(message) {
  process.stderr.write(`ext-build: ${message}\n`);
  process.exit(1);
}

let args;
try {
  args = parseArgs({
    allowPositionals: true,
    options: {
      out: { type: 'string', short: 'o', default: 'dist/main.wasm' },
      wit: { type: 'string' },
      world: { type: 'string', default: 'runner' },
      disable: { type: 'string', short: 'd', multiple: true },
      force: { type: 'boolean', default: false },
      check: { type: 'boolean', default: false },
      quiet: { type: 'boolean', short: 'q', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
} catch (e) {
  fail(`${e.message}\n\n${HELP}`);
}
const { values, positionals } = args;
if (values.help) {
  process.stdout.write(`${HELP}\n`);
  process.exit(0);
}
if (positionals.length !== 1) fail(`expected one ${values.check ? 'component' : 'entry'} file\n\n${HELP}`);
const say = values.quiet ? () => {} : (line) => process.stderr.write(`${line}\n`);

try {
  if (values.check) {
    const { imports, refused } = await check(positionals[0]);
    process.stdout.write(`${imports.join('\n')}\n`);
    if (refused.length > 0) fail(`ext-runner refuses: ${refused.join(', ')}`);
    say(`ok: ext-runner links every import of ${positionals[0]}`);
  } else {
    const result = await build({
      entry: positionals[0],
      out: values.out,
      world: values.world,
      force: values.force,
      ...(values.wit === undefined ? {} : { witDir: values.wit }),
      ...(values.disable === undefined ? {} : { disable: values.disable }),
      log: say,
    });
    const mb = (result.bytes / 1e6).toFixed(1);
    const what = result.skipped ? 'up to date' : `built in ${result.seconds.toFixed(1)} s`;
    say(`${relative(process.cwd(), result.out)}: ${what} (${mb} MB, ${result.imports.length} imports, all linked by ext-runner)`);
  }
} catch (e) {
  if (e instanceof BuildError) fail(e.message);
  throw e;
}
