// A plain in-memory model of a pool's volumes (name -> bytes), and a random workload driver that applies the
// same operations to a ThinPool and to the model.
import { expect } from 'vitest';
import type { ThinPool } from '../../src/thin/pool.js';

import type { Rng } from './rng.js';
export type { Rng };

export class PoolModel {
  volumes = new Map<string, Uint8Array>();
  clone(): PoolModel {
    const m = new PoolModel();
    for (const [k, v] of this.volumes) m.volumes.set(k, v.slice());
    return m;
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

let nameCounter = 0;

/** A random operation that is valid for the model's current state. */
export function randomOp(rng: Rng, m: PoolModel, blockSize: number): Op {
  const names = [...m.volumes.keys()];
  const pick = () => names[Math.floor(rng() * names.length)];
  const r = rng();
  if (names.length === 0 || (r < 0.08 && names.length < 8)) {
    return { op: 'create', name: `v${nameCounter++}`, size: (1 + Math.floor(rng() * 16)) * blockSize / 4 };
  }
  if (r < 0.18 && names.length < 8) return { op: 'snapshot', origin: pick(), name: `v${nameCounter++}` };
  if (r < 0.22 && names.length > 1) return { op: 'delete', name: pick() };
  if (r < 0.26) {
    const name = pick();
    return { op: 'resize', name, size: Math.max(512, Math.floor(rng() * 5 * blockSize / 512) * 512) };
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
  const offset = Math.floor(rng() * size);
  const length = Math.min(size - offset, 1 + Math.floor(rng() * (rng() < 0.3 ? 2 * blockSize : 9000)));
  return { op: 'write', name, offset, length, seed: Math.floor(rng() * 1e9) };
}

export function applyToModel(m: PoolModel, o: Op): void {
  switch (o.op) {
    case 'create': m.volumes.set(o.name, new Uint8Array(o.size)); break;
    case 'snapshot': m.volumes.set(o.name, m.volumes.get(o.origin)!.slice()); break;
    case 'write': m.volumes.get(o.name)!.set(fill(o.length, o.seed), o.offset); break;
    case 'discard': m.volumes.get(o.name)!.fill(0, o.offset, o.offset + o.length); break;
    case 'delete': m.volumes.delete(o.name); break;
    case 'resize': {
      const old = m.volumes.get(o.name)!;
      const n = new Uint8Array(o.size);
      n.set(old.subarray(0, Math.min(old.length, o.size)));
      m.volumes.set(o.name, n);
      break;
    }
    case 'commit': break;
  }
}

export function applyToPool(p: ThinPool, o: Op): void {
  switch (o.op) {
    case 'create': p.createThinSync(o.name, { size: o.size }); break;
    case 'snapshot': p.snapshotSync(o.origin, o.name); break;
    case 'write': p.volume(o.name).writeSync(fill(o.length, o.seed), o.offset); break;
    case 'discard': p.volume(o.name).discardSync(o.offset, o.length); break;
    case 'delete': p.deleteSync(o.name); break;
    case 'resize': p.resizeSync(o.name, o.size); break;
    case 'commit': p.commitSync(); break;
  }
}

/** The pool's volumes equal the model's, byte for byte. */
export function expectPoolEquals(p: ThinPool, m: PoolModel): void {
  const names = p.list().map((v) => v.name).filter((n): n is string => n !== undefined).sort();
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

import type { BlockDevice } from '../../src/io/block-device.js';
/** A view of dev whose close() does nothing, so a test can close a pool and open it again on the same bytes. */
export function keepOpen(dev: BlockDevice): BlockDevice {
  return {
    get sizeBytes() { return dev.sizeBytes; },
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
