// Check the metadata of a pool after a test wrote it: the engine's strict checker (every reference count
// exactly), thin_check, and thin_dump's XML equal to the engine's own dump (devices, mapped counts, every
// mapping). thin_check and thin_dump are required: when thin-provisioning-tools is missing, a local run says so
// once and checks with the engine's checker only; a CI run (CI=true) fails (needTool).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { BlockDevice } from '../../src/io/block-device.js';
import { FileDevice } from '../../src/io/file-device.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { checkMetadata } from '../../src/thin/check.js';
import { dumpMetadata } from '../../src/thin/dump.js';
import { formatThinDumpXml } from '../../src/thin/thin-xml.js';
import { thinCheck, thinDumpText } from './oracle.js';
import { needTool } from './tools.js';

/** Verify a metadata file on disk (the pool must be closed or committed). */
export function verifyMetadataFile(path: string): void {
  const dev = FileDevice.open(path, { readOnly: true });
  let ours: string;
  try {
    const md = ThinMetadata.open(dev, { readOnly: true });
    const report = checkMetadata(md);
    expect(report.errors, `our checker on ${path}`).toEqual([]);
    ours = formatThinDumpXml(dumpMetadata(md));
  } finally {
    dev.close();
  }
  if (needTool('thin_check', 'thin-provisioning-tools') && needTool('thin_dump', 'thin-provisioning-tools')) {
    const c = thinCheck(path);
    expect(c.status, `thin_check ${path}:\n${c.stdout}${c.stderr}`).toBe(0);
    expect(thinDumpText(path)).toBe(ours);
  }
}

/** Verify the metadata held by any block device (copied to a temporary file for the external tools). */
export function verifyMetadataDevice(dev: BlockDevice): void {
  const dir = mkdtempSync(join(tmpdir(), 'tp-verify-'));
  try {
    const buf = new Uint8Array(dev.sizeBytes);
    dev.read(buf, 0);
    const path = join(dir, 'metadata');
    writeFileSync(path, buf);
    verifyMetadataFile(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
