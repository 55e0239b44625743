// The library behind `ext-build`: bundle a TypeScript handler with esbuild,
// componentize it with componentize-js (the engine `jco componentize` uses)
// against the alga:extension world, and check the component's imports
// against what ext-runner links. Plain JavaScript so it runs without a
// compile step; covered by test/build.test.ts.

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SDK_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Features componentize-js can build into the engine (`--disable all` drops them all). */
export const FEATURES = ['stdio', 'random', 'clocks', 'http', 'fetch-event'];

/**
 * Disabled by default: `http`/`fetch-event` import wasi:http, which
 * ext-runner refuses (outbound HTTP goes through `alga:extension/http`).
 * stdio (console.*), random (Math.random, crypto.getRandomValues) and
 * clocks (Date.now, performance.now) only import WASI interfaces the runner
 * provides.
 */
export const DEFAULT_DISABLED = ['http', 'fetch-event'];

/**
 * The WASI interfaces ext-runner links (any 0.2.x version); the same list as
 * `ALLOWED_WASI_INTERFACES` in crates/runner/src/host/mod.rs. Anything else
 * (wasi:http, wasi:sockets, other packages) is refused at load with
 * `unsupported_import`.
 */
export const ALLOWED_WASI_INTERFACES = [
  'wasi:io/error',
  'wasi:io/poll',
  'wasi:io/streams',
  'wasi:clocks/wall-clock',
  'wasi:clocks/monotonic-clock',
  'wasi:random/random',
  'wasi:random/insecure',
  'wasi:random/insecure-seed',
  'wasi:filesystem/types',
  'wasi:filesystem/preopens',
  'wasi:cli/environment',
  'wasi:cli/exit',
  'wasi:cli/stdin',
  'wasi:cli/stdout',
  'wasi:cli/stderr',
  'wasi:cli/terminal-input',
  'wasi:cli/terminal-output',
  'wasi:cli/terminal-stdin',
  'wasi:cli/terminal-stdout',
  'wasi:cli/terminal-stderr',
];

/** The interfaces of the `alga:extension` world the generated entry hands to the SDK. */
const HOST_INTERFACES = {
  context: 'alga:extension/context',
  logging: 'alga:extension/logging',
  secrets: 'alga:extension/secrets',
  http: 'alga:extension/http',
  storage: 'alga:extension/storage',
  uiProxy: 'alga:extension/ui-proxy',
  user: 'alga:extension/user',
  userV2: 'alga:extension/user-v2',
  scheduler: 'alga:extension/scheduler',
  invoicing: 'alga:extension/invoicing',
  clients: 'alga:extension/clients',
  services: 'alga:extension/services',
  metrics: 'alga:extension/metrics',
};

/** An error whose message is the whole story for the author (no stack needed). */
export class BuildError extends Error {}

/** The WIT directory to build against: `--wit`, else the SDK's own copy, else the repository's `wit/`. */
export function defaultWitDir() {
  for (const candidate of [join(SDK_ROOT, 'wit'), resolve(SDK_ROOT, '../../wit')]) {
    if (existsSync(join(candidate, 'alga-extension.wit'))) return candidate;
  }
  throw new BuildError(`no alga-extension.wit next to the SDK (${SDK_ROOT}): pass --wit <dir>`);
}

/** The interfaces `world` of the WIT in `witDir` imports (`context`, `logging`, ...), `include`s followed. */
export async function worldImports(witDir, world) {
  const files = (await readdir(witDir, { recursive: true })).filter((f) => f.endsWith('.wit')).sort();
  const text = (await Promise.all(files.map((f) => readFile(join(witDir, f), 'utf8')))).join('\n').replace(/\/\/.*$/gm, '');
  const imports = (name, seen) => {
    if (seen.includes(name)) throw new BuildError(`world ${name} includes itself`);
    const start = text.search(new RegExp(`\\bworld\\s+${name}\\s*\\{`));
    if (start < 0) throw new BuildError(`no world ${JSON.stringify(name)} in the WIT of ${witDir}`);
    const body = text.slice(start, text.indexOf('\n}', start));
    const own = [...body.matchAll(/^\s*import\s+([a-z0-9-]+)\s*;/gm)].map((m) => m[1]);
    const included = [...body.matchAll(/^\s*include\s+([a-z0-9-]+)\s*;/gm)].flatMap((m) => imports(m[1], [...seen, name]));
    return [...included, ...own];
  };
  return imports(world, []);
}

/**
 * The source of the entry module esbuild bundles: the host interfaces the
 * world imports handed to the SDK, and the author's `handler` re-exported.
 */
export function entrySource(entryPath, interfaces = Object.values(HOST_INTERFACES).map((s) => s.split('/')[1])) {
  const used = Object.entries(HOST_INTERFACES).filter(([, spec]) => interfaces.includes(spec.split('/')[1]));
  const imports = used.map(([name, spec]) => `import * as ${name} from ${JSON.stringify(spec)};`).join('\n');
  return `${imports}
import { handler as authorHandler } from ${JSON.stringify(entryPath)};
// The SDK finds the host here (see @ext-runner/sdk host.ts); nothing is
// called before the first request.
globalThis[Symbol.for('@ext-runner/sdk/host')] = { ${used.map(([name]) => name).join(', ')} };
if (typeof authorHandler !== 'function') {
  throw new TypeError('the entry module must export a function named handler (use defineHandler)');
}
export function handler(request) {
  return authorHandler(request);
}
`;
}

/** Bundles `entryPath` and its imports into one ESM file's text (host imports left external). */
export async function bundle(entryPath, interfaces) {
  const esbuild = await import('esbuild');
  let result;
  try {
    result = await esbuild.build({
      stdin: { contents: entrySource(entryPath, interfaces), resolveDir: dirname(entryPath), sourcefile: 'ext-build-entry.js', loader: 'js' },
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'neutral',
      target: 'es2022',
      mainFields: ['module', 'main'],
      external: ['alga:*', 'wasi:*'],
      keepNames: true,
      legalComments: 'none',
      charset: 'utf8',
      logLevel: 'silent',
    });
  } catch (e) {
    const messages = e.errors ? await esbuild.formatMessages(e.errors, { kind: 'error' }) : [String(e)];
    throw new BuildError(`bundling ${entryPath} failed:\n${messages.join('\n')}`);
  }
  return result.outputFiles[0].text;
}

/** `all` expands to every feature; unknown names are refused. */
export function disabledFeatures(names) {
  const out = new Set();
  for (const name of names) {
    if (name === 'all') FEATURES.forEach((f) => out.add(f));
    else if (FEATURES.includes(name)) out.add(name);
    else throw new BuildError(`unknown feature ${JSON.stringify(name)} for --disable (known: ${FEATURES.join(', ')}, all)`);
  }
  return [...out].sort();
}

/** Interface imports of a component (`alga:extension/context`, `wasi:io/poll@0.2.3`, ...), from its WIT. */
export async function componentImports(bytes) {
  const { componentWit } = await import('@bytecodealliance/jco');
  const wit = await componentWit(bytes);
  const world = wit.slice(wit.indexOf('world root {'));
  return [...world.matchAll(/^\s*import ([a-z0-9-]+:[a-z0-9-]+\/[a-z0-9-]+(?:@[0-9A-Za-z.+-]+)?);$/gm)].map((m) => m[1]);
}

/** The imports ext-runner would refuse with `unsupported_import`. */
export function refusedImports(imports) {
  return imports.filter((name) => {
    const [unversioned, version] = name.split('@');
    if (unversioned.startsWith('alga:extension/')) return version !== undefined;
    return !(ALLOWED_WASI_INTERFACES.includes(unversioned) && version !== undefined && version.startsWith('0.2.'));
  });
}

async function sha256File(path) {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

async function witDigest(witDir) {
  const hash = createHash('sha256');
  const files = (await readdir(witDir, { recursive: true })).filter((f) => f.endsWith('.wit')).sort();
  for (const file of files) {
    hash.update(file).update('\0').update(await readFile(join(witDir, file))).update('\0');
  }
  return hash.digest('hex');
}

function packageVersion(name) {
  return readFile(join(SDK_ROOT, 'node_modules', name, 'package.json'), 'utf8')
    .then((text) => JSON.parse(text).version)
    .catch(() => 'unknown');
}

/** Where bundles and up-to-date stamps live: `node_modules/.cache/ext-build` of the entry's project. */
export function defaultCacheDir(entryPath) {
  let dir = dirname(entryPath);
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'node_modules', '.cache', 'ext-build');
    const parent = dirname(dir);
    if (parent === dir) return join(dirname(entryPath), '.ext-build');
    dir = parent;
  }
}

/**
 * Builds `entry` into the component `out`.
 *
 * Skips componentization (tens of seconds) when the bundled JavaScript, the
 * WIT, the options and the tool versions are those of the last build and
 * `out` is unchanged since; `force` rebuilds anyway.
 *
 * @returns {{out, skipped, bytes, imports, seconds}}
 */
export async function build({ entry, out, witDir = defaultWitDir(), world = 'runner', disable = DEFAULT_DISABLED, force = false, cacheDir, log = () => {} }) {
  const started = performance.now();
  const entryPath = resolve(entry);
  const outPath = resolve(out);
  if (!existsSync(entryPath)) throw new BuildError(`entry ${entryPath} does not exist`);
  const disabled = disabledFeatures(disable);
  const cache = cacheDir ?? defaultCacheDir(entryPath);
  await mkdir(cache, { recursive: true });

  const js = await bundle(entryPath, await worldImports(witDir, world));
  const key = createHash('sha256')
    .update(
      JSON.stringify({
        js: createHash('sha256').update(js).digest('hex'),
        wit: await witDigest(witDir),
        world,
        disabled,
        componentizeJs: await packageVersion('@bytecodealliance/componentize-js'),
        jco: await packageVersion('@bytecodealliance/jco'),
      }),
    )
    .digest('hex');
  const stem = `${basename(outPath, '.wasm')}-${createHash('sha256').update(outPath).digest('hex').slice(0, 12)}`;
  const stampPath = join(cache, `${stem}.stamp.json`);
  const stamp = await readFile(stampPath, 'utf8').then(JSON.parse).catch(() => undefined);
  if (!force && stamp?.key === key && existsSync(outPath) && stamp.outSha256 === (await sha256File(outPath))) {
    return { out: outPath, skipped: true, bytes: (await stat(outPath)).size, imports: stamp.imports, seconds: (performance.now() - started) / 1000 };
  }

  const jsPath = join(cache, `${stem}.js`);
  await writeFile(jsPath, js);
  log(`componentizing ${relative(process.cwd(), entryPath)} (${js.length} bytes of JavaScript) against ${world} in ${relative(process.cwd(), witDir) || '.'}`);
  const { componentize } = await import('@bytecodealliance/componentize-js');
  let component;
  try {
    ({ component } = await componentize({ sourcePath: jsPath, witPath: witDir, worldName: world, disableFeatures: disabled }));
  } catch (e) {
    throw new BuildError(`componentize failed for ${entryPath} (bundle: ${jsPath}):\n${e?.message ?? e}`);
  }
  const imports = await componentImports(component);
  const refused = refusedImports(imports);
  if (refused.length > 0) {
    throw new BuildError(
      `the component imports what ext-runner refuses: ${refused.join(', ')}\n` +
        `(disable the engine features that import them, e.g. --disable http fetch-event)`,
    );
  }
  await mkdir(dirname(outPath), { recursive: true });
  const tmp = `${outPath}.tmp-${process.pid}`;
  await writeFile(tmp, component);
  await rename(tmp, outPath);
  const outSha256 = createHash('sha256').update(component).digest('hex');
  await writeFile(stampPath, JSON.stringify({ key, outSha256, imports }, null, 2));
  return { out: outPath, skipped: false, bytes: component.length, imports, seconds: (performance.now() - started) / 1000 };
}

/** Checks an existing component's imports; returns them and the refused ones. */
export async function check(path) {
  const imports = await componentImports(await readFile(path));
  return { imports, refused: refusedImports(imports) };
}
