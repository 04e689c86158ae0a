// Memory pools for tests of volume management through the pool's interface (test/thin/volumes*.test.ts): 64 KiB
// data blocks on memory devices, a pool that can be closed and opened again on the same devices, and the bytes of
// a range of a volume (what an action threw: test/support/thrown.ts).
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool } from '../../src/thin/pool.js';
import { keepOpen } from './model.js';

/** The data block size of these pools. */
export const BS = 64 * 1024;

/** Memory devices for a pool of `blocks` data blocks, a metadata device of metaBytes, and a memory catalog. */
export function devices(blocks = 32, metaBytes = 1 << 20) {
  return { meta: new MemoryDevice(metaBytes), data: new MemoryDevice(blocks * BS), catalog: new MemoryCatalogStore() };
}

/** A memory pool, and a function that closes it (committing) and opens its devices again. */
export function memoryPool(blocks = 32) {
  const d = devices(blocks);
  const storage = () => ({ metadata: keepOpen(d.meta), data: keepOpen(d.data), catalog: d.catalog });
  const pool = ThinPool.formatStorage(storage(), { size: blocks * BS, blockSize: BS });
  const reopen = (p: ThinPool) => {
    p.closeSync();
    return ThinPool.openStorage(storage());
  };
  return { pool, reopen };
}

/** What fn throws: a typed error's code and message, `untyped` for anything else, `ok` when it returns. */

/** len bytes of volume `name` from offset, read synchronously. */
export function readVolume(p: ThinPool, name: string, offset: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  p.volume(name).readSync(b, offset);
  return b;
}
