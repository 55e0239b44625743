// Hello extension UI. ext-bridge.js (the child side of sdk/iframe-bridge,
// global ExtBridge) does the protocol: ready -> bootstrap and theme tokens,
// resize, and apiproxy calls to this extension's own handlers.
"use strict";

(function () {
  const button = document.getElementById("greet");
  const nameInput = document.getElementById("name");
  const message = document.getElementById("message");
  const status = document.getElementById("status");

  let client;
  try {
    // The host's origin comes from ?parentOrigin=; we post to it and only to it.
    client = ExtBridge.createExtensionClient();
  } catch (err) {
    status.textContent = "Open this page from the host application.";
    button.disabled = true;
    return;
  }
  if (!client.embedded) {
    status.textContent = "Open this page from the host application.";
    return;
  }

  function resize() {
    client.resize(); // the height of our content; the host clamps it
  }

  client.onBootstrap(function () {
    status.textContent = "Connected.";
    resize();
  });

  function greet() {
    const name = nameInput.value.trim();
    const route = name ? "/hello/" + encodeURIComponent(name) : "/hello";
    client
      .apiproxy(route, { method: "GET" }, { timeoutMs: 10000 })
      .then(function (answer) {
        message.textContent = answer.json().message;
        status.textContent = "Connected.";
      })
      .catch(function (err) {
        message.textContent = "";
        status.textContent = "Request failed: " + err.message;
      })
      .then(resize);
  }

  button.addEventListener("click", greet);
  nameInput.addEventListener("keydown", function (event) {
    if (event.key === "Enter") {
      greet();
    }
  });

  client.ready();
})();
