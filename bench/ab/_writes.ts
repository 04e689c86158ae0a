/**
 * A/B workload (bench/_ab.ts): 300,000 random 4 KiB `writeSync` into provisioned 64 KiB blocks of a memory pool,
 * with the build of the tree named by the first argument (`node dist/bench/ab/_writes.js {root}`): the write path's
 * per-call cost, in place.
 */
const root = process.argv[2];
if (root === undefined) throw new Error('usage: node dist/bench/ab/_writes.js TREE (a built thinpool tree)');
const { ThinPool } = (await import(`${root}/dist/src/index.js`)) as typeof import('../../src/index.js');
const pool = ThinPool.memory({ size: 64 << 20 });
const v = pool.createThinSync('v', { size: 64 << 20 });
const b = new Uint8Array(4096).fill(1);
for (let i = 0; i < 1024; i++) v.writeSync(b, i * 65536);
for (let i = 0; i < 300000; i++) v.writeSync(b, ((i * 7919) % 1024) * 65536 + ((i * 13) % 16) * 4096);
