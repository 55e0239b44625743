// Fake windows and message events: enough of the browser's postMessage
// semantics (origin, source, transferred ports) to test both sides in Node.
import { MessageChannel, type MessagePort } from "node:worker_threads";

export interface FakeEvent {
  data: unknown;
  origin: string;
  source: unknown;
  ports: MessagePort[];
}

export interface Posted {
  message: unknown;
  targetOrigin: string;
  transfer: unknown[] | undefined;
}

type Listener = (event: FakeEvent) => void;

/** A window whose document has `origin` ("null" when sandboxed to an opaque origin). */
export class FakeWindow {
  readonly listeners = new Set<Listener>();
  readonly posted: Posted[] = [];
  parent: unknown = this;
  location: { origin: string; href: string; search: string };
  readonly styles = new Map<string, string>();
  document = {
    documentElement: {
      getBoundingClientRect: () => ({ height: 320.4 }),
      style: { setProperty: (name: string, value: string) => void this.styles.set(name, value) },
    },
  };

  constructor(
    readonly origin: string,
    href = `${origin}/`,
  ) {
    this.location = { origin, href, search: new URL(href, "http://x").search };
  }

  addEventListener(_type: "message", listener: Listener): void {
    this.listeners.add(listener);
  }

  removeEventListener(_type: "message", listener: Listener): void {
    this.listeners.delete(listener);
  }

  /** What `otherWindow.postMessage` records; `deliverPosted` can hand it on like a browser. */
  postMessage(message: unknown, targetOrigin: string, transfer?: unknown[]): void {
    if (targetOrigin === "*") {
      throw new Error("test: something posted to *");
    }
    this.posted.push({ message, targetOrigin, transfer });
  }

  /** Dispatch a message event to this window's listeners. */
  dispatch(event: Partial<FakeEvent> & { data: unknown; origin: string; source: unknown }): void {
    const full: FakeEvent = { ports: [], ...event, data: structuredClone(event.data) };
    for (const listener of [...this.listeners]) listener(full);
  }
}

/**
 * Wire `child` into `host` as a browser would: what the child posts to its
 * parent reaches the host's listeners when `targetOrigin` matches the host's
 * origin, with the child's origin and window as origin and source.
 */
export function embed(host: FakeWindow, child: FakeWindow): void {
  child.parent = {
    postMessage(message: unknown, targetOrigin: string, transfer?: unknown[]) {
      if (targetOrigin === "*") throw new Error("test: child posted to *");
      host.posted.push({ message, targetOrigin, transfer });
      if (targetOrigin !== host.origin) return; // the browser drops it
      queueMicrotask(() =>
        host.dispatch({ data: message, origin: child.origin, source: child, ports: (transfer ?? []) as MessagePort[] }),
      );
    },
  };
}

/** A fake iframe element whose content window is `contentWindow`. */
export class FakeIframe {
  readonly attributes = new Map<string, string>();
  style = { height: "" };
  constructor(public contentWindow: unknown) {}
  getAttribute(name: string): string | null {
    return this.attributes.get(name) ?? null;
  }
  setAttribute(name: string, value: string): void {
    this.attributes.set(name, value);
  }
}

/** Collect what arrives on a port; `next()` waits for the next message. */
export class PortInbox {
  readonly received: unknown[] = [];
  private waiters: Array<(value: unknown) => void> = [];
  constructor(readonly port: MessagePort) {
    port.on("message", (data: unknown) => {
      const waiter = this.waiters.shift();
      if (waiter) waiter(data);
      else this.received.push(data);
    });
  }
  next(timeoutMs = 1000): Promise<unknown> {
    const queued = this.received.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("test: no message on the port")), timeoutMs);
      this.waiters.push((value) => {
        clearTimeout(timer);
        resolve(value);
      });
    });
  }
  close(): void {
    this.port.close();
  }
}

export function channel(): { port1: MessagePort; port2: MessagePort } {
  const { port1, port2 } = new MessageChannel();
  return { port1, port2 };
}

/** Let queued microtasks and message-port deliveries run. */
export function settle(ms = 20): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export const HEX = "0123456789abcdef".repeat(4);
export const HASH = `sha256:${HEX}`;

/** Wait until `check()` holds (message ports deliver asynchronously; a loaded machine is slow). */
export async function until(check: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`test: timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
