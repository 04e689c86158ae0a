/**
 * The project's dm-thin metadata fixtures (test/fixtures/dm-thin, described in its README.md), built at test time.
 *
 * Contract: `buildFixtureImages(dir)` writes `NAME.bin` (a 4 MiB metadata image) for every name in FIXTURES into
 * `dir`, deterministically:
 * - 01..06 by `thin_restore -i NAME.xml` (thin-provisioning-tools 0.9.0, the independent writer);
 * - 07 and 08 by the engine's ThinMetadata operations (kernel-style snapshot sharing and a held metadata snapshot,
 *   which thin_restore cannot write); their correctness rests on thin_check and on the recorded thin_dump /
 *   thin_ls / thin_delta outputs checked in beside the sources, which test/thin/fixtures.test.ts compares
 *   against the live tools;
 * - 09 is 02 with one byte of its mapping leaf (block 10) changed and the checksum left stale.
 * The recorded tool outputs are expectations: nothing here writes them (`vitest run -u` on
 * test/thin/fixtures.test.ts re-records them from the live tools).
 *
 * `fixturesAvailable()` is the one gate for tests that need the images: true when thin_restore is installed;
 * otherwise a local run skips (with the Debian package named) and a CI run fails (see tools.ts).
 */
import { copyFileSync, openSync, closeSync, writeSync } from 'node:fs';
import path from 'node:path';
import { FileDevice } from '../../src/io/file-device.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { projectRoot, thinRestore } from './oracle.js';
import { needTool } from './tools.js';
import { readFileSync } from 'node:fs';

/** Sources and recorded tool outputs. */
export const fixtureSourceDir = path.join(projectRoot, 'test/fixtures/dm-thin');

export const RESTORED = ['01-empty', '02-single-thin', '03-snapshots', '04-multilevel', '05-refcounts', '06-needs-check'] as const;
export const WRITTEN = ['07-shared-subtrees', '08-metadata-snap'] as const;
export const CORRUPT = '09-corrupt-leaf';
/** Every fixture that is valid metadata. */
export const GOOD_FIXTURES: readonly string[] = [...RESTORED, ...WRITTEN];
export const FIXTURES: readonly string[] = [...GOOD_FIXTURES, CORRUPT];

const METADATA_BYTES = 4 * 1024 * 1024;
/** The byte of 02's image changed in 09: the first mapping value in device 1's leaf (block 10). */
export const CORRUPT_BLOCK = 10;
const CORRUPT_OFFSET = CORRUPT_BLOCK * 4096 + 0x800;

/** Path of a checked-in source or recorded output. */
export function fixtureSource(file: string): string {
  return path.join(fixtureSourceDir, file);
}

export function readFixtureSource(file: string): string {
  return readFileSync(fixtureSource(file), 'utf8');
}

/**
 * The XML thin_dump prints for a good fixture: for 01..06 it is the thin_restore input itself (thin_dump prints it
 * back byte for byte, which fixtures.test.ts checks), for 07 and 08 the recorded NAME.dump.xml.
 */
export function expectedDumpFile(name: string): string {
  return fixtureSource((RESTORED as readonly string[]).includes(name) ? `${name}.xml` : `${name}.dump.xml`);
}

/** True when the images can be built (thin_restore installed); skip message locally, failure in CI. */
export function fixturesAvailable(): boolean {
  return needTool('thin_restore', 'thin-provisioning-tools');
}

function newImage(file: string): FileDevice {
  return FileDevice.create(file, METADATA_BYTES);
}

/**
 * 07: device 1 maps virtual 0..999 to data 0..999 at time 0; snapshots 2 (time 1) and 3 (time 2) of it share its
 * level-1 tree; device 3 then remaps virtual block 10 to data block 1000 (copy-on-write: a new root and leaf for
 * device 3, the other leaves still shared). Transactions 0, 1, 2 for the three creations; superblock
 * transaction 3.
 */
function writeSharedSubtrees(md: ThinMetadata): void {
  md.createThin(1);
  for (let v = 0; v < 1000; v++) md.insertMappingRaw(1, v, v, 0);
  md.setTransactionId(0, 1);
  md.createSnapshot(2, 1);
  md.setTransactionId(1, 2);
  md.createSnapshot(3, 1);
  md.insertMappingRaw(3, 10, 1000, md.time);
  md.setTransactionId(2, 3);
}

function writeWithEngine(name: (typeof WRITTEN)[number], file: string): void {
  const dev = newImage(file);
  try {
    const md = ThinMetadata.format(dev, { nrDataBlocks: 4096, dataBlockSectors: 128 });
    writeSharedSubtrees(md);
    md.commit();
    if (name === '08-metadata-snap') {
      // Hold a metadata snapshot of 07's state, then create device 4 (transaction 3) mapping 0..9 -> 3000..3009:
      // the copied level-0 leaf gives the shared level-1 root of devices 1 and 2 a count of 4.
      md.reserveMetadataSnap();
      md.createThin(4);
      for (let v = 0; v < 10; v++) md.insertMappingRaw(4, v, 3000 + v, md.time);
      md.setTransactionId(3, 4);
      md.commit();
    }
  } finally {
    dev.close();
  }
}

/** Build every fixture image into dir (see the module comment). Needs thin_restore. */
export function buildFixtureImages(dir: string): void {
  for (const name of RESTORED) {
    thinRestore(readFixtureSource(`${name}.xml`), path.join(dir, `${name}.bin`), METADATA_BYTES);
  }
  for (const name of WRITTEN) writeWithEngine(name, path.join(dir, `${name}.bin`));
  const corrupt = path.join(dir, `${CORRUPT}.bin`);
  copyFileSync(path.join(dir, '02-single-thin.bin'), corrupt);
  const fd = openSync(corrupt, 'r+');
  try {
    writeSync(fd, Uint8Array.of(0x01), 0, 1, CORRUPT_OFFSET);
  } finally {
    closeSync(fd);
  }
}

/** One recorded run of a thin-provisioning-tools command on a fixture image (the image path comes last). */
export interface RecordedRun {
  /** The file under test/fixtures/dm-thin holding `formatRun` of the run. */
  file: string;
  fixture: string;
  tool: 'thin_check' | 'thin_dump' | 'thin_ls' | 'thin_delta';
  args: string[];
}

const LS_COLUMNS = 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,TRANSACTION,CREATE_TIME,SNAP_TIME';

export const RECORDED_RUNS: readonly RecordedRun[] = [
  ...FIXTURES.map((fixture): RecordedRun => ({ file: `${fixture}.thin_check.txt`, fixture, tool: 'thin_check', args: [] })),
  { file: `${CORRUPT}.thin_dump.txt`, fixture: CORRUPT, tool: 'thin_dump', args: [] },
  { file: '02-single-thin.thin_ls.txt', fixture: '02-single-thin', tool: 'thin_ls', args: [] },
  { file: '03-snapshots.thin_ls.txt', fixture: '03-snapshots', tool: 'thin_ls', args: ['-o', LS_COLUMNS] },
  { file: '08-metadata-snap.thin_ls.txt', fixture: '08-metadata-snap', tool: 'thin_ls', args: ['-o', LS_COLUMNS] },
  { file: '08-metadata-snap.thin_ls-m.txt', fixture: '08-metadata-snap', tool: 'thin_ls', args: ['-m', '-o', LS_COLUMNS] },
  { file: '03-snapshots.thin_delta-1-3.txt', fixture: '03-snapshots', tool: 'thin_delta', args: ['--snap1', '1', '--snap2', '3'] },
  {
    file: '07-shared-subtrees.thin_delta-verbose-2-3.txt',
    fixture: '07-shared-subtrees',
    tool: 'thin_delta',
    args: ['--verbose', '--snap1', '2', '--snap2', '3'],
  },
  {
    file: '08-metadata-snap.thin_delta-m-1-3.txt',
    fixture: '08-metadata-snap',
    tool: 'thin_delta',
    args: ['-m', '--snap1', '1', '--snap2', '3'],
  },
];

/** The parts of a recorded run (see `formatRun` in oracle.ts). */
export function parseRecordedRun(file: string): { status: number; stdout: string; stderr: string } {
  const text = readFixtureSource(file);
  const m = /^exit status: (-?\d+)\n--- stdout\n([\s\S]*)--- stderr\n([\s\S]*)$/.exec(text);
  if (m === null) throw new Error(`${file} is not a recorded run`);
  return { status: Number(m[1]), stdout: m[2]!, stderr: m[3]! };
}
