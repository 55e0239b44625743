/**
 * Where the SDK finds the host's imports.
 *
 * Inside a component, the entry module that `ext-build` generates imports
 * every `alga:extension` interface and installs them here before the first
 * request. In unit tests, `@ext-runner/sdk/testing` installs a mock. The
 * slot lives on `globalThis` under a registered symbol, so two copies of the
 * SDK in one bundle still share it.
 *
 * @module
 */

import type {
  ClientsImports,
  ContextImports,
  HttpImports,
  InvoicingImports,
  LoggingImports,
  MetricsImports,
  SchedulerImports,
  SecretsImports,
  ServicesImports,
  StorageImports,
  UiProxyImports,
  UserImports,
  UserV2Imports,
} from './wit.js';

/** The `alga:extension` imports, one property per interface. */
export interface Host {
  context: ContextImports;
  logging: LoggingImports;
  secrets: SecretsImports;
  http: HttpImports;
  storage: StorageImports;
  uiProxy: UiProxyImports;
  user: UserImports;
  userV2: UserV2Imports;
  /*
   * The product interfaces. World `runner` imports them, but a component
   * built with `--wit` against an older copy of the WIT does not: absent,
   * their wrappers answer the typed denial, as the runner does without the
   * grant. Optional also so that a `Host` written before them still is one.
   */
  scheduler?: SchedulerImports | undefined;
  invoicing?: InvoicingImports | undefined;
  clients?: ClientsImports | undefined;
  services?: ServicesImports | undefined;
  /** Absent when the component was built against a world without `metrics` (the upstream one). */
  metrics?: MetricsImports | undefined;
}

/** The `globalThis` key holding the installed [[Host]]. */
export const HOST_KEY: unique symbol = Symbol.for('@ext-runner/sdk/host') as never;

type HostSlot = { [HOST_KEY]?: Host | undefined };

/** Installs `host` (the real imports, or a mock); returns the one it replaced. */
export function installHost(host: Host | undefined): Host | undefined {
  const slot = globalThis as HostSlot;
  const previous = slot[HOST_KEY];
  slot[HOST_KEY] = host;
  return previous;
}

/** The installed host, or `undefined` when none is. */
export function installedHost(): Host | undefined {
  return (globalThis as HostSlot)[HOST_KEY];
}

/**
 * The installed host.
 *
 * @throws Error when none is installed: the code runs outside a component
 * built by `ext-build` and outside `@ext-runner/sdk/testing`.
 */
export function host(): Host {
  const current = (globalThis as HostSlot)[HOST_KEY];
  if (current === undefined) {
    throw new Error(
      'no ext-runner host: capabilities work inside a component built by ext-build, ' +
        "or in tests after mockHost() from '@ext-runner/sdk/testing'",
    );
  }
  return current;
}

/**
 * The WIT error case carried by a value an import threw (jco throws an
 * `Error` whose `payload` is the `err` value), or `undefined` when the value
 * is not such an error or its payload is not one of `codes`.
 */
export function thrownCode<C extends string>(thrown: unknown, codes: readonly C[]): C | undefined {
  if (typeof thrown !== 'object' || thrown === null || !('payload' in thrown)) return undefined;
  const payload = (thrown as { payload: unknown }).payload;
  return typeof payload === 'string' && (codes as readonly string[]).includes(payload) ? (payload as C) : undefined;
}
