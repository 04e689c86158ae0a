// Crash points, the replay side (used by crash-points.test.ts through crash-cut.ts): the dry run's I/O log (a device
// wrapper that records every call before it runs) and the post-crash images rebuilt from that log at any cut, crashed
// the way CrashClock.crash does (random subset of unflushed writes kept, last one torn per 512-byte sector), so
// that most cuts need no re-run of the engine.
import type { BlockDevice } from '../../src/io/block-device.js';
import { type CrashDevice, SECTOR_BYTES } from '../../src/io/crash-device.js';
import type { MemoryDevice } from '../../src/io/memory-device.js';
import type { CatalogData, MemoryCatalogStore } from '../../src/thin/catalog.js';
import type { Template } from './harness.js';

export interface IoEvent {
  op: number;
  dev: string;
  kind: string;
  offset: number;
  /** Bytes of a write; [catalog, fingerprint] of a catalog stage. */
  data?: Uint8Array;
  /** Length of a discard, size of a resize. */
  length?: number;
  staged?: [CatalogData, string];
}

/**
 * A device that logs each call (before it runs) for the dry run: `log` gets the I/O calls (one per clock tick,
 * so log[k] is call k), `quiet` the updates that are not I/O calls (discard, resize), each with the number of
 * calls before it.
 */
export function logged(dev: BlockDevice, name: string, log: IoEvent[], quiet: Array<[number, IoEvent]>, cur: () => number): BlockDevice {
  return {
    get sizeBytes() {
      return dev.sizeBytes;
    },
    read: (b, o) => {
      log.push({ op: cur(), dev: name, kind: 'read', offset: o });
      dev.read(b, o);
    },
    write: (b, o) => {
      log.push({ op: cur(), dev: name, kind: 'write', offset: o, data: b.slice() });
      dev.write(b, o);
    },
    flush: () => {
      log.push({ op: cur(), dev: name, kind: 'flush', offset: 0 });
      dev.flush();
    },
    resize: (size) => {
      dev.resize(size);
      quiet.push([log.length, { op: cur(), dev: name, kind: 'resize', offset: 0, length: size }]);
    },
    discard: (o, l) => {
      const ok = dev.discard(o, l);
      if (ok) quiet.push([log.length, { op: cur(), dev: name, kind: 'discard', offset: o, length: l }]);
      return ok;
    },
    // A copy (copy-on-write of a data block) is one I/O call that updates like a write of the source's bytes.
    copyWithin: (src, dst, len) => {
      const data = new Uint8Array(len);
      (dev as CrashDevice).peek(data, src);
      log.push({ op: cur(), dev: name, kind: 'copy', offset: dst, data });
      return (dev as CrashDevice).copyWithin(src, dst, len);
    },
    close: () => dev.close(),
  };
}

/**
 * The device state at every cut, without re-running the engine: the dry run's I/O is deterministic, so the
 * state when call k is refused is the template plus events [0, k). `Replayer` walks k upwards keeping the
 * durable images (flushes applied) and the unflushed writes of each device; `at(k)` builds the CrashDevices of
 * that instant (meta registered before data, as in crash-cut.ts `run`) and the catalog store.
 */
export class Replayer {
  private durable: { meta: MemoryDevice; data: MemoryDevice };
  private pending: { meta: IoEvent[]; data: IoEvent[] } = { meta: [], data: [] };
  private catalog: MemoryCatalogStore;
  private next = 0;
  private nextQuiet = 0;
  constructor(
    tpl: Template,
    private readonly log: IoEvent[],
    private readonly quiet: Array<[number, IoEvent]>,
  ) {
    this.durable = { meta: tpl.meta.snapshot(), data: tpl.data.snapshot() };
    this.catalog = tpl.catalog.clone();
  }
  /**
   * The post-crash images for a cut at call k, crashed with rng exactly as CrashClock.crash does (devices in
   * registration order, meta then data; each unflushed update kept with probability 1/2 in log order; the last
   * kept one, if a write, torn per 512-byte sector with probability 1/2). Checked against a real CrashClock on
   * the engine-run sample.
   */
  at(
    k: number,
    rng: () => number,
    keep: Keep = 'random',
  ): { meta: MemoryDevice; data: MemoryDevice; catalog: MemoryCatalogStore; unflushed: number } {
    if (k < this.next) throw new Error('Replayer only moves forward');
    for (; this.next <= k; this.next++) {
      // Updates that are not I/O calls and came before call `next`.
      for (; this.nextQuiet < this.quiet.length && this.quiet[this.nextQuiet]![0] <= this.next; this.nextQuiet++) {
        const q = this.quiet[this.nextQuiet]![1];
        this.pending[q.dev as 'meta' | 'data'].push(q);
      }
      if (this.next === k) break;
      const e = this.log[this.next]!;
      if (e.dev === 'catalog') {
        if (e.kind === 'catalog-stage') this.catalog.stage(e.staged![0], e.staged![1]);
        else if (e.kind === 'catalog-publish') this.catalog.publish();
        else this.catalog.discardStaged();
      } else if (e.kind === 'write' || e.kind === 'copy') {
        if (e.data!.length > 0) this.pending[e.dev as 'meta' | 'data'].push(e);
      } else if (e.kind === 'flush') {
        const dev = e.dev as 'meta' | 'data';
        for (const w of this.pending[dev]) applyUpdate(this.durable[dev], w);
        this.pending[dev] = [];
      }
    }
    return {
      meta: crashImage(this.durable.meta, this.pending.meta, rng, keep),
      data: crashImage(this.durable.data, this.pending.data, rng, keep),
      catalog: this.catalog.clone(),
      unflushed: this.pending.meta.length + this.pending.data.length,
    };
  }
}

/** Which unflushed updates a crash keeps: a random subset (last one maybe torn), none, or all of them whole. */
export type Keep = 'random' | 'none' | 'all';

function crashImage(durable: MemoryDevice, log: IoEvent[], rng: () => number, keep: Keep = 'random'): MemoryDevice {
  const image = durable.snapshot();
  if (keep !== 'random') {
    if (keep === 'all') for (const u of log) applyUpdate(image, u);
    return image;
  }
  const kept = log.filter(() => rng() < 0.5);
  const last = kept.pop();
  for (const u of kept) applyUpdate(image, u);
  if (last) {
    if ((last.kind === 'write' || last.kind === 'copy') && rng() < 0.5) {
      const data = last.data!;
      const end = last.offset + data.length;
      for (let pos = last.offset; pos < end; ) {
        const next = Math.min(end, (Math.floor(pos / SECTOR_BYTES) + 1) * SECTOR_BYTES);
        if (rng() < 0.5) image.write(data.subarray(pos - last.offset, next - last.offset), pos);
        pos = next;
      }
    } else {
      applyUpdate(image, last);
    }
  }
  return image;
}

function applyUpdate(dev: BlockDevice, e: IoEvent): void {
  if (e.kind === 'write' || e.kind === 'copy') dev.write(e.data!, e.offset);
  else if (e.kind === 'discard') dev.discard(e.offset, e.length!);
  else if (e.kind === 'resize') dev.resize(e.length!);
  else throw new Error(`not an update: ${e.kind}`);
}

const cmpA = new Uint8Array(64 * 1024);
const cmpB = new Uint8Array(64 * 1024);
export function sameBytes(a: BlockDevice, b: BlockDevice): boolean {
  if (a.sizeBytes !== b.sizeBytes) return false;
  for (let off = 0; off < a.sizeBytes; off += cmpA.length) {
    const n = Math.min(cmpA.length, a.sizeBytes - off);
    a.read(cmpA.subarray(0, n), off);
    b.read(cmpB.subarray(0, n), off);
    if (Buffer.compare(cmpA.subarray(0, n), cmpB.subarray(0, n)) !== 0) return false;
  }
  return true;
}
