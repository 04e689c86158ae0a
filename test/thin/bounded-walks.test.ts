/**
 * The walks that keep their memory bounded say exactly what whole-tree walks say: the dump pieces
 * (`thinDumpText`, any piece size) concatenate to `formatThinDumpXml(dumpMetadata(md))`, live and held views;
 * `deviceUsage` (which walks only unshared subtrees) equals thin_ls's definition computed by brute force over
 * every mapping, on restored pools, snapshots with divergent writes, deletions, uncommitted changes and a held
 * metadata snapshot; the streamed XML parse (input cut anywhere, even inside a tag) and the streamed restore give
 * what the whole-text parse and restore give, errors included; the checker's one-byte expected data counts carry
 * on past 255.
 */
import { describe, expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { checkMetadata } from '../../src/thin/check.js';
import { dumpMetadata, thinDumpText } from '../../src/thin/dump.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { restoreMetadata, restoreMetadataStream } from '../../src/thin/restore.js';
import { deviceUsage } from '../../src/thin/usage.js';
import { formatThinDumpXml, parseThinXml, parseThinXmlStream, type XmlDevice, type XmlSuperblock } from '../../src/thin/thin-xml.js';
import { randomThinXml, seededRng } from '../support/oracle.js';

const MiB = 1024 * 1024;

function restored(seed: number, opts: Parameters<typeof randomThinXml>[1]): ThinMetadata {
  const { sb } = randomThinXml(seededRng(seed), opts);
  const dev = new MemoryDevice(16 * MiB);
  restoreMetadata(dev, sb);
  return ThinMetadata.open(dev);
}

function joined(pieces: Iterable<Buffer>): { text: string; count: number } {
  const parts: Buffer[] = [];
  for (const p of pieces) parts.push(Buffer.from(p)); // a piece is valid until the next one is made
  return { text: Buffer.concat(parts).toString('latin1'), count: parts.length };
}

describe('thinDumpText streams what formatThinDumpXml(dumpMetadata) prints', () => {
  for (const [seed, opts] of [
    [11, { devices: 3, mappingsPerDevice: 3000, nrDataBlocks: 20000, maxVblock: 50000 }],
    [12, { devices: 5, canonical: true }],
    [13, { devices: 0 }],
    [14, { devices: 2, mappingsPerDevice: 5000, nrDataBlocks: 6000, maxVblock: 8000 }],
  ] as const) {
    test(`seed ${seed}: one piece and many small pieces`, () => {
      const md = restored(seed, opts);
      const want = formatThinDumpXml(dumpMetadata(md));
      const whole = joined(thinDumpText(md));
      expect(whole.text).toBe(want);
      const small = joined(thinDumpText(md, {}, 4096));
      expect(small.text).toBe(want);
      if (want.length > 3 * 4096 + 1024) expect(small.count).toBeGreaterThan(2);
    });
  }

  test('the held metadata snapshot (thin_dump -m), and the live view after changes', () => {
    const md = restored(21, { devices: 2, mappingsPerDevice: 2000, nrDataBlocks: 10000, maxVblock: 30000 });
    md.reserveMetadataSnap();
    const ids = md.deviceIds();
    md.createSnapshot(77, ids[0]);
    for (let v = 0; v < 500; v++) md.insertMapping(77, v * 3, md.allocDataBlock());
    md.commit();
    for (const metadataSnap of [false, true]) {
      const want = formatThinDumpXml(dumpMetadata(md, { metadataSnap }));
      expect(joined(thinDumpText(md, { metadataSnap }, 1000)).text).toBe(want);
    }
    expect(joined(thinDumpText(md)).text).toContain('dev_id="77"');
  });

  test('no held snapshot: -m fails before any piece', () => {
    const md = restored(22, { devices: 1 });
    expect(() => thinDumpText(md, { metadataSnap: true }).next()).toThrow(/no current metadata snap/);
  });
});

/** thin_ls by brute force: a mapping is exclusive when its data block is mapped once in all the live devices. */
function bruteUsage(md: ThinMetadata): Map<number, { mappedBlocks: number; exclusiveBlocks: number; sharedBlocks: number }> {
  const times = new Map<number, number>();
  for (const id of md.deviceIds()) md.forEachMapping(id, (_v, d) => void times.set(d, (times.get(d) ?? 0) + 1));
  const out = new Map<number, { mappedBlocks: number; exclusiveBlocks: number; sharedBlocks: number }>();
  for (const id of md.deviceIds()) {
    let mapped = 0;
    let excl = 0;
    md.forEachMapping(id, (_v, d) => {
      mapped++;
      if (times.get(d) === 1) excl++;
    });
    out.set(id, { mappedBlocks: mapped, exclusiveBlocks: excl, sharedBlocks: mapped - excl });
  }
  return out;
}

describe('deviceUsage walks unshared subtrees only and agrees with the brute-force count', () => {
  test('restored pools (blocks shared between devices, and twice within one device)', () => {
    for (const seed of [31, 32, 33, 34]) {
      const md = restored(seed, { devices: 4, mappingsPerDevice: 3000, nrDataBlocks: 4000, maxVblock: 20000 });
      expect(deviceUsage(md)).toEqual(bruteUsage(md));
    }
  });

  test('snapshots of snapshots with divergent writes, removals, a deletion; committed and not', () => {
    const dev = new MemoryDevice(32 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 200_000, dataBlockSectors: 128 });
    md.createThin(1);
    for (let v = 0; v < 40_000; v++) md.insertMapping(1, v, md.allocDataBlock());
    md.commit();
    let seed = 5;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    let last = 1;
    for (let s = 2; s <= 8; s++) {
      md.createSnapshot(s, last);
      for (let k = 0; k < 300; k++) md.insertMapping(s, rnd(50_000), md.allocDataBlock());
      for (let k = 0; k < 50; k++) md.removeMapping(rnd(2) === 0 ? s : 1, rnd(40_000));
      expect(deviceUsage(md)).toEqual(bruteUsage(md)); // uncommitted
      if (s % 2 === 0) md.commit();
      last = s;
    }
    md.deleteDevice(4);
    expect(deviceUsage(md)).toEqual(bruteUsage(md));
    md.commit();
    const reopened = ThinMetadata.open(dev, { readOnly: true });
    expect(deviceUsage(reopened)).toEqual(bruteUsage(reopened));
    expect([...deviceUsage(reopened).values()].some((u) => u.exclusiveBlocks > 0 && u.sharedBlocks > 0)).toBe(true);
  });

  test('with a held metadata snapshot (its trees also reference data blocks)', () => {
    const md = restored(41, { devices: 3, mappingsPerDevice: 2000, nrDataBlocks: 7000, maxVblock: 10000 });
    md.reserveMetadataSnap();
    const id = md.deviceIds()[0];
    for (let v = 0; v < 400; v++) md.insertMapping(id, v, md.allocDataBlock());
    md.commit();
    expect(deviceUsage(md)).toEqual(bruteUsage(md));
  });
});

/** Parse text handed over in pieces cut at the given offsets. */
function parsePieces(text: string, cuts: number[]): XmlSuperblock {
  const pieces: string[] = [];
  let at = 0;
  for (const c of [...cuts, text.length]) {
    pieces.push(text.slice(at, c));
    at = c;
  }
  let sb: XmlSuperblock | undefined;
  let dev: XmlDevice | undefined;
  let k = 1;
  parseThinXmlStream(pieces[0], () => (k < pieces.length ? pieces[k++] : null), {
    superblock: (s) => void (sb = s),
    device: (d) => {
      sb!.devices.push(d);
      dev = d;
    },
    mapping: (m) => void dev!.mappings.push(m),
    deviceEnd: () => void (dev = undefined),
  });
  return sb!;
}

function outcome(f: () => unknown): unknown {
  try {
    return f();
  } catch (e) {
    return `error: ${(e as Error).message}`;
  }
}

describe('streamed XML parse and restore', () => {
  test('pieces cut anywhere parse as the whole text does (thin_dump form and the general form)', () => {
    for (const seed of [51, 52, 53]) {
      const { xml } = randomThinXml(seededRng(seed), { devices: 3, mappingsPerDevice: 40, canonical: seed === 52 });
      const text = `<?xml version="1.0"?>\n<!-- a comment -->\n${xml}`;
      const want = parseThinXml(text);
      const rng = seededRng(seed + 100);
      for (let r = 0; r < 40; r++) {
        const cuts = Array.from({ length: 1 + Math.floor(rng() * 6) }, () => Math.floor(rng() * text.length)).sort((a, b) => a - b);
        expect(parsePieces(text, cuts)).toEqual(want);
      }
      for (let c = 0; c < Math.min(text.length, 400); c++) expect(parsePieces(text, [c])).toEqual(want);
    }
  });

  test('errors are the same wherever the input is cut', () => {
    const good =
      '<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="100">\n  <device dev_id="1" mapped_blocks="1" transaction="1" creation_time="0" snap_time="0">\n';
    for (const bad of [
      `${good}    <single_mapping origin_block="1" data_block="100" time="0"/>\n  </device>\n</superblock>\n`,
      `${good}    <single_mapping origin_block="x" data_block="1" time="0"/>\n  </device>\n</superblock>\n`,
      `${good}    <single_mapping origin_block="1" data_block="1" time="0"/>\n  </device>\n`,
      `${good}    <bogus/>\n  </device>\n</superblock>\n`,
      `${good}  </device>\n  <device dev_id="1" mapped_blocks="0" transaction="1" creation_time="0" snap_time="0"/>\n</superblock>\n`,
      `${good}    <single_mapping origin_block="1" data_block="1" time="0"`,
    ]) {
      const want = outcome(() => parseThinXml(bad));
      expect(String(want)).toMatch(/^error: /);
      for (let c = 0; c <= bad.length; c += 7) expect(outcome(() => parsePieces(bad, [c]))).toEqual(want);
    }
  });

  test('restoreMetadataStream writes what restoreMetadata writes, and counts what it inserted', () => {
    for (const seed of [61, 62]) {
      const { xml, sb } = randomThinXml(seededRng(seed), { devices: 4, mappingsPerDevice: 2500, nrDataBlocks: 8000, maxVblock: 40000 });
      const a = new MemoryDevice(16 * MiB);
      restoreMetadata(a, sb);
      const b = new MemoryDevice(16 * MiB);
      const pieces = Array.from({ length: Math.ceil(xml.length / 997) }, (_, i) => xml.slice(i * 997, (i + 1) * 997));
      let k = 1;
      const stats = restoreMetadataStream(
        (s) => {
          expect(s).toEqual({ nrDataBlocks: sb.nrDataBlocks, dataBlockSize: sb.dataBlockSize });
          return b;
        },
        pieces[0],
        () => (k < pieces.length ? pieces[k++] : null),
      );
      const mdA = ThinMetadata.open(a, { readOnly: true });
      const mdB = ThinMetadata.open(b, { readOnly: true });
      expect(formatThinDumpXml(dumpMetadata(mdB))).toBe(formatThinDumpXml(dumpMetadata(mdA)));
      expect(stats.devices).toBe(sb.devices.length);
      expect(stats.mappings).toBe(sb.devices.reduce((n, d) => n + d.mappings.reduce((m, r) => m + r.length, 0), 0));
    }
  });
});

test('the checker counts a data block shared by 300 devices exactly (past its one-byte counters)', () => {
  const devices: XmlDevice[] = Array.from({ length: 300 }, (_, i) => ({
    devId: i,
    mappedBlocks: 2,
    transaction: 0,
    creationTime: 0,
    snapTime: 0,
    mappings: [
      { vblock: 0, dblock: 7, length: 1, time: 0 },
      { vblock: 1, dblock: 8 + (i % 3), length: 1, time: 0 },
    ],
  }));
  const sb: XmlSuperblock = { uuid: '', time: 0, transaction: 1, flags: 0, version: 2, dataBlockSize: 128, nrDataBlocks: 100, devices };
  const dev = new MemoryDevice(16 * MiB);
  restoreMetadata(dev, sb);
  const md = ThinMetadata.open(dev);
  expect(md.dataBlockCount(7)).toBe(300);
  expect(checkMetadata(md).errors).toEqual([]);
  md.insertMappingRaw(0, 2, 7, 0); // one more reference, and the device maps it twice
  md.commit();
  expect(checkMetadata(md).errors).toEqual([]);
  ThinMetadata.internals(md).dsm.dec(7); // the count no longer matches the mappings
  md.commit();
  expect(checkMetadata(md).errors.map((e) => e.message)).toContain('data reference counts differ for block 7, expected 301, but got 300');
});
