/**
 * A/B workload (bench/_ab.ts): 16,384 first 4 KiB writes into new 64 KiB blocks of a 1 GiB memory pool (each
 * provisions a block and zeroes the rest of it), then a commit, with the build of the tree named by the first
 * argument (`node dist/bench/ab/_provision.js {root}`): the provisioning path's cost.
 */
const root = process.argv[2];
if (root === undefined) throw new Error('usage: node dist/bench/ab/_provision.js TREE (a built thinpool tree)');
const { ThinPool } = (await import(`${root}/dist/src/index.js`)) as typeof import('../../src/index.js');
const pool = ThinPool.memory({ size: 1 << 30 });
const v = pool.createThinSync('v', { size: 1 << 30 });
const b = new Uint8Array(4096).fill(1);
for (let i = 0; i < 16384; i++) v.writeSync(b, ((i * 7919) % 16384) * 65536);
pool.commitSync();
