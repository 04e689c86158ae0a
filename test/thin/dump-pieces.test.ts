/**
 * thin_dump's text streamed in pieces (`thinDumpText`, written through xml-bytes.ts) at every piece size, with the
 * widest numbers the metadata holds (24-bit device ids and times, 32-bit device times, 2^53 - 1 transactions,
 * 40-bit origin blocks): the pieces concatenate to `formatThinDumpXml(dumpMetadata(md))`, which the XML restore
 * path reads back to the same pool; every piece but the last holds at least the piece size and is cut at the
 * first leaf end that reaches it; and the pieces are views of one buffer reused from piece to piece, grown only
 * while a piece is filled past its size.
 */
import { describe, expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { dumpMetadata, thinDumpText } from '../../src/thin/dump.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { restoreMetadata } from '../../src/thin/restore.js';
import { formatThinDumpXml, parseThinXml, type XmlMapping, type XmlSuperblock } from '../../src/thin/thin-xml.js';
import { randomThinXml, seededRng } from '../support/oracle.js';

const MiB = 1024 * 1024;

function restore(sb: XmlSuperblock): ThinMetadata {
  const dev = new MemoryDevice(16 * MiB);
  restoreMetadata(dev, sb);
  return ThinMetadata.open(dev);
}

/** The pieces, copied (a piece is valid until the next one is made), and the buffers they were views of. */
function pieces(md: ThinMetadata, pieceBytes: number): { parts: string[]; buffers: ArrayBuffer[] } {
  const parts: string[] = [];
  const buffers: ArrayBuffer[] = [];
  for (const p of thinDumpText(md, {}, pieceBytes)) {
    parts.push(p.toString('latin1'));
    if (!buffers.includes(p.buffer as ArrayBuffer)) buffers.push(p.buffer as ArrayBuffer);
  }
  return { parts, buffers };
}

/**
 * A pool whose header lines are as long as its fields allow: the superblock line is 143 bytes and the first
 * device line 131, so small piece sizes make the buffer grow for a header line, not only for a mapping line.
 */
function widePool(): { md: ThinMetadata; sb: XmlSuperblock } {
  const single: XmlMapping[] = [];
  for (let i = 0; i < 12; i++) single.push({ vblock: 2 ** 40 + 2 * i, dblock: 999_000 + 2 * i, length: 1, time: 2 ** 24 - 1 });
  const ranged: XmlMapping[] = [
    { vblock: 0, dblock: 0, length: 300, time: 0 },
    { vblock: 2 ** 40 - 1000, dblock: 500, length: 999, time: 123_456 },
  ];
  const sb: XmlSuperblock = {
    uuid: '',
    time: 2 ** 32 - 1,
    transaction: 2 ** 53 - 1,
    flags: 0,
    version: 2,
    dataBlockSize: 2_097_152,
    nrDataBlocks: 1_000_000,
    devices: [
      {
        devId: 2 ** 24 - 1,
        mappedBlocks: 1311,
        transaction: 2 ** 53 - 1,
        creationTime: 2 ** 32 - 1,
        snapTime: 2 ** 32 - 1,
        mappings: [...ranged, ...single],
      },
    ],
  };
  return { md: restore(sb), sb };
}

describe('thinDumpText at every piece size', () => {
  test('the widest header lines: pieces of 1 to 400 bytes all concatenate to the text that restores the pool', () => {
    const { md, sb } = widePool();
    const want = formatThinDumpXml(dumpMetadata(md));
    const lines = want.split('\n');
    expect(lines[0].length + 1).toBe(143);
    expect(lines[1].length + 1).toBe(131);
    expect(want).toContain('origin_block="1099511627776" data_block="999000" time="16777215"/>');
    expect(want).toContain('<range_mapping origin_begin="1099511626776" data_begin="500" length="999" time="123456"/>');
    // The text is the pool: parsed and restored again it dumps the same, devices and mappings as restored.
    const back = parseThinXml(want);
    expect(back.devices.map((d) => d.devId)).toEqual([2 ** 24 - 1]);
    expect(back.devices[0].mappings).toEqual(sb.devices[0].mappings);
    expect(formatThinDumpXml(dumpMetadata(restore(back)))).toBe(want);
    for (let size = 1; size <= 400; size++) {
      const { parts } = pieces(md, size);
      expect(parts.join(''), `piece size ${size}`).toBe(want);
      for (let i = 0; i < parts.length - 1; i++) expect(parts[i].length, `piece ${i} of size ${size}`).toBeGreaterThanOrEqual(size);
    }
  });

  test('many leaves: every piece but the last holds at least the piece size, cut at the first leaf end reaching it', () => {
    const { sb } = randomThinXml(seededRng(61), { devices: 3, mappingsPerDevice: 2500, nrDataBlocks: 9000, maxVblock: 30000 });
    const md = restore(sb);
    const want = formatThinDumpXml(dumpMetadata(md));
    // Piece size 1: a piece at every leaf end that has text behind it; their ends are the only places a cut can fall.
    const cuts: number[] = [];
    let at = 0;
    for (const p of pieces(md, 1).parts) {
      expect(p.length).toBeGreaterThan(0);
      at += p.length;
      cuts.push(at);
    }
    expect(at).toBe(want.length);
    expect(cuts.length).toBeGreaterThan(30);
    for (const size of [cuts[0], cuts[0] - 1, cuts[0] + 1, cuts[5] - cuts[4], 2 * cuts[0], 3000, 4096, 20000]) {
      const { parts } = pieces(md, size);
      expect(parts.join('')).toBe(want);
      let end = 0;
      for (let i = 0; i < parts.length - 1; i++) {
        // The cut after piece i is the first possible one at which the piece reaches `size` bytes.
        const start = end;
        end += parts[i].length;
        expect(
          cuts.find((c) => c - start >= size),
          `piece ${i} of size ${size}`,
        ).toBe(end);
      }
    }
  });

  test('one buffer is reused from piece to piece: it grows only while a piece is filled past its size', () => {
    const { sb } = randomThinXml(seededRng(62), { devices: 4, mappingsPerDevice: 3000, nrDataBlocks: 20000, maxVblock: 40000 });
    const md = restore(sb);
    const want = formatThinDumpXml(dumpMetadata(md));
    for (const size of [4096, 8192]) {
      const { parts, buffers } = pieces(md, size);
      expect(parts.join('')).toBe(want);
      expect(parts.length).toBeGreaterThanOrEqual(8);
      // At most a leaf's lines (126 runs of under 100 bytes) past the piece size: a growth or two, then reuse.
      expect(buffers.length, `buffers for piece size ${size}`).toBeLessThanOrEqual(3);
      for (const b of buffers) expect(b.byteLength).toBeLessThanOrEqual(4 * (size + 126 * 100));
    }
  });
});
