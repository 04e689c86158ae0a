/** thinpool, in process: a file pool whose files (data, metadata) are what reaches the disk. */
import { join } from 'node:path';
import { ThinPool } from '../../../src/index.js';
import { trackCloser } from '../lib/cleanup.js';

export const BLOCK = 64 * 1024;

export interface OpenPool {
  pool: ThinPool;
  dir: string;
  paths: string[];
  close(): void;
}

/** metadataSize: room for the btrees (the file is sparse, so only what is used is allocated). */
export function formatPool(dir: string, size: number, blockSize = BLOCK, metadataSize?: number): OpenPool {
  const pool = ThinPool.formatSync(dir, { size, blockSize, ...(metadataSize ? { metadataSize } : {}) });
  const untrack = trackCloser(() => {
    if (!pool.isClosed) pool.closeSync();
  });
  return {
    pool,
    dir,
    paths: [join(dir, 'data'), join(dir, 'metadata')],
    close() {
      if (!pool.isClosed) pool.closeSync();
      untrack();
    },
  };
}

/** Map nBlocks of a volume in the metadata only (no data written): for mapped sizes no disk could hold in a run. */
export function mapBlocksMetadataOnly(pool: ThinPool, id: number, nBlocks: number): void {
  const md = pool.metadata;
  for (let v = 0; v < nBlocks; v++) md.insertMapping(id, v, md.allocDataBlock());
  pool.commitSync();
}
