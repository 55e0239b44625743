import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";

import { type BootstrapOptions, bootstrapIframe, buildExtUiSrc, type IframeBridge } from "../src/host.js";
import { channel, FakeIframe, FakeWindow, HASH, HEX, PortInbox, settle } from "./fakes.js";

const HOST = "https://app.example.com";
const RUNNER = "https://ext.example.com";
const env = (type: string, payload: unknown, extra: Record<string, unknown> = {}) => ({
  alga: true,
  version: "1",
  type,
  payload,
  ...extra,
});

describe("buildExtUiSrc", () => {
  it("builds exactly the compat §5 URL", () => {
    assert.equal(
      buildExtUiSrc({
        publicBase: `${RUNNER}/`,
        extensionId: "com.example.hello",
        contentHash: HASH,
        clientPath: "/settings",
        tenantId: "tenant-1",
        parentOrigin: HOST,
      }),
      `${RUNNER}/ext-ui/com.example.hello/sha256%3A${HEX}/index.html` +
        `?path=%2Fsettings&extensionId=com.example.hello&tenant=tenant-1&parentOrigin=https%3A%2F%2Fapp.example.com`,
    );
  });

  it("leaves out what was not given, encodes ids and lowercases the hash", () => {
    assert.equal(
      buildExtUiSrc({ publicBase: "/runner//", extensionId: "a/b c?", contentHash: HASH.toUpperCase().replace("SHA256", "sha256") }),
      `/runner/ext-ui/a%2Fb%20c%3F/sha256%3A${HEX}/index.html?path=%2F&extensionId=a%2Fb+c%3F`,
    );
    assert.equal(
      buildExtUiSrc({ publicBase: "", extensionId: "x", contentHash: HASH }),
      `/ext-ui/x/sha256%3A${HEX}/index.html?path=%2F&extensionId=x`,
    );
  });

  it("refuses every other hash form", () => {
    for (const contentHash of [
      HEX, // bare hex
      `sha256:${HEX.slice(1)}`,
      `sha256:${HEX}0`,
      `sha512:${HEX}`,
      `SHA256:${HEX}`,
      `sha256:${"g".repeat(64)}`,
      ` sha256:${HEX}`,
      `sha256:${HEX}/../x`,
      "",
    ]) {
      assert.throws(() => buildExtUiSrc({ publicBase: RUNNER, extensionId: "x", contentHash }), TypeError, contentHash);
    }
  });

  it("refuses bad ids, paths, bases and origins", () => {
    const ok = { publicBase: RUNNER, extensionId: "x", contentHash: HASH };
    for (const bad of [
      { extensionId: "" },
      { clientPath: "settings" },
      { clientPath: "//evil.example" },
      { tenantId: "" },
      { parentOrigin: "*" },
      { parentOrigin: "null" },
      { parentOrigin: `${HOST}/path` },
      { publicBase: "javascript:alert(1)" },
      { publicBase: "ftp://ext.example.com" },
      { publicBase: "//ext.example.com" },
      { publicBase: `${RUNNER}?x=1` },
      { publicBase: "https://user:pw@ext.example.com" },
    ]) {
      assert.throws(() => buildExtUiSrc({ ...ok, ...bad }), TypeError, JSON.stringify(bad));
    }
  });
});

describe("bootstrapIframe", () => {
  const SRC = buildExtUiSrc({ publicBase: RUNNER, extensionId: "x", contentHash: HASH, clientPath: "/start", parentOrigin: HOST });
  const cleanup: Array<() => void> = [];
  afterEach(() => {
    while (cleanup.length) cleanup.pop()!();
  });

  function setup(overrides: Partial<BootstrapOptions> = {}) {
    const host = new FakeWindow(HOST);
    const child = new FakeWindow("null", SRC);
    const iframe = new FakeIframe(child);
    const events: string[] = [];
    const calls: unknown[] = [];
    const bridge: IframeBridge = bootstrapIframe(iframe, {
      allowedOrigin: RUNNER,
      session: { token: "tok", expiresAt: "2030-01-01T00:00:00Z" },
      theme: { "--accent": "#0a7d38" },
      src: SRC,
      window: host,
      onApiProxy: async (request) => {
        calls.push(request);
        if (request.route === "/fail") throw new Error("gateway said 502");
        return `answer to ${request.method} ${request.route}`;
      },
      onReady: () => events.push("ready"),
      onResize: (h) => events.push(`resize ${h}`),
      onNavigate: (p) => events.push(`navigate ${p}`),
      onError: (e) => events.push(`error ${e.message}`),
      ...overrides,
    });
    cleanup.push(() => bridge.destroy());
    const { port1, port2 } = channel();
    const inbox = new PortInbox(port1);
    cleanup.push(() => inbox.close());
    const ready = (from: { origin?: string; source?: unknown } = {}) =>
      host.dispatch({ data: env("ready", {}), origin: from.origin ?? "null", source: "source" in from ? from.source : child, ports: [port2] });
    return { host, child, iframe, events, calls, bridge, inbox, ready };
  }

  it("sandboxes with allow-scripts only by default, then sets the src", () => {
    const { iframe } = setup();
    assert.equal(iframe.getAttribute("sandbox"), "allow-scripts");
    assert.equal(iframe.getAttribute("src"), SRC);
    assert.equal(setup({ sandbox: "allow-scripts allow-forms" }).iframe.getAttribute("sandbox"), "allow-scripts allow-forms");
  });

  it("refuses a src on another origin and a sandbox the UI could escape", () => {
    assert.throws(() => setup({ src: SRC.replace(RUNNER, "https://evil.example") }), /not on allowedOrigin/);
    assert.throws(() => setup({ allowedOrigin: "*" }), /allowedOrigin/);
    const same = buildExtUiSrc({ publicBase: HOST, extensionId: "x", contentHash: HASH });
    assert.throws(
      () => setup({ allowedOrigin: HOST, src: same, sandbox: "allow-scripts allow-same-origin" }),
      /remove its sandbox/,
    );
  });

  it("answers ready from its iframe with bootstrap and theme_tokens on the child's port", async () => {
    const { ready, inbox, events, host } = setup();
    ready();
    assert.deepEqual(
      await inbox.next(),
      env("bootstrap", {
        session: { token: "tok", expires_at: "2030-01-01T00:00:00Z" },
        theme_tokens: { "--accent": "#0a7d38" },
        navigation: { path: "/start" },
      }),
    );
    assert.deepEqual(await inbox.next(), env("theme_tokens", { "--accent": "#0a7d38" }));
    assert.deepEqual(events, ["ready"]);
    assert.deepEqual(host.posted, []);
  });

  it("ignores ready from another window, even with the right origin", async () => {
    const { ready, inbox, events } = setup();
    ready({ source: new FakeWindow("null") });
    ready({ source: null });
    await settle();
    assert.deepEqual(inbox.received, []);
    assert.deepEqual(events, []);
  });

  it("ignores its own iframe speaking with an unexpected origin", async () => {
    const { ready, inbox, events } = setup();
    // Sandboxed without allow-same-origin, the UI can only say "null".
    ready({ origin: RUNNER });
    ready({ origin: "https://evil.example" });
    await settle();
    assert.deepEqual(inbox.received, []);
    assert.deepEqual(events, []);
  });

  it("with allow-same-origin expects the runner's origin and posts to it, never to *", async () => {
    const child = new FakeWindow(RUNNER, SRC);
    const host = new FakeWindow(HOST);
    const bridge = bootstrapIframe(new FakeIframe(child), {
      allowedOrigin: RUNNER,
      session: { token: "tok", expiresAt: "e" },
      src: SRC,
      sandbox: "allow-scripts allow-same-origin",
      window: host,
      onApiProxy: () => "",
    });
    cleanup.push(() => bridge.destroy());
    host.dispatch({ data: env("ready", {}), origin: "null", source: child });
    assert.equal(child.posted.length, 0);
    host.dispatch({ data: env("ready", {}), origin: RUNNER, source: child }); // a legacy child: no port
    assert.deepEqual(
      child.posted.map((p) => [(p.message as { type: string }).type, p.targetOrigin]),
      [
        ["bootstrap", RUNNER],
        ["theme_tokens", RUNNER],
      ],
    );
  });

  it("clamps resize and applies it to the iframe", () => {
    const { host, child, iframe, events } = setup();
    host.dispatch({ data: env("resize", { height: 20 }), origin: "null", source: child });
    assert.equal(iframe.style.height, "100px");
    host.dispatch({ data: env("resize", { height: 123456 }), origin: "null", source: child });
    assert.equal(iframe.style.height, "4000px");
    host.dispatch({ data: env("resize", { height: 333.2 }), origin: "null", source: child });
    assert.equal(iframe.style.height, "333px");
    host.dispatch({ data: env("resize", { height: 999 }), origin: "null", source: new FakeWindow("null") });
    host.dispatch({ data: env("resize", { height: 999 }), origin: "https://evil.example", source: child });
    assert.equal(iframe.style.height, "333px");
    assert.deepEqual(events, ["resize 100", "resize 4000", "resize 333"]);
  });

  it("reports navigate to a client path only", () => {
    const { host, child, events } = setup();
    host.dispatch({ data: env("navigate", { path: "/a?b=c" }), origin: "null", source: child });
    host.dispatch({ data: env("navigate", { path: "https://evil.example/" }), origin: "null", source: child });
    assert.deepEqual(events, ["navigate /a?b=c"]);
  });

  it("answers apiproxy through onApiProxy with the request's id", async () => {
    const { host, child, ready, inbox, calls } = setup();
    ready();
    await inbox.next();
    await inbox.next();
    host.dispatch({
      data: env("apiproxy", { route: "/echo", method: "POST", body: Buffer.from("{}").toString("base64") }, { request_id: "r-1" }),
      origin: "null",
      source: child,
    });
    host.dispatch({ data: env("apiproxy", { route: "hello" }, { request_id: "r-2" }), origin: "null", source: child });
    host.dispatch({ data: env("apiproxy", { route: "/fail" }, { request_id: "r-3" }), origin: "null", source: child });
    const answers = new Map<string, unknown>();
    for (let i = 0; i < 3; i++) {
      const msg = (await inbox.next()) as { request_id: string; payload: unknown };
      answers.set(msg.request_id, msg.payload);
    }
    assert.deepEqual(answers.get("r-1"), { body: Buffer.from("answer to POST /echo").toString("base64") });
    assert.deepEqual(answers.get("r-2"), { body: Buffer.from("answer to GET /hello").toString("base64") });
    assert.deepEqual(answers.get("r-3"), { error: "gateway said 502" });
    assert.deepEqual(
      calls.map((c) => {
        const { route, method, body, requestId } = c as { route: string; method: string; body?: Uint8Array; requestId: string };
        return [route, method, body && Buffer.from(body).toString(), requestId];
      }),
      [
        ["/echo", "POST", "{}", "r-1"],
        ["/hello", "GET", undefined, "r-2"],
        ["/fail", "GET", undefined, "r-3"],
      ],
    );
  });

  it("refuses dot segments in routes without calling onApiProxy", async () => {
    const { host, child, ready, inbox, calls } = setup();
    ready();
    await inbox.next();
    await inbox.next();
    for (const [i, route] of ["/a/../admin", "/%2e%2e/admin", "/./x", "//evil.example/x"].entries()) {
      host.dispatch({ data: env("apiproxy", { route }, { request_id: `r${i}` }), origin: "null", source: child });
      assert.deepEqual(await inbox.next(), env("apiproxy_response", { error: "invalid route" }, { request_id: `r${i}` }));
    }
    assert.deepEqual(calls, []);
  });

  it("ignores apiproxy from a wrong origin or window", async () => {
    const { host, child, ready, inbox, calls } = setup();
    ready();
    await inbox.next();
    await inbox.next();
    host.dispatch({ data: env("apiproxy", { route: "/x" }, { request_id: "a" }), origin: RUNNER, source: child });
    host.dispatch({ data: env("apiproxy", { route: "/x" }, { request_id: "b" }), origin: "null", source: new FakeWindow("null") });
    await settle();
    assert.deepEqual(calls, []);
    assert.deepEqual(inbox.received, []);
  });

  it("sends new theme tokens and stops listening when destroyed", async () => {
    const { ready, inbox, bridge, host, child, events } = setup();
    ready();
    await inbox.next();
    await inbox.next();
    bridge.setTheme({ "--accent": "red" });
    assert.deepEqual(await inbox.next(), env("theme_tokens", { "--accent": "red" }));
    bridge.destroy();
    host.dispatch({ data: env("resize", { height: 500 }), origin: "null", source: child });
    assert.deepEqual(events, ["ready"]);
    assert.equal(host.listeners.size, 0);
  });
});
