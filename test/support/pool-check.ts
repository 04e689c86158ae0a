// Check the metadata of a pool after a test wrote it: thin_check (when installed), the strict dmthin checker,
// our own checker, and thin_dump's XML equal to the engine's own dump (devices, mapped counts, every mapping).
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
import { dmthinCheck, thinCheck, thinDumpText } from './oracle.js';
import { toolStatus } from './tools.js';

const haveThin = toolStatus('thin_check').found;

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
  const strict = dmthinCheck(path);
  expect(strict.status, `dmthin.py check ${path}:\n${strict.stdout}${strict.stderr}`).toBe(0);
  if (haveThin) {
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
