// Both real sides wired together through fake windows that behave like a
// browser: the child's posts reach the host only at the host's origin, and
// the host answers through the port handed over with ready.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { createExtensionClient } from "../src/child.js";
import { bootstrapIframe, buildExtUiSrc } from "../src/host.js";
import { embed, FakeIframe, FakeWindow, HASH, settle, until } from "./fakes.js";

const HOST = "https://app.example.com";
const RUNNER = "https://ext.example.com";

describe("host and child together", () => {
  it("handshake, theme, resize and an apiproxy round trip", async () => {
    const src = buildExtUiSrc({ publicBase: RUNNER, extensionId: "com.example.hello", contentHash: HASH, clientPath: "/start", parentOrigin: HOST });
    const host = new FakeWindow(HOST);
    const childWin = new FakeWindow("null", src);
    embed(host, childWin);
    const iframe = new FakeIframe(childWin);
    const log: string[] = [];
    const bridge = bootstrapIframe(iframe, {
      src,
      allowedOrigin: RUNNER,
      session: { token: "tok", expiresAt: "2030-01-01T00:00:00Z" },
      theme: { "--accent": "#0a7d38" },
      window: host,
      onApiProxy: async ({ route, method }) => JSON.stringify({ message: `${method} ${route}` }),
      onReady: () => log.push("host: ready"),
      onResize: (h) => log.push(`host: resize ${h}`),
    });
    const client = createExtensionClient({ window: childWin });
    client.onBootstrap(({ session, navigation }) => log.push(`child: bootstrap ${session.token} ${navigation.path}`));
    client.ready();
    await until(() => log.length === 2, "the handshake");
    assert.deepEqual(log, ["host: ready", "child: bootstrap tok /start"]);
    assert.equal(childWin.styles.get("--accent"), "#0a7d38");

    client.resize(640);
    await until(() => iframe.style.height !== "", "the resize");
    assert.equal(iframe.style.height, "640px");

    const answer = await client.apiproxy("/hello/Ada", { method: "GET" }, { timeoutMs: 1000 });
    assert.deepEqual(answer.json(), { message: "GET /hello/Ada" });

    // Nothing was ever posted through a window to `*` (the fakes throw on it),
    // and the host never posted to the child's window at all.
    assert.deepEqual(childWin.posted, []);
    assert.ok(host.posted.every((p) => p.targetOrigin === HOST));
    client.destroy();
    bridge.destroy();
  });

  it("a child told the wrong parent origin is never answered", async () => {
    const src = buildExtUiSrc({ publicBase: RUNNER, extensionId: "x", contentHash: HASH, parentOrigin: "https://evil.example" });
    const host = new FakeWindow(HOST);
    const childWin = new FakeWindow("null", src);
    embed(host, childWin);
    let ready = 0;
    const bridge = bootstrapIframe(new FakeIframe(childWin), {
      src,
      allowedOrigin: RUNNER,
      session: { token: "t", expiresAt: "e" },
      window: host,
      onApiProxy: () => "",
      onReady: () => ready++,
    });
    const client = createExtensionClient({ window: childWin });
    client.ready();
    await settle();
    assert.equal(ready, 0);
    assert.equal(client.bootstrap, null);
    client.destroy();
    bridge.destroy();
  });
});

describe("examples/hello/ui/ext-bridge.js", () => {
  it("is the current build of the child side (npm run sync-example)", () => {
    const built = readFileSync(new URL("../../dist/ext-bridge.js", import.meta.url), "utf8");
    const committed = readFileSync(new URL("../../../../examples/hello/ui/ext-bridge.js", import.meta.url), "utf8");
    assert.ok(committed === built, "examples/hello/ui/ext-bridge.js is stale: run `npm run sync-example` in sdk/iframe-bridge");
  });
});

describe("crates/runner/src/gateway/dev_host/bridge-host.js", () => {
  it("is the current build of the host side (npm run sync-dev-host)", () => {
    const built = readFileSync(new URL("../../dist/ext-bridge-host.js", import.meta.url), "utf8");
    const committed = readFileSync(
      new URL("../../../../crates/runner/src/gateway/dev_host/bridge-host.js", import.meta.url),
      "utf8",
    );
    assert.ok(
      committed === built,
      "crates/runner/src/gateway/dev_host/bridge-host.js is stale: run `npm run sync-dev-host` in sdk/iframe-bridge",
    );
  });
});
