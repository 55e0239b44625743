// Real-browser test of an extension UI (issue 4): headless Debian Chromium,
// driven by playwright-core, loads a host page on one loopback origin that
// embeds the example extension's UI, served by `ext-runner serve --dev` on
// another, through the bridge SDK's buildExtUiSrc + bootstrapIframe. A frame
// on a third origin tries to speak for both sides.
//
//   node ui.test.mjs        (tests/browser/run prepares everything first)
//
// Env: EXT_RUNNER_BIN (default $CARGO_TARGET_DIR/debug/ext-runner),
// EXT_CHROMIUM (default /usr/bin/chromium), EXT_BROWSER_OPTIONAL=1 (skip,
// instead of failing, when Chromium is missing). Saves a screenshot to
// ${CARGO_TARGET_DIR:-target}/browser/ui.png.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { ROOT, TARGET, WARM_UP_TIMEOUT_MS, chromiumSkip, launchChromium, sleep, waitFor } from "./browser.mjs";
import { stageHello, startHostServer, startOtherServer, startRunner, warmUp } from "./servers.mjs";

const SDK_DIST = join(ROOT, "sdk", "iframe-bridge", "dist");
const SCREENSHOT = join(TARGET, "browser", "ui.png");
const TENANT = "dev-tenant";

/** How long a forged message gets to (wrongly) have an effect. */
const SETTLE_MS = 400;

const skip = chromiumSkip();

if (skip) it("extension UI in Chromium", { skip });

describe("extension UI in Chromium", { skip: Boolean(skip), timeout: 600_000 }, () => {
  let work;
  let runner;
  let host;
  let other;
  let browser;
  let page;
  /** The extension's frame (runner origin, sandboxed). */
  let extFrame;
  /** Frames that forge messages: a third origin, the same sandboxed ("null"), and one on the host's origin. */
  let forgers;
  const uiResponses = [];
  const problems = [];

  before(async () => {
    mkdirSync(join(TARGET, "browser"), { recursive: true });
    work = mkdtempSync(join(TARGET, "browser", "run-"));
    runner = await startRunner({ extensionDir: stageHello(join(work, "hello")), dataDir: join(work, "data") });
    await warmUp(runner, WARM_UP_TIMEOUT_MS);

    other = await startOtherServer();
    host = await startHostServer({
      runnerBase: runner.base,
      sdkDist: SDK_DIST,
      extensionId: runner.extensionId,
      contentHash: runner.hash,
      tenantId: TENANT,
      otherOrigin: other.origin,
    });
    assert.notEqual(new URL(host.origin).port, new URL(runner.base).port);

    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
    // In every frame, before its own scripts: record each message event it receives.
    await page.addInitScript(() => {
      window.__seen = [];
      window.addEventListener(
        "message",
        (e) => window.__seen.push({ origin: e.origin, type: e.data && e.data.type, forged: Boolean(e.data && e.data.forged) }),
        true,
      );
    });
    page.on("console", (m) => {
      // Failed loads are reported with their URL below.
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
    page.on("response", (r) => {
      if (r.url().startsWith(`${runner.base}/ext-ui/`)) uiResponses.push(r);
      if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`);
    });
  });

  after(async () => {
    await browser?.close();
    await host?.close();
    await other?.close();
    await runner?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const hostEvents = () => page.evaluate(() => window.__events);

  it("loads the UI from the runner and completes the handshake (ready → bootstrap)", async () => {
    await page.goto(`${host.origin}/`);
    await waitFor(async () => (await hostEvents()).some((e) => e.type === "ready"), "the host to receive ready");
    extFrame = await waitFor(() => page.frames().find((f) => f.url().startsWith(`${runner.base}/ext-ui/`)), "the UI frame");
    forgers = await waitFor(() => {
      const frames = ["other", "other-sandboxed", "sibling"].map((name) => page.frames().find((f) => f.name() === name));
      return frames.every((f) => f && f.url().endsWith("/other.html")) && frames;
    }, "the forging frames");
    assert.deepEqual(
      await Promise.all(forgers.map((f) => f.evaluate(() => window.origin))),
      [other.origin, "null", host.origin],
    );
    // The UI shows "Connected." only from its bootstrap handler.
    await waitFor(async () => (await extFrame.textContent("#status")) === "Connected.", "the UI to get its bootstrap");

    const src = await page.getAttribute("#ext", "src");
    const encodedHash = encodeURIComponent(runner.hash);
    assert.equal(
      src,
      `${runner.base}/ext-ui/${runner.extensionId}/${encodedHash}/index.html?path=%2F&extensionId=${runner.extensionId}` +
        `&tenant=${TENANT}&parentOrigin=${encodeURIComponent(host.origin)}`,
    );
    assert.equal(await page.getAttribute("#ext", "sandbox"), "allow-scripts");
    // Sandboxed without allow-same-origin: the UI runs in an opaque origin.
    assert.equal(await extFrame.evaluate(() => window.origin), "null");
    // The host answered through the port the UI handed over: the UI's window
    // never got a message from the host's origin (that would need "*").
    const seen = await extFrame.evaluate(() => window.__seen);
    assert.deepEqual(seen.filter((m) => m.origin === host.origin), []);
    assert.deepEqual(
      (await hostEvents()).filter((e) => e.type === "error"),
      [],
    );
  });

  it("serves the UI with immutable caching, nosniff and a CSP on HTML", async () => {
    const index = uiResponses.find((r) => new URL(r.url()).pathname.endsWith("/index.html"));
    const script = uiResponses.find((r) => new URL(r.url()).pathname.endsWith("/ext-bridge.js"));
    assert.ok(index && script, `UI responses: ${uiResponses.map((r) => r.url()).join(", ")}`);
    const html = await index.allHeaders();
    assert.equal(index.status(), 200);
    assert.match(html["content-type"], /^text\/html/);
    assert.ok(html["content-security-policy"], "index.html has a Content-Security-Policy");
    assert.equal(html["x-content-type-options"], "nosniff");
    assert.equal(html["cache-control"], "public, max-age=31536000, immutable");
    const js = await script.allHeaders();
    assert.equal(script.status(), 200);
    assert.match(js["content-type"], /^text\/javascript/);
    assert.deepEqual(problems, []);
  });

  it("applies the host's theme tokens in the UI", async () => {
    const accent = await extFrame.evaluate(() =>
      getComputedStyle(document.documentElement).getPropertyValue("--accent").trim(),
    );
    assert.equal(accent, "#0a7d38");
    const button = await extFrame.evaluate(() => getComputedStyle(document.querySelector("button")).backgroundColor);
    assert.equal(button, "rgb(10, 125, 56)");
  });

  it("resizes the iframe to the UI's height, clamped to 100..4000 px", async () => {
    const resized = await waitFor(async () => (await hostEvents()).findLast((e) => e.type === "resize"), "a resize");
    const iframeHeight = () => page.$eval("#ext", (el) => [el.style.height, el.clientHeight]);
    assert.deepEqual(await iframeHeight(), [`${resized.height}px`, resized.height]);
    // The whole UI fits: its document is exactly as tall as the frame.
    assert.equal(await extFrame.evaluate(() => document.documentElement.scrollHeight), resized.height);
    assert.equal(await extFrame.evaluate(() => window.innerHeight), resized.height);
    // A request beyond the limit, from the UI's own window, is clamped.
    await extFrame.evaluate((parentOrigin) => {
      parent.postMessage({ alga: true, version: "1", type: "resize", payload: { height: 99999 } }, parentOrigin);
    }, host.origin);
    await waitFor(async () => (await iframeHeight())[0] === "4000px", "the clamped height");
    await extFrame.evaluate(
      ([parentOrigin, height]) =>
        parent.postMessage({ alga: true, version: "1", type: "resize", payload: { height } }, parentOrigin),
      [host.origin, resized.height],
    );
    await waitFor(async () => (await iframeHeight())[1] === resized.height, "the height back");
  });

  it("round-trips apiproxy: UI → host → gateway → /v1/execute → hello handler → UI", async () => {
    await extFrame.fill("#name", "Ada");
    await extFrame.click("#greet");
    await waitFor(async () => (await extFrame.textContent("#message")) === "Hello, Ada!", "the greeting", 30_000);
    const proxied = (await hostEvents()).filter((e) => e.type === "apiproxy");
    assert.deepEqual(
      proxied.map(({ route, method }) => [route, method]),
      [["/hello/Ada", "GET"]],
    );
    assert.equal(host.calls.length, 1);
    const [call] = host.calls;
    assert.equal(call.envelope.endpoint, "ui-proxy:/hello/Ada");
    assert.deepEqual(call.envelope.http, { method: "GET", path: "/hello/Ada", query: {}, headers: {} });
    assert.equal(call.runnerStatus, 200);
    assert.equal(call.guestStatus, 200);
    const answer = JSON.parse(call.body);
    assert.equal(answer.message, "Hello, Ada!");
    assert.equal(answer.tenant, TENANT);
    assert.equal(answer.extension, runner.extensionId);
  });

  it('ignores forged child messages from other frames, even one whose origin is also "null"', async () => {
    const eventsBefore = (await hostEvents()).length;
    const heightBefore = await page.$eval("#ext", (el) => el.style.height);
    const callsBefore = host.calls.length;
    for (const frame of forgers) {
      await frame.evaluate(() => {
        const env = (type, payload, extra = {}) => ({ alga: true, version: "1", type, payload, forged: true, ...extra });
        window.__stolen = [];
        const channel = new MessageChannel();
        channel.port1.onmessage = (e) => window.__stolen.push(e.data);
        parent.postMessage(env("ready", {}), "*", [channel.port2]);
        parent.postMessage(env("resize", { height: 3999 }), "*");
        parent.postMessage(env("navigate", { path: "/pwned" }), "*");
        parent.postMessage(env("apiproxy", { route: "/hello/Mallory", method: "GET" }, { request_id: "forged-1" }), "*");
      });
    }
    // They did arrive at the host page, from each forger's origin...
    const arrived = await waitFor(async () => {
      const seen = (await page.evaluate(() => window.__seen)).filter((m) => m.forged);
      return seen.length === 12 && seen;
    }, "the forged messages to reach the host page");
    assert.deepEqual([...new Set(arrived.map((m) => m.origin))].sort(), [other.origin, "null", host.origin].sort());
    await sleep(SETTLE_MS);
    // ...and the bridge ignored every one of them.
    assert.equal((await hostEvents()).length, eventsBefore);
    assert.equal(await page.$eval("#ext", (el) => el.style.height), heightBefore);
    assert.equal(host.calls.length, callsBefore);
    for (const frame of forgers) assert.deepEqual(await frame.evaluate(() => window.__stolen), []);
  });

  it("ignores forged host messages in the UI, even from a frame on the host's origin", async () => {
    const release = host.hold();
    try {
      await extFrame.fill("#name", "Bob");
      await extFrame.click("#greet");
      const pending = await waitFor(
        async () => (await hostEvents()).find((e) => e.type === "apiproxy" && e.route === "/hello/Bob"),
        "the UI's apiproxy to reach the host",
      );
      // Any frame can reach the UI's window through parent.frames; give the
      // forgers the real request id.
      for (const frame of forgers) {
        await frame.evaluate((requestId) => {
          const env = (type, payload, extra = {}) => ({ alga: true, version: "1", type, payload, forged: true, ...extra });
          const forged = [
            env("apiproxy_response", { body: btoa('{"message":"forged"}') }, { request_id: requestId }),
            env("theme_tokens", { "--accent": "#ff0000" }),
            env("bootstrap", {
              session: { token: "stolen", expires_at: "2999-01-01T00:00:00Z" },
              theme_tokens: { "--accent": "#ff0000" },
              navigation: { path: "/pwned" },
            }),
          ];
          const ui = parent.frames[0]; // the host page appends the UI's frame first
          for (const m of forged) ui.postMessage(m, "*");
        }, pending.requestId);
      }
      const arrived = await waitFor(async () => {
        const seen = (await extFrame.evaluate(() => window.__seen)).filter((m) => m.forged);
        return seen.length === 9 && seen;
      }, "the forged messages to reach the UI");
      assert.ok(arrived.some((m) => m.origin === host.origin), "a forgery with the parent's origin arrived");
      await sleep(SETTLE_MS);
      assert.equal(await extFrame.textContent("#message"), "Hello, Ada!");
      assert.equal(
        await extFrame.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue("--accent").trim()),
        "#0a7d38",
      );
    } finally {
      release();
    }
    await waitFor(async () => (await extFrame.textContent("#message")) === "Hello, Bob!", "the real answer", 30_000);
  });

  it("saves a screenshot", async () => {
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok(existsSync(SCREENSHOT));
    console.log(`screenshot: ${SCREENSHOT}`);
    assert.deepEqual(problems, [], "no script errors in any frame");
  });
});

