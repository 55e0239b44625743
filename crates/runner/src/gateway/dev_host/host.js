// The dev host page (GET /dev/host of `ext-runner serve --dev`): a host
// application in one file. It signs in as a dev user (POST /dev/token), asks
// the gateway for the iframe URL of the tenant's installed version
// (GET /api/ext-ui/…), embeds it with the bridge SDK's host side
// (bootstrapIframe: sandbox allow-scripts only, messages taken only from that
// iframe's window and origin, answers through the port the UI hands over)
// and answers the UI's apiproxy calls through the gateway
// (/api/ext-proxy/…), listing every call with its status and body.
import { bootstrapIframe } from "/dev/host/bridge-host.js";

/** Bodies longer than this are cut in the list of calls. */
const MAX_SHOWN_BODY_CHARS = 2000;
/** A user token this close to its expiry is replaced before the next call. */
const TOKEN_RENEW_MARGIN_MS = 60_000;
/** The tenant `?tenant=other` stands for: one with nothing installed. */
const OTHER_TENANT = "other";

const config = JSON.parse(document.getElementById("config").textContent);
const query = new URLSearchParams(location.search);
const tenant = query.get("tenant") || config.tenant;
const extension = query.get("extension") || config.extension;

const $ = (id) => document.getElementById(id);
const decoder = new TextDecoder();

function setState(state, text) {
  document.body.dataset.state = state;
  $("state").textContent = text;
}

function fail(message) {
  $("error").hidden = false;
  $("error").textContent = message;
  setState("failed", "Failed");
}

/** A gateway error `{status, error: {code, message, request_id}}` in one line, or the body as it came. */
function describe(status, text) {
  try {
    const { error } = JSON.parse(text);
    if (error && error.code) return `${status} ${error.code}: ${error.message} (request ${error.request_id})`;
  } catch {
    // not JSON: shown as it is
  }
  return `${status}: ${text}`;
}

function pretty(text) {
  try {
    text = JSON.stringify(JSON.parse(text), null, 1);
  } catch {
    // not JSON
  }
  return text.length > MAX_SHOWN_BODY_CHARS ? `${text.slice(0, MAX_SHOWN_BODY_CHARS)}…` : text;
}

/** One line in "Bridge messages". */
function event(kind, text) {
  const item = document.createElement("li");
  item.dataset.kind = kind;
  item.textContent = text;
  $("events").append(item);
}

/** One entry in "Calls"; returns a function that adds a line to it. */
function call({ kind, what, method, url, status, requestId, ms, text }) {
  const item = document.createElement("li");
  item.dataset.kind = kind;
  item.dataset.status = String(status);
  item.className = status >= 200 && status < 300 ? "ok" : "bad";
  const line = (className, content) => {
    const el = document.createElement(className === "body" ? "pre" : "div");
    el.className = className;
    el.textContent = content;
    item.append(el);
  };
  line("what", what);
  line("request", `${method} ${url}`);
  line("status", `→ ${status}${requestId ? ` · x-request-id ${requestId}` : ""} · ${Math.round(ms)} ms`);
  if (text) line("body", pretty(text));
  $("calls").append(item);
  return (content) => line("reply", content);
}

/** The dev user's token, from POST /dev/token, renewed when it runs out. */
let user = null;
async function userToken() {
  if (user && user.exp * 1000 - Date.now() > TOKEN_RENEW_MARGIN_MS) return user.token;
  const url = `/dev/token?tenant=${encodeURIComponent(tenant)}`;
  const started = performance.now();
  const response = await fetch(url, { method: "POST" });
  const text = await response.text();
  const shown = response.ok ? "" : text; // the token itself is not shown
  call({ kind: "token", what: "Sign in as the dev user", method: "POST", url, status: response.status, requestId: response.headers.get("x-request-id"), ms: performance.now() - started, text: shown });
  if (!response.ok) throw new Error(`POST ${url} → ${describe(response.status, text)}`);
  user = JSON.parse(text);
  $("user").textContent = user.user;
  return user.token;
}

/** A call of the gateway as the signed-in user: the answer's bytes, listed under "Calls". */
async function gateway({ kind, what, method, url, body }) {
  const headers = { authorization: `Bearer ${await userToken()}` };
  if (body !== undefined) headers["content-type"] = isJson(body) ? "application/json" : "application/octet-stream";
  const started = performance.now();
  const response = await fetch(url, { method, headers, body });
  const bytes = new Uint8Array(await response.arrayBuffer());
  const text = decoder.decode(bytes);
  const reply = call({ kind, what, method, url, status: response.status, requestId: response.headers.get("x-request-id"), ms: performance.now() - started, text });
  return { response, bytes, text, reply };
}

function isJson(bytes) {
  try {
    JSON.parse(decoder.decode(bytes));
    return true;
  } catch {
    return false;
  }
}

/** An id for the UI's `bootstrap` session: the user token stays in this page. */
function sessionId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function main() {
  $("tenant").textContent = tenant || "none";
  $("extension").textContent = extension || "none";
  $("ui-origin").textContent = config.uiOrigin;
  const other = tenant === OTHER_TENANT ? config.tenant : OTHER_TENANT;
  $("switch").textContent = `Open as a user of tenant ${other}`;
  $("switch").href = `?tenant=${encodeURIComponent(other)}${query.get("extension") ? `&extension=${encodeURIComponent(extension)}` : ""}`;
  if (!tenant || !extension) {
    fail("Nothing to show: serve --dev has published no extension yet. Open /dev/host?tenant=…&extension=… to pick one.");
    return;
  }
  if (config.uiOrigin === location.origin) {
    $("note").hidden = false;
    $("note").textContent =
      `The UI is served from this page's own origin (${location.origin}); the sandbox still gives it an opaque one. ` +
      "scripts/dev runs a second UI listener (RUNNER_PUBLIC_LISTEN and RUNNER_PUBLIC_BASE) so that it comes from another origin.";
  }
  setState("signing-in", "Signing in…");
  const uiUrl = `/api/ext-ui/${encodeURIComponent(extension)}?${new URLSearchParams({ path: "/", parentOrigin: location.origin })}`;
  const ui = await gateway({ kind: "ui", what: "Ask the gateway for the iframe URL", method: "GET", url: uiUrl });
  if (!ui.response.ok) {
    fail(`GET ${uiUrl} → ${describe(ui.response.status, ui.text)}`);
    return;
  }
  const { src } = JSON.parse(ui.text);
  $("src").textContent = src;

  const iframe = document.createElement("iframe");
  iframe.id = "ext";
  iframe.title = `${extension} UI`;
  bootstrapIframe(iframe, {
    src,
    allowedOrigin: config.uiOrigin,
    session: { token: sessionId(), expiresAt: new Date(user.exp * 1000).toISOString() },
    theme: { "--accent": "#2f6fde" },
    onReady: () => {
      event("ready", "UI → host: ready (with its MessagePort)");
      event("bootstrap", "host → UI: bootstrap and theme_tokens");
      setState("connected", "Connected");
    },
    onResize: (height) => event("resize", `UI → host: resize, ${height} px`),
    onNavigate: (path) => event("navigate", `UI → host: navigate ${path}`),
    onError: (error) => event("error", `bridge: ${error.message}`),
    onApiProxy: async ({ route, method, body }) => {
      event("apiproxy", `UI → host: apiproxy ${method} ${route}`);
      const url = `/api/ext-proxy/${encodeURIComponent(extension)}${route}`;
      const answer = await gateway({ kind: "apiproxy", what: `apiproxy ${method} ${route} (UI → host → gateway → runner → guest)`, method, url, body });
      if (!answer.response.ok) {
        const error = describe(answer.response.status, answer.text);
        answer.reply(`host → UI: apiproxy_response {error: "${error}"}`);
        throw new Error(error);
      }
      answer.reply(`host → UI: apiproxy_response {body} (${answer.bytes.length} bytes)`);
      return answer.bytes;
    },
  });
  $("slot").append(iframe);
  setState("loading", "Loading the UI…");
}

main().catch((error) => fail(error.message));
