/**
 * Child side: the extension UI's end of the bridge.
 *
 * ```js
 * const client = ExtBridge.createExtensionClient(); // parentOrigin from ?parentOrigin=
 * client.onBootstrap(({ session, navigation }) => render(navigation.path));
 * client.ready();
 * const answer = await client.apiproxy("/hello/Ada", { method: "GET" }, { timeoutMs: 5000 });
 * console.log(answer.json());
 * ```
 *
 * Everything is posted to `parentOrigin` only. Host messages are accepted
 * from the parent window at `parentOrigin`, or through the MessagePort this
 * client hands the host with each `ready` (the only way a host can reach a
 * UI sandboxed to an opaque origin without posting to `*`).
 */

import {
  type ApiProxyMessage,
  type ApiProxyPayload,
  type ApiProxyResponsePayload,
  type BootstrapPayload,
  type ChildMessage,
  type HostMessage,
  type NavigateMessage,
  type ReadyMessage,
  type ResizeMessage,
  type ThemeTokens,
  type ApiProxyMethod,
  base64ToBytes,
  bytesToBase64,
  isClientPath,
  isOrigin,
  message,
  parseHostMessage,
  toBytes,
} from "./protocol.js";

/** How long `apiproxy` waits for its answer unless told otherwise. */
export const DEFAULT_API_PROXY_TIMEOUT_MS = 10_000;

/** The host answered an `apiproxy` with `{error}`. */
export class ApiProxyError extends Error {
  override name = "ApiProxyError";
}

/** No `apiproxy_response` arrived in time. */
export class ApiProxyTimeoutError extends Error {
  override name = "ApiProxyTimeoutError";
}

/** The answer to an `apiproxy`. */
export class ApiProxyResponse {
  constructor(readonly body: Uint8Array) {}
  text(): string {
    return new TextDecoder().decode(this.body);
  }
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }
}

interface EventLike {
  data: unknown;
  origin: string;
  source: unknown;
}

interface PortLike {
  postMessage(message: unknown): void;
  close(): void;
  onmessage: ((event: { data: unknown }) => void) | null;
}

interface ChannelLike {
  port1: PortLike;
  port2: unknown;
}

/** The UI's window, as far as the client uses it. */
export interface ChildWindowLike {
  parent: unknown;
  addEventListener(type: "message", listener: (event: EventLike) => void): void;
  removeEventListener(type: "message", listener: (event: EventLike) => void): void;
  location?: { search: string };
  document?: {
    documentElement: {
      getBoundingClientRect(): { height: number };
      style: { setProperty(name: string, value: string): void };
    };
  };
}

interface ParentLike {
  postMessage(message: unknown, targetOrigin: string, transfer?: unknown[]): void;
}

export interface ExtensionClientOptions {
  /** The host page's origin; default: the `parentOrigin` query parameter of the UI's URL. */
  parentOrigin?: string;
  /** Default timeout of `apiproxy`, in milliseconds. */
  timeoutMs?: number;
  /** Set theme tokens named `--*` as CSS custom properties on `<html>` (default true). */
  applyTheme?: boolean;
  /** The UI's window; `window` by default. */
  window?: ChildWindowLike;
  /** Makes the MessageChannel handed to the host; `new MessageChannel()` by default. */
  createChannel?: () => ChannelLike;
}

export interface ApiProxyOptions {
  method?: ApiProxyMethod;
  body?: Uint8Array | string;
}

export interface ExtensionClient {
  /** The origin this client talks to. */
  readonly parentOrigin: string;
  /** False when the page is not inside a frame (opened directly): nothing can be sent. */
  readonly embedded: boolean;
  /** The last `bootstrap` received, if any. */
  readonly bootstrap: BootstrapPayload | null;
  /** Tell the host the UI is listening (again after a reload): it answers with `bootstrap`. */
  ready(): void;
  /**
   * Ask the host for this height in pixels; the host clamps it. Default: the
   * height of `<html>` (its content, not the viewport, so the frame can shrink too).
   */
  resize(height?: number): void;
  /** Tell the host the UI moved to another client route (`/…`). */
  navigate(path: string): void;
  /**
   * Call the extension's own backend route through the host.
   * Rejects with {@link ApiProxyError} or {@link ApiProxyTimeoutError}.
   */
  apiproxy(route: string, request?: ApiProxyOptions, options?: { timeoutMs?: number }): Promise<ApiProxyResponse>;
  /** Called for each `bootstrap` (at once if one already arrived); returns an unsubscribe function. */
  onBootstrap(handler: (payload: BootstrapPayload) => void): () => void;
  /** Called for each set of theme tokens (from `bootstrap` and `theme_tokens`); returns an unsubscribe function. */
  onThemeTokens(handler: (tokens: ThemeTokens) => void): () => void;
  /** Stop listening and reject pending `apiproxy` calls. */
  destroy(): void;
}

/** The query parameters of the UI's URL that `buildExtUiSrc` sets. */
export interface LaunchParams {
  path: string;
  extensionId: string | null;
  tenant: string | null;
  parentOrigin: string | null;
}

/** Read `path`, `extensionId`, `tenant` and `parentOrigin` from the UI's URL. */
export function launchParams(search: string = currentSearch()): LaunchParams {
  const params = new URLSearchParams(search);
  const path = params.get("path");
  return {
    path: path !== null && isClientPath(path) ? path : "/",
    extensionId: params.get("extensionId"),
    tenant: params.get("tenant"),
    parentOrigin: params.get("parentOrigin"),
  };
}

function currentSearch(): string {
  const loc = (globalThis as { location?: { search: string } }).location;
  return loc ? loc.search : "";
}

interface Pending {
  resolve(response: ApiProxyResponse): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Create the UI's client. It listens at once; call `ready()` when the UI can
 * take its `bootstrap`.
 *
 * @throws TypeError when no valid parent origin is given or in the URL.
 */
export function createExtensionClient(options: ExtensionClientOptions = {}): ExtensionClient {
  const win = options.window ?? (globalThis as unknown as { window: ChildWindowLike }).window;
  const parentOrigin = options.parentOrigin ?? launchParams(win.location?.search ?? "").parentOrigin;
  if (!isOrigin(parentOrigin)) {
    throw new TypeError(
      `createExtensionClient: parentOrigin must be the host's http(s) origin (got ${JSON.stringify(parentOrigin)})`,
    );
  }
  const defaultTimeout = options.timeoutMs ?? DEFAULT_API_PROXY_TIMEOUT_MS;
  const applyTheme = options.applyTheme ?? true;
  const createChannel =
    options.createChannel ?? (() => new (globalThis as unknown as { MessageChannel: new () => ChannelLike }).MessageChannel());
  const parent = win.parent as ParentLike;
  const embedded = win.parent !== null && win.parent !== undefined && (win.parent as unknown) !== win;
  const pending = new Map<string, Pending>();
  const bootstrapHandlers = new Set<(payload: BootstrapPayload) => void>();
  const themeHandlers = new Set<(tokens: ThemeTokens) => void>();
  const idPrefix = randomId();
  let nextId = 1;
  let port: PortLike | null = null;
  let lastBootstrap: BootstrapPayload | null = null;
  let destroyed = false;

  const post = (msg: ChildMessage, transfer?: unknown[]) => {
    if (!embedded || destroyed) return false;
    if (transfer) {
      parent.postMessage(msg, parentOrigin, transfer);
    } else {
      parent.postMessage(msg, parentOrigin);
    }
    return true;
  };

  const setTheme = (tokens: ThemeTokens) => {
    const root = win.document?.documentElement;
    if (applyTheme && root) {
      for (const [name, value] of Object.entries(tokens)) {
        if (name.startsWith("--")) root.style.setProperty(name, value);
      }
    }
    for (const handler of themeHandlers) handler(tokens);
  };

  const settle = (requestId: string, payload: ApiProxyResponsePayload) => {
    const waiter = pending.get(requestId);
    if (!waiter) return; // unknown, late or already answered
    pending.delete(requestId);
    clearTimeout(waiter.timer);
    if ("error" in payload) {
      waiter.reject(new ApiProxyError(payload.error));
    } else {
      waiter.resolve(new ApiProxyResponse(payload.body === undefined ? new Uint8Array() : base64ToBytes(payload.body)));
    }
  };

  const dispatch = (msg: HostMessage) => {
    switch (msg.type) {
      case "bootstrap":
        lastBootstrap = msg.payload;
        setTheme(msg.payload.theme_tokens);
        for (const handler of bootstrapHandlers) handler(msg.payload);
        break;
      case "theme_tokens":
        setTheme(msg.payload);
        break;
      case "apiproxy_response":
        settle(msg.request_id, msg.payload);
        break;
    }
  };

  const listener = (event: EventLike) => {
    // The parent window at the parent origin, nobody else (a sibling frame
    // or a popup can post here too).
    if (destroyed || !embedded || event.source !== win.parent || event.origin !== parentOrigin) return;
    const msg = parseHostMessage(event.data);
    if (msg) dispatch(msg);
  };
  win.addEventListener("message", listener);

  const client: ExtensionClient = {
    parentOrigin,
    embedded,
    get bootstrap() {
      return lastBootstrap;
    },
    ready() {
      if (!embedded || destroyed) return;
      if (port) port.close();
      const channel = createChannel();
      const own = channel.port1;
      // Only this document holds port1: what arrives on it came from the
      // host that received port2 with our ready.
      own.onmessage = (event) => {
        if (destroyed || port !== own) return;
        const msg = parseHostMessage(event.data);
        if (msg) dispatch(msg);
      };
      port = own;
      post(message<ReadyMessage>("ready", {}), [channel.port2]);
    },
    resize(height?: number) {
      const value = height ?? win.document?.documentElement.getBoundingClientRect().height;
      if (typeof value !== "number" || !Number.isFinite(value)) return;
      post(message<ResizeMessage>("resize", { height: Math.ceil(value) }));
    },
    navigate(path: string) {
      if (!isClientPath(path)) {
        throw new TypeError(`navigate: path must start with a single "/" (got ${JSON.stringify(path)})`);
      }
      post(message<NavigateMessage>("navigate", { path }));
    },
    apiproxy(route, request = {}, apiOptions = {}) {
      return new Promise<ApiProxyResponse>((resolve, reject) => {
        if (destroyed) {
          reject(new Error("apiproxy: the client was destroyed"));
          return;
        }
        if (!embedded) {
          reject(new Error("apiproxy: the UI is not embedded in a host page"));
          return;
        }
        if (typeof route !== "string" || route.length === 0) {
          reject(new TypeError("apiproxy: route must be a non-empty string"));
          return;
        }
        const requestId = `${idPrefix}-${nextId++}`;
        const payload: ApiProxyPayload = { route };
        if (request.body !== undefined) payload.body = bytesToBase64(toBytes(request.body));
        if (request.method !== undefined) payload.method = request.method;
        const timeoutMs = apiOptions.timeoutMs ?? defaultTimeout;
        const timer = setTimeout(() => {
          if (pending.delete(requestId)) {
            reject(new ApiProxyTimeoutError(`apiproxy ${route}: no answer within ${timeoutMs} ms`));
          }
        }, timeoutMs);
        pending.set(requestId, { resolve, reject, timer });
        post(message<ApiProxyMessage>("apiproxy", payload, requestId));
      });
    },
    onBootstrap(handler) {
      bootstrapHandlers.add(handler);
      if (lastBootstrap) handler(lastBootstrap);
      return () => void bootstrapHandlers.delete(handler);
    },
    onThemeTokens(handler) {
      themeHandlers.add(handler);
      return () => void themeHandlers.delete(handler);
    },
    destroy() {
      if (destroyed) return;
      destroyed = true;
      win.removeEventListener("message", listener);
      if (port) port.close();
      port = null;
      for (const [, waiter] of pending) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error("apiproxy: the client was destroyed"));
      }
      pending.clear();
    },
  };
  return client;
}

/** 64 random bits, hex: request ids a sibling frame cannot guess. */
function randomId(): string {
  const bytes = new Uint8Array(8);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
