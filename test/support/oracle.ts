/**
 * Oracles for dm-thin metadata: thin-provisioning-tools 0.9.0 (thin_check, thin_dump, thin_restore, thin_ls,
 * thin_delta), independent of the engine, plus the engine's own strict checker (src/thin/check.ts: every metadata
 * and data reference count exactly), and a generator of random valid thin_restore input.
 *
 * Everything used here is in the repository or is a Debian package: nothing outside the project root is read.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { coalesceMappings, formatThinDumpXml, parseThinXml } from '../../src/thin/thin-xml.js';
import type { XmlDevice, XmlMapping, XmlSuperblock } from '../../src/thin/thin-xml.js';
import { FileDevice } from '../../src/io/file-device.js';
import { checkMetadataDevice } from '../../src/thin/check.js';
import { toolStatus } from './tools.js';

function findProjectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  // Fallback: this file lives in <root>/test/support.
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
}

export const projectRoot = findProjectRoot();

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

const MAX_BUFFER = 512 * 1024 * 1024;

/** Run a tool (found by toolStatus) and collect its output; never throws. */
export function run(cmd: string, args: string[]): RunResult {
  // thin-provisioning-tools live in /usr/sbin, which a non-root PATH may lack: use the path toolStatus found.
  const r = spawnSync(toolStatus(cmd).path ?? cmd, args, { encoding: 'utf8', maxBuffer: MAX_BUFFER });
  if (r.error !== undefined) {
    return { status: -1, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${String(r.error)}\n` };
  }
  // A signal (e.g. thin_restore's assertion abort) has no status: report it as a failure.
  const status = r.status ?? 128 + (r.signal !== null ? os.constants.signals[r.signal] : 0);
  return { status, stdout: r.stdout, stderr: r.stderr };
}

/** A run as recorded in the fixture outputs: exit status, then stdout and stderr, each under a marker line. */
export function formatRun(r: RunResult): string {
  return `exit status: ${r.status}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

function describe(what: string, r: RunResult): string {
  return `${what} exited ${r.status}\n--- stdout ---\n${r.stdout}--- stderr ---\n${r.stderr}`;
}

/** `thin_check FILE`. */
export function thinCheck(metadataPath: string): RunResult {
  return run('thin_check', [metadataPath]);
}

/**
 * The engine's strict checker on a metadata file (stricter than thin_check 0.9.0: it verifies every metadata and
 * data reference count and the space-map bitmaps against the ref-count trees). Returns the errors' messages
 * (empty when clean); warnings (stale space-map hints, spec 4.8) are not errors.
 */
export function strictCheck(metadataPath: string): string[] {
  const dev = FileDevice.open(metadataPath, { readOnly: true });
  try {
    return checkMetadataDevice(dev).errors.map((e) => `${e.structure}: ${e.message}`);
  } finally {
    dev.close();
  }
}

/** `thin_dump [-m] FILE` as text; throws with the tool's output on failure. */
export function thinDumpText(metadataPath: string, opts: { metadataSnap?: boolean } = {}): string {
  const args = opts.metadataSnap === true ? ['-m', metadataPath] : [metadataPath];
  const r = run('thin_dump', args);
  if (r.status !== 0) throw new Error(describe(`thin_dump ${args.join(' ')}`, r));
  return r.stdout;
}

/** `thin_dump [-m] FILE`, parsed. */
export function thinDump(metadataPath: string, opts: { metadataSnap?: boolean } = {}): XmlSuperblock {
  // `-m` prints nr_data_blocks="0" with mappings: do not apply thin_restore's data bound check.
  return parseThinXml(thinDumpText(metadataPath, opts), { checkDataBounds: false });
}

/**
 * `thin_restore -i XML -o outPath` after creating `outPath` with `sizeBytes` bytes (thin_restore requires an
 * existing output file; its size fixes the metadata size). Returns the tool's result without throwing.
 */
export function thinRestoreRaw(xml: string, outPath: string, sizeBytes: number): RunResult {
  const fd = openSync(outPath, 'w');
  try {
    ftruncateSync(fd, sizeBytes);
  } finally {
    closeSync(fd);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'thinpool-restore-'));
  try {
    const input = path.join(dir, 'input.xml');
    writeFileSync(input, xml);
    return run('thin_restore', ['-i', input, '-o', outPath]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Like `thinRestoreRaw`, but throws with the tool's output on failure. */
export function thinRestore(xml: string, outPath: string, sizeBytes: number): RunResult {
  const r = thinRestoreRaw(xml, outPath, sizeBytes);
  if (r.status !== 0) throw new Error(describe(`thin_restore -o ${outPath}`, r));
  return r;
}

/**
 * Checks a metadata image with thin_check and with the engine's strict checker; throws with their output when
 * either rejects it. thin_check must be installed (callers gate their tests on `needTool`); a missing one throws
 * rather than checking less.
 */
export function assertPoolMetadataValid(metadataPath: string): void {
  const failures: string[] = [];
  const r = thinCheck(metadataPath);
  if (r.status !== 0) failures.push(describe(`thin_check ${metadataPath}`, r));
  const strict = strictCheck(metadataPath);
  if (strict.length > 0) failures.push(`strict check of ${metadataPath}:\n${strict.join('\n')}`);
  if (failures.length > 0) throw new Error(`metadata ${metadataPath} is not valid:\n${failures.join('\n')}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Random thin_restore input

export { seededRng, type Rng } from './rng.js';
import type { Rng } from './rng.js';

export interface RandomThinXmlOptions {
  /** Number of devices (default: random 0..5). */
  devices?: number;
  /** Number of mapped blocks per device (default: random 0..60; pass thousands for big trees). */
  mappingsPerDevice?: number;
  /** Data device size in blocks (default: random 64..100000). */
  nrDataBlocks?: number;
  /** Largest virtual block + 1 (default 2^40). */
  maxVblock?: number;
  /**
   * Render the XML exactly as thin_dump would (default false). Otherwise the XML is valid thin_restore input
   * that differs from thin_dump's output: runs split into singles and shorter ranges, devices in random order,
   * `mapped_blocks` wrong (thin_restore recomputes it), `flags`/`version` omitted when they are the defaults.
   */
  canonical?: boolean;
}

export interface RandomThinXml {
  /** The thin_restore input. */
  xml: string;
  /**
   * What it describes, as thin_dump will report it: devices by id, mappings coalesced into thin_dump's runs,
   * `mapped_blocks` exact. `formatThinDumpXml(sb)` is thin_dump's output and `parseThinXml` of it equals `sb`.
   */
  sb: XmlSuperblock;
}

const MAX_DEV_ID = 2 ** 24 - 1;

function randInt(rng: Rng, lo: number, hi: number): number {
  // inclusive bounds
  return lo + Math.floor(rng() * (hi - lo + 1));
}

/**
 * Random valid input for thin_restore 0.9.0: distinct device ids up to 2^24-1, mappings as singles and runs
 * (adjacent runs that do or do not coalesce), data blocks < nrDataBlocks, all times <= the superblock time.
 * Data blocks may be shared between and within devices (thin_restore counts one reference per mapping).
 */
export function randomThinXml(rng: Rng, opts: RandomThinXmlOptions = {}): RandomThinXml {
  const time = rng() < 0.2 ? 0 : randInt(rng, 0, rng() < 0.5 ? 10 : 1_000_000);
  const nrDataBlocks = opts.nrDataBlocks ?? randInt(rng, 64, 100_000);
  if (nrDataBlocks < 1) throw new Error('randomThinXml: nrDataBlocks must be >= 1');
  const maxVblock = opts.maxVblock ?? 2 ** 40;
  const transaction = randInt(rng, 0, 1000);
  const sb: XmlSuperblock = {
    uuid: '',
    time,
    transaction,
    flags: rng() < 0.2 ? 1 : 0,
    version: rng() < 0.5 ? 1 : 2,
    dataBlockSize: 128 * 2 ** randInt(rng, 0, 4),
    nrDataBlocks,
    devices: [],
  };

  const nDevices = opts.devices ?? randInt(rng, 0, 5);
  const ids = new Set<number>();
  while (ids.size < nDevices) {
    const r = rng();
    ids.add(r < 0.1 ? 0 : r < 0.2 ? MAX_DEV_ID : randInt(rng, 0, r < 0.6 ? 100 : MAX_DEV_ID));
  }

  for (const devId of ids) {
    const target = opts.mappingsPerDevice ?? randInt(rng, 0, 60);
    const mappings: XmlMapping[] = [];
    let vblock = randInt(rng, 0, rng() < 0.5 ? 0 : 1000);
    let mapped = 0;
    while (mapped < target && vblock < maxVblock) {
      const want = rng() < 0.6 ? 1 : randInt(rng, 2, rng() < 0.9 ? 16 : 300);
      const length = Math.min(want, target - mapped, nrDataBlocks, maxVblock - vblock);
      const prev = mappings[mappings.length - 1];
      let dblock: number;
      let t: number;
      const r = rng();
      if (prev !== undefined && prev.vblock + prev.length === vblock && r < 0.4) {
        // adjacent to the previous run: continue it (coalesces), or break it on data block or time only
        const contDblock = prev.dblock + prev.length;
        const s = rng();
        if (s < 0.4 && contDblock + length <= nrDataBlocks) {
          dblock = contDblock;
          t = prev.time;
        } else if (s < 0.7 && contDblock + length <= nrDataBlocks && time > 0) {
          dblock = contDblock;
          t = prev.time === 0 ? randInt(rng, 1, time) : prev.time - 1;
        } else {
          dblock = randInt(rng, 0, nrDataBlocks - length);
          t = randInt(rng, 0, time);
        }
      } else {
        dblock = randInt(rng, 0, nrDataBlocks - length);
        t = rng() < 0.5 ? 0 : randInt(rng, 0, time);
      }
      mappings.push({ vblock, dblock, length, time: t });
      mapped += length;
      vblock += length;
      const g = rng();
      vblock += g < 0.5 ? 0 : g < 0.9 ? randInt(rng, 1, 20) : randInt(rng, 1, Math.max(1, Math.floor(maxVblock / 64)));
    }
    const creationTime = randInt(rng, 0, time);
    const dev: XmlDevice = {
      devId,
      mappedBlocks: mapped,
      transaction: randInt(rng, 0, transaction),
      creationTime,
      snapTime: randInt(rng, creationTime, time),
      mappings: coalesceMappings(mappings), // as thin_dump will group them
    };
    sb.devices.push(dev);
  }
  sb.devices.sort((a, b) => a.devId - b.devId);

  const xml = opts.canonical === true ? formatThinDumpXml(sb) : noisyXml(rng, sb);
  return { xml, sb };
}

/** Valid thin_restore input for `sb` that is not in thin_dump's canonical form. */
function noisyXml(rng: Rng, sb: XmlSuperblock): string {
  const out: string[] = [];
  const flags = sb.flags === 0 && rng() < 0.5 ? '' : ` flags="${sb.flags}"`;
  const version = sb.version === 1 && rng() < 0.5 ? '' : ` version="${sb.version}"`;
  out.push(
    `<superblock uuid="" time="${sb.time}" transaction="${sb.transaction}"${flags}${version} ` +
      `data_block_size="${sb.dataBlockSize}" nr_data_blocks="${sb.nrDataBlocks}">\n`,
  );
  const devices = [...sb.devices];
  for (let i = devices.length - 1; i > 0; i--) {
    const j = randInt(rng, 0, i);
    [devices[i], devices[j]] = [devices[j]!, devices[i]!];
  }
  for (const dev of devices) {
    const mapped = rng() < 0.5 ? dev.mappedBlocks : randInt(rng, 0, 1_000_000);
    out.push(
      `<device dev_id="${dev.devId}" mapped_blocks="${mapped}" transaction="${dev.transaction}" ` +
        `creation_time="${dev.creationTime}" snap_time="${dev.snapTime}">\n`,
    );
    for (const m of dev.mappings) {
      let done = 0;
      while (done < m.length) {
        const piece = rng() < 0.7 ? m.length - done : randInt(rng, 1, m.length - done);
        const v = m.vblock + done;
        const d = m.dblock + done;
        if (piece === 1 && rng() < 0.8) {
          out.push(`  <single_mapping origin_block="${v}" data_block="${d}" time="${m.time}"/>\n`);
        } else {
          out.push(`  <range_mapping origin_begin="${v}" data_begin="${d}" length="${piece}" time="${m.time}"/>\n`);
        }
        done += piece;
      }
    }
    out.push('</device>\n');
  }
  out.push('</superblock>\n');
  return out.join('');
}
