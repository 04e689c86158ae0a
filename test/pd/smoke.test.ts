import { test, expect } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDevice } from '../../src/io/file-device.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { thinCheck, dmthinCheck, thinDump } from '../support/oracle.js';

test('format, map, snapshot, commit: thin_check passes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-'));
  const path = join(dir, 'metadata');
  const dev = FileDevice.create(path, 4 * 1024 * 1024);
  const md = ThinMetadata.format(dev, { nrDataBlocks: 40000, dataBlockSectors: 128 });
  md.createThin(1);
  for (let v = 0; v < 3000; v++) md.insertMapping(1, v * 3, md.allocDataBlock());
  md.commit();
  md.createSnapshot(2, 1);
  for (let v = 0; v < 500; v++) md.insertMapping(2, v * 7, md.allocDataBlock());
  for (let v = 0; v < 400; v++) md.removeMapping(1, v * 3);
  md.commit();
  dev.close();
  const c = thinCheck(path);
  const d = dmthinCheck(path);
  console.log(c, d);
  expect(c.status).toBe(0);
  expect(d.status).toBe(0);
  const dump = thinDump(path);
  expect(dump.devices.length).toBe(2);
});
