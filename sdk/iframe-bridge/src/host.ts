/**
 * Host side: build the iframe URL of an extension UI and run the bridge to it.
 *
 * ```ts
 * const iframe = document.createElement("iframe");
 * const bridge = bootstrapIframe(iframe, {
 *   src: buildExtUiSrc({ publicBase, extensionId, contentHash, clientPath: "/", parentOrigin: location.origin }),
 *   allowedOrigin: new URL(publicBase).origin,
 *   session: { token, expiresAt },
 *   theme: { "--accent": "#2f6fde" },
 *   onApiProxy: ({ route, method, body }) => callGateway(route, method, body),
 * });
 * container.append(iframe);
 * ```
 *
 * Why a MessagePort: the UI runs sandboxed without `allow-same-origin`, so its
 * origin is opaque and no `targetOrigin` but `*` could reach it through
 * `window.postMessage`. The child therefore hands the host a `MessagePort` with
 * its `ready` (posted to the host's origin only, checked here by source window
 * and origin), and the host answers through that port, which only the document
 * that created it can read. When the sandbox grants `allow-same-origin`, the
 * child has a real origin and a child without a port is answered with
 * `postMessage(message, allowedOrigin)`. Nothing is ever posted to `*`.
 */

import {
  type ApiProxyMessage,
  type ApiProxyMethod,
  type ApiProxyResponseMessage,
  type BootstrapMessage,
  type HostMessage,
  type ThemeTokens,
  type ThemeTokensMessage,
  base64ToBytes,
  bytesToBase64,
  clampHeight,
  isClientPath,
  isOrigin,
  message,
  parseChildMessage,
  toBytes,
} from "./protocol.js";

/** The only sandbox tokens granted unless the caller asks for more. */
export const DEFAULT_SANDBOX = "allow-scripts";

/** `apiproxy` requests one iframe may have in flight; more are answered with an error. */
export const MAX_API_PROXY_IN_FLIGHT = 32;

const CONTENT_HASH = /^sha256:[0-9a-fA-F]{64}$/;

export interface ExtUiSrcOptions {
  /**
   * `RUNNER_PUBLIC_BASE`: where the runner serves `/ext-ui/`, an absolute
   * http(s) URL (`https://ext.example.com`, `https://cdn.example.com/runner`)
   * or a path on the host's own origin (`/runner`, or `""`).
   */
  publicBase: string;
  extensionId: string;
  /** `sha256:<hex64>`. */
  contentHash: string;
  /** The UI's client route, `/` by default. */
  clientPath?: string;
  tenantId?: string;
  /** The host page's origin; the child posts to it and accepts messages from it only. */
  parentOrigin?: string;
}

/**
 * The iframe URL of an extension UI (compat §5):
 * `{publicBase}/ext-ui/{extensionId}/{sha256:<hex64>}/index.html?path=…&extensionId=…[&tenant=…][&parentOrigin=…]`,
 * with the id and hash URL-encoded.
 *
 * @throws TypeError naming the option at fault: a hash not `sha256:<hex64>`,
 * an empty extension id, a client path that is not `/…`, a base or parent
 * origin that is not an http(s) URL or origin.
 */
export function buildExtUiSrc(options: ExtUiSrcOptions): string {
  const { publicBase, extensionId, contentHash, clientPath = "/", tenantId, parentOrigin } = options;
  if (typeof extensionId !== "string" || extensionId.length === 0) {
    throw new TypeError("buildExtUiSrc: extensionId must be a non-empty string");
  }
  const hash = normalizeContentHash(contentHash);
  if (!isClientPath(clientPath)) {
    throw new TypeError(`buildExtUiSrc: clientPath must start with a single "/" (got ${JSON.stringify(clientPath)})`);
  }
  if (tenantId !== undefined && (typeof tenantId !== "string" || tenantId.length === 0)) {
    throw new TypeError("buildExtUiSrc: tenantId, when given, must be a non-empty string");
  }
  if (parentOrigin !== undefined && !isOrigin(parentOrigin)) {
    throw new TypeError(
      `buildExtUiSrc: parentOrigin must be an http(s) origin such as https://app.example.com (got ${JSON.stringify(parentOrigin)})`,
    );
  }
  const query = new URLSearchParams({ path: clientPath, extensionId });
  if (tenantId !== undefined) query.set("tenant", tenantId);
  if (parentOrigin !== undefined) query.set("parentOrigin", parentOrigin);
  return (
    `${normalizeBase(publicBase)}/ext-ui/${encodeURIComponent(extensionId)}/${encodeURIComponent(hash)}` +
    `/index.html?${query.toString()}`
  );
}

/**
 * `sha256:<hex64>` in lower case.
 *
 * @throws TypeError for any other form (bare hex, another algorithm, wrong length).
 */
export function normalizeContentHash(contentHash: string): string {
  if (typeof contentHash !== "string" || !CONTENT_HASH.test(contentHash)) {
    throw new TypeError(
      `contentHash must be "sha256:" followed by 64 hex digits (got ${JSON.stringify(contentHash)})`,
    );
  }
  return contentHash.toLowerCase();
}

function normalizeBase(publicBase: string): string {
  if (typeof publicBase !== "string") {
    throw new TypeError("buildExtUiSrc: publicBase must be a string");
  }
  const base = publicBase.replace(/\/+$/, "");
  if (base === "" || (base.startsWith("/") && !base.startsWith("//"))) {
    return base;
  }
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new TypeError(`buildExtUiSrc: publicBase must be an http(s) URL or a path (got ${JSON.stringify(publicBase)})`);
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.search || url.hash || url.username || url.password) {
    throw new TypeError(
      `buildExtUiSrc: publicBase must be a plain http(s) URL without query, fragment or credentials (got ${JSON.stringify(publicBase)})`,
    );
  }
  return base;
}

/** One `apiproxy` call from the UI, for the host to forward to its gateway. */
export interface ApiProxyRequest {
  /** `/path[?query]` as the UI asked for it (starts with `/`, no dot segments). */
  route: string;
  method: ApiProxyMethod;
  body?: Uint8Array;
  /** The child's correlation id (useful in logs). */
  requestId: string;
}

/** The session handed to the UI in `bootstrap`. */
export interface Session {
  token: string;
  /** ISO 8601 time. */
  expiresAt: string;
}

/** The parts of a MessageEvent the bridge reads. */
export interface MessageEventLike {
  data: unknown;
  origin: string;
  source: unknown;
  ports?: ReadonlyArray<MessagePortLike>;
}

export interface MessagePortLike {
  postMessage(message: unknown): void;
  close(): void;
}

/** The host page's window, as far as the bridge uses it. */
export interface HostWindowLike {
  addEventListener(type: "message", listener: (event: MessageEventLike) => void): void;
  removeEventListener(type: "message", listener: (event: MessageEventLike) => void): void;
  location: { origin: string; href: string };
}

/** The iframe element, as far as the bridge uses it. */
export interface IframeLike {
  readonly contentWindow: unknown;
  getAttribute(name: string): string | null;
  setAttribute(name: string, value: string): void;
  style: { height: string };
}

export interface BootstrapOptions {
  /** Origin of the runner serving the UI; the iframe's `src` must be on it. */
  allowedOrigin: string;
  session: Session;
  /** CSS custom properties for the UI (`--name` → value). */
  theme?: ThemeTokens;
  /** Sets the iframe's `src` after the sandbox, so the first load is already sandboxed. */
  src?: string;
  /** `navigation.path` in `bootstrap`; default: the `path` query parameter of the src, else `/`. */
  path?: string;
  /** Answers the UI's `apiproxy`: resolve with the body, throw (or reject) for an error. */
  onApiProxy: (request: ApiProxyRequest) => Promise<Uint8Array | string> | Uint8Array | string;
  /** After a `resize` was applied to the iframe (the clamped height). */
  onResize?: (height: number) => void;
  /** The UI moved to another client route. */
  onNavigate?: (path: string) => void;
  /** After a `ready` was answered with `bootstrap`. */
  onReady?: () => void;
  /** Problems worth a log line (a child that cannot be answered, a failed post). */
  onError?: (error: Error) => void;
  /** Sandbox tokens, `allow-scripts` by default. */
  sandbox?: string;
  /** The host window to listen on; `window` by default. */
  window?: HostWindowLike;
}

export interface IframeBridge {
  /** Send new theme tokens (and use them in later `bootstrap`s). */
  setTheme(theme: ThemeTokens): void;
  /** Use a new session in later `bootstrap`s (a reload of the UI). */
  setSession(session: Session): void;
  /** Stop listening; pending `apiproxy` answers are dropped. */
  destroy(): void;
}

/**
 * Sandbox an iframe and run the host side of the bridge: wait for `ready`
 * from that iframe's window and expected origin only, answer with
 * `bootstrap` and `theme_tokens`, apply `resize` (clamped to 100..4000 px),
 * report `navigate`, and answer `apiproxy` through `onApiProxy`.
 *
 * Call it before the iframe loads (or pass `src`): a sandbox set on a loaded
 * frame only applies from its next navigation.
 *
 * @throws TypeError for an `allowedOrigin` that is not an origin, a `src` on
 * another origin, or `allow-same-origin` for a UI on the host's own origin
 * (scripts there could remove their own sandbox).
 */
export function bootstrapIframe(iframe: IframeLike, options: BootstrapOptions): IframeBridge {
  const win = options.window ?? (globalThis as unknown as { window: HostWindowLike }).window;
  const { allowedOrigin, onApiProxy, onResize, onNavigate, onReady, onError } = options;
  if (!isOrigin(allowedOrigin)) {
    throw new TypeError(`bootstrapIframe: allowedOrigin must be an http(s) origin (got ${JSON.stringify(allowedOrigin)})`);
  }
  if (typeof onApiProxy !== "function") {
    throw new TypeError("bootstrapIframe: onApiProxy is required");
  }
  const sandbox = (options.sandbox ?? DEFAULT_SANDBOX).trim();
  const tokens = sandbox.split(/\s+/);
  const sameOrigin = tokens.includes("allow-same-origin");
  if (sameOrigin && allowedOrigin === win.location.origin && tokens.includes("allow-scripts")) {
    throw new TypeError(
      "bootstrapIframe: allow-scripts with allow-same-origin on the host's own origin lets the UI remove its sandbox",
    );
  }
  const src = options.src ?? iframe.getAttribute("src") ?? undefined;
  let srcUrl: URL | undefined;
  if (src !== undefined) {
    srcUrl = new URL(src, win.location.href);
    if (srcUrl.origin !== allowedOrigin) {
      throw new TypeError(`bootstrapIframe: the iframe's src is on ${srcUrl.origin}, not on allowedOrigin ${allowedOrigin}`);
    }
  }
  // Without allow-same-origin the UI's origin is opaque: its messages say "null".
  const childOrigin = sameOrigin ? allowedOrigin : "null";
  let theme: ThemeTokens = { ...(options.theme ?? {}) };
  let session = options.session;
  const path = options.path ?? clientPathOf(srcUrl) ?? "/";
  let port: MessagePortLike | null = null;
  let inFlight = 0;
  let destroyed = false;

  iframe.setAttribute("sandbox", sandbox);
  if (options.src !== undefined) {
    iframe.setAttribute("src", options.src);
  }

  const report = (error: Error) => {
    if (onError) onError(error);
  };

  const send = (msg: HostMessage) => {
    if (destroyed) return;
    if (port) {
      port.postMessage(msg);
      return;
    }
    const target = iframe.contentWindow as { postMessage(message: unknown, targetOrigin: string): void } | null;
    if (sameOrigin && target) {
      target.postMessage(msg, allowedOrigin);
      return;
    }
    report(new Error(`bridge: cannot send ${msg.type}: the sandboxed UI gave no MessagePort in its ready`));
  };

  const sendTheme = () => send(message<ThemeTokensMessage>("theme_tokens", { ...theme }));

  const answer = async (msg: ApiProxyMessage) => {
    const requestId = msg.request_id;
    const reply = (payload: ApiProxyResponseMessage["payload"]) =>
      send(message<ApiProxyResponseMessage>("apiproxy_response", payload, requestId));
    const route = msg.payload.route.startsWith("/") ? msg.payload.route : `/${msg.payload.route}`;
    if (!isClientPath(route) || hasDotSegment(route)) {
      reply({ error: "invalid route" });
      return;
    }
    if (inFlight >= MAX_API_PROXY_IN_FLIGHT) {
      reply({ error: "too many requests in flight" });
      return;
    }
    inFlight++;
    try {
      const body = msg.payload.body === undefined ? undefined : base64ToBytes(msg.payload.body);
      const request: ApiProxyRequest = {
        route,
        method: msg.payload.method ?? (body === undefined ? "GET" : "POST"),
        requestId,
      };
      if (body !== undefined) request.body = body;
      const out = await onApiProxy(request);
      reply({ body: bytesToBase64(toBytes(out)) });
    } catch (error) {
      reply({ error: error instanceof Error ? error.message : String(error) });
    } finally {
      inFlight--;
    }
  };

  const listener = (event: MessageEventLike) => {
    // Only this iframe's window, only from the origin its sandbox gives it.
    if (destroyed || event.source === null || event.source !== iframe.contentWindow || event.origin !== childOrigin) {
      return;
    }
    const msg = parseChildMessage(event.data);
    if (!msg) return;
    switch (msg.type) {
      case "ready": {
        const offered = event.ports?.[0] ?? null;
        if (offered) {
          // A reloaded UI sends a new ready with a new port; the old one is dead.
          if (port && port !== offered) port.close();
          port = offered;
        }
        send(
          message<BootstrapMessage>("bootstrap", {
            session: { token: session.token, expires_at: session.expiresAt },
            theme_tokens: { ...theme },
            navigation: { path },
          }),
        );
        sendTheme();
        if (onReady) onReady();
        break;
      }
      case "resize": {
        const height = clampHeight(msg.payload.height);
        iframe.style.height = `${height}px`;
        if (onResize) onResize(height);
        break;
      }
      case "navigate":
        if (onNavigate) onNavigate(msg.payload.path);
        break;
      case "apiproxy":
        void answer(msg);
        break;
    }
  };
  win.addEventListener("message", listener);

  return {
    setTheme(next: ThemeTokens) {
      theme = { ...next };
      if (port || sameOrigin) sendTheme();
    },
    setSession(next: Session) {
      session = next;
    },
    destroy() {
      if (destroyed) return;
      destroyed = true;
      win.removeEventListener("message", listener);
      if (port) port.close();
      port = null;
    },
  };
}

function clientPathOf(url: URL | undefined): string | undefined {
  const path = url?.searchParams.get("path");
  return path !== null && path !== undefined && isClientPath(path) ? path : undefined;
}

/** `.` or `..` as a path segment, also percent-encoded. */
function hasDotSegment(route: string): boolean {
  const pathname = route.split(/[?#]/, 1)[0] ?? "";
  return pathname.split("/").some((segment) => /^(\.|%2e){1,2}$/i.test(segment));
}
