// Send and receive through the library: chains of 10 snapshots with random content, holes, zero blocks and size
// changes, sent full and incrementally (both stream versions, through a pipe) into another pool: every snapshot
// comes back byte for byte, the receiving pool uses no more data blocks than the sender for the same snapshots,
// incremental receives share what they did not change, and the metadata passes every checker. Truncated and
// corrupt streams, missing bases and taken names leave the receiving pool as it was.
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { decodeDiff } from '../../src/stream/rbd-diff.js';
import { dropIncompleteReceives, receive, RECEIVING_OWNER } from '../../src/stream/receive.js';
import { planSend, sendStream } from '../../src/stream/send.js';
import { OWNER_LABEL, ThinPool } from '../../src/thin/pool.js';
import { fill } from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import { seededRng, type Rng } from '../support/rng.js';
import { makeTemplate } from '../crash/harness.js';

const BS = 64 * 1024;

function memPool(blocks = 2048): ThinPool {
  return ThinPool.memory({ size: blocks * BS, blockSize: BS });
}

function bytesOf(p: ThinPool, name: string): Buffer {
  const v = p.volume(name);
  const b = Buffer.alloc(v.sizeBytes);
  v.readSync(b, 0);
  return b;
}

async function collect(gen: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of gen) parts.push(c);
  return Buffer.concat(parts);
}

/** Random changes to `name`: data writes, whole zero blocks written, discards, sometimes a resize. */
function mutate(p: ThinPool, name: string, rng: Rng, steps: number): void {
  const v = p.volume(name);
  for (let i = 0; i < steps; i++) {
    const size = v.sizeBytes;
    const r = rng();
    if (r < 0.08) {
      const blocks = 20 + Math.floor(rng() * 30);
      p.resizeSync(name, Math.max(512, blocks * BS + Math.floor(rng() * 4) * 8192 + (rng() < 0.5 ? 512 : 0)));
    } else if (r < 0.25) {
      const off = Math.floor(rng() * size);
      v.discardSync(off, Math.floor(rng() * Math.min(size - off, 5 * BS)));
    } else if (r < 0.33) {
      const blk = Math.floor(rng() * Math.floor(size / BS));
      if ((blk + 1) * BS <= size) v.writeSync(new Uint8Array(BS), blk * BS); // a mapped block of zeros
    } else {
      const off = Math.floor(rng() * size);
      const len = Math.max(1, Math.min(size - off, Math.floor(rng() * (rng() < 0.3 ? 3 * BS : 9000))));
      v.writeSync(fill(len, Math.floor(rng() * 1e9)), off);
    }
  }
}

/** A sender pool with volume `live` and read-only snapshots s0..s9 of it, each after random changes. */
function chain(seed: number): { pool: ThinPool; snaps: string[] } {
  const rng = seededRng(seed);
  const pool = memPool();
  pool.createThinSync('live', { size: 40 * BS + 3 * 512 });
  const snaps: string[] = [];
  for (let i = 0; i < 10; i++) {
    mutate(pool, 'live', rng, i === 0 ? 40 : 12);
    pool.snapshotSync('live', `s${i}`, { readOnly: true });
    snaps.push(`s${i}`);
  }
  pool.commitSync();
  return { pool, snaps };
}

describe('send and receive', () => {
  test.each([
    [1, 101],
    [2, 202],
    [1, 303],
  ] as const)(
    'an incremental chain of 10 snapshots (v%i, seed %i) comes back byte for byte, sharing what it can',
    async (version, seed) => {
      const { pool: src, snaps } = chain(seed);
      const dst = memPool();
      let prev: string | undefined;
      for (const s of snaps) {
        // Through a real pipe (a PassThrough with a small buffer), as `send | receive` would run.
        const pipe = new PassThrough({ highWaterMark: 16 * 1024 });
        const sending = pipeline(Readable.from(sendStream(src, s, { from: prev, version, pieceBytes: 100_000 })), pipe);
        const res = await receive(dst, s, pipe, { readOnly: true });
        pipe.resume(); // nothing follows the end record: let the sending side finish
        await sending;
        expect(res.base).toBe(prev);
        expect(res.toSnap).toBe(s);
        expect(bytesOf(dst, s).equals(bytesOf(src, s)), s).toBe(true);
        expect(dst.volume(s).readOnly).toBe(true);
        if (prev !== undefined) {
          // Blocks s maps apart from prev (its own new blocks): no more on the receiving side than on the sender.
          const own = (p: ThinPool): number =>
            p
              .diff(prev!, s)
              .filter((r) => r.kind === 'different' || r.kind === 'right_only')
              .reduce((n, r) => n + r.length, 0);
          expect(own(dst), `${prev} -> ${s}`).toBeLessThanOrEqual(own(src));
        }
        prev = s;
      }
      for (const s of snaps) expect(bytesOf(dst, s).equals(bytesOf(src, s)), s).toBe(true);
      src.deleteSync('live');
      src.commitSync();
      expect(dst.status().dataBlocks.used).toBeLessThanOrEqual(src.status().dataBlocks.used);
      dst.commitSync();
      verifyMetadataDevice(dst.storage.metadata);
      dst.closeSync();
      src.closeSync();
    },
  );

  test('full streams of every snapshot come back byte for byte, holes and zero blocks unprovisioned', async () => {
    const { pool: src, snaps } = chain(404);
    for (const version of [1, 2] as const) {
      const dst = memPool();
      for (const s of snaps) {
        const res = await receive(dst, s, sendStream(src, s, { version }));
        expect(res.base).toBeUndefined();
        expect(bytesOf(dst, s).equals(bytesOf(src, s)), s).toBe(true);
        // No more blocks than the sender maps, and no block of zeros.
        const mapped = dst.list().find((v) => v.name === s)!.mappedBytes;
        expect(mapped).toBeLessThanOrEqual(src.list().find((v) => v.name === s)!.mappedBytes);
        const b = bytesOf(dst, s);
        for (const e of dst.volume(s).map()) {
          for (let o = e.offsetBytes; o < e.offsetBytes + e.lengthBytes; o += BS) {
            expect(
              b.subarray(o, Math.min(b.length, o + BS)).some((x) => x !== 0),
              `${s} block at ${o} is mapped zeros`,
            ).toBe(true);
          }
        }
      }
      dst.commitSync();
      verifyMetadataDevice(dst.storage.metadata);
      dst.closeSync();
    }
    src.closeSync();
  });

  test('an incremental send reads no block shared with the base, and carries only the changes', async () => {
    const src = memPool();
    const v = src.createThinSync('v', { size: 100 * BS });
    for (let b = 0; b < 100; b++) v.writeSync(fill(BS, b), b * BS);
    src.snapshotSync('v', 'base');
    v.writeSync(fill(100, 7), 5 * BS + 10);
    v.discardSync(50 * BS, 2 * BS);
    src.snapshotSync('v', 'next');
    const reads: number[] = [];
    const orig = src.readData.bind(src);
    src.readData = (id, buf, off) => {
      reads.push(off);
      orig(id, buf, off);
    };
    const plan = planSend(src, 'next', { from: 'base' });
    expect(plan.ranges).toEqual([
      { kind: 'write', offset: 5 * BS, length: BS },
      { kind: 'zero', offset: 50 * BS, length: 2 * BS },
    ]);
    const stream = await collect(sendStream(src, 'next', { from: 'base' }));
    expect(reads).toEqual([5 * BS]);
    expect(stream.length).toBeLessThan(BS + 200);
    src.closeSync();
  });

  test('a base smaller than the snapshot that ends inside a shared block: the tail is sent', async () => {
    const src = memPool();
    const v = src.createThinSync('v', { size: 4 * BS });
    v.writeSync(fill(4 * BS, 9), 0);
    src.snapshotSync('v', 'base');
    src.resizeSync('base', 2 * BS + 4096); // base's block 2 stays shared with v, its bytes past 4096 not base's
    src.snapshotSync('v', 'next');
    const dst = memPool();
    await receive(dst, 'base', sendStream(src, 'base'));
    await receive(dst, 'next', sendStream(src, 'next', { from: 'base' }));
    expect(bytesOf(dst, 'next').equals(bytesOf(src, 'next'))).toBe(true);
    src.closeSync();
    dst.closeSync();
  });

  test('a stream cut at any record boundary or inside a record changes nothing in the receiving pool', async () => {
    const { pool: src } = chain(505);
    const dst = memPool();
    await receive(dst, 's3', sendStream(src, 's3'));
    const full = await collect(sendStream(src, 's5', { from: 's3', pieceBytes: 30_000 }));
    // The base's snapshotted time may move (a snapshot of it was made and dropped): everything else stays.
    const view = (): string => JSON.stringify(dst.list().map(({ snapshottedTime: _t, ...rest }) => rest));
    const before = view();
    const used = dst.status().dataBlocks.used;
    const rng = seededRng(5);
    const cuts = [0, 5, 12, 13, full.length - 1, ...Array.from({ length: 25 }, () => Math.floor(rng() * full.length))];
    for (const cut of cuts) {
      await expect(receive(dst, 's5', [full.subarray(0, cut)]), `cut at ${cut}`).rejects.toSatisfy((e: unknown) =>
        isThinpoolError(e, 'ESTREAM'),
      );
      expect(dst.has('s5')).toBe(false);
      expect(view()).toBe(before);
      expect(dst.status().dataBlocks.used).toBe(used);
    }
    await receive(dst, 's5', [full]);
    expect(bytesOf(dst, 's5').equals(bytesOf(src, 's5'))).toBe(true);
    dst.commitSync();
    verifyMetadataDevice(dst.storage.metadata);
    dst.closeSync();
    src.closeSync();
  });

  test('refusals: a taken name, a missing base, a full stream onto a base, a bad size', async () => {
    const src = memPool();
    src.createThinSync('a', { size: 2 * BS });
    src.volume('a').writeSync(fill(10, 1), 0);
    src.snapshotSync('a', 'b');
    const dst = memPool();
    await receive(dst, 'a', sendStream(src, 'a'));
    const full = await collect(sendStream(src, 'b'));
    const incr = await collect(sendStream(src, 'b', { from: 'a' }));
    const fail = async (p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> => {
      await expect(p).rejects.toSatisfy((e: unknown) => isThinpoolError(e) && e.code === code && pattern.test(e.message));
    };
    await fail(receive(dst, 'a', [full]), 'EEXIST', /already exists/);
    await fail(receive(dst, 'x', [incr], { from: 'nope' }), 'ENOENT', /nope/);
    await fail(receive(dst, 'x', [full], { from: 'a' }), 'EINVAL', /full stream/);
    dst.deleteSync('a');
    await fail(receive(dst, 'x', [incr]), 'ENOENT', /incremental from "a"/);
    const odd = Buffer.concat([Buffer.from('rbd diff v1\n'), Buffer.from('s'), Buffer.from([100, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('e')]);
    await fail(receive(dst, 'x', [odd]), 'EINVAL', /multiple of 512/);
    expect(dst.has('x')).toBe(false);
    src.closeSync();
    dst.closeSync();
  });

  test('a volume left half-received by a crash is dropped (by the call, and by every writable open)', async () => {
    const dst = memPool();
    dst.createThinSync('half', { size: BS, labels: { [OWNER_LABEL]: RECEIVING_OWNER } });
    dst.createThinSync('kept', { size: BS });
    expect(dropIncompleteReceives(dst)).toEqual(['half']);
    expect(dst.list().map((v) => v.name)).toEqual(['kept']);
    dst.closeSync();
    const tpl = makeTemplate(16, 1024 * 1024, (p) => {
      p.createThinSync('half', { size: BS, labels: { [OWNER_LABEL]: RECEIVING_OWNER } }).writeSync(fill(100, 1), 0);
      p.createThinSync('kept', { size: BS });
    });
    const ro = ThinPool.openStorage(
      { metadata: tpl.meta.snapshot(), data: tpl.data.snapshot(), catalog: tpl.catalog.clone() },
      { readOnly: true },
    );
    expect(ro.list().map((v) => v.name)).toEqual(['half', 'kept']);
    ro.closeSync();
    const rw = ThinPool.openStorage({ metadata: tpl.meta.snapshot(), data: tpl.data.snapshot(), catalog: tpl.catalog.clone() });
    expect(rw.list().map((v) => v.name)).toEqual(['kept']);
    rw.commitSync();
    expect(rw.status().dataBlocks.used).toBe(0);
    rw.closeSync();
  });

  test('the stream of a thinpool send decodes with sizes and names as rbd export-diff writes them', async () => {
    const src = memPool();
    src.createThinSync('img', { size: 3 * BS });
    src.volume('img').writeSync(fill(BS, 3), BS);
    const recs = [];
    for await (const r of decodeDiff(sendStream(src, 'img')))
      recs.push(r.type === 'write' ? { type: 'write', offset: r.offset, length: r.data.length } : r);
    expect(recs).toEqual([
      { type: 'to', name: 'img' },
      { type: 'size', size: 3 * BS },
      { type: 'write', offset: BS, length: BS },
      { type: 'end' },
    ]);
    src.closeSync();
  });
});
