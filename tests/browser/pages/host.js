// The host page: embeds the extension UI with the bridge SDK's host side and
// forwards its apiproxy calls to the test gateway. Records what happened in
// window.__events for the test.
import { bootstrapIframe, buildExtUiSrc } from "/sdk/index.js";

const config = JSON.parse(document.getElementById("config").textContent);
const events = (window.__events = []);

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

// Frames that try to speak for the host or for the UI: a third origin, the
// same third origin sandboxed (its messages say "null", like the UI's), and a
// frame on the host's own origin that is not the UI's parent.
for (const [name, url, sandbox] of [
  ["other", `${config.otherOrigin}/other.html`, null],
  ["other-sandboxed", `${config.otherOrigin}/other.html`, "allow-scripts"],
  ["sibling", "/other.html", null],
]) {
  const frame = document.createElement("iframe");
  frame.name = name;
  frame.title = name;
  if (sandbox) frame.setAttribute("sandbox", sandbox);
  frame.src = url;
  document.getElementById("others").append(frame);
}
