// Streams between thinpool and Ceph's own `rbd` tool, on a throwaway single-node cluster (test/support/
// ceph-cluster.ts): thinpool snapshots sent full and incrementally are applied by `rbd import-diff` and the RBD
// snapshots equal them (`rbd export`); streams `rbd export-diff` writes (data records, and zero records from a
// shrink and regrow) are received by thinpool and equal the RBD snapshots. Needs ceph-mon, ceph-osd and
// ceph-common (skips naming them, a failure under CI=true).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { decodeDiff } from '../../src/stream/rbd-diff.js';
import { receive } from '../../src/stream/receive.js';
import { sendStream } from '../../src/stream/send.js';
import { ThinPool } from '../../src/thin/pool.js';
import { cleanup, tempDir } from '../cli/helpers.js';
import { type CephCluster, haveCeph, startCephCluster } from '../support/ceph-cluster.js';
import { fill } from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import { seededRng } from '../support/rng.js';
import { needTool } from '../support/tools.js';

const BS = 64 * 1024;
const SIZE = 3 * 1024 * 1024 + 5 * 4096;

async function collect(gen: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of gen) parts.push(c);
  return Buffer.concat(parts);
}

function bytesOf(p: ThinPool, name: string): Buffer {
  const v = p.volume(name);
  const b = Buffer.alloc(v.sizeBytes);
  v.readSync(b, 0);
  return b;
}

describe.skipIf(!haveCeph() || !haveRbd())('streams between thinpool and rbd', () => {
  let ceph: CephCluster;
  const dir = tempDir('tp-rbd-');
  const rbd = (args: string[]): Promise<string> => ceph.tool('rbd', args);
  const exportRbd = async (spec: string): Promise<Buffer> => {
    const f = join(dir, `export-${Math.random().toString(36).slice(2)}.raw`);
    await rbd(['export', '--no-progress', spec, f]);
    return readFileSync(f);
  };

  beforeAll(async () => {
    ceph = await startCephCluster({ pools: ['rbd'] });
    await ceph.ceph(['osd', 'pool', 'application', 'enable', 'rbd', 'rbd']);
  }, 180_000);

  afterAll(async () => {
    await ceph?.stop();
    cleanup(dir);
  });

  test('thinpool send -> rbd import-diff: a full stream and 4 incremental ones, each RBD snapshot equal to the thinpool one', async () => {
    const pool = ThinPool.memory({ size: 256 * BS, blockSize: BS });
    const rng = seededRng(77);
    const v = pool.createThinSync('v', { size: SIZE });
    await rbd(['create', '--size', `${SIZE}B`, 'rbd/fromtp']);
    let prev: string | undefined;
    for (let i = 0; i < 5; i++) {
      for (let k = 0; k < 12; k++) {
        const off = Math.floor(rng() * SIZE);
        const r = rng();
        if (r < 0.2 && i > 0) v.discardSync(off, Math.min(SIZE - off, Math.floor(rng() * 3 * BS)));
        else v.writeSync(fill(Math.min(SIZE - off, 1 + Math.floor(rng() * 2 * BS)), Math.floor(rng() * 1e9)), off);
      }
      const s = `s${i}`;
      pool.snapshotSync('v', s, { readOnly: true });
      const f = join(dir, `${s}.diff`);
      writeFileSync(f, await collect(sendStream(pool, s, { from: prev })));
      await rbd(['import-diff', '--no-progress', f, 'rbd/fromtp']);
      expect((await exportRbd(`rbd/fromtp@${s}`)).equals(bytesOf(pool, s)), s).toBe(true);
      prev = s;
    }
    pool.closeSync();
  });

  test('rbd export-diff -> thinpool receive: full, then incremental with writes and zeroed ranges', async () => {
    await rbd(['create', '--size', `${SIZE}B`, 'rbd/totp']);
    await rbd(['bench', '--io-type', 'write', '--io-size', '8192', '--io-total', `${256 * 1024}`, '--io-pattern', 'rand', 'rbd/totp']);
    await rbd(['snap', 'create', 'rbd/totp@a']);
    await rbd(['bench', '--io-type', 'write', '--io-size', '4096', '--io-total', `${64 * 1024}`, '--io-pattern', 'rand', 'rbd/totp']);
    await rbd(['resize', '--allow-shrink', '--size', `${2 * 1024 * 1024}B`, 'rbd/totp']); // zero records for the tail
    await rbd(['resize', '--size', `${SIZE}B`, 'rbd/totp']);
    await rbd(['snap', 'create', 'rbd/totp@b']);
    await rbd(['resize', '--size', `${SIZE + 1024 * 1024}B`, 'rbd/totp']); // a size change in the stream
    await rbd(['bench', '--io-type', 'write', '--io-size', '4096', '--io-total', `${32 * 1024}`, '--io-pattern', 'rand', 'rbd/totp']);
    await rbd(['snap', 'create', 'rbd/totp@c']);
    const fa = join(dir, 'a.diff');
    const fb = join(dir, 'b.diff');
    const fc = join(dir, 'c.diff');
    await rbd(['export-diff', '--no-progress', 'rbd/totp@a', fa]);
    await rbd(['export-diff', '--no-progress', '--from-snap', 'a', 'rbd/totp@b', fb]);
    await rbd(['export-diff', '--no-progress', '--from-snap', 'b', '--whole-object', 'rbd/totp@c', fc]);
    const kinds = new Set<string>();
    for await (const r of decodeDiff([readFileSync(fb)])) kinds.add(r.type);
    expect([...kinds].sort()).toEqual(['end', 'from', 'size', 'to', 'write', 'zero']);

    const pool = ThinPool.memory({ size: 512 * BS, blockSize: BS });
    const ra = await receive(pool, 'a', [readFileSync(fa)]);
    expect(ra.toSnap).toBe('a');
    expect(bytesOf(pool, 'a').equals(await exportRbd('rbd/totp@a'))).toBe(true);
    const rb = await receive(pool, 'b', [readFileSync(fb)]);
    expect(rb.base).toBe('a');
    expect(rb.zeroBytes).toBeGreaterThan(0);
    expect(bytesOf(pool, 'b').equals(await exportRbd('rbd/totp@b'))).toBe(true);
    const rc = await receive(pool, 'c', [readFileSync(fc)]);
    expect(rc.sizeBytes).toBe(SIZE + 1024 * 1024);
    expect(bytesOf(pool, 'c').equals(await exportRbd('rbd/totp@c'))).toBe(true);
    // The incremental receives share what did not change.
    expect(pool.diff('a', 'b').some((r) => r.kind === 'same')).toBe(true);
    pool.commitSync();
    verifyMetadataDevice(pool.storage.metadata);
    pool.closeSync();
  });
});

function haveRbd(): boolean {
  return needTool('rbd', 'ceph-common');
}
