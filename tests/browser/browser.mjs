// What both browser tests share: where things are, Debian's Chromium (a
// skip or a failure when it is missing), waiting for a condition.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const TARGET = resolve(ROOT, process.env.CARGO_TARGET_DIR || "target");
export const CHROMIUM = process.env.EXT_CHROMIUM || "/usr/bin/chromium";
export const RUNNER_BIN = process.env.EXT_RUNNER_BIN || join(TARGET, "debug", "ext-runner");

/** Flags for Chromium on a machine without network: no background fetches, no first-run UI. */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
/** The first execute compiles the hello component (seconds on two cores). */
export const WARM_UP_TIMEOUT_MS = 120_000;
export const WAIT_TIMEOUT_MS = 20_000;

/**
 * Why the tests are skipped (a string), or false. Without Chromium this
 * exits the process unless EXT_BROWSER_OPTIONAL=1 makes it a skip.
 */
export function chromiumSkip() {
  if (existsSync(CHROMIUM)) return false;
  if (process.env.EXT_BROWSER_OPTIONAL === "1") {
    console.log(`skipped: chromium not installed (${CHROMIUM})`);
    return "chromium not installed";
  }
  console.error(
    `chromium not installed (${CHROMIUM}): run scripts/services/chromium, or set EXT_BROWSER_OPTIONAL=1 to skip this test`,
  );
  process.exit(1);
}

export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `check()`'s first truthy value, polled every 50 ms. */
export async function waitFor(check, what, timeoutMs = WAIT_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}
