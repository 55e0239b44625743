/**
 * `@ext-runner/iframe-bridge`: embed an extension's iframe UI served by
 * ext-runner and talk to it (compat §5).
 *
 * - {@link buildExtUiSrc}, {@link bootstrapIframe}: the host page's side (`./host`);
 * - {@link createExtensionClient}: the UI's side (`./child`; also as the
 *   classic script `dist/ext-bridge.js`, global `ExtBridge`);
 * - the typed messages and their parsers (`./protocol`).
 */
export * from "./protocol.js";
export * from "./host.js";
export * from "./child.js";
