// @ext-runner/iframe-bridge: host side (generated from sdk/iframe-bridge/src; do not edit)

// src/protocol.ts
var PROTOCOL_VERSION = "1";
var MIN_IFRAME_HEIGHT = 100;
var MAX_IFRAME_HEIGHT = 4e3;
var MAX_ROUTE_LENGTH = 2048;
var MAX_REQUEST_ID_LENGTH = 128;
var API_PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];
function message(type, payload, requestId) {
  const msg = { alga: true, version: PROTOCOL_VERSION, type, payload };
  if (requestId !== void 0) {
    msg["request_id"] = requestId;
  }
  return msg;
}
function isRecord(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
function envelope(data) {
  if (!isRecord(data) || data["alga"] !== true || data["version"] !== PROTOCOL_VERSION) {
    return null;
  }
  const { type, payload, request_id: requestId } = data;
  if (typeof type !== "string") {
    return null;
  }
  const body = payload === void 0 ? {} : payload;
  if (!isRecord(body)) {
    return null;
  }
  if (requestId !== void 0 && !isRequestId(requestId)) {
    return null;
  }
  return requestId === void 0 ? { type, payload: body } : { type, payload: body, requestId };
}
function isRequestId(value) {
  return typeof value === "string" && value.length > 0 && value.length <= MAX_REQUEST_ID_LENGTH;
}
function isBase64(value) {
  return typeof value === "string" && /^[A-Za-z0-9+/]*={0,2}$/.test(value) && value.length % 4 === 0;
}
function parseChildMessage(data) {
  const env = envelope(data);
  if (!env) {
    return null;
  }
  const { type, payload, requestId } = env;
  switch (type) {
    case "ready":
      return message("ready", {});
    case "resize": {
      const height = payload["height"];
      return typeof height === "number" && Number.isFinite(height) ? message("resize", { height }) : null;
    }
    case "navigate": {
      const path = payload["path"];
      return isClientPath(path) ? message("navigate", { path }) : null;
    }
    case "apiproxy": {
      const { route, body, method } = payload;
      if (requestId === void 0 || typeof route !== "string" || route.length === 0 || route.length > MAX_ROUTE_LENGTH) {
        return null;
      }
      if (body !== void 0 && !isBase64(body)) {
        return null;
      }
      let verb;
      if (method !== void 0) {
        const upper = typeof method === "string" ? method.toUpperCase() : "";
        if (!API_PROXY_METHODS.includes(upper)) {
          return null;
        }
        verb = upper;
      }
      const out = { route };
      if (body !== void 0) out.body = body;
      if (verb !== void 0) out.method = verb;
      return message("apiproxy", out, requestId);
    }
    default:
      return null;
  }
}
function isClientPath(path) {
  return typeof path === "string" && path.length <= MAX_ROUTE_LENGTH && path.startsWith("/") && !path.startsWith("//") && // eslint-disable-next-line no-control-regex
  !/[\\\u0000-\u001f\u007f]/.test(path);
}
function clampHeight(height) {
  return Math.max(MIN_IFRAME_HEIGHT, Math.min(MAX_IFRAME_HEIGHT, Math.round(height)));
}
function bytesToBase64(bytes) {
  let binary = "";
  const chunk = 32768;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}
function base64ToBytes(b64) {
  const binary = atob(b64);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) {
    out[i] = binary.charCodeAt(i);
  }
  return out;
}
function toBytes(body) {
  return typeof body === "string" ? new TextEncoder().encode(body) : body;
}
function isOrigin(origin) {
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

// src/host.ts
var DEFAULT_SANDBOX = "allow-scripts";
var MAX_API_PROXY_IN_FLIGHT = 32;
var CONTENT_HASH = /^sha256:[0-9a-fA-F]{64}$/;
function buildExtUiSrc(options) {
  const { publicBase, extensionId, contentHash, clientPath = "/", tenantId, parentOrigin } = options;
  if (typeof extensionId !== "string" || extensionId.length === 0) {
    throw new TypeError("buildExtUiSrc: extensionId must be a non-empty string");
  }
  const hash = normalizeContentHash(contentHash);
  if (!isClientPath(clientPath)) {
    throw new TypeError(`buildExtUiSrc: clientPath must start with a single "/" (got ${JSON.stringify(clientPath)})`);
  }
  if (tenantId !== void 0 && (typeof tenantId !== "string" || tenantId.length === 0)) {
    throw new TypeError("buildExtUiSrc: tenantId, when given, must be a non-empty string");
  }
  if (parentOrigin !== void 0 && !isOrigin(parentOrigin)) {
    throw new TypeError(
      `buildExtUiSrc: parentOrigin must be an http(s) origin such as https://app.example.com (got ${JSON.stringify(parentOrigin)})`
    );
  }
  const query = new URLSearchParams({ path: clientPath, extensionId });
  if (tenantId !== void 0) query.set("tenant", tenantId);
  if (parentOrigin !== void 0) query.set("parentOrigin", parentOrigin);
  return `${normalizeBase(publicBase)}/ext-ui/${encodeURIComponent(extensionId)}/${encodeURIComponent(hash)}/index.html?${query.toString()}`;
}
function normalizeContentHash(contentHash) {
  if (typeof contentHash !== "string" || !CONTENT_HASH.test(contentHash)) {
    throw new TypeError(
      `contentHash must be "sha256:" followed by 64 hex digits (got ${JSON.stringify(contentHash)})`
    );
  }
  return contentHash.toLowerCase();
}
function normalizeBase(publicBase) {
  if (typeof publicBase !== "string") {
    throw new TypeError("buildExtUiSrc: publicBase must be a string");
  }
  const base = publicBase.replace(/\/+$/, "");
  if (base === "" || base.startsWith("/") && !base.startsWith("//")) {
    return base;
  }
  let url;
  try {
    url = new URL(base);
  } catch {
    throw new TypeError(`buildExtUiSrc: publicBase must be an http(s) URL or a path (got ${JSON.stringify(publicBase)})`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:" || url.search || url.hash || url.username || url.password) {
    throw new TypeError(
      `buildExtUiSrc: publicBase must be a plain http(s) URL without query, fragment or credentials (got ${JSON.stringify(publicBase)})`
    );
  }
  return base;
}
function bootstrapIframe(iframe, options) {
  const win = options.window ?? globalThis.window;
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
      "bootstrapIframe: allow-scripts with allow-same-origin on the host's own origin lets the UI remove its sandbox"
    );
  }
  const src = options.src ?? iframe.getAttribute("src") ?? void 0;
  let srcUrl;
  if (src !== void 0) {
    srcUrl = new URL(src, win.location.href);
    if (srcUrl.origin !== allowedOrigin) {
      throw new TypeError(`bootstrapIframe: the iframe's src is on ${srcUrl.origin}, not on allowedOrigin ${allowedOrigin}`);
    }
  }
  const childOrigin = sameOrigin ? allowedOrigin : "null";
  let theme = { ...options.theme ?? {} };
  let session = options.session;
  const path = options.path ?? clientPathOf(srcUrl) ?? "/";
  let port = null;
  let inFlight = 0;
  let destroyed = false;
  iframe.setAttribute("sandbox", sandbox);
  if (options.src !== void 0) {
    iframe.setAttribute("src", options.src);
  }
  const report = (error) => {
    if (onError) onError(error);
  };
  const send = (msg) => {
    if (destroyed) return;
    if (port) {
      port.postMessage(msg);
      return;
    }
    const target = iframe.contentWindow;
    if (sameOrigin && target) {
      target.postMessage(msg, allowedOrigin);
      return;
    }
    report(new Error(`bridge: cannot send ${msg.type}: the sandboxed UI gave no MessagePort in its ready`));
  };
  const sendTheme = () => send(message("theme_tokens", { ...theme }));
  const answer = async (msg) => {
    const requestId = msg.request_id;
    const reply = (payload) => send(message("apiproxy_response", payload, requestId));
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
      const body = msg.payload.body === void 0 ? void 0 : base64ToBytes(msg.payload.body);
      const request = {
        route,
        method: msg.payload.method ?? (body === void 0 ? "GET" : "POST"),
        requestId
      };
      if (body !== void 0) request.body = body;
      const out = await onApiProxy(request);
      reply({ body: bytesToBase64(toBytes(out)) });
    } catch (error) {
      reply({ error: error instanceof Error ? error.message : String(error) });
    } finally {
      inFlight--;
    }
  };
  const listener = (event) => {
    if (destroyed || event.source === null || event.source !== iframe.contentWindow || event.origin !== childOrigin) {
      return;
    }
    const msg = parseChildMessage(event.data);
    if (!msg) return;
    switch (msg.type) {
      case "ready": {
        const offered = event.ports?.[0] ?? null;
        if (offered) {
          if (port && port !== offered) port.close();
          port = offered;
        }
        send(
          message("bootstrap", {
            session: { token: session.token, expires_at: session.expiresAt },
            theme_tokens: { ...theme },
            navigation: { path }
          })
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
    setTheme(next) {
      theme = { ...next };
      if (port || sameOrigin) sendTheme();
    },
    setSession(next) {
      session = next;
    },
    destroy() {
      if (destroyed) return;
      destroyed = true;
      win.removeEventListener("message", listener);
      if (port) port.close();
      port = null;
    }
  };
}
function clientPathOf(url) {
  const path = url?.searchParams.get("path");
  return path !== null && path !== void 0 && isClientPath(path) ? path : void 0;
}
function hasDotSegment(route) {
  const pathname = route.split(/[?#]/, 1)[0] ?? "";
  return pathname.split("/").some((segment) => /^(\.|%2e){1,2}$/i.test(segment));
}
export {
  DEFAULT_SANDBOX,
  MAX_API_PROXY_IN_FLIGHT,
  bootstrapIframe,
  buildExtUiSrc,
  normalizeContentHash
};
