/** check, dump, restore: the dm-thin metadata tools (thin_check, thin_dump, thin_restore). */
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isThinpoolError } from '../../errors.js';
import { FileDevice } from '../../io/file-device.js';
import { ReadAheadDevice } from '../../io/read-ahead-device.js';
import { MAX_METADATA_BLOCKS } from '../../pd/space-map-metadata.js';
import { CHECK_CACHE_BLOCKS, checkMetadata, type CheckIssue, type CheckReport } from '../../thin/check.js';
import { DUMP_CACHE_BLOCKS, thinDumpText } from '../../thin/dump.js';
import { lockPool, type PoolLock } from '../../thin/lock.js';
import { UNCLEAN_MARKER } from '../../thin/lifecycle.js';
import { ThinMetadata } from '../../thin/metadata.js';
import { restoreMetadataStream, type RestoreStats } from '../../thin/restore.js';
import { emptyCatalog, FileCatalogStore } from '../../thin/catalog.js';
import { superblockFingerprint } from '../../thin/commit.js';
import { createHash } from 'node:crypto';
import { countXmlMappings, spool, xmlPieces } from '../xml-source.js';
import { CliError, UsageError, q, writeStdout } from '../io.js';
import type { Ctx } from '../io.js';
import { cephOptions, explained, humanSize, resolvePath, sizeArg } from '../pool.js';
import { isRadosAddress, readRadosMetadata } from '../../thin/rados-pool.js';

interface Target {
  /** The metadata file. */
  metadata: string;
  /** The pool directory, when POOL is one. */
  dir?: string;
  /** A temporary directory holding the metadata fetched from a rados:// pool. */
  temp?: string;
}

function target(ctx: Ctx, pool: string): Target {
  if (isRadosAddress(pool)) {
    // The committed metadata device, fetched into a temporary file (removed by the read guard's release).
    const temp = mkdtempSync(join(tmpdir(), 'thinpool-md-'));
    const metadata = join(temp, 'metadata');
    const fd = openSync(metadata, 'w');
    try {
      readRadosMetadata(pool, cephOptions(ctx), (chunk, off) => {
        writeSync(fd, chunk, 0, chunk.length, off);
      });
    } catch (e) {
      rmSync(temp, { recursive: true, force: true });
      throw explained(e, pool);
    } finally {
      closeSync(fd);
    }
    return { metadata, temp };
  }
  const abs = resolvePath(ctx, pool);
  if (!existsSync(abs)) throw new CliError(`no pool at ${q(pool)} (no such file or directory): check the path`);
  if (statSync(abs).isDirectory()) {
    const md = join(abs, 'metadata');
    if (!existsSync(md))
      throw new CliError(
        `${q(pool)} is not a thinpool pool (no metadata file): check the path, or create one with "thinpool init ${q(pool)} --size SIZE"`,
      );
    return { metadata: md, dir: abs };
  }
  return { metadata: abs };
}

/** Take the pool's lock so that nobody changes it while we read; a read-only directory cannot be locked. */
function readLock(t: Target, pool: string): PoolLock | null {
  const temp = t.temp;
  if (temp !== undefined) return { release: () => rmSync(temp, { recursive: true, force: true }), tookOverStale: false }; // a copy: no lock
  if (t.dir === undefined) return null;
  try {
    const lock = lockPool(t.dir);
    if (lock.tookOverStale) {
      // The last writer died: leave word for the next writer, which releases its uncommitted blocks.
      try {
        writeFileSync(join(t.dir, UNCLEAN_MARKER), 'the last writer stopped without closing the pool\n');
      } catch {
        /* a read-only directory */
      }
    }
    return lock;
  } catch (e) {
    const cause = isThinpoolError(e, 'EIO') ? (e.cause as NodeJS.ErrnoException | undefined)?.code : undefined;
    if (cause === 'EACCES' || cause === 'EPERM' || cause === 'EROFS') return null;
    throw explained(e, pool);
  }
}

function describeIssue(i: CheckIssue): string {
  const where =
    i.mblock !== undefined && !new RegExp(`block ${i.mblock}\\b`).test(i.message)
      ? ` (${i.structure}, block ${i.mblock})`
      : !i.message.includes(i.structure)
        ? ` (${i.structure})`
        : '';
  return `${i.message}${where}`;
}

interface CatalogFindings {
  errors: CheckIssue[];
  warnings: CheckIssue[];
}

/**
 * The catalog (names, sizes, origins) against the metadata's devices: the catalog of the superblock on disk, so
 * catalog.next.json when it is tied to that superblock (a writer stopped between its commit and publishing the
 * catalog: the next writable open rolls it forward), catalog.json otherwise.
 */
function checkCatalog(dir: string, devices: Set<number>, superblock: string): CatalogFindings {
  const out: CatalogFindings = { errors: [], warnings: [] };
  const staged = new FileCatalogStore(dir).readStaged();
  const file = staged !== null && staged.fingerprint === superblock ? 'catalog.next.json' : 'catalog.json';
  const path = join(dir, file);
  if (!existsSync(path)) {
    if (devices.size > 0)
      out.warnings.push({
        code: 'ECORRUPT',
        structure: 'catalog',
        message: 'no catalog.json: volumes have no names (address them as #ID)',
      });
    return out;
  }
  let cat: { catalog?: { format?: string; volumes?: Array<{ id: number; name: string; sizeBytes: number; origin?: number }> } };
  try {
    cat = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    out.errors.push({ code: 'ECORRUPT', structure: 'catalog', message: `${file} is not valid JSON: ${(e as Error).message}` });
    return out;
  }
  const vols = cat?.catalog?.volumes;
  if (cat?.catalog?.format !== 'thinpool-catalog' || !Array.isArray(vols)) {
    out.errors.push({ code: 'ECORRUPT', structure: 'catalog', message: `${file} is not a thinpool catalog` });
    return out;
  }
  const names = new Set<string>();
  const ids = new Set<number>();
  for (const v of vols) {
    if (typeof v?.name !== 'string' || !Number.isInteger(v?.id) || !Number.isSafeInteger(v?.sizeBytes) || v.sizeBytes < 0) {
      out.errors.push({
        code: 'ECORRUPT',
        structure: 'catalog',
        message: `${file} has a malformed volume entry ${JSON.stringify(v)}`,
      });
      continue;
    }
    if (names.has(v.name)) out.errors.push({ code: 'ECORRUPT', structure: 'catalog', message: `${file} names two volumes ${q(v.name)}` });
    if (ids.has(v.id)) out.errors.push({ code: 'ECORRUPT', structure: 'catalog', message: `${file} lists device ${v.id} twice` });
    names.add(v.name);
    ids.add(v.id);
    if (!devices.has(v.id))
      out.warnings.push({
        code: 'ECORRUPT',
        structure: 'catalog',
        message: `${file} lists volume ${q(v.name)} (device ${v.id}) that the metadata does not hold (dropped on the next open)`,
      });
  }
  return out;
}

export async function check(ctx: Ctx, [pool]: string[], opts: Record<string, unknown>): Promise<number> {
  const t = target(ctx, pool);
  const lock = readLock(t, pool);
  let report: CheckReport;
  const extra: CatalogFindings = { errors: [], warnings: [] };
  try {
    if (ctx.io.stderr.isTTY) ctx.io.stderr.write(`checking ${pool}...`);
    // Read ahead (the check reads the metadata almost in file order) into a small cache (check.ts).
    const dev = new ReadAheadDevice(FileDevice.open(t.metadata, { readOnly: true }));
    try {
      let md: ThinMetadata | null = null;
      try {
        md = ThinMetadata.open(dev, { readOnly: true, cacheBlocks: CHECK_CACHE_BLOCKS });
      } catch (e) {
        if (!isThinpoolError(e)) throw e;
        report = {
          ok: false,
          errors: [
            {
              code: e.code,
              structure: e.structure ?? 'metadata',
              ...(e.mblock === undefined ? {} : { mblock: e.mblock }),
              message: e.message,
            },
          ],
          warnings: [],
          stats: { devices: 0, mappings: 0, metadataBlocksUsed: 0, dataBlocksUsed: 0 },
        };
      }
      if (md !== null) {
        report = checkMetadata(md);
        if (t.dir !== undefined) {
          const dataPath = join(t.dir, 'data');
          const need = md.nrDataBlocks * md.dataBlockSectors * 512;
          if (!existsSync(dataPath)) extra.errors.push({ code: 'ECORRUPT', structure: 'data file', message: 'the data file is missing' });
          else if (statSync(dataPath).size < need) {
            extra.errors.push({
              code: 'ECORRUPT',
              structure: 'data file',
              message: `the data file is ${statSync(dataPath).size} bytes but the metadata maps ${md.nrDataBlocks} blocks of ${md.dataBlockSectors * 512} bytes (${need} bytes)`,
            });
          }
          let devs = new Set<number>();
          try {
            devs = new Set(md.deviceIds());
          } catch {
            /* reported by the check */
          }
          const c = checkCatalog(t.dir, devs, superblockFingerprint(dev));
          extra.errors.push(...c.errors);
          extra.warnings.push(...c.warnings);
        }
        if (md.needsCheck)
          extra.warnings.push({
            code: 'EROFS',
            structure: 'superblock',
            mblock: 0,
            message: 'needs_check is set: the pool stays read-only until it is cleared',
          });
      }
    } finally {
      dev.close();
      if (ctx.io.stderr.isTTY) ctx.io.stderr.write('\r\x1b[K');
    }
  } finally {
    lock?.release();
  }
  const errors = [...report!.errors, ...extra.errors];
  const warnings = [...report!.warnings, ...extra.warnings];
  const ok = errors.length === 0;
  if (opts.json) {
    await writeStdout(ctx.io, JSON.stringify({ ok, errors, warnings, stats: report!.stats }, null, 2) + '\n');
  } else {
    const lines = [...errors.map((i) => `error: ${describeIssue(i)}`), ...warnings.map((i) => `warning: ${describeIssue(i)}`)];
    const s = report!.stats;
    lines.push(
      ok
        ? `${pool}: OK: ${s.devices} volumes, ${s.mappings} mappings, ${s.metadataBlocksUsed} metadata blocks and ${s.dataBlocksUsed} data blocks in use`
        : `${pool}: DAMAGED: ${errors.length} error${errors.length === 1 ? '' : 's'}`,
    );
    await writeStdout(ctx.io, lines.join('\n') + '\n');
  }
  if (!ok) {
    const first = describeIssue(errors[0]);
    throw new CliError(
      `${q(pool)} is damaged: ${first}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''}: restore the pool from a dump ("thinpool restore") or a backup`,
    );
  }
  return 0;
}

export async function dump(ctx: Ctx, [pool]: string[], opts: Record<string, unknown>): Promise<number> {
  const t = target(ctx, pool);
  const lock = readLock(t, pool);
  const outPath = typeof opts.output === 'string' ? resolvePath(ctx, opts.output) : undefined;
  let out: number | undefined;
  try {
    // Read ahead (the dump walks the metadata almost in file order) into a small cache (dump.ts).
    const dev = new ReadAheadDevice(FileDevice.open(t.metadata, { readOnly: true }));
    try {
      const md = ThinMetadata.open(dev, { readOnly: true, cacheBlocks: DUMP_CACHE_BLOCKS });
      // Streamed a piece at a time: memory stays at the metadata cache whatever the pool's size.
      const pieces = thinDumpText(md, { metadataSnap: opts.metadataSnap === true });
      const first = pieces.next(); // a missing metadata snapshot fails before the output file is made
      if (outPath !== undefined) out = openSync(outPath, 'w');
      // Each piece is a view of one reused buffer: written before the next is made (or copied for a stream
      // that keeps it, as tests' streams do).
      const direct = out ?? ctx.io.stdoutFd;
      for (let p = first; p.done !== true; p = pieces.next()) {
        if (direct !== undefined) writeFully(direct, p.value);
        else await writeStdout(ctx.io, Buffer.from(p.value));
      }
    } finally {
      dev.close();
    }
  } catch (e) {
    if (out !== undefined) {
      closeSync(out);
      out = undefined;
      rmSync(outPath!, { force: true });
    }
    throw explained(e, pool);
  } finally {
    if (out !== undefined) closeSync(out);
    lock?.release();
  }
  return 0;
}

/** Write all of bytes to fd, waiting out a full non-blocking pipe (EAGAIN) a millisecond at a time. */
function writeFully(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) {
    try {
      off += writeSync(fd, bytes, off, bytes.length - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

export async function restore(ctx: Ctx, [xmlFile, pool]: string[], opts: Record<string, unknown>): Promise<number> {
  const metadataSize = opts.metadataSize === undefined ? undefined : sizeArg(opts.metadataSize, '--metadata-size');
  if (metadataSize !== undefined && (metadataSize < 64 * 1024 || metadataSize % 4096 !== 0)) {
    throw new UsageError(`--metadata-size ${opts.metadataSize as string} must be a multiple of 4 KiB, at least 64K`);
  }
  let spoolDir: string | undefined;
  let src: string;
  if (xmlFile === '-') {
    spoolDir = mkdtempSync(join(tmpdir(), 'thinpool-restore-'));
    src = join(spoolDir, 'in.xml');
    await spool(ctx.io.stdin, src);
  } else {
    src = resolvePath(ctx, xmlFile);
    if (!existsSync(src))
      throw new CliError(`${q(xmlFile)}: no such file: give a thin_dump XML file (made by "thinpool dump" or thin_dump)`);
    if (statSync(src).isDirectory()) throw new CliError(`${q(xmlFile)} is a directory: give a thin_dump XML file`);
  }
  try {
    return await restoreFrom(ctx, xmlFile, src, pool, metadataSize);
  } finally {
    if (spoolDir !== undefined) rmSync(spoolDir, { recursive: true, force: true });
  }
}

/** Restore the XML at src (read piece by piece, each mapping inserted as it is parsed) into a new pool. */
async function restoreFrom(ctx: Ctx, xmlFile: string, src: string, pool: string, metadataSize: number | undefined): Promise<number> {
  const abs = resolvePath(ctx, pool);
  const existed = existsSync(abs);
  if (existed) {
    if (!statSync(abs).isDirectory()) throw new CliError(`${q(pool)} exists and is not a directory: choose a new directory for the pool`);
    for (const f of ['metadata', 'data', 'catalog.json']) {
      if (existsSync(join(abs, f))) throw new CliError(`${q(pool)} already holds a pool (${f} exists): choose a new directory`);
    }
  }
  // The default metadata size needs the number of mappings before the first is inserted: counted on the bytes.
  const counted = metadataSize === undefined ? countXmlMappings(src) : undefined;
  const made: string[] = [];
  let lock: PoolLock | null = null;
  let mdBytes = 0;
  let stats: RestoreStats;
  try {
    mkdirSync(abs, { recursive: true });
    lock = lockPool(abs);
    const mdPath = join(abs, 'metadata');
    let dev: FileDevice | undefined;
    const input = xmlPieces(src);
    let superblock: Uint8Array;
    try {
      stats = restoreMetadataStream(
        (sb) => {
          const bs = sb.dataBlockSize * 512;
          const dataBytes = sb.nrDataBlocks * bs;
          const c = counted ?? { mappings: 0, devices: 0 };
          const neededBlocks = 2 * (Math.ceil(c.mappings / 100) + c.devices + Math.ceil(sb.nrDataBlocks / 16000)) + 128;
          const dflt = Math.min(
            MAX_METADATA_BLOCKS * 4096,
            Math.max(2 * 1024 * 1024, Math.ceil((48 * dataBytes) / Math.max(bs, 1)), neededBlocks * 4096),
          );
          mdBytes = metadataSize ?? Math.ceil(dflt / 4096) * 4096;
          dev = FileDevice.create(mdPath, mdBytes);
          made.push(mdPath);
          return dev;
        },
        input.first,
        input.more,
      );
      dev!.flush();
      superblock = new Uint8Array(512);
      dev!.read(superblock, 0);
    } finally {
      input.close();
      dev?.close();
    }
    const dataBytes = stats.nrDataBlocks * stats.dataBlockSize * 512;
    const dataPath = join(abs, 'data');
    const data = FileDevice.create(dataPath, dataBytes);
    made.push(dataPath);
    data.close();
    // A complete pool: a catalog tied to the restored superblock (thin_dump XML carries no names, sizes or
    // labels, so it lists no volumes; they are reached as #ID and get entries once renamed or resized).
    const store = new FileCatalogStore(abs);
    made.push(store.staged, store.published);
    store.stage(emptyCatalog(), createHash('sha256').update(superblock).digest('hex'));
    store.publish();
  } catch (e) {
    for (const f of made) rmSync(f, { force: true });
    lock?.release();
    lock = null;
    if (!existed) rmSync(abs, { recursive: true, force: true });
    if (isThinpoolError(e) && e.code === 'EXML')
      throw new CliError(`${q(xmlFile)} is not valid thin_dump XML: ${e.message}: fix the file and retry`);
    if (isThinpoolError(e) && e.code === 'EINVAL')
      throw new CliError(`${q(xmlFile)} cannot be restored: ${e.message}: fix the XML and retry`);
    if (isThinpoolError(e) && e.code === 'ENOSPC_METADATA')
      throw new CliError(`the metadata does not fit in ${humanSize(mdBytes)}: give a larger --metadata-size`);
    throw explained(e, pool);
  } finally {
    lock?.release();
  }
  const bs = stats.dataBlockSize * 512;
  await writeStdout(
    ctx.io,
    `restored ${q(xmlFile)} into pool ${pool}: ${stats.devices} volumes, ${stats.mappings} mappings, ${humanSize(stats.nrDataBlocks * bs)} of data (${stats.nrDataBlocks} blocks of ${humanSize(bs)}), ${humanSize(mdBytes)} of metadata\n`,
  );
  return 0;
}
