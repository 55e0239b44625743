// The two single-file builds, for pages that load the bridge without a
// bundler of their own:
// - dist/ext-bridge.js: the child side as one classic script (global
//   `ExtBridge`) for extension UIs. Sandboxed UIs have an opaque origin, and
//   module scripts are fetched with CORS, so a UI loads this with a plain
//   <script src>. examples/hello/ui/ext-bridge.js is a committed copy
//   (`npm run sync-example`; a test checks it is current).
// - dist/ext-bridge-host.js: the host side (buildExtUiSrc, bootstrapIframe)
//   as one ES module, for the dev host page `ext-runner serve --dev` serves
//   at /dev/host. crates/runner/src/gateway/dev_host/bridge-host.js is a
//   committed copy, compiled into the binary (`npm run sync-dev-host`; a
//   test checks it is current).
import { build } from "esbuild";

const common = {
  bundle: true,
  target: "es2020",
  legalComments: "none",
  logLevel: "warning",
};

await build({
  ...common,
  entryPoints: ["src/browser.ts"],
  outfile: "dist/ext-bridge.js",
  format: "iife",
  globalName: "ExtBridge",
  banner: { js: "// @ext-runner/iframe-bridge: child side (generated from sdk/iframe-bridge/src; do not edit)" },
});

await build({
  ...common,
  entryPoints: ["src/host.ts"],
  outfile: "dist/ext-bridge-host.js",
  format: "esm",
  banner: { js: "// @ext-runner/iframe-bridge: host side (generated from sdk/iframe-bridge/src; do not edit)" },
});
