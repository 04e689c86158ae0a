/**
 * thin_restore interoperability, both ways:
 * (a) thin_restore writes a file; we read it (dump equals thin_dump), change it (new thin, snapshot, mappings
 *     in and out), commit, and thin_check and our strict checker accept it and thin_dump agrees with our dump;
 * (b) our restoreMetadata writes a file from the same XML; thin_check and our strict checker accept it and thin_dump prints
 *     the expected XML.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { FileDevice } from '../../src/io/file-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { checkMetadata } from '../../src/thin/check.js';
import { dumpMetadata } from '../../src/thin/dump.js';
import { MAX_DEVICE_ID, ThinMetadata } from '../../src/thin/metadata.js';
import { restoreMetadata } from '../../src/thin/restore.js';
import { formatThinDumpXml, parseThinXml, type XmlSuperblock } from '../../src/thin/thin-xml.js';
import {
  randomThinXml,
  seededRng,
  strictCheck,
  thinCheck,
  thinDumpText,
  thinRestore,
  type RandomThinXmlOptions,
} from '../support/oracle.js';
import { needTool } from '../support/tools.js';

const hasThin =
  needTool('thin_restore', 'thin-provisioning-tools') &&
  needTool('thin_dump', 'thin-provisioning-tools') &&
  needTool('thin_check', 'thin-provisioning-tools');

const MiB = 1024 * 1024;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'thinpool-restore-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const CASES: Array<{ seed: number; opts: RandomThinXmlOptions; size: number }> = [
  { seed: 1, opts: {}, size: 4 * MiB },
  { seed: 2, opts: {}, size: 4 * MiB },
  { seed: 3, opts: { devices: 4 }, size: 4 * MiB },
  { seed: 4, opts: { devices: 1, nrDataBlocks: 64 }, size: 4 * MiB },
  { seed: 5, opts: { devices: 0 }, size: 4 * MiB },
  { seed: 6, opts: { canonical: true, devices: 5 }, size: 4 * MiB },
  { seed: 7, opts: { devices: 3, mappingsPerDevice: 4000, nrDataBlocks: 50000, maxVblock: 200000 }, size: 16 * MiB },
];

function assertValid(file: string): void {
  const c = thinCheck(file);
  expect(c.status, `thin_check ${file}:\n${c.stdout}${c.stderr}`).toBe(0);
  expect(strictCheck(file), `strict check of ${file}`).toEqual([]);
}

function ourDump(file: string): { xml: string; errors: unknown[] } {
  const dev = FileDevice.open(file, { readOnly: true });
  try {
    const md = ThinMetadata.open(dev, { readOnly: true });
    return { xml: formatThinDumpXml(dumpMetadata(md)), errors: checkMetadata(md).errors };
  } finally {
    dev.close();
  }
}

function freeId(md: ThinMetadata, from: number): number {
  let id = from;
  while (md.hasDevice(id)) id = (id + 1) % (MAX_DEVICE_ID + 1);
  return id;
}

describe.skipIf(!hasThin)('thin_restore interoperability', () => {
  for (const { seed, opts, size } of CASES) {
    test(`seed ${seed} ${JSON.stringify(opts)}: thin_restore -> our reader and writer`, () => {
      const { xml, sb } = randomThinXml(seededRng(seed), opts);
      const expected = formatThinDumpXml(sb);
      const file = path.join(tmp, `restored-${seed}`);
      thinRestore(xml, file, size);
      expect(thinDumpText(file)).toBe(expected);

      const dev = FileDevice.open(file);
      try {
        const md = ThinMetadata.open(dev);
        expect(formatThinDumpXml(dumpMetadata(md))).toBe(expected);
        const r0 = checkMetadata(md);
        expect(r0.errors).toEqual([]);
        if (md.needsCheck) md.clearNeedsCheck();
        // A new thin device, a snapshot of an existing device (or of the new one), mappings in and out.
        const ids = md.deviceIds();
        const thin = freeId(md, 1);
        md.createThin(thin);
        const snap = freeId(md, thin + 1);
        const origin = ids.length > 0 ? ids[0]! : thin;
        md.createSnapshot(snap, origin);
        const rng = seededRng(seed * 1000 + 7);
        const budget = Math.min(200, Math.floor(md.dataFreeBlocks / 2));
        for (let i = 0; i < budget; i++) {
          md.insertMapping(rng() < 0.5 ? thin : snap, Math.floor(rng() * 5000), md.allocDataBlock());
        }
        const originMappings: number[] = [];
        md.forEachMapping(snap, (v) => originMappings.push(v));
        for (const v of originMappings.slice(0, Math.ceil(originMappings.length / 3))) md.removeMapping(snap, v);
        if (ids.length > 1) md.deleteDevice(ids[1]!);
        md.commit();
        const r1 = checkMetadata(md);
        expect(r1.errors).toEqual([]);
      } finally {
        dev.close();
      }
      assertValid(file);
      const ours = ourDump(file);
      expect(ours.errors).toEqual([]);
      expect(thinDumpText(file)).toBe(ours.xml);
    });

    test(`seed ${seed} ${JSON.stringify(opts)}: restoreMetadata -> thin_check, thin_dump`, () => {
      const { xml, sb } = randomThinXml(seededRng(seed), opts);
      const file = path.join(tmp, `ours-${seed}`);
      const dev = FileDevice.create(file, size);
      try {
        restoreMetadata(dev, parseThinXml(xml));
      } finally {
        dev.close();
      }
      assertValid(file);
      const expected = formatThinDumpXml(sb);
      expect(thinDumpText(file)).toBe(expected);
      const ours = ourDump(file);
      expect(ours.errors).toEqual([]);
      expect(ours.xml).toBe(expected);
    });
  }
});

describe('restoreMetadata', () => {
  const base = (): XmlSuperblock => ({
    uuid: '',
    time: 2,
    transaction: 5,
    flags: 0,
    version: 2,
    dataBlockSize: 128,
    nrDataBlocks: 10,
    devices: [
      {
        devId: 1,
        mappedBlocks: 0,
        transaction: 1,
        creationTime: 1,
        snapTime: 2,
        mappings: [{ vblock: 5, dblock: 8, length: 2, time: 1 }],
      },
    ],
  });

  test('round trip on a memory device, mapped_blocks recounted', () => {
    const dev = new MemoryDevice(MiB);
    restoreMetadata(dev, base());
    const md = ThinMetadata.open(dev, { readOnly: true });
    const r = checkMetadata(md);
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    const want = { ...base(), devices: [{ ...base().devices[0]!, mappedBlocks: 2 }] };
    expect(formatThinDumpXml(dumpMetadata(md))).toBe(formatThinDumpXml(want));
  });

  test('a data block beyond the end is refused like thin_restore, before anything is written', () => {
    const dev = new MemoryDevice(MiB);
    const sb = base();
    sb.devices[0]!.mappings = [{ vblock: 0, dblock: 9, length: 2, time: 0 }];
    let thrown: unknown;
    try {
      restoreMetadata(dev, sb);
    } catch (e) {
      thrown = e;
    }
    expect(isThinpoolError(thrown, 'EINVAL')).toBe(true);
    expect((thrown as Error).message).toBe('mapping beyond end of data device (10 >= 10)');
    const b0 = new Uint8Array(4096);
    dev.read(b0, 0);
    expect(b0.every((x) => x === 0)).toBe(true);
  });

  test('duplicate device ids are refused', () => {
    const sb = base();
    sb.devices.push({ ...sb.devices[0]!, mappings: [] });
    expect(() => restoreMetadata(new MemoryDevice(MiB), sb)).toThrow(/Device already exists/);
  });
});
