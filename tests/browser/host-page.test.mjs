// Real-browser test of serve --dev's host page (issue 14): headless Debian
// Chromium, driven by playwright-core, opens the /dev/host URL that
// `ext-runner serve --dev` prints (run with a second, UI-only listener, as
// scripts/dev runs it). The page signs in as a dev user, asks the gateway
// for the iframe URL, embeds the example's UI from the runner's UI origin and
// answers its apiproxy calls through the gateway; a user of another tenant
// gets the gateway's 404.
//
//   node host-page.test.mjs   (tests/browser/run prepares everything first)
//
// Env: as ui.test.mjs. Saves screenshots to
// ${CARGO_TARGET_DIR:-target}/browser/dev-host.png and dev-host-other-tenant.png.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { TARGET, WARM_UP_TIMEOUT_MS, chromiumSkip, launchChromium, waitFor } from "./browser.mjs";
import { stageHello, startRunner, warmUp } from "./servers.mjs";

const SCREENSHOT = join(TARGET, "browser", "dev-host.png");
const SCREENSHOT_OTHER = join(TARGET, "browser", "dev-host-other-tenant.png");
const TENANT = "dev-tenant";

const skip = chromiumSkip();

/** The claims of a JWT (not verified: the gateway did that). */
function claims(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString());
}

if (skip) it("the dev host page in Chromium", { skip });

describe("the dev host page in Chromium", { skip: Boolean(skip), timeout: 600_000 }, () => {
  let work;
  let runner;
  let browser;
  let page;
  /** The extension's frame (the runner's UI origin, sandboxed). */
  let extFrame;
  /** Every request the page made to the gateway's /api/ and /dev/ routes, with its answer. */
  const exchanges = [];
  const uiResponses = [];
  const problems = [];

  /** Record what a page sends to the runner's listeners; count errors unless told they are expected. */
  function watch(target, { expectErrors = false } = {}) {
    target.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource") && !expectErrors) {
        problems.push(`console: ${m.text()}`);
      }
    });
    target.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
    target.on("response", async (response) => {
      const url = new URL(response.url());
      if (response.url().startsWith(`${runner.uiBase}/ext-ui/`)) uiResponses.push(response);
      if (url.origin === runner.base && /^\/(api|dev)\//.test(url.pathname)) {
        const request = response.request();
        exchanges.push({
          method: request.method(),
          url,
          authorization: (await request.allHeaders()).authorization,
          status: response.status(),
          body: await response.text().catch(() => ""),
        });
      }
      if (response.status() >= 400 && !expectErrors) problems.push(`HTTP ${response.status()} ${response.url()}`);
    });
  }

  /** The first recorded exchange `match` accepts (responses are recorded as they finish). */
  const exchange = (match, what) => waitFor(() => exchanges.find(match), what);

  const calls = (kind) =>
    page.$$eval(`#calls li[data-kind="${kind}"]`, (items) =>
      items.map((li) => ({ status: Number(li.dataset.status), text: li.innerText })),
    );

  before(async () => {
    mkdirSync(join(TARGET, "browser"), { recursive: true });
    work = mkdtempSync(join(TARGET, "browser", "run-"));
    runner = await startRunner({
      extensionDir: stageHello(join(work, "hello")),
      dataDir: join(work, "data"),
      uiListener: true,
    });
    await warmUp(runner, WARM_UP_TIMEOUT_MS);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    watch(page);
  });

  after(async () => {
    await browser?.close();
    await runner?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("is the URL serve --dev prints, on the gateway's listener, and the UI has another origin", () => {
    assert.equal(runner.hostPage, `${runner.base}/dev/host`);
    assert.notEqual(new URL(runner.uiBase).origin, new URL(runner.base).origin);
  });

  it("signs in, loads the UI from the runner's UI origin and completes the handshake (ready → bootstrap)", async () => {
    await page.goto(runner.hostPage);
    await waitFor(async () => (await page.getAttribute("body", "data-state")) === "connected", "the page to connect");
    extFrame = await waitFor(
      () => page.frames().find((f) => f.url().startsWith(`${runner.uiBase}/ext-ui/`)),
      "the UI frame from the UI origin",
    );
    // The UI shows "Connected." only from its bootstrap handler.
    await waitFor(async () => (await extFrame.textContent("#status")) === "Connected.", "the UI to get its bootstrap");
    assert.deepEqual(
      await page.$$eval("#events li", (items) => items.map((li) => li.dataset.kind)).then((k) => k.slice(0, 2)),
      ["ready", "bootstrap"],
    );
    assert.equal(await page.textContent("#user"), "dev-user");
    assert.equal(await page.textContent("#tenant"), TENANT);
    assert.equal(await page.textContent("#extension"), runner.extensionId);

    // Signed in through POST /dev/token: a user token for the dev tenant.
    const token = await exchange((e) => e.url.pathname === "/dev/token", "POST /dev/token");
    assert.equal(token.method, "POST");
    assert.equal(token.status, 200, token.body);
    const jwt = JSON.parse(token.body).token;
    assert.equal(claims(jwt).tenant, TENANT);
    // The iframe URL from the gateway, asked with that token for this page's origin.
    const ui = await exchange((e) => e.url.pathname === `/api/ext-ui/${runner.extensionId}`, "GET /api/ext-ui");
    assert.equal(ui.authorization, `Bearer ${jwt}`);
    assert.equal(ui.url.searchParams.get("parentOrigin"), new URL(runner.base).origin);
    assert.equal(ui.status, 200, ui.body);
    const { src } = JSON.parse(ui.body);
    assert.equal(await page.getAttribute("#ext", "src"), src);
    const srcUrl = new URL(src);
    assert.equal(srcUrl.origin, new URL(runner.uiBase).origin);
    assert.equal(srcUrl.pathname, `/ext-ui/${runner.extensionId}/${encodeURIComponent(runner.hash)}/index.html`);
    assert.equal(srcUrl.searchParams.get("tenant"), TENANT);
    assert.equal(srcUrl.searchParams.get("parentOrigin"), new URL(runner.base).origin);
    assert.deepEqual(
      (await calls("ui")).map((c) => c.status),
      [200],
    );

    // Sandboxed allow-scripts only: the UI runs in an opaque origin, its
    // files all came from the UI listener.
    assert.equal(await page.getAttribute("#ext", "sandbox"), "allow-scripts");
    assert.equal(await extFrame.evaluate(() => window.origin), "null");
    assert.ok(uiResponses.length >= 3, `UI responses: ${uiResponses.map((r) => r.url()).join(", ")}`);
    assert.deepEqual(
      uiResponses.filter((r) => r.status() !== 200).map((r) => r.url()),
      [],
    );
    assert.equal(await page.$$eval('#events li[data-kind="error"]', (items) => items.length), 0);
  });

  it("answers the UI's apiproxy through the gateway, runner and guest, and shows the call", async () => {
    await extFrame.fill("#name", "Ada");
    await extFrame.click("#greet");
    await waitFor(async () => (await extFrame.textContent("#message")) === "Hello, Ada!", "the greeting", 30_000);

    // On the wire: /api/ext-proxy with the user token, the guest's answer.
    await exchange((e) => e.url.pathname.startsWith("/api/ext-proxy/"), "the apiproxy call");
    const proxied = exchanges.filter((e) => e.url.pathname.startsWith("/api/ext-proxy/"));
    assert.deepEqual(
      proxied.map((e) => [e.method, e.url.pathname, e.status]),
      [["GET", `/api/ext-proxy/${runner.extensionId}/hello/Ada`, 200]],
    );
    assert.equal(claims(proxied[0].authorization.replace(/^Bearer /, "")).tenant, TENANT);
    const answer = JSON.parse(proxied[0].body);
    assert.equal(answer.message, "Hello, Ada!");
    assert.equal(answer.tenant, TENANT);
    assert.equal(answer.extension, runner.extensionId);

    // On the page: the route, the gateway path, the status, the body, the reply.
    const [shown] = await calls("apiproxy");
    assert.equal(shown.status, 200);
    for (const part of [
      "apiproxy GET /hello/Ada",
      `GET /api/ext-proxy/${runner.extensionId}/hello/Ada`,
      "→ 200",
      '"message": "Hello, Ada!"',
      `"tenant": "${TENANT}"`,
      "host → UI: apiproxy_response {body}",
    ]) {
      assert.ok(shown.text.includes(part), `the call shows ${JSON.stringify(part)}:\n${shown.text}`);
    }
  });

  it("saves a screenshot", async () => {
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok(existsSync(SCREENSHOT));
    console.log(`screenshot: ${SCREENSHOT}`);
    assert.deepEqual(problems, [], "no script or HTTP errors on the page");
  });

  it("shows a user of another tenant the gateway's 404 extension_not_installed, and no UI", async () => {
    const other = await browser.newPage({ viewport: { width: 1200, height: 500 } });
    watch(other, { expectErrors: true });
    const from = exchanges.length;
    try {
      await other.goto(`${runner.hostPage}?tenant=other`);
      await waitFor(async () => (await other.getAttribute("body", "data-state")) === "failed", "the page to fail");
      const error = await other.textContent("#error");
      assert.match(error, /^GET \/api\/ext-ui\/com\.example\.hello\?.* → 404 extension_not_installed: /);
      assert.equal(await other.textContent("#tenant"), "other");
      assert.equal(await other.$("#ext"), null, "no iframe");
      // Signed in fine: it is the install that is missing, not the user.
      await exchange((e) => e.status === 404, "the 404");
      const forOther = exchanges.slice(from).filter((e) => e.url.pathname === "/dev/token" || e.url.pathname.startsWith("/api/"));
      assert.deepEqual(
        forOther.map((e) => [e.method, e.url.pathname, e.status]),
        [
          ["POST", "/dev/token", 200],
          ["GET", `/api/ext-ui/${runner.extensionId}`, 404],
        ],
      );
      assert.equal(JSON.parse(forOther[1].body).error.code, "extension_not_installed");
      await other.screenshot({ path: SCREENSHOT_OTHER, fullPage: true });
      console.log(`screenshot: ${SCREENSHOT_OTHER}`);
    } finally {
      await other.close();
    }
  });
});
