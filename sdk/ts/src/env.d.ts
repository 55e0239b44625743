// The few Web APIs both StarlingMonkey (inside the component) and Node.js
// (unit tests) provide; the SDK uses nothing else from its environment.
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: Uint8Array): string;
}
