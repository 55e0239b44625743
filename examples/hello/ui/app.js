// Hello extension UI: talks to the host page over postMessage (protocol
// version "1"): ready -> bootstrap, resize, apiproxy -> apiproxy_response.
"use strict";

(function () {
  const params = new URLSearchParams(window.location.search);
  // Sandboxed without allow-same-origin, so our own origin is "null": the host
  // tells us its origin, and we talk to that origin only.
  const parentOrigin = params.get("parentOrigin") || referrerOrigin();
  const pending = new Map();
  let nextId = 1;

  const form = document.getElementById("greet");
  const nameInput = document.getElementById("name");
  const message = document.getElementById("message");
  const status = document.getElementById("status");

  function referrerOrigin() {
    try {
      return document.referrer ? new URL(document.referrer).origin : null;
    } catch (_) {
      return null;
    }
  }

  function post(type, payload, requestId) {
    if (!parentOrigin || window.parent === window) {
      return false;
    }
    const msg = { alga: true, version: "1", type: type, payload: payload || {} };
    if (requestId) {
      msg.request_id = requestId;
    }
    window.parent.postMessage(msg, parentOrigin);
    return true;
  }

  function apiproxy(route, method) {
    return new Promise(function (resolve, reject) {
      const id = "hello-" + nextId++;
      if (!post("apiproxy", { route: route, method: method || "GET" }, id)) {
        reject(new Error("not embedded in a host page"));
        return;
      }
      pending.set(id, { resolve: resolve, reject: reject });
    });
  }

  function decodeBody(b64) {
    const bytes = Uint8Array.from(atob(b64 || ""), function (c) {
      return c.charCodeAt(0);
    });
    return new TextDecoder().decode(bytes);
  }

  function resize() {
    post("resize", { height: document.documentElement.scrollHeight });
  }

  window.addEventListener("message", function (event) {
    if (event.source !== window.parent || event.origin !== parentOrigin) {
      return;
    }
    const msg = event.data;
    if (!msg || msg.alga !== true || msg.version !== "1") {
      return;
    }
    if (msg.type === "bootstrap") {
      status.textContent = "Connected.";
      resize();
    } else if (msg.type === "apiproxy_response") {
      const waiter = pending.get(msg.request_id);
      if (!waiter) {
        return;
      }
      pending.delete(msg.request_id);
      const payload = msg.payload || {};
      if (payload.error) {
        waiter.reject(new Error(String(payload.error)));
      } else {
        waiter.resolve(decodeBody(payload.body));
      }
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const name = nameInput.value.trim();
    const route = name ? "/hello/" + encodeURIComponent(name) : "/hello";
    apiproxy(route, "GET")
      .then(function (text) {
        message.textContent = JSON.parse(text).message;
      })
      .catch(function (err) {
        message.textContent = "";
        status.textContent = "Request failed: " + err.message;
      })
      .then(resize);
  });

  if (post("ready", {})) {
    status.textContent = "Waiting for the host…";
  } else {
    status.textContent = "Open this page from the host application.";
  }
})();
