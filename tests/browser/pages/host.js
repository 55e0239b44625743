// The host page: embeds the extension UI with the bridge SDK's host side and
// forwards its apiproxy calls to the test gateway. Records what happened in
// window.__events for the test; window.__raw records every message event the
// page received (to show that the forged ones did arrive, and were ignored).
import { bootstrapIframe, buildExtUiSrc } from "/sdk/index.js";

const config = JSON.parse(document.getElementById("config").textContent);
const events = (window.__events = []);
const raw = (window.__raw = []);
window.addEventListener("message", (event) => {
  raw.push({ origin: event.origin, type: event.data && event.data.type });
});

const src = buildExtUiSrc({
  publicBase: config.runnerBase,
  extensionId: config.extensionId,
  contentHash: config.contentHash,
  clientPath: "/",
  tenantId: config.tenantId,
  parentOrigin: window.location.origin,
});
document.getElementById("src").textContent = src;

const iframe = document.createElement("iframe");
iframe.id = "ext";
iframe.title = "Hello extension";
window.__bridge = bootstrapIframe(iframe, {
  src,
  allowedOrigin: new URL(config.runnerBase).origin,
  session: config.session,
  theme: { "--accent": "#0a7d38" },
  onReady: () => events.push({ type: "ready" }),
  onResize: (height) => events.push({ type: "resize", height }),
  onNavigate: (path) => events.push({ type: "navigate", path }),
  onError: (error) => events.push({ type: "error", message: error.message }),
  onApiProxy: async ({ route, method, body, requestId }) => {
    events.push({ type: "apiproxy", route, method, requestId });
    const answer = await fetch("/gateway/apiproxy", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${config.session.token}` },
      body: JSON.stringify({ route, method, body_b64: body ? btoa(String.fromCharCode(...body)) : undefined }),
    });
    if (!answer.ok) throw new Error(`gateway ${answer.status}: ${await answer.text()}`);
    return new Uint8Array(await answer.arrayBuffer());
  },
});
document.getElementById("slot").append(iframe);

const other = document.createElement("iframe");
other.id = "other";
other.title = "Another origin";
other.src = `${config.otherOrigin}/other.html`;
document.getElementById("other-slot").append(other);
