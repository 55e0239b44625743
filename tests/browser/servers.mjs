// The servers the browser tests talk to, each on its own loopback origin:
// - `ext-runner serve --dev` with the example extension (startRunner),
//   optionally with a second, UI-only listener (RUNNER_PUBLIC_LISTEN);
// - for ui.test.mjs, the host application: the host page (pages/host.html +
//   host.js), the bridge SDK's built modules under /sdk/, and a tiny gateway
//   at POST /gateway/apiproxy that checks the session token and forwards the
//   UI's apiproxy calls to the runner's POST /v1/execute;
// - a third origin serving pages/other.html, for frames that try to speak
//   for the host and for the extension UI (the host serves it too, for a
//   frame on the host's own origin).
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { cpSync, existsSync, mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { join } from "node:path";

import { ROOT, RUNNER_BIN } from "./browser.mjs";

const PAGES = new URL("./pages/", import.meta.url);
const HELLO = join(ROOT, "examples", "hello");
/** serve --dev packs, signs and publishes the example before it prints its curl line. */
const RUNNER_START_TIMEOUT_MS = 120_000;
/** The line of serve --dev's announcement with the host page's URL. */
const HOST_PAGE_LINE = /^The host page .*: (http:\/\/\S+\/dev\/host)$/m;

/** Largest request body the gateway reads (the UI's apiproxy body, base64, in JSON). */
const MAX_GATEWAY_BODY_BYTES = 1024 * 1024;

/** `count` distinct free loopback ports (held open together, so no two are the same). */
export async function freePorts(count) {
  const servers = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createNetServer();
      servers.push(server);
      await new Promise((resolveListen, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", resolveListen);
      });
    }
    return servers.map((server) => server.address().port);
  } finally {
    await Promise.all(servers.map((server) => new Promise((r) => server.close(r))));
  }
}

/** A bundle directory with only what the example ships: manifest.json, dist/main.wasm, ui/. */
export function stageHello(dir) {
  const wasm = join(HELLO, "dist", "main.wasm");
  if (!existsSync(wasm)) throw new Error(`${wasm} is missing: run scripts/build-example`);
  mkdirSync(join(dir, "dist"), { recursive: true });
  cpSync(join(HELLO, "manifest.json"), join(dir, "manifest.json"));
  cpSync(wasm, join(dir, "dist", "main.wasm"));
  cpSync(join(HELLO, "ui"), join(dir, "ui"), { recursive: true });
  return dir;
}

/**
 * `serve --dev` of the example on a free loopback port, in a clean
 * environment (no RUNNER_* or BUNDLE_STORAGE_* from the caller). With
 * `uiListener`, the UI assets also get a listener of their own on another
 * port (RUNNER_PUBLIC_LISTEN, RUNNER_PUBLIC_BASE), as scripts/dev runs it:
 * another origin for the iframe than for the host page. The content hash
 * comes from the printed curl line, the host page's URL from its line.
 */
export async function startRunner({ extensionDir, dataDir, uiListener = false }) {
  if (!existsSync(RUNNER_BIN)) throw new Error(`${RUNNER_BIN} is missing: cargo build -p ext-runner (or set EXT_RUNNER_BIN)`);
  const [port, uiPort] = await freePorts(2);
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, RUNNER_DATA_DIR: dataDir, RUST_LOG: "warn" };
  let uiBase = `http://127.0.0.1:${port}`;
  if (uiListener) {
    uiBase = `http://127.0.0.1:${uiPort}`;
    Object.assign(env, { RUNNER_PUBLIC_LISTEN: `127.0.0.1:${uiPort}`, RUNNER_PUBLIC_BASE: uiBase });
  }
  const child = spawn(RUNNER_BIN, ["serve", "--dev", "--listen", `127.0.0.1:${port}`, "--extension", extensionDir], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  // Complete lines only: the announcement may arrive in pieces.
  const lines = () => stdout.slice(0, stdout.lastIndexOf("\n") + 1);
  const curl = await new Promise((resolveCurl, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`serve --dev printed no curl line in ${RUNNER_START_TIMEOUT_MS} ms:\n${stderr}`)),
      RUNNER_START_TIMEOUT_MS,
    );
    child.stdout.on("data", (d) => {
      stdout += d;
      const line = lines().split("\n").find((l) => l.trim().startsWith("curl ") && l.includes("-d '"));
      if (line && HOST_PAGE_LINE.test(lines())) {
        clearTimeout(timer);
        resolveCurl(line.trim());
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`ext-runner exited (${code ?? signal}) before it was ready:\n${stderr}`));
    });
  });
  const envelope = JSON.parse(curl.split("-d '")[1].replace(/'$/, ""));
  return {
    base: `http://127.0.0.1:${port}`,
    uiBase,
    hostPage: HOST_PAGE_LINE.exec(lines())[1],
    hash: envelope.context.content_hash,
    extensionId: envelope.context.extension_id,
    envelope,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The runner's first execute compiles the component: do it before the browser waits on one. */
export async function warmUp(runner, timeoutMs) {
  const warm = await fetch(`${runner.base}/v1/execute`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(runner.envelope),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (warm.status !== 200) throw new Error(`warm-up execute: ${warm.status} ${await warm.text()}`);
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      resolve(`http://127.0.0.1:${port}`);
    });
  });
}

function close(server) {
  return new Promise((resolve) => {
    server.close(resolve);
    server.closeAllConnections();
  });
}

async function readBody(req, limit) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error("body too large"), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, { "content-type": type, "cache-control": "no-store", ...headers });
  res.end(body);
}

/** `/hello/Ada?x=1&x=2` → path and the envelope's query map (repeated keys as arrays). */
function splitRoute(route) {
  const url = new URL(route, "http://gateway.invalid");
  const query = {};
  for (const [key, value] of url.searchParams) {
    const seen = query[key];
    query[key] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value];
  }
  return { path: url.pathname, query };
}

/**
 * The host application's server.
 *
 * `calls` records every gateway call ({route, method, envelope, runnerStatus,
 * guestStatus}); `hold()` parks the next gateway calls until the returned
 * function is called, so a test can act while an apiproxy is in flight.
 */
export async function startHostServer({ runnerBase, sdkDist, extensionId, contentHash, tenantId, otherOrigin }) {
  const session = { token: randomUUID(), expiresAt: new Date(Date.now() + 3600_000).toISOString() };
  const calls = [];
  let gate = null;

  async function gateway(req, res) {
    if (req.headers.authorization !== `Bearer ${session.token}`) {
      return send(res, 401, "text/plain", "bad session token");
    }
    const { route, method, body_b64: bodyB64 } = JSON.parse((await readBody(req, MAX_GATEWAY_BODY_BYTES)).toString());
    if (gate) await gate.promise;
    const { path, query } = splitRoute(route);
    const envelope = {
      context: { request_id: randomUUID(), tenant_id: tenantId, extension_id: extensionId, content_hash: contentHash },
      endpoint: `ui-proxy:${path}`,
      http: { method, path, query, headers: bodyB64 ? { "content-type": "application/json" } : {} },
    };
    if (bodyB64 !== undefined) envelope.http.body_b64 = bodyB64;
    const call = { route, method, envelope };
    calls.push(call);
    const answer = await fetch(`${runnerBase}/v1/execute`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(envelope),
    });
    const json = await answer.json();
    call.runnerStatus = answer.status;
    call.guestStatus = json.status;
    call.body = json.body_b64 === undefined ? undefined : Buffer.from(json.body_b64, "base64").toString();
    if (answer.status !== 200 || json.status >= 400) {
      const why = json.error ? `${json.error.code}: ${json.error.message}` : call.body;
      return send(res, 502, "text/plain", `runner answered ${json.status}: ${why}`);
    }
    send(res, 200, json.headers?.["content-type"] ?? "application/octet-stream", Buffer.from(json.body_b64 ?? "", "base64"));
  }

  async function page(name, type, res, transform = (text) => text) {
    send(res, 200, type, transform(await readFile(new URL(name, PAGES), "utf8")));
  }

  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url, "http://host.invalid");
      if (req.method === "POST" && url.pathname === "/gateway/apiproxy") return await gateway(req, res);
      if (req.method !== "GET") return send(res, 405, "text/plain", "method not allowed");
      if (url.pathname === "/favicon.ico") return send(res, 204, "image/x-icon", "");
      if (url.pathname === "/") {
        const config = { runnerBase, extensionId, contentHash, tenantId, session, otherOrigin };
        // `<` escaped: the JSON sits inside a <script> element.
        const json = JSON.stringify(config).replaceAll("<", "\\u003c");
        return await page("host.html", "text/html; charset=utf-8", res, (html) => html.replace("__CONFIG__", json));
      }
      if (url.pathname === "/host.js") return await page("host.js", "text/javascript; charset=utf-8", res);
      if (url.pathname === "/other.html") return await page("other.html", "text/html; charset=utf-8", res);
      const sdk = /^\/sdk\/([a-z-]+\.js)$/.exec(url.pathname);
      if (sdk) return send(res, 200, "text/javascript; charset=utf-8", await readFile(join(sdkDist, sdk[1])));
      send(res, 404, "text/plain", "not found");
    } catch (error) {
      if (!res.headersSent) send(res, error.status ?? 500, "text/plain", String(error.message ?? error));
      else res.destroy();
    }
  });
  const origin = await listen(server);
  return {
    origin,
    session,
    calls,
    hold() {
      let release;
      const promise = new Promise((resolve) => (release = resolve));
      gate = { promise };
      return () => {
        gate = null;
        release();
      };
    },
    close: () => close(server),
  };
}

/** The third origin: one page, no scripts of its own (the test drives it). */
export async function startOtherServer() {
  const server = createServer(async (req, res) => {
    if (req.method === "GET" && new URL(req.url, "http://other.invalid").pathname === "/other.html") {
      return send(res, 200, "text/html; charset=utf-8", await readFile(new URL("other.html", PAGES)));
    }
    send(res, 404, "text/plain", "not found");
  });
  const origin = await listen(server);
  return { origin, close: () => close(server) };
}
