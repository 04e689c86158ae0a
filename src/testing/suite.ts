/**
 * A runner-agnostic golden-image helper: set up once, fork per test, tear down once. Works with node:test,
 * mocha, jest, tap or a plain script; the vitest fixture (`thinpool/vitest`) is built on it.
 *
 *   const disks = goldenSuite({ image: '/path/to/golden.img' });
 *   before(() => disks.setup());
 *   after(() => disks.teardown());
 *   test('x', () => disks.withFork(async (fork) => { ... }));
 *
 * Contract:
 * - `setup()` makes the store (memory by default, or a temporary file pool with `store: 'temp'`) and loads the
 *   image once; calling it again returns the same promise. `image` may be a path or a function producing one
 *   (called once, e.g. to run mkfs).
 * - `fork()` needs a finished `setup()`; `withFork(fn)` disposes the fork after fn, also when fn throws.
 * - `teardown()` disposes every fork left open and the store (a temporary directory is removed).
 */
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { GoldenStore, volumeOf, type Fork, type ForkOptions, type Golden, type TempStoreOptions, type VolumeLike } from './store.js';

export interface GoldenSuiteOptions extends TempStoreOptions {
  /** A raw image file, or a function returning one (called once by setup). */
  image: string | (() => string | Promise<string>);
  /** Name of the golden volume (default "golden"). */
  name?: string;
  /** 'memory' (default) or 'temp' (a file pool in a temporary directory). */
  store?: 'memory' | 'temp';
  /** Delete the image file once it is loaded (for images made by the `image` function). Default false. */
  removeImage?: boolean;
  /**
   * Check at teardown that the golden volume is byte-identical to what was loaded (a SHA-256 of the whole
   * volume at setup and at teardown; teardown throws if they differ). Default false.
   */
  verifyGolden?: boolean;
}

export class GoldenSuite {
  readonly options: GoldenSuiteOptions;
  #ready: Promise<void> | null = null;
  #store: GoldenStore | null = null;
  #golden: Golden | null = null;
  #digest: string | null = null;

  constructor(options: GoldenSuiteOptions) {
    this.options = options;
  }

  get store(): GoldenStore {
    if (!this.#store) throw new Error('GoldenSuite: call setup() first');
    return this.#store;
  }

  get golden(): Golden {
    if (!this.#golden) throw new Error('GoldenSuite: call setup() first');
    return this.#golden;
  }

  setup(): Promise<void> {
    this.#ready ??= this.#setup();
    return this.#ready;
  }

  async #setup(): Promise<void> {
    const o = this.options;
    const store = o.store === 'temp' ? GoldenStore.tempSync(o) : GoldenStore.memory(o);
    try {
      const path = typeof o.image === 'function' ? await o.image() : o.image;
      this.#golden = store.loadImageSync(o.name ?? 'golden', path);
      if (o.verifyGolden) this.#digest = volumeDigest(this.#golden);
      if (o.removeImage) rmSync(path, { force: true });
    } catch (e) {
      store.disposeSync();
      throw e;
    }
    this.#store = store;
  }

  fork(opts: ForkOptions = {}): Fork {
    return this.store.fork(this.golden, opts);
  }

  async withFork<T>(fn: (fork: Fork) => T | Promise<T>, opts: ForkOptions = {}): Promise<T> {
    return this.store.withFork(this.golden, fn, opts);
  }

  async teardown(): Promise<void> {
    const s = this.#store;
    const g = this.#golden;
    const before = this.#digest;
    this.#store = null;
    this.#golden = null;
    this.#digest = null;
    this.#ready = null;
    let changed = false;
    try {
      if (g && before !== null) changed = volumeDigest(g) !== before;
    } finally {
      s?.disposeSync();
    }
    if (changed) throw new Error(`golden volume "${g!.name}" changed during the tests`);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.teardown();
  }
}

export function goldenSuite(options: GoldenSuiteOptions): GoldenSuite {
  return new GoldenSuite(options);
}

/** SHA-256 of a volume's whole content (holes read as zeros): to check that a golden did not change. */
export function volumeDigest(v: VolumeLike): string {
  const vol = volumeOf(v);
  const h = createHash('sha256');
  const chunk = 1024 * 1024;
  const buf = Buffer.alloc(chunk);
  for (let pos = 0; pos < vol.sizeBytes; pos += chunk) {
    const n = Math.min(chunk, vol.sizeBytes - pos);
    vol.readSync(buf.subarray(0, n), pos);
    h.update(buf.subarray(0, n));
  }
  return h.digest('hex');
}
