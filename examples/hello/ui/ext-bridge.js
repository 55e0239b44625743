// @ext-runner/iframe-bridge: child side (generated from sdk/iframe-bridge/src; do not edit)
"use strict";
var ExtBridge = (() => {
  var __defProp = Object.defineProperty;
  var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
  var __getOwnPropNames = Object.getOwnPropertyNames;
  var __hasOwnProp = Object.prototype.hasOwnProperty;
  var __export = (target, all) => {
    for (var name in all)
      __defProp(target, name, { get: all[name], enumerable: true });
  };
  var __copyProps = (to, from, except, desc) => {
    if (from && typeof from === "object" || typeof from === "function") {
      for (let key of __getOwnPropNames(from))
        if (!__hasOwnProp.call(to, key) && key !== except)
          __defProp(to, key, { get: () => from[key], enumerable: !(desc = __getOwnPropDesc(from, key)) || desc.enumerable });
    }
    return to;
  };
  var __toCommonJS = (mod) => __copyProps(__defProp({}, "__esModule", { value: true }), mod);

  // src/browser.ts
  var browser_exports = {};
  __export(browser_exports, {
    ApiProxyError: () => ApiProxyError,
    ApiProxyResponse: () => ApiProxyResponse,
    ApiProxyTimeoutError: () => ApiProxyTimeoutError,
    DEFAULT_API_PROXY_TIMEOUT_MS: () => DEFAULT_API_PROXY_TIMEOUT_MS,
    PROTOCOL_VERSION: () => PROTOCOL_VERSION,
    createExtensionClient: () => createExtensionClient,
    launchParams: () => launchParams
  });

  // src/protocol.ts
  var PROTOCOL_VERSION = "1";
  var MAX_ROUTE_LENGTH = 2048;
  var MAX_REQUEST_ID_LENGTH = 128;
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
  function isThemeTokens(value) {
    return isRecord(value) && Object.values(value).every((v) => typeof v === "string");
  }
  function parseHostMessage(data) {
    const env = envelope(data);
    if (!env) {
      return null;
    }
    const { type, payload, requestId } = env;
    switch (type) {
      case "bootstrap": {
        const { session, theme_tokens: theme, navigation } = payload;
        if (!isRecord(session) || typeof session["token"] !== "string" || typeof session["expires_at"] !== "string" || !isThemeTokens(theme) || !isRecord(navigation) || typeof navigation["path"] !== "string") {
          return null;
        }
        return message("bootstrap", {
          session: { token: session["token"], expires_at: session["expires_at"] },
          theme_tokens: { ...theme },
          navigation: { path: navigation["path"] }
        });
      }
      case "theme_tokens":
        return isThemeTokens(payload) ? message("theme_tokens", { ...payload }) : null;
      case "apiproxy_response": {
        if (requestId === void 0) {
          return null;
        }
        if (typeof payload["error"] === "string") {
          return message("apiproxy_response", { error: payload["error"] }, requestId);
        }
        const body = payload["body"];
        if (body !== void 0 && !isBase64(body)) {
          return null;
        }
        return message("apiproxy_response", body === void 0 ? {} : { body }, requestId);
      }
      default:
        return null;
    }
  }
  function isClientPath(path) {
    return typeof path === "string" && path.length <= MAX_ROUTE_LENGTH && path.startsWith("/") && !path.startsWith("//") && // eslint-disable-next-line no-control-regex
    !/[\\\u0000-\u001f\u007f]/.test(path);
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

  // src/child.ts
  var DEFAULT_API_PROXY_TIMEOUT_MS = 1e4;
  var ApiProxyError = class extends Error {
    constructor() {
      super(...arguments);
      this.name = "ApiProxyError";
    }
  };
  var ApiProxyTimeoutError = class extends Error {
    constructor() {
      super(...arguments);
      this.name = "ApiProxyTimeoutError";
    }
  };
  var ApiProxyResponse = class {
    constructor(body) {
      this.body = body;
    }
    text() {
      return new TextDecoder().decode(this.body);
    }
    json() {
      return JSON.parse(this.text());
    }
  };
  function launchParams(search = currentSearch()) {
    const params = new URLSearchParams(search);
    const path = params.get("path");
    return {
      path: path !== null && isClientPath(path) ? path : "/",
      extensionId: params.get("extensionId"),
      tenant: params.get("tenant"),
      parentOrigin: params.get("parentOrigin")
    };
  }
  function currentSearch() {
    const loc = globalThis.location;
    return loc ? loc.search : "";
  }
  function createExtensionClient(options = {}) {
    const win = options.window ?? globalThis.window;
    const parentOrigin = options.parentOrigin ?? launchParams(win.location?.search ?? "").parentOrigin;
    if (!isOrigin(parentOrigin)) {
      throw new TypeError(
        `createExtensionClient: parentOrigin must be the host's http(s) origin (got ${JSON.stringify(parentOrigin)})`
      );
    }
    const defaultTimeout = options.timeoutMs ?? DEFAULT_API_PROXY_TIMEOUT_MS;
    const applyTheme = options.applyTheme ?? true;
    const createChannel = options.createChannel ?? (() => new globalThis.MessageChannel());
    const parent = win.parent;
    const embedded = win.parent !== null && win.parent !== void 0 && win.parent !== win;
    const pending = /* @__PURE__ */ new Map();
    const bootstrapHandlers = /* @__PURE__ */ new Set();
    const themeHandlers = /* @__PURE__ */ new Set();
    const idPrefix = randomId();
    let nextId = 1;
    let port = null;
    let lastBootstrap = null;
    let destroyed = false;
    const post = (msg, transfer) => {
      if (!embedded || destroyed) return false;
      if (transfer) {
        parent.postMessage(msg, parentOrigin, transfer);
      } else {
        parent.postMessage(msg, parentOrigin);
      }
      return true;
    };
    const setTheme = (tokens) => {
      const root = win.document?.documentElement;
      if (applyTheme && root) {
        for (const [name, value] of Object.entries(tokens)) {
          if (name.startsWith("--")) root.style.setProperty(name, value);
        }
      }
      for (const handler of themeHandlers) handler(tokens);
    };
    const settle = (requestId, payload) => {
      const waiter = pending.get(requestId);
      if (!waiter) return;
      pending.delete(requestId);
      clearTimeout(waiter.timer);
      if ("error" in payload) {
        waiter.reject(new ApiProxyError(payload.error));
      } else {
        waiter.resolve(new ApiProxyResponse(payload.body === void 0 ? new Uint8Array() : base64ToBytes(payload.body)));
      }
    };
    const dispatch = (msg) => {
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
    const listener = (event) => {
      if (destroyed || !embedded || event.source !== win.parent || event.origin !== parentOrigin) return;
      const msg = parseHostMessage(event.data);
      if (msg) dispatch(msg);
    };
    win.addEventListener("message", listener);
    const client = {
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
        own.onmessage = (event) => {
          if (destroyed || port !== own) return;
          const msg = parseHostMessage(event.data);
          if (msg) dispatch(msg);
        };
        port = own;
        post(message("ready", {}), [channel.port2]);
      },
      resize(height) {
        const value = height ?? win.document?.documentElement.getBoundingClientRect().height;
        if (typeof value !== "number" || !Number.isFinite(value)) return;
        post(message("resize", { height: Math.ceil(value) }));
      },
      navigate(path) {
        if (!isClientPath(path)) {
          throw new TypeError(`navigate: path must start with a single "/" (got ${JSON.stringify(path)})`);
        }
        post(message("navigate", { path }));
      },
      apiproxy(route, request = {}, apiOptions = {}) {
        return new Promise((resolve, reject) => {
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
          const payload = { route };
          if (request.body !== void 0) payload.body = bytesToBase64(toBytes(request.body));
          if (request.method !== void 0) payload.method = request.method;
          const timeoutMs = apiOptions.timeoutMs ?? defaultTimeout;
          const timer = setTimeout(() => {
            if (pending.delete(requestId)) {
              reject(new ApiProxyTimeoutError(`apiproxy ${route}: no answer within ${timeoutMs} ms`));
            }
          }, timeoutMs);
          pending.set(requestId, { resolve, reject, timer });
          post(message("apiproxy", payload, requestId));
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
      }
    };
    return client;
  }
  function randomId() {
    const bytes = new Uint8Array(8);
    globalThis.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  return __toCommonJS(browser_exports);
})();
