// dist/ext-bridge.js: the child side as one classic script (global
// `ExtBridge`) for extension UIs. Sandboxed UIs have an opaque origin, and
// module scripts are fetched with CORS, so a UI loads this with a plain
// <script src>. examples/hello/ui/ext-bridge.js is a committed copy
// (`npm run sync-example`; a test checks it is current).
import { build } from "esbuild";

await build({
  entryPoints: ["src/browser.ts"],
  outfile: "dist/ext-bridge.js",
  bundle: true,
  format: "iife",
  globalName: "ExtBridge",
  target: "es2020",
  legalComments: "none",
  banner: { js: "// @ext-runner/iframe-bridge: child side (generated from sdk/iframe-bridge/src; do not edit)" },
  logLevel: "warning",
});
