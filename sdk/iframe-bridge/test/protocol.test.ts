import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  base64ToBytes,
  bytesToBase64,
  clampHeight,
  isClientPath,
  isOrigin,
  parseChildMessage,
  parseHostMessage,
} from "../src/protocol.js";

const env = (type: string, payload: unknown, extra: Record<string, unknown> = {}) => ({
  alga: true,
  version: "1",
  type,
  payload,
  ...extra,
});

describe("parseChildMessage", () => {
  it("accepts each child message type", () => {
    assert.deepEqual(parseChildMessage(env("ready", {})), env("ready", {}));
    assert.deepEqual(parseChildMessage({ alga: true, version: "1", type: "ready" }), env("ready", {}));
    assert.deepEqual(parseChildMessage(env("resize", { height: 240 })), env("resize", { height: 240 }));
    assert.deepEqual(parseChildMessage(env("navigate", { path: "/settings?tab=2" })), env("navigate", { path: "/settings?tab=2" }));
    assert.deepEqual(
      parseChildMessage(env("apiproxy", { route: "/hello", method: "post", body: "aGk=" }, { request_id: "r1" })),
      env("apiproxy", { route: "/hello", method: "POST", body: "aGk=" }, { request_id: "r1" }),
    );
  });

  it("drops anything that is not exactly a protocol message", () => {
    const bad: unknown[] = [
      null,
      "ready",
      [],
      { ...env("ready", {}), alga: "true" },
      { ...env("ready", {}), version: 1 },
      { ...env("ready", {}), version: "2" },
      env("bootstrap", {}), // a host message, not a child's
      env("unknown", {}),
      env("ready", []),
      env("resize", { height: "240" }),
      env("resize", { height: Number.NaN }),
      env("resize", { height: Number.POSITIVE_INFINITY }),
      env("navigate", { path: "settings" }),
      env("navigate", { path: "//evil.example/x" }),
      env("navigate", { path: "https://evil.example/" }),
      env("navigate", { path: "/a\\b" }),
      env("apiproxy", { route: "/hello" }), // no request_id
      env("apiproxy", { route: "/hello" }, { request_id: "" }),
      env("apiproxy", { route: "/hello" }, { request_id: "x".repeat(129) }),
      env("apiproxy", { route: "" }, { request_id: "r" }),
      env("apiproxy", { route: "/x".repeat(2000) }, { request_id: "r" }),
      env("apiproxy", { route: "/hello", body: "not base64!" }, { request_id: "r" }),
      env("apiproxy", { route: "/hello", method: "TRACE" }, { request_id: "r" }),
      env("apiproxy", { route: "/hello", method: 7 }, { request_id: "r" }),
    ];
    for (const data of bad) {
      assert.equal(parseChildMessage(data), null, JSON.stringify(data));
    }
  });
});

describe("parseHostMessage", () => {
  const bootstrap = {
    session: { token: "t", expires_at: "2030-01-01T00:00:00Z" },
    theme_tokens: { "--accent": "#123456" },
    navigation: { path: "/" },
  };

  it("accepts each host message type", () => {
    assert.deepEqual(parseHostMessage(env("bootstrap", bootstrap)), env("bootstrap", bootstrap));
    assert.deepEqual(parseHostMessage(env("theme_tokens", { "--a": "1" })), env("theme_tokens", { "--a": "1" }));
    assert.deepEqual(
      parseHostMessage(env("apiproxy_response", { body: "aGk=" }, { request_id: "r1" })),
      env("apiproxy_response", { body: "aGk=" }, { request_id: "r1" }),
    );
    assert.deepEqual(
      parseHostMessage(env("apiproxy_response", { error: "boom" }, { request_id: "r1" })),
      env("apiproxy_response", { error: "boom" }, { request_id: "r1" }),
    );
  });

  it("drops malformed host messages", () => {
    const bad: unknown[] = [
      env("ready", {}),
      env("bootstrap", { ...bootstrap, session: { token: 1, expires_at: "x" } }),
      env("bootstrap", { ...bootstrap, theme_tokens: { "--a": 1 } }),
      env("bootstrap", { ...bootstrap, navigation: {} }),
      env("theme_tokens", { "--a": { nested: true } }),
      env("apiproxy_response", { body: "aGk=" }), // no request_id
      env("apiproxy_response", { body: "%%%" }, { request_id: "r" }),
    ];
    for (const data of bad) {
      assert.equal(parseHostMessage(data), null, JSON.stringify(data));
    }
  });
});

describe("helpers", () => {
  it("clamps heights to 100..4000 whole pixels", () => {
    assert.deepEqual([-5, 0, 99.4, 100, 250.6, 4000, 4001, 1e9].map(clampHeight), [100, 100, 100, 100, 251, 4000, 4000, 4000]);
  });

  it("round-trips every byte through base64", () => {
    const bytes = new Uint8Array(70_000).map((_, i) => i % 256);
    assert.deepEqual(base64ToBytes(bytesToBase64(bytes)), bytes);
    assert.equal(bytesToBase64(new TextEncoder().encode("héllo")), Buffer.from("héllo").toString("base64"));
  });

  it("knows an origin from anything else", () => {
    for (const ok of ["https://app.example.com", "http://127.0.0.1:8080"]) assert.ok(isOrigin(ok), ok);
    for (const bad of ["*", "null", "", "https://app.example.com/", "https://a.com/path", "ftp://a.com", "javascript:alert(1)", null]) {
      assert.ok(!isOrigin(bad), String(bad));
    }
  });

  it("knows a client path", () => {
    for (const ok of ["/", "/a/b?c=d#e"]) assert.ok(isClientPath(ok), ok);
    for (const bad of ["", "a", "//host", "/a\u0000", "/a\nb", "https://x/"]) assert.ok(!isClientPath(bad), bad);
  });
});
