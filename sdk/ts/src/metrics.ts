/**
 * `cap:metrics.emit`: counters, gauges and histograms on the runner's
 * Prometheus endpoint, as `ext_runner_guest_<name>` labelled with the tenant,
 * the extension and your labels. An ext-runner addition to the world:
 * declare `cap:metrics.emit` in the manifest.
 *
 * Names match `[a-z][a-z0-9_]{0,63}` (not ending in `_bucket`, `_sum`,
 * `_count`) and keep their first kind; at most 8 labels, names
 * `[a-z][a-z0-9_]{0,31}` (not `tenant`, `extension`, `le`), values ≤ 128
 * bytes; values finite. 200 series per tenant, 1,000 calls per request.
 * Keep label values to small fixed sets, never ids.
 *
 * @module
 */

import { MetricsError } from './errors.js';
import { host, thrownCode } from './host.js';
import { METRICS_ERROR_CODES, type MetricsImports } from './wit.js';

/** Labels as an object or as pairs. */
export type Labels = Record<string, string> | [string, string][];

function pairs(labels: Labels | undefined): [string, string][] {
  if (labels === undefined) return [];
  return Array.isArray(labels) ? labels.map(([k, v]) => [String(k), String(v)]) : Object.entries(labels).map(([k, v]) => [k, String(v)]);
}

function call(operation: string, f: (metrics: MetricsImports) => void): void {
  const metrics = host().metrics;
  if (metrics === undefined) throw new MetricsError('denied', `${operation} (world without metrics)`);
  try {
    f(metrics);
  } catch (thrown) {
    const code = thrownCode(thrown, METRICS_ERROR_CODES);
    if (code === undefined) throw thrown;
    throw new MetricsError(code, operation);
  }
}

/**
 * Adds `value` (a non-negative integer) to the counter `name`.
 * @throws MetricsError `denied`, `invalid`, `limit-exceeded`.
 */
export function counterAdd(name: string, value: number | bigint = 1, labels?: Labels): void {
  if (typeof value === 'number' ? !Number.isSafeInteger(value) || value < 0 : value < 0n) {
    throw new MetricsError('invalid', `metrics.counter-add(${name}): ${value} is not a non-negative integer`);
  }
  call(`metrics.counter-add(${name})`, (m) => m.counterAdd(name, BigInt(value), pairs(labels)));
}

/**
 * Sets the gauge `name` to `value`.
 * @throws MetricsError as [[counterAdd]].
 */
export function gaugeSet(name: string, value: number, labels?: Labels): void {
  call(`metrics.gauge-set(${name})`, (m) => m.gaugeSet(name, value, pairs(labels)));
}

/**
 * Records `value` in the histogram `name` (buckets 0.001 to 10,000).
 * @throws MetricsError as [[counterAdd]].
 */
export function histogramObserve(name: string, value: number, labels?: Labels): void {
  call(`metrics.histogram-observe(${name})`, (m) => m.histogramObserve(name, value, pairs(labels)));
}
