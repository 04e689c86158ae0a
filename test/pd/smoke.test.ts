import { test, expect } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDevice } from '../../src/io/file-device.js';
import { checkMetadataDevice } from '../../src/thin/check.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { strictCheck, thinCheck, thinDump } from '../support/oracle.js';
import { needTool } from '../support/tools.js';

const hasThinCheck = needTool('thin_check', 'thin-provisioning-tools') && needTool('thin_dump', 'thin-provisioning-tools');

test('format, map, snapshot, remove, commit: our checker (on the device and on the file), thin_check and thin_dump agree', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-'));
  try {
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
    const own = checkMetadataDevice(dev);
    expect(own.errors).toEqual([]);
    dev.close();
    if (hasThinCheck) {
      const c = thinCheck(path);
      expect(c.status, `${c.stdout}${c.stderr}`).toBe(0);
      const dump = thinDump(path);
      expect(dump.devices.length).toBe(2);
    }
    expect(strictCheck(path)).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
