// Entry of dist/ext-bridge.js, the classic-script build for extension UIs
// (global `ExtBridge`). A sandboxed UI has an opaque origin, so module
// scripts (fetched with CORS) would need CORS headers; a classic script does not.
export {
  createExtensionClient,
  launchParams,
  ApiProxyError,
  ApiProxyTimeoutError,
  ApiProxyResponse,
  DEFAULT_API_PROXY_TIMEOUT_MS,
} from "./child.js";
export { PROTOCOL_VERSION } from "./protocol.js";
