// Out of space and metadata full, shared by out-of-space.test.ts and metadata-full.test.ts: a small pool on memory
// devices (with a reopen over the same images), the expectations every
// case makes (bytes of a volume, pool still writable with needs_check clear and a clean checker), and a pool whose
// metadata device is filled with 1-block volumes until ENOSPC_METADATA.
import { expect } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { checkMetadata } from '../../src/thin/check.js';
import { ThinPool, type PoolStorage } from '../../src/thin/pool.js';
import { fill, keepOpen } from '../support/model.js';
import { codeOf } from '../support/thrown.js';

export const BS = 64 * 1024;

export function newPool(dataBlocks: number, metaBytes = 1024 * 1024) {
  const meta = new MemoryDevice(metaBytes);
  const data = new MemoryDevice(dataBlocks * BS);
  const catalog = new MemoryCatalogStore();
  const storage: PoolStorage = { metadata: keepOpen(meta), data: keepOpen(data), catalog };
  const pool = ThinPool.formatStorage(storage, { size: dataBlocks * BS, blockSize: BS });
  const reopen = () => ThinPool.openStorage({ metadata: keepOpen(meta), data: keepOpen(data), catalog });
  return { pool, meta, reopen };
}

export function read(p: ThinPool, name: string): Uint8Array {
  const v = p.volume(name);
  const b = new Uint8Array(v.sizeBytes);
  v.readSync(b, 0);
  return b;
}

export function expectBytes(p: ThinPool, name: string, want: Uint8Array, what: string): void {
  const got = read(p, name);
  expect(got.length, `${what}: size of ${name}`).toBe(want.length);
  if (Buffer.compare(got, want) !== 0) {
    const i = got.findIndex((x, j) => x !== want[j]);
    expect.fail(`${what}: ${name} differs at byte ${i} (block ${Math.floor(i / BS)}): ${got[i]} != ${want[i]}`);
  }
}

export function expectHealthy(p: ThinPool, what: string): void {
  const st = p.status();
  expect(st.mode, `${what}: mode`).toBe('write');
  expect(st.needsCheck, `${what}: needs_check`).toBe(false);
  p.commitSync();
  const r = checkMetadata(p.metadata);
  expect(r.errors, `${what}: checker`).toEqual([]);
}

/** A pool whose 160-block metadata device is filled with 1-block volumes until ENOSPC_METADATA. */
export function fullMetadataPool() {
  const { pool, meta, reopen } = newPool(64, 160 * 4096);
  const names: string[] = [];
  const want = new Map<string, Uint8Array>();
  let err = 'ok';
  for (let i = 0; i < 400 && err === 'ok'; i++) {
    const name = `v${i}`;
    err = codeOf(() => pool.createThinSync(name, { size: BS }));
    if (err === 'ok') {
      names.push(name);
      const b = new Uint8Array(BS);
      if (i < 8) {
        const d = fill(700, i);
        pool.volume(name).writeSync(d, 1000);
        b.set(d, 1000);
      }
      want.set(name, b);
      if (i % 10 === 9) pool.commitSync();
    }
  }
  return { pool, meta, reopen, names, want, err };
}

/** A 'threshold' event. */
export type Ev = { resource: string; threshold: number; usedBlocks: number; totalBlocks: number };
