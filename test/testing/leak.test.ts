// Leaks: 10,000 fork / write / dispose cycles bring the pool's data and metadata usage back to where they were.
import { describe, expect, test } from 'vitest';
import { join } from 'node:path';
import { GoldenStore } from '../../src/testing/index.js';
import { verifyMetadataDevice, verifyMetadataFile } from '../support/pool-check.js';

const MiB = 1024 * 1024;
// The memory store runs the full 10,000 cycles; the file store runs the same loop 2,000 times (the code path is
// the same, only the devices differ, and file I/O on a busy shared machine is up to 5x slower).
describe.each([
  ['memory', 10_000, () => GoldenStore.memory({ size: 1024 * MiB })],
  ['temp', 2_000, () => GoldenStore.tempSync({ size: 1024 * MiB })],
] as const)('%s store', (kind, CYCLES, make) => {
  test(`${CYCLES} fork/dispose cycles leave data and metadata usage where they started`, async () => {
    await using store = make();
    const golden = await store.createGolden('golden', 64 * MiB, (v) => {
      const b = Buffer.alloc(MiB, 0x5a);
      for (let off = 0; off < 64 * MiB; off += 4 * MiB) v.writeSync(b, off);
    });
    const start = store.usage();
    const small = Buffer.from('a few bytes that break sharing of one block');
    const t0 = performance.now();
    let peakData = 0;
    for (let i = 0; i < CYCLES; i++) {
      const f = store.fork(golden);
      f.writeSync(small, (i * 977 * 4096) % (64 * MiB - 4096)); // copy-on-write of a shared block
      f.writeSync(small, 32 * MiB + ((i * 4096) % MiB)); // and a block the golden has unmapped
      f.disposeSync();
      if (i % 1000 === 999) {
        const u = store.usage(); // commits
        peakData = Math.max(peakData, u.dataBlocks);
        expect(u.volumes).toBe(1);
      }
    }
    const ms = performance.now() - t0;
    const end = store.usage();
    console.log(
      `${kind}: ${CYCLES} cycles in ${ms.toFixed(0)} ms (${((ms * 1000) / CYCLES).toFixed(1)} us/cycle); start ${JSON.stringify(start)} end ${JSON.stringify(end)}`,
    );
    expect(end).toEqual(start);
    expect(peakData).toBe(start.dataBlocks);
    expect(store.pool.list().map((v) => v.name)).toEqual(['golden']);
    if (kind === 'memory') verifyMetadataDevice(store.pool.storage.metadata);
    else verifyMetadataFile(join(store.dir!, 'pool', 'metadata'));
  });
});
