/**
 * The postMessage protocol between a host page and an extension's iframe UI
 * (compat §5): every message is `{alga: true, version: "1", type,
 * request_id?, payload}`.
 *
 * Child → host: `ready`, `resize`, `navigate`, `apiproxy`.
 * Host → child: `bootstrap`, `theme_tokens`, `apiproxy_response`.
 *
 * Everything that arrives is parsed by {@link parseChildMessage} or
 * {@link parseHostMessage}: a message that does not have exactly the shape of
 * its type is dropped, never half-trusted.
 */

/** The protocol version this package speaks. */
export const PROTOCOL_VERSION = "1";

/** The host clamps a child's requested height to this range (pixels). */
export const MIN_IFRAME_HEIGHT = 100;
/** See {@link MIN_IFRAME_HEIGHT}. */
export const MAX_IFRAME_HEIGHT = 4000;

/** Longest `apiproxy` route accepted, so a child cannot push megabytes through a URL. */
export const MAX_ROUTE_LENGTH = 2048;
/** Longest `request_id` accepted. */
export const MAX_REQUEST_ID_LENGTH = 128;

/** Methods an `apiproxy` request may use. */
export const API_PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;
export type ApiProxyMethod = (typeof API_PROXY_METHODS)[number];

/** CSS custom properties (`--name` → value) the host hands to the child. */
export type ThemeTokens = Record<string, string>;

/** A short-lived session the child uses to call its own backend through the host. */
export interface WireSession {
  token: string;
  expires_at: string;
}

export interface BootstrapPayload {
  session: WireSession;
  theme_tokens: ThemeTokens;
  navigation: { path: string };
}

export interface ApiProxyPayload {
  route: string;
  /** Request body, base64. */
  body?: string;
  method?: ApiProxyMethod;
}

/** Either the handler's answer (`body`, base64) or an error message. */
export type ApiProxyResponsePayload = { body?: string } | { error: string };

interface Envelope<T extends string, P> {
  alga: true;
  version: typeof PROTOCOL_VERSION;
  type: T;
  payload: P;
}

type Correlated<T extends string, P> = Envelope<T, P> & { request_id: string };

export type ReadyMessage = Envelope<"ready", Record<string, never>>;
export type ResizeMessage = Envelope<"resize", { height: number }>;
export type NavigateMessage = Envelope<"navigate", { path: string }>;
export type ApiProxyMessage = Correlated<"apiproxy", ApiProxyPayload>;

export type BootstrapMessage = Envelope<"bootstrap", BootstrapPayload>;
export type ThemeTokensMessage = Envelope<"theme_tokens", ThemeTokens>;
export type ApiProxyResponseMessage = Correlated<"apiproxy_response", ApiProxyResponsePayload>;

/** What a child sends to its host. */
export type ChildMessage = ReadyMessage | ResizeMessage | NavigateMessage | ApiProxyMessage;
/** What a host sends to its child. */
export type HostMessage = BootstrapMessage | ThemeTokensMessage | ApiProxyResponseMessage;

/** Build a message of the protocol. */
export function message<M extends ChildMessage | HostMessage>(
  type: M["type"],
  payload: M["payload"],
  requestId?: string,
): M {
  const msg: Record<string, unknown> = { alga: true, version: PROTOCOL_VERSION, type, payload };
  if (requestId !== undefined) {
    msg["request_id"] = requestId;
  }
  return msg as unknown as M;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function envelope(data: unknown): { type: string; payload: Record<string, unknown>; requestId?: string } | null {
  if (!isRecord(data) || data["alga"] !== true || data["version"] !== PROTOCOL_VERSION) {
    return null;
  }
  const { type, payload, request_id: requestId } = data;
  if (typeof type !== "string") {
    return null;
  }
  // `ready {}` may come without a payload from older children.
  const body = payload === undefined ? {} : payload;
  if (!isRecord(body)) {
    return null;
  }
  if (requestId !== undefined && !isRequestId(requestId)) {
    return null;
  }
  return requestId === undefined ? { type, payload: body } : { type, payload: body, requestId };
}

function isRequestId(value: unknown): value is string {
  return typeof value === "string" && value.length > 0 && value.length <= MAX_REQUEST_ID_LENGTH;
}

function isBase64(value: unknown): value is string {
  return typeof value === "string" && /^[A-Za-z0-9+/]*={0,2}$/.test(value) && value.length % 4 === 0;
}

function isThemeTokens(value: unknown): value is ThemeTokens {
  return isRecord(value) && Object.values(value).every((v) => typeof v === "string");
}

/** A message from a child, or `null` when `data` is not one. */
export function parseChildMessage(data: unknown): ChildMessage | null {
  const env = envelope(data);
  if (!env) {
    return null;
  }
  const { type, payload, requestId } = env;
  switch (type) {
    case "ready":
      return message<ReadyMessage>("ready", {});
    case "resize": {
      const height = payload["height"];
      return typeof height === "number" && Number.isFinite(height)
        ? message<ResizeMessage>("resize", { height })
        : null;
    }
    case "navigate": {
      const path = payload["path"];
      return isClientPath(path) ? message<NavigateMessage>("navigate", { path }) : null;
    }
    case "apiproxy": {
      const { route, body, method } = payload;
      if (requestId === undefined || typeof route !== "string" || route.length === 0 || route.length > MAX_ROUTE_LENGTH) {
        return null;
      }
      if (body !== undefined && !isBase64(body)) {
        return null;
      }
      let verb: ApiProxyMethod | undefined;
      if (method !== undefined) {
        const upper = typeof method === "string" ? method.toUpperCase() : "";
        if (!(API_PROXY_METHODS as readonly string[]).includes(upper)) {
          return null;
        }
        verb = upper as ApiProxyMethod;
      }
      const out: ApiProxyPayload = { route };
      if (body !== undefined) out.body = body;
      if (verb !== undefined) out.method = verb;
      return message<ApiProxyMessage>("apiproxy", out, requestId);
    }
    default:
      return null;
  }
}

/** A message from a host, or `null` when `data` is not one. */
export function parseHostMessage(data: unknown): HostMessage | null {
  const env = envelope(data);
  if (!env) {
    return null;
  }
  const { type, payload, requestId } = env;
  switch (type) {
    case "bootstrap": {
      const { session, theme_tokens: theme, navigation } = payload;
      if (
        !isRecord(session) ||
        typeof session["token"] !== "string" ||
        typeof session["expires_at"] !== "string" ||
        !isThemeTokens(theme) ||
        !isRecord(navigation) ||
        typeof navigation["path"] !== "string"
      ) {
        return null;
      }
      return message<BootstrapMessage>("bootstrap", {
        session: { token: session["token"], expires_at: session["expires_at"] },
        theme_tokens: { ...theme },
        navigation: { path: navigation["path"] },
      });
    }
    case "theme_tokens":
      return isThemeTokens(payload) ? message<ThemeTokensMessage>("theme_tokens", { ...payload }) : null;
    case "apiproxy_response": {
      if (requestId === undefined) {
        return null;
      }
      if (typeof payload["error"] === "string") {
        return message<ApiProxyResponseMessage>("apiproxy_response", { error: payload["error"] }, requestId);
      }
      const body = payload["body"];
      if (body !== undefined && !isBase64(body)) {
        return null;
      }
      return message<ApiProxyResponseMessage>("apiproxy_response", body === undefined ? {} : { body }, requestId);
    }
    default:
      return null;
  }
}

/**
 * A client route inside the extension UI: starts with one `/`, no scheme, no
 * `//host`, no backslash or control characters, at most 2 KiB.
 */
export function isClientPath(path: unknown): path is string {
  return (
    typeof path === "string" &&
    path.length <= MAX_ROUTE_LENGTH &&
    path.startsWith("/") &&
    !path.startsWith("//") &&
    // eslint-disable-next-line no-control-regex
    !/[\\\u0000-\u001f\u007f]/.test(path)
  );
}

/** Clamp a requested iframe height to {@link MIN_IFRAME_HEIGHT}..{@link MAX_IFRAME_HEIGHT} whole pixels. */
export function clampHeight(height: number): number {
  return Math.max(MIN_IFRAME_HEIGHT, Math.min(MAX_IFRAME_HEIGHT, Math.round(height)));
}

/** Bytes → base64 (no dependency on Node's Buffer: this runs in browsers). */
export function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

/** base64 → bytes. */
export function base64ToBytes(b64: string): Uint8Array {
  const binary = atob(b64);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) {
    out[i] = binary.charCodeAt(i);
  }
  return out;
}

/** A string is sent as its UTF-8 bytes. */
export function toBytes(body: Uint8Array | string): Uint8Array {
  return typeof body === "string" ? new TextEncoder().encode(body) : body;
}

/**
 * `origin` is a serialized http(s) origin (`https://host[:port]`): not `*`,
 * not `null`, no path.
 */
export function isOrigin(origin: unknown): origin is string {
  if (typeof origin !== "string") {
    return false;
  }
  try {
    const url = new URL(origin);
    return (url.protocol === "https:" || url.protocol === "http:") && url.origin === origin;
  } catch {
    return false;
  }
}
