/**
 * The streaming forms of the metadata tools say exactly what the whole-tree forms say: the dump pieces
 * (`thinDumpText`, any piece size) concatenate to `formatThinDumpXml(dumpMetadata(md))`, live and held views.
 */
import { describe, expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { dumpMetadata, thinDumpText } from '../../src/thin/dump.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { restoreMetadata } from '../../src/thin/restore.js';
import { formatThinDumpXml } from '../../src/thin/thin-xml.js';
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
