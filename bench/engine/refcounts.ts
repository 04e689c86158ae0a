/**
 * Reference-count work inside metadata transactions (no data I/O): what moving the update walk and both space
 * maps into WASM changed.
 *
 * - Break sharing: a volume of N mapped blocks is snapshotted, then one block in every leaf of the snapshot is
 *   remapped (insertMapping). Each first insert into a shared leaf shadows it and adds a reference to every data
 *   block the leaf names (~126-252 per leaf), so this is dominated by data reference counts.
 * - Delete: the origin's tree is dropped (pool.deleteSync); where leaves are still shared only the leaf loses a
 *   reference, where the snapshot broke sharing each mapping drops one data reference.
 * - Delete an unshared volume of N mappings: every data block goes back to the free pool.
 * Each step is timed over `ROUNDS` fresh pools; the median is printed.
 */
import { join } from 'node:path';
import { ThinPool } from '../../src/index.js';
import { BLOCK, QUICK, fmtMs, header, median, provisionMeta, scratchDir, table } from './_lib.js';

const N = QUICK ? 50_000 : 200_000;
const ROUNDS = QUICK ? 3 : 5;

function once(dir: string, r: number): number[] {
  const pool = ThinPool.formatSync(join(dir, `p${r}`), { size: N * BLOCK * 3, metadataSize: 64 * 1024 * 1024 });
  const md = pool.metadata;
  const v = pool.createThinSync('v', { size: N * BLOCK });
  const u = pool.createThinSync('u', { size: N * BLOCK });
  provisionMeta(md, v.id, 0, N);
  provisionMeta(md, u.id, 0, N);
  pool.commitSync();
  const s = pool.snapshotSync('v', 's');
  pool.commitSync();
  // One remap per 100 vblocks touches every leaf (at most 252 entries per leaf) at least once.
  let t = performance.now();
  let breaks = 0;
  for (let vb = 0; vb < N; vb += 100, breaks++) md.insertMapping(s.id, vb, md.allocDataBlock());
  const tBreak = (performance.now() - t) / breaks;
  pool.commitSync();
  t = performance.now();
  pool.deleteSync('v');
  const tDelShared = performance.now() - t;
  pool.commitSync();
  t = performance.now();
  pool.deleteSync('u');
  const tDelUnshared = performance.now() - t;
  pool.commitSync();
  pool.closeSync();
  return [tBreak * 1000, tDelShared, tDelUnshared];
}

function main(): void {
  header(
    'Reference counts in metadata transactions',
    `${N} mappings per volume, ${ROUNDS} fresh pools, medians; metadata only (data blocks stay holes)`,
  );
  const dir = scratchDir('refcounts');
  const res: number[][] = [[], [], []];
  for (let r = 0; r < ROUNDS; r++)
    once(dir, r).forEach((x, i) => {
      res[i].push(x);
    });
  const [b, ds, du] = res.map(median);
  table(
    'Reference-count heavy operations',
    ['operation', 'median', 'per mapping'],
    [
      ['first remap in a shared leaf of a snapshot (shadow + a data reference per entry)', `${b.toFixed(1)} µs`, ''],
      [`delete the origin of ${N} mappings after the snapshot broke sharing in every leaf`, fmtMs(ds), `${((ds * 1e6) / N).toFixed(0)} ns`],
      [`delete an unshared volume of ${N} mappings`, fmtMs(du), `${((du * 1e6) / N).toFixed(0)} ns`],
    ],
  );
}

main();
