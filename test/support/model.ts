// A plain in-memory model of a pool's volumes (name -> bytes) and of their space, and a random workload driver
// that applies the same operations to a ThinPool and to the model.
//
// The space model follows dm-thin's rules, written here independently of the engine: every mapped virtual block
// holds an abstract data block (a token) stamped with the pool time of the write that made it; a snapshot bumps
// the pool time and stamps origin and snapshot with it; a write into a block whose stamp is older than its
// volume's snapshot time (shared by the time rule) takes a new token, any other write into a mapped block stays
// in place (same token, so the same data block on the engine's side). Tokens referenced by two or more mappings
// are shared, by one exclusive; data blocks used is the number of live tokens.
import { expect } from 'vitest';
import type { ThinPool } from '../../src/thin/pool.js';

import type { Rng } from './rng.js';
export type { Rng };

interface ModelMapping {
  token: number;
  time: number;
}
interface VolumeSpace {
  snapshottedTime: number;
  map: Map<number, ModelMapping>;
}

export class PoolModel {
  volumes = new Map<string, Uint8Array>();
  /** Space model per volume; kept only when a block size is given. */
  space = new Map<string, VolumeSpace>();
  time = 0;
  nextToken = 1;
  /** The engine's data block for each live token, learnt the first time it is seen (see expectSpaceEquals). */
  tokenBlock = new Map<number, number>();
  constructor(readonly blockSize = 0) {}
  clone(): PoolModel {
    const m = new PoolModel(this.blockSize);
    for (const [k, v] of this.volumes) m.volumes.set(k, v.slice());
    for (const [k, v] of this.space) m.space.set(k, { snapshottedTime: v.snapshottedTime, map: new Map(v.map) });
    m.time = this.time;
    m.nextToken = this.nextToken;
    m.tokenBlock = new Map(this.tokenBlock);
    return m;
  }

  /** A write touches vblock of name: in place unless unmapped or shared by the time rule. */
  private touch(name: string, v: number): void {
    const vol = this.space.get(name)!;
    const m = vol.map.get(v);
    if (m && m.time >= vol.snapshottedTime) return;
    vol.map.set(v, { token: this.nextToken++, time: this.time });
  }

  /** Zeroing bytes goes through the write path, for mapped blocks only. */
  private zero(name: string, offset: number, length: number): void {
    const bs = this.blockSize;
    const vol = this.space.get(name)!;
    for (let v = Math.floor(offset / bs); length > 0 && v * bs < offset + length; v++) if (vol.map.has(v)) this.touch(name, v);
  }

  /** The space side of an operation (the bytes side is applyToModel's). */
  applySpace(o: Op, oldSize: number): void {
    const bs = this.blockSize;
    if (bs === 0) return;
    switch (o.op) {
      case 'create':
        this.space.set(o.name, { snapshottedTime: this.time, map: new Map() });
        break;
      case 'snapshot': {
        const origin = this.space.get(o.origin)!;
        origin.snapshottedTime = ++this.time;
        this.space.set(o.name, { snapshottedTime: this.time, map: new Map(origin.map) });
        break;
      }
      case 'write':
        for (let v = Math.floor(o.offset / bs); v * bs < o.offset + o.length; v++) this.touch(o.name, v);
        break;
      case 'discard': {
        const firstFull = Math.ceil(o.offset / bs);
        const endFull = Math.floor((o.offset + o.length) / bs);
        if (firstFull >= endFull) {
          this.zero(o.name, o.offset, o.length);
          break;
        }
        this.zero(o.name, o.offset, firstFull * bs - o.offset);
        this.zero(o.name, endFull * bs, o.offset + o.length - endFull * bs);
        const map = this.space.get(o.name)!.map;
        for (const v of [...map.keys()]) if (v >= firstFull && v < endFull) map.delete(v);
        break;
      }
      case 'delete':
        this.space.delete(o.name);
        break;
      case 'resize':
        if (o.size < oldSize) {
          const map = this.space.get(o.name)!.map;
          const firstGone = Math.ceil(o.size / bs);
          for (const v of [...map.keys()]) if (v >= firstGone) map.delete(v);
        } else if (o.size > oldSize && oldSize % bs !== 0) {
          this.zero(o.name, oldSize, Math.min(o.size, Math.ceil(oldSize / bs) * bs) - oldSize);
        }
        break;
      case 'commit':
        break;
    }
  }

  /** How many mappings reference each live token. */
  tokenRefs(): Map<number, number> {
    const refs = new Map<number, number>();
    for (const vol of this.space.values()) for (const m of vol.map.values()) refs.set(m.token, (refs.get(m.token) ?? 0) + 1);
    return refs;
  }
}

export type Op =
  | { op: 'create'; name: string; size: number }
  | { op: 'snapshot'; origin: string; name: string }
  | { op: 'write'; name: string; offset: number; length: number; seed: number }
  | { op: 'discard'; name: string; offset: number; length: number }
  | { op: 'delete'; name: string }
  | { op: 'resize'; name: string; size: number }
  | { op: 'commit' };

export function fill(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = (seed * 2654435761 + 1) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = (x >>> 24) | 1;
  }
  return b;
}

/** `length` bytes of a volume (or anything with readSync) from `offset`. */
export function readBytes(v: { readSync(b: Uint8Array, o: number): void }, offset: number, length: number): Uint8Array {
  const b = new Uint8Array(length);
  v.readSync(b, offset);
  return b;
}

/** Whether two byte arrays hold the same bytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

let nameCounter = 0;

/** A random operation that is valid for the model's current state. */
export function randomOp(rng: Rng, m: PoolModel, blockSize: number): Op {
  const names = [...m.volumes.keys()];
  const pick = () => names[Math.floor(rng() * names.length)];
  const r = rng();
  if (names.length === 0 || (r < 0.08 && names.length < 8)) {
    return { op: 'create', name: `v${nameCounter++}`, size: ((1 + Math.floor(rng() * 16)) * blockSize) / 4 };
  }
  if (r < 0.18 && names.length < 8) return { op: 'snapshot', origin: pick(), name: `v${nameCounter++}` };
  if (r < 0.22 && names.length > 1) return { op: 'delete', name: pick() };
  if (r < 0.26) {
    const name = pick();
    return { op: 'resize', name, size: Math.max(512, Math.floor((rng() * 5 * blockSize) / 512) * 512) };
  }
  if (r < 0.34) {
    const name = pick();
    const size = m.volumes.get(name)!.length;
    const offset = Math.floor(rng() * size);
    return { op: 'discard', name, offset, length: Math.floor(rng() * (size - offset)) };
  }
  if (r < 0.42) return { op: 'commit' };
  const name = pick();
  const size = m.volumes.get(name)!.length;
  if (rng() < 0.35) {
    // Whole 4 KiB granules, as file systems write: the copy-on-write of these is deferred (pending-copies.ts).
    const offset = Math.floor((rng() * size) / 4096) * 4096;
    const length = Math.min(size - offset, 4096 * (1 + Math.floor(rng() * (rng() < 0.2 ? blockSize / 2048 : 4))));
    return { op: 'write', name, offset, length, seed: Math.floor(rng() * 1e9) };
  }
  const offset = Math.floor(rng() * size);
  const length = Math.min(size - offset, 1 + Math.floor(rng() * (rng() < 0.3 ? 2 * blockSize : 9000)));
  return { op: 'write', name, offset, length, seed: Math.floor(rng() * 1e9) };
}

export function applyToModel(m: PoolModel, o: Op): void {
  m.applySpace(o, o.op === 'resize' ? m.volumes.get(o.name)!.length : 0);
  switch (o.op) {
    case 'create':
      m.volumes.set(o.name, new Uint8Array(o.size));
      break;
    case 'snapshot':
      m.volumes.set(o.name, m.volumes.get(o.origin)!.slice());
      break;
    case 'write':
      m.volumes.get(o.name)!.set(fill(o.length, o.seed), o.offset);
      break;
    case 'discard':
      m.volumes.get(o.name)!.fill(0, o.offset, o.offset + o.length);
      break;
    case 'delete':
      m.volumes.delete(o.name);
      break;
    case 'resize': {
      const old = m.volumes.get(o.name)!;
      const n = new Uint8Array(o.size);
      n.set(old.subarray(0, Math.min(old.length, o.size)));
      m.volumes.set(o.name, n);
      break;
    }
    case 'commit':
      break;
  }
}

export function applyToPool(p: ThinPool, o: Op): void {
  switch (o.op) {
    case 'create':
      p.createThinSync(o.name, { size: o.size });
      break;
    case 'snapshot':
      p.snapshotSync(o.origin, o.name);
      break;
    case 'write':
      p.volume(o.name).writeSync(fill(o.length, o.seed), o.offset);
      break;
    case 'discard':
      p.volume(o.name).discardSync(o.offset, o.length);
      break;
    case 'delete':
      p.deleteSync(o.name);
      break;
    case 'resize':
      p.resizeSync(o.name, o.size);
      break;
    case 'commit':
      p.commitSync();
      break;
  }
}

/** The pool's volumes equal the model's, byte for byte. */
export function expectPoolEquals(p: ThinPool, m: PoolModel): void {
  const names = p
    .list()
    .map((v) => v.name)
    .filter((n): n is string => n !== undefined)
    .sort();
  expect(names).toEqual([...m.volumes.keys()].sort());
  for (const [name, bytes] of m.volumes) {
    const v = p.volume(name);
    expect(v.sizeBytes, `size of ${name}`).toBe(bytes.length);
    const got = new Uint8Array(bytes.length);
    v.readSync(got, 0);
    if (Buffer.compare(got, bytes) !== 0) {
      const i = got.findIndex((b, k) => b !== bytes[k]);
      expect.fail(`volume ${name} differs from the model at byte ${i}: ${got[i]} != ${bytes[i]}`);
    }
  }
}

/**
 * The pool's space equals the model's: per volume mapped / exclusive / shared bytes from list(), data blocks
 * used from status(), and the engine's mappings carry the model's tokens one to one: each token sits on one
 * data block for its whole life (an in-place overwrite keeps its block) and no data block holds two tokens.
 */
export function expectSpaceEquals(p: ThinPool, m: PoolModel): void {
  const bs = m.blockSize;
  const refs = m.tokenRefs();
  for (const t of [...m.tokenBlock.keys()]) if (!refs.has(t)) m.tokenBlock.delete(t);
  expect(p.status().dataBlocks.used, 'data blocks used').toBe(refs.size);
  const blockToken = new Map<number, number>();
  for (const info of p.list()) {
    const name = info.name!;
    const vol = m.space.get(name);
    expect(vol, `volume ${name} in the space model`).toBeDefined();
    let exclusive = 0;
    for (const mm of vol!.map.values()) if (refs.get(mm.token) === 1) exclusive++;
    expect({ name, mapped: info.mappedBytes, exclusive: info.exclusiveBytes, shared: info.sharedBytes }).toEqual({
      name,
      mapped: vol!.map.size * bs,
      exclusive: exclusive * bs,
      shared: (vol!.map.size - exclusive) * bs,
    });
    const seen = new Set<number>();
    p.metadata.forEachMapping(info.id, (v, d) => {
      seen.add(v);
      const mm = vol!.map.get(v);
      if (mm === undefined) expect.fail(`volume ${name} maps block ${v} (data block ${d}), the model does not`);
      const known = m.tokenBlock.get(mm.token);
      if (known === undefined) m.tokenBlock.set(mm.token, d);
      else if (known !== d)
        expect.fail(`volume ${name} block ${v}: the model keeps it in place on data block ${known}, the pool moved it to ${d}`);
      const other = blockToken.get(d);
      if (other === undefined) blockToken.set(d, mm.token);
      else if (other !== mm.token) expect.fail(`volume ${name} block ${v}: data block ${d} holds two different model blocks`);
    });
    expect(seen.size, `mapped blocks of ${name}`).toBe(vol!.map.size);
  }
}

import type { BlockDevice } from '../../src/io/block-device.js';
/** A view of dev whose close() does nothing, so a test can close a pool and open it again on the same bytes. */
export function keepOpen(dev: BlockDevice): BlockDevice {
  return {
    get sizeBytes() {
      return dev.sizeBytes;
    },
    read: (b, o) => dev.read(b, o),
    write: (b, o) => dev.write(b, o),
    flush: () => dev.flush(),
    resize: (s) => dev.resize(s),
    discard: (o, l) => dev.discard(o, l),
    close: () => undefined,
  };
}

/** mulberry32 (the same generator as seededRng). */
export { seededRng as mulberry32 } from './rng.js';
