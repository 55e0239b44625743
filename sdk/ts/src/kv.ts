/**
 * `cap:storage.kv`: the install's key-value store, with revisions for
 * optimistic concurrency. Limits: 32 namespaces, 5,120 keys per namespace,
 * 64 KiB per value, 256 MiB in all.
 *
 * @module
 */

import { jsonBytes, strictUtf8, toBytes, utf8 } from './bytes.js';
import { StorageError } from './errors.js';
import { host, thrownCode } from './host.js';
import { STORAGE_ERROR_CODES, type StorageEntry } from './wit.js';

/** A stored value and its revision. */
export class Entry {
  readonly namespace: string;
  readonly key: string;
  readonly value: Uint8Array;
  /** The revision the host gave this value; pass it as `expectedRevision` for a conditional write. */
  readonly revision: bigint | undefined;

  constructor(raw: StorageEntry) {
    this.namespace = raw.namespace;
    this.key = raw.key;
    this.value = raw.value;
    this.revision = raw.revision;
  }

  /** The value as text, invalid UTF-8 replaced. */
  text(): string {
    return utf8(this.value);
  }

  /**
   * The value parsed as JSON.
   * @throws SyntaxError when the value is not UTF-8 JSON.
   */
  json<T = unknown>(): T {
    const text = strictUtf8(this.value);
    if (text === undefined) throw new SyntaxError(`value of ${this.namespace}/${this.key} is not UTF-8`);
    return JSON.parse(text) as T;
  }
}

/** Options of [[put]]. */
export interface PutOptions {
  /**
   * Write only if the stored revision is still this one (`0n`: only if the
   * key is absent); otherwise the put fails with `conflict`.
   */
  expectedRevision?: bigint | number;
}

function call<T>(operation: string, f: () => T): T {
  try {
    return f();
  } catch (thrown) {
    const code = thrownCode(thrown, STORAGE_ERROR_CODES);
    if (code === undefined) throw thrown;
    throw new StorageError(code, operation);
  }
}

/**
 * The entry at `namespace`/`key`, or `undefined` when there is none.
 * @throws StorageError `denied` (capability not granted), `internal`.
 */
export function get(namespace: string, key: string): Entry | undefined {
  try {
    return new Entry(call(`storage.get(${namespace}/${key})`, () => host().storage.get(namespace, key)));
  } catch (e) {
    if (e instanceof StorageError && e.code === 'missing') return undefined;
    throw e;
  }
}

/**
 * Stores `value` (strings are UTF-8 encoded) and returns the entry with its new revision.
 * @throws StorageError `conflict` (revision mismatch), `denied`, `internal` (quotas included).
 */
export function put(namespace: string, key: string, value: Uint8Array | string, options: PutOptions = {}): Entry {
  const revision = options.expectedRevision === undefined ? undefined : BigInt(options.expectedRevision);
  const entry: StorageEntry = { namespace, key, value: toBytes(value), revision };
  return new Entry(call(`storage.put(${namespace}/${key})`, () => host().storage.put(entry)));
}

/** Stores `value` as JSON; see [[put]]. */
export function putJson(namespace: string, key: string, value: unknown, options: PutOptions = {}): Entry {
  return put(namespace, key, jsonBytes(value), options);
}

/**
 * Deletes `namespace`/`key`; `false` when there was nothing to delete.
 * @throws StorageError `denied`, `internal`.
 */
function remove(namespace: string, key: string): boolean {
  try {
    call(`storage.delete(${namespace}/${key})`, () => host().storage.delete(namespace, key));
    return true;
  } catch (e) {
    if (e instanceof StorageError && e.code === 'missing') return false;
    throw e;
  }
}
export { remove as delete };

/**
 * One page of entries in `namespace` in key order, starting after `cursor`
 * (opaque: pass what the host gave; `undefined` for the first page).
 * @throws StorageError `denied`, `internal`.
 */
export function list(namespace: string, cursor?: string): Entry[] {
  return call(`storage.list-entries(${namespace})`, () => host().storage.listEntries(namespace, cursor)).map(
    (raw) => new Entry(raw),
  );
}
