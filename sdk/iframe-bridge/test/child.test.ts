import assert from "node:assert/strict";
import type { MessagePort } from "node:worker_threads";
import { afterEach, describe, it } from "node:test";

import {
  ApiProxyError,
  ApiProxyTimeoutError,
  createExtensionClient,
  type ExtensionClient,
  launchParams,
} from "../src/child.js";
import type { BootstrapPayload } from "../src/protocol.js";
import { FakeWindow, until } from "./fakes.js";

const HOST = "https://app.example.com";
const env = (type: string, payload: unknown, extra: Record<string, unknown> = {}) => ({
  alga: true,
  version: "1",
  type,
  payload,
  ...extra,
});
const BOOT: BootstrapPayload = {
  session: { token: "tok", expires_at: "2030-01-01T00:00:00Z" },
  theme_tokens: { "--accent": "#0a7d38", color: "ignored: not a custom property" },
  navigation: { path: "/start" },
};

describe("createExtensionClient", () => {
  const cleanup: Array<() => void> = [];
  afterEach(() => {
    while (cleanup.length) cleanup.pop()!();
  });

  function setup(timeoutMs?: number) {
    const parent = new FakeWindow(HOST);
    const sibling = new FakeWindow("https://evil.example");
    const win = new FakeWindow("null", `https://ext.example.com/ext-ui/x/h/index.html?path=%2F&parentOrigin=${encodeURIComponent(HOST)}`);
    win.parent = parent;
    const client: ExtensionClient = createExtensionClient(timeoutMs === undefined ? { window: win } : { window: win, timeoutMs });
    cleanup.push(() => client.destroy());
    const fromParent = (data: unknown, origin = HOST, source: unknown = parent) => win.dispatch({ data, origin, source });
    /** The `apiproxy` messages posted so far. */
    const requests = () =>
      parent.posted
        .map((p) => p.message as { type: string; request_id: string; payload: unknown })
        .filter((m) => m.type === "apiproxy");
    return { parent, sibling, win, client, fromParent, requests };
  }

  it("reads the parent origin from the URL and refuses to run without a valid one", () => {
    const { client } = setup();
    assert.equal(client.parentOrigin, HOST);
    assert.equal(client.embedded, true);
    for (const parentOrigin of ["*", "null", `${HOST}/x`]) {
      assert.throws(() => createExtensionClient({ window: new FakeWindow("null"), parentOrigin }), TypeError);
    }
    assert.throws(() => createExtensionClient({ window: new FakeWindow("null") }), /parentOrigin/);
    assert.deepEqual(launchParams("?path=%2Fa&extensionId=com.x&tenant=t&parentOrigin=https%3A%2F%2Fh.example"), {
      path: "/a",
      extensionId: "com.x",
      tenant: "t",
      parentOrigin: "https://h.example",
    });
    assert.equal(launchParams("?path=https://evil.example").path, "/");
  });

  it("posts ready to the parent origin only, handing over a port", () => {
    const { parent, client } = setup();
    client.ready();
    assert.equal(parent.posted.length, 1);
    const [posted] = parent.posted;
    assert.deepEqual(posted!.message, env("ready", {}));
    assert.equal(posted!.targetOrigin, HOST);
    assert.equal(posted!.transfer?.length, 1);
    client.resize(512.2);
    client.navigate("/next");
    assert.deepEqual(
      parent.posted.slice(1).map((p) => [p.message, p.targetOrigin]),
      [
        [env("resize", { height: 513 }), HOST],
        [env("navigate", { path: "/next" }), HOST],
      ],
    );
    client.resize(); // the height of <html>, rounded up
    assert.deepEqual(parent.posted.at(-1)!.message, env("resize", { height: 321 }));
    assert.throws(() => client.navigate("https://evil.example/"), TypeError);
  });

  it("takes bootstrap from the parent and applies the theme", () => {
    const { client, fromParent, win } = setup();
    const seen: BootstrapPayload[] = [];
    client.onBootstrap((p) => seen.push(p));
    fromParent(env("bootstrap", BOOT));
    assert.deepEqual(seen, [BOOT]);
    assert.deepEqual(client.bootstrap, BOOT);
    assert.equal(win.styles.get("--accent"), "#0a7d38");
    assert.equal(win.styles.has("color"), false);
    const late: BootstrapPayload[] = [];
    client.onBootstrap((p) => late.push(p)); // registered after: called at once
    assert.deepEqual(late, [BOOT]);
    fromParent(env("theme_tokens", { "--accent": "red" }));
    assert.equal(win.styles.get("--accent"), "red");
  });

  it("takes host messages from the port it handed over", async () => {
    const { client, parent, win } = setup();
    const themes: unknown[] = [];
    client.onThemeTokens((t) => themes.push(t));
    client.ready();
    const hostEnd = parent.posted[0]!.transfer![0] as MessagePort;
    cleanup.push(() => hostEnd.close());
    hostEnd.postMessage(env("bootstrap", BOOT));
    hostEnd.postMessage(env("theme_tokens", { "--accent": "blue" }));
    await until(() => themes.length === 2, "both messages on the port");
    assert.deepEqual(client.bootstrap, BOOT);
    assert.deepEqual(themes, [BOOT.theme_tokens, { "--accent": "blue" }]);
    assert.equal(win.styles.get("--accent"), "blue");
  });

  it("ignores host messages from a wrong origin or a wrong window", () => {
    const { client, fromParent, sibling, win } = setup();
    fromParent(env("bootstrap", BOOT), "https://evil.example"); // wrong origin, right window
    fromParent(env("bootstrap", BOOT), HOST, sibling); // right origin, wrong window
    fromParent(env("bootstrap", BOOT), HOST, null);
    fromParent(env("bootstrap", BOOT), "null");
    assert.equal(client.bootstrap, null);
    assert.equal(win.styles.size, 0);
  });

  it("correlates apiproxy answers by request id", async () => {
    const { client, fromParent, requests } = setup();
    const a = client.apiproxy("/a", { method: "POST", body: "{\"x\":1}" });
    const b = client.apiproxy("/b");
    const [ra, rb] = requests();
    assert.deepEqual(ra!.payload, { route: "/a", method: "POST", body: Buffer.from("{\"x\":1}").toString("base64") });
    assert.deepEqual(rb!.payload, { route: "/b" });
    assert.notEqual(ra!.request_id, rb!.request_id);
    assert.match(ra!.request_id, /^[0-9a-f]{16}-\d+$/);
    // Answers out of order, an unknown id, and a duplicate.
    fromParent(env("apiproxy_response", { body: Buffer.from("unknown").toString("base64") }, { request_id: "nope" }));
    fromParent(env("apiproxy_response", { body: Buffer.from("{\"b\":2}").toString("base64") }, { request_id: rb!.request_id }));
    fromParent(env("apiproxy_response", { body: Buffer.from("[\"a\"]").toString("base64") }, { request_id: ra!.request_id }));
    fromParent(env("apiproxy_response", { error: "duplicate" }, { request_id: ra!.request_id }));
    assert.deepEqual((await a).json(), ["a"]);
    assert.deepEqual((await b).json(), { b: 2 });
  });

  it("ignores a forged answer from another frame and takes the real one", async () => {
    const { client, fromParent, requests, sibling } = setup();
    const pending = client.apiproxy("/hello");
    const id = requests()[0]!.request_id;
    const forged = env("apiproxy_response", { body: Buffer.from("forged").toString("base64") }, { request_id: id });
    fromParent(forged, "https://evil.example", sibling);
    fromParent(forged, HOST, sibling);
    fromParent(forged, "https://evil.example");
    fromParent(env("apiproxy_response", { body: Buffer.from("real").toString("base64") }, { request_id: id }));
    assert.equal((await pending).text(), "real");
  });

  it("rejects with the host's error", async () => {
    const { client, fromParent, requests } = setup();
    const pending = client.apiproxy("/x");
    fromParent(env("apiproxy_response", { error: "Proxy error 502" }, { request_id: requests()[0]!.request_id }));
    await assert.rejects(pending, (e: unknown) => e instanceof ApiProxyError && e.message === "Proxy error 502");
  });

  it("times out, then ignores the late answer", async () => {
    const { client, fromParent, requests } = setup(5_000);
    const started = Date.now();
    const pending = client.apiproxy("/slow", {}, { timeoutMs: 30 });
    await assert.rejects(pending, ApiProxyTimeoutError);
    assert.ok(Date.now() - started >= 25);
    fromParent(env("apiproxy_response", { body: "" }, { request_id: requests()[0]!.request_id })); // no throw, no effect
    // The client-wide default applies when no per-call timeout is given.
    const quick = createExtensionClient({ window: setup().win, timeoutMs: 10 });
    cleanup.push(() => quick.destroy());
    await assert.rejects(quick.apiproxy("/x"), ApiProxyTimeoutError);
  });

  it("does nothing when not embedded, and rejects pending calls when destroyed", async () => {
    const alone = new FakeWindow("null");
    const lonely = createExtensionClient({ window: alone, parentOrigin: HOST });
    assert.equal(lonely.embedded, false);
    lonely.ready();
    await assert.rejects(lonely.apiproxy("/x"), /not embedded/);
    lonely.destroy();

    const { client } = setup();
    const pending = client.apiproxy("/x");
    client.destroy();
    await assert.rejects(pending, /destroyed/);
  });
});

