/**
 * The strict checker on metadata our engine wrote: clean after random workloads, and it finds deliberately
 * wrong reference counts and cycles (without hanging).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import type { BlockDevice } from '../../src/io/block-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { isThinpoolError } from '../../src/errors.js';
import { checkMetadata, checkMetadataDevice } from '../../src/thin/check.js';
import { dumpMetadata } from '../../src/thin/dump.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { formatThinDumpXml } from '../../src/thin/thin-xml.js';
import { seededRng, thinCheck, thinDumpText, type Rng } from '../support/oracle.js';
import { needTool } from '../support/tools.js';
import { BITMAP_SALT, NODE_SALT, patchBlock, readBlock, setU64, u64 } from '../support/metadata-patch.js';

const hasThinCheck = needTool('thin_check', 'thin-provisioning-tools') && needTool('thin_dump', 'thin-provisioning-tools');

const MiB = 1024 * 1024;

const tmp = mkdtempSync(path.join(os.tmpdir(), 'thinpool-check-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** thin_check (and thin_dump) on a copy of dev's bytes: locally only when installed, always in CI (needTool). */
function externalChecks(dev: BlockDevice, expectedDump?: string): void {
  const file = path.join(tmp, `m-${Math.random().toString(36).slice(2)}`);
  const buf = new Uint8Array(dev.sizeBytes);
  dev.read(buf, 0);
  writeFileSync(file, buf);
  if (hasThinCheck) {
    const r = thinCheck(file);
    expect(r.status, `thin_check:\n${r.stdout}${r.stderr}`).toBe(0);
    if (expectedDump !== undefined) expect(thinDumpText(file)).toBe(expectedDump);
  }
  rmSync(file, { force: true });
}

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[Math.floor(rng() * xs.length)]!;
}

/** Random create / snapshot / insert / remove / delete / metadata-snapshot / commit steps. */
function workload(md: ThinMetadata, rng: Rng, steps: number, onCommit: () => void): void {
  let nextId = 1;
  for (let s = 0; s < steps; s++) {
    const ids = md.deviceIds();
    const r = rng();
    if (ids.length === 0 || r < 0.06) {
      md.createThin(nextId++);
    } else if (r < 0.12 && ids.length < 8) {
      md.createSnapshot(nextId++, pick(rng, ids));
    } else if (r < 0.14 && ids.length > 2) {
      md.deleteDevice(pick(rng, ids));
    } else if (r < 0.16) {
      if (md.heldRoot === 0) md.reserveMetadataSnap();
      else md.releaseMetadataSnap();
    } else if (r < 0.25) {
      md.commit();
      onCommit();
    } else if (r < 0.6) {
      const id = pick(rng, ids);
      const base = Math.floor(rng() * 3000);
      const n = 1 + Math.floor(rng() * 200);
      for (let i = 0; i < n && md.dataFreeBlocks > 0; i++) md.insertMapping(id, base + i, md.allocDataBlock());
    } else {
      const id = pick(rng, ids);
      const base = Math.floor(rng() * 3000);
      const n = 1 + Math.floor(rng() * 150);
      for (let i = 0; i < n; i++) md.removeMapping(id, base + i);
    }
  }
  md.commit();
  onCommit();
}

describe('checkMetadata on pools our engine wrote', () => {
  for (const seed of [1, 2, 3]) {
    test(`random workload, seed ${seed}: ok after every commit, exact counters`, () => {
      const dev = new MemoryDevice(8 * MiB);
      const md = ThinMetadata.format(dev, { nrDataBlocks: 20000, dataBlockSectors: 128 });
      const rng = seededRng(seed);
      let commits = 0;
      workload(md, rng, 300, () => {
        commits++;
        const r = checkMetadata(md);
        expect(r.errors, `commit ${commits}`).toEqual([]);
        expect(r.warnings, `commit ${commits}`).toEqual([]);
        expect(r.ok).toBe(true);
        expect(r.stats.devices).toBe(md.deviceIds().length);
        expect(r.stats.mappings).toBe(md.deviceIds().reduce((s, id) => s + md.deviceDetails(id).mappedBlocks, 0));
      });
      expect(commits).toBeGreaterThan(5);
      // And opened fresh, read-only.
      const fresh = checkMetadataDevice(dev);
      expect(fresh.errors).toEqual([]);
      expect(fresh.warnings).toEqual([]);
      externalChecks(dev, formatThinDumpXml(dumpMetadata(md)));
    });
  }

  test('checkMetadata refuses an uncommitted state', () => {
    const dev = new MemoryDevice(MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 100, dataBlockSectors: 128 });
    md.createThin(1);
    expect(() => checkMetadata(md)).toThrow(/commit/);
    md.commit();
    expect(checkMetadata(md).ok).toBe(true);
  });
});

describe('checkMetadata finds damage', () => {
  /** A committed pool with two devices sharing a snapshot; returns it reopened fresh. */
  function smallPool(): { dev: MemoryDevice; md: ThinMetadata } {
    const dev = new MemoryDevice(4 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 5000, dataBlockSectors: 128 });
    md.createThin(1);
    for (let v = 0; v < 600; v++) md.insertMapping(1, v, md.allocDataBlock());
    md.createSnapshot(2, 1);
    for (let v = 0; v < 50; v++) md.insertMapping(2, v * 7, md.allocDataBlock());
    md.commit();
    expect(checkMetadata(md).errors).toEqual([]);
    return { dev, md: ThinMetadata.open(dev, { readOnly: true }) };
  }

  test('a wrong metadata reference count names the block', () => {
    const { dev, md } = smallPool();
    const sb = md.superblock;
    const victim = sb.deviceDetailsRoot;
    expect(md.inspect().metadataCount(victim)).toBe(1);
    const index = readBlock(dev, sb.metadataSm.bitmapRoot);
    const bitmap = u64(index, 16);
    patchBlock(md, dev, bitmap, BITMAP_SALT, (_buf, core, addr) => core.x.bitmapSet(addr, victim, 2));
    const r = checkMetadataDevice(dev);
    expect(r.ok).toBe(false);
    const e = r.errors.find((x) => x.mblock === victim);
    expect(e, JSON.stringify(r.errors)).toBeDefined();
    expect(e!.message).toBe(`metadata reference counts differ for block ${victim}, expected 1, but got 2`);
    expect(e!.structure).toBe('metadata space map');
    // The other direction: a referenced block marked free.
    patchBlock(md, dev, bitmap, BITMAP_SALT, (_buf, core, addr) => core.x.bitmapSet(addr, victim, 0));
    const r2 = checkMetadataDevice(dev);
    expect(r2.errors.map((x) => x.message)).toContain(`metadata reference counts differ for block ${victim}, expected 1, but got 0`);
    expect(r2.warnings.some((w) => /nr_allocated/.test(w.message))).toBe(true);
    if (hasThinCheck) {
      const file = path.join(tmp, 'wrong-meta-count');
      const buf = new Uint8Array(dev.sizeBytes);
      dev.read(buf, 0);
      writeFileSync(file, buf);
      const t = thinCheck(file);
      expect(t.status).toBe(1);
      expect(t.stderr).toContain(`metadata reference counts differ for block ${victim}, expected 1, but got 0`);
    }
  });

  test('a wrong data reference count names the data block', () => {
    const { dev, md } = smallPool();
    // Device 2 shares device 1's leaves for v >= 50*7 region; data block of (1, 599) has count 1.
    const d = md.lookup(1, 599)!.dblock;
    expect(md.dataBlockCount(d)).toBe(1);
    const sb = md.superblock;
    // Data index tree root is a leaf with one entry: bitmap block at value 0.
    const leaf = readBlock(dev, sb.dataSm.bitmapRoot);
    expect(new DataView(leaf.buffer).getUint32(4, true)).toBe(2);
    const max = new DataView(leaf.buffer).getUint32(20, true);
    const bitmap = u64(leaf, 32 + 8 * max);
    patchBlock(md, dev, bitmap, BITMAP_SALT, (_buf, core, addr) => core.x.bitmapSet(addr, d, 2));
    const r = checkMetadataDevice(dev);
    expect(r.ok).toBe(false);
    expect(r.errors.map((x) => x.message)).toContain(`data reference counts differ for block ${d}, expected 1, but got 2`);
  });

  /** A device whose level-1 tree is three levels high (root -> internal nodes -> leaves). */
  function deepPool(): { dev: MemoryDevice; md: ThinMetadata; root: number } {
    const dev = new MemoryDevice(16 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 40000, dataBlockSectors: 128 });
    md.createThin(1);
    for (let v = 0; v < 36000; v++) md.insertMapping(1, v, md.allocDataBlock());
    md.commit();
    return { dev, md, root: md.rootOf(1) };
  }

  test('a cycle (internal node pointing at its parent) is an error, not a hang', () => {
    const { dev, md, root } = deepPool();
    const r0 = readBlock(dev, root);
    const dv = new DataView(r0.buffer);
    expect(dv.getUint32(4, true)).toBe(1); // internal root
    const rootMax = dv.getUint32(20, true);
    const child = u64(r0, 32 + 8 * rootMax);
    const c = readBlock(dev, child);
    expect(new DataView(c.buffer).getUint32(4, true)).toBe(1); // internal child: the tree has 3 levels
    const cmax = new DataView(c.buffer).getUint32(20, true);
    patchBlock(md, dev, child, NODE_SALT, (buf) => setU64(buf, 32 + 8 * cmax, root));
    const t0 = Date.now();
    const r = checkMetadataDevice(dev);
    expect(Date.now() - t0).toBeLessThan(20000);
    expect(r.ok).toBe(false);
    const cyc = r.errors.find((e) => e.code === 'ECYCLE');
    expect(cyc, JSON.stringify(r.errors.slice(0, 5))).toBeDefined();
    expect(cyc!.mblock).toBe(root);
    expect(cyc!.message).toContain(`block ${root}`);
    // Reading tools stay bounded too.
    const md2 = ThinMetadata.open(dev, { readOnly: true });
    let thrown: unknown;
    try {
      dumpMetadata(md2);
    } catch (e) {
      thrown = e;
    }
    expect(isThinpoolError(thrown)).toBe(true);
  });

  test('a node pointing at itself is an error', () => {
    const { dev, md, root } = deepPool();
    const r0 = readBlock(dev, root);
    const rootMax = new DataView(r0.buffer).getUint32(20, true);
    patchBlock(md, dev, root, NODE_SALT, (buf) => setU64(buf, 32 + 8 * rootMax + 8, root));
    const r = checkMetadataDevice(dev);
    expect(r.ok).toBe(false);
    expect(r.errors.some((e) => e.code === 'ECYCLE' && e.mblock === root)).toBe(true);
  });

  test('a corrupt superblock becomes a report entry', () => {
    const dev = new MemoryDevice(MiB);
    ThinMetadata.format(dev, { nrDataBlocks: 100, dataBlockSectors: 128 });
    const b = readBlock(dev, 0);
    b[100] ^= 1;
    dev.write(b, 0);
    const r = checkMetadataDevice(dev);
    expect(r.ok).toBe(false);
    expect(r.errors[0]!.code).toBe('EBADCSUM');
    expect(r.errors[0]!.mblock).toBe(0);
    // An open that fails is the whole report: that one entry, no warnings, empty stats.
    expect(r).toEqual({
      ok: false,
      errors: [{ code: 'EBADCSUM', structure: 'superblock', mblock: 0, message: r.errors[0]!.message }],
      warnings: [],
      stats: { devices: 0, mappings: 0, metadataBlocksUsed: 0, dataBlocksUsed: 0 },
    });
  });
});

describe('checkMetadata counts data references in windows of data blocks', () => {
  /**
   * Device 1 maps 1200 data blocks; its snapshot 2 shares its tree, then maps 50 blocks of its own (every 7th
   * virtual block below 350): the leaves it changed are copied, so their other entries' blocks count 2.
   */
  function windowedPool(): { dev: MemoryDevice; md: ThinMetadata; bitmap: number } {
    const dev = new MemoryDevice(8 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 5000, dataBlockSectors: 128 });
    md.createThin(1);
    for (let v = 0; v < 1200; v++) md.insertMapping(1, v, md.allocDataBlock());
    md.createSnapshot(2, 1);
    for (let v = 0; v < 50; v++) md.insertMapping(2, v * 7, md.allocDataBlock());
    md.commit();
    return { dev, md: ThinMetadata.open(dev, { readOnly: true }), bitmap: dataBitmap(dev, md) };
  }

  /** The data space map's only bitmap block (its index tree is one leaf). */
  function dataBitmap(dev: BlockDevice, md: ThinMetadata): number {
    const leaf = readBlock(dev, md.superblock.dataSm.bitmapRoot);
    return u64(leaf, 32 + 8 * new DataView(leaf.buffer).getUint32(20, true));
  }

  test('a pool whose data device spans many windows checks clean, shared blocks counted right in every window', () => {
    const { dev, md } = windowedPool();
    const whole = checkMetadataDevice(dev);
    expect(whole.errors).toEqual([]);
    // Blocks referenced by two leaves (count 2) beyond the first window of 100.
    const shared = [...Array(1200).keys()].map((v) => md.lookup(1, v)!.dblock).filter((d) => d >= 100 && md.dataBlockCount(d) === 2);
    expect(shared.length).toBeGreaterThan(100);
    for (const w of [100, 128, 300, 1000, 1]) {
      const r = checkMetadataDevice(dev, { windowBlocks: w });
      expect(r.errors, `window ${w}`).toEqual([]);
      expect(r.stats).toEqual(whole.stats);
    }
  });

  test('a wrong count in the second window is found and names the block; so is a shared block counted once', () => {
    const { dev, md, bitmap } = windowedPool();
    const d1 = md.lookup(2, 7)!.dblock; // the snapshot's own block: count 1
    const d2 = md.lookup(1, 200)!.dblock; // in a leaf both devices reach, one copied: count 2
    expect(d1 >= 1000 && d1 < 2000, `block ${d1} in the second window of 1000`).toBe(true);
    expect(d2 >= 100 && d2 < 1000, `block ${d2} beyond the first window of 100, in the first of 1000`).toBe(true);
    expect([md.dataBlockCount(d1), md.dataBlockCount(d2)]).toEqual([1, 2]);
    patchBlock(md, dev, bitmap, BITMAP_SALT, (_buf, core, addr) => {
      core.x.bitmapSet(addr, d1, 2);
      core.x.bitmapSet(addr, d2, 1);
    });
    for (const w of [1000, 100, undefined]) {
      const r = checkMetadataDevice(dev, w === undefined ? {} : { windowBlocks: w });
      const msgs = r.errors.map((x) => x.message);
      expect(msgs, `window ${w}`).toContain(`data reference counts differ for block ${d1}, expected 1, but got 2`);
      expect(msgs, `window ${w}`).toContain(`data reference counts differ for block ${d2}, expected 2, but got 1`);
      expect(msgs.filter((m) => m.startsWith('data reference counts differ')).length).toBe(2);
    }
  });

  test('counts of 3 and more (past the 2 bits a block gets) are exact in every window', () => {
    const { dev } = windowedPool();
    const rw = ThinMetadata.open(dev);
    // Snapshots 3, 4 and 5 of device 1 each write one block of the leaf holding virtual block 200: three more
    // copies of that leaf, so its other blocks count 4 (1 + 3 copies; device 2 had copied it already: 5).
    for (const id of [3, 4, 5]) {
      rw.createSnapshot(id, 1);
      rw.insertMapping(id, 201, rw.allocDataBlock());
    }
    rw.commit();
    const ro = ThinMetadata.open(dev, { readOnly: true });
    const d = ro.lookup(1, 200)!.dblock;
    const count = ro.dataBlockCount(d);
    expect(count).toBeGreaterThanOrEqual(4);
    expect(d >= 100, `block ${d} beyond the first window of 100`).toBe(true);
    for (const w of [100, 7, undefined]) expect(checkMetadataDevice(dev, w === undefined ? {} : { windowBlocks: w }).errors).toEqual([]);
    patchBlock(ro, dev, dataBitmap(dev, ro), BITMAP_SALT, (_buf, core, addr) => core.x.bitmapSet(addr, d, 2));
    for (const w of [100, undefined]) {
      const msgs = checkMetadataDevice(dev, w === undefined ? {} : { windowBlocks: w }).errors.map((x) => x.message);
      expect(msgs, `window ${w}`).toContain(`data reference counts differ for block ${d}, expected ${count}, but got 2`);
    }
  });

  test('a window of no data blocks is refused', () => {
    const { dev } = windowedPool();
    expect(() => checkMetadataDevice(dev, { windowBlocks: 0 })).toThrow(/bad check window 0/);
  });
});

describe('engine regressions found by the checker', () => {
  // ThinMetadata.open compared the WASM core's i32 checksum (negative when bit 31 is set) with the unsigned le32
  // of DataView.getUint32, so every superblock whose checksum is >= 2^31 was rejected as "bad checksum in
  // superblock (block 0)" (fixtures 02, 06, 07 among them).
  test('ThinMetadata.open accepts a superblock whose checksum has bit 31 set', () => {
    const dev = new MemoryDevice(MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 100, dataBlockSectors: 128 });
    for (let i = 0; i < 64 && (readBlock(dev, 0)[3] & 0x80) === 0; i++) {
      md.setTransactionId(md.transactionId, md.transactionId + 1);
      md.commit();
    }
    expect(readBlock(dev, 0)[3] & 0x80).toBe(0x80);
    expect(() => ThinMetadata.open(dev, { readOnly: true })).not.toThrow();
  });

  // BTree.insert passed its value through core.param, but shadowing a shared level-1 leaf increments the data
  // counts of its entries, and a count reaching 3 inserts into the data ref-count tree through core.param too:
  // the mapping was stored with the ref count as its low word (data block hi*256, time = the count).
  test('inserting into a shared leaf whose data block goes to count 3 keeps the new mapping', () => {
    const md = ThinMetadata.format(new MemoryDevice(MiB), { nrDataBlocks: 1000, dataBlockSectors: 128 });
    md.createThin(1);
    md.createThin(9);
    const d = md.allocDataBlock();
    md.insertMapping(1, 0, d);
    md.insertMappingRaw(9, 0, d, 0); // count 2
    md.createSnapshot(2, 1); // device 1's leaf is now shared
    md.commit();
    md.insertMappingRaw(1, 1, 300, 1); // shadows the shared leaf: d goes 2 -> 3 (ref-count tree insert)
    expect(md.dataBlockCount(d)).toBe(3);
    expect(md.lookup(1, 1)).toEqual({ dblock: 300, time: 1, shared: false });
    md.commit();
    expect(checkMetadata(md).errors).toEqual([]);
  });
});
