/**
 * init, create, snapshot, delete, resize: the commands that change the set of volumes. Each is one pool
 * transaction, committed before the command prints success; on an error nothing of it is kept.
 */
import { existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ThinPool } from '../../thin/pool.js';
import { allocatedBytes, holePunchPath } from '../../io/file-device.js';
import { CliError, UsageError, q, writeStdout } from '../io.js';
import type { Ctx } from '../io.js';
import { isRadosAddress } from '../../thin/rados-pool.js';
import { cephOptions, checkName, explained, humanSize, resolvePath, sizeArg, withPool, blocksNeeded, preflightSpace } from '../pool.js';
import { parseLabels } from '../labels.js';

export async function init(ctx: Ctx, [dir]: string[], opts: Record<string, unknown>): Promise<number> {
  const size = sizeArg(opts.size, '--size');
  const blockSize = sizeArg(opts.blockSize, '--block-size');
  const metadataSize = opts.metadataSize === undefined ? undefined : sizeArg(opts.metadataSize, '--metadata-size');
  if (blockSize % 65536 !== 0 || blockSize < 65536 || blockSize > 1024 ** 3) {
    throw new UsageError(`--block-size ${opts.blockSize as string} must be a multiple of 64 KiB between 64K and 1G`);
  }
  if (size < blockSize) throw new UsageError(`--size ${opts.size as string} is smaller than one block (${humanSize(blockSize)})`);
  if (metadataSize !== undefined && (metadataSize < 64 * 1024 || metadataSize % 4096 !== 0)) {
    throw new UsageError(`--metadata-size ${opts.metadataSize as string} must be a multiple of 4 KiB, at least 64K`);
  }
  const abs = resolvePath(ctx, dir);
  if (isRadosAddress(abs)) {
    const objectSize = opts.objectSize === undefined ? undefined : sizeArg(opts.objectSize, '--object-size');
    let pool: ThinPool;
    try {
      pool = ThinPool.formatSync(abs, { size, blockSize, metadataSize, ceph: { ...cephOptions(ctx), objectSize } });
    } catch (e) {
      throw explained(e, dir);
    }
    return created(ctx, dir, pool);
  }
  if (opts.objectSize !== undefined) throw new UsageError('--object-size is for rados:// pools only');
  const existed = existsSync(abs);
  if (existed && !statSync(abs).isDirectory())
    throw new CliError(`${q(dir)} exists and is not a directory: give a new or empty directory for the pool`);
  if (existed) {
    if (existsSync(join(abs, 'metadata')) || existsSync(join(abs, 'data')) || existsSync(join(abs, 'catalog.json'))) {
      throw new CliError(`${q(dir)} already holds a pool: choose another directory (or delete this one first)`);
    }
  }
  let pool: ThinPool;
  try {
    pool = ThinPool.formatSync(abs, { size, blockSize, metadataSize });
  } catch (e) {
    // Leave nothing behind: remove what format made.
    if (!existed) rmSync(abs, { recursive: true, force: true });
    else if (!(e as { code?: string }).code?.startsWith('EEXIST')) {
      for (const f of ['metadata', 'data', 'catalog.json', 'catalog.next.json']) {
        try {
          rmSync(join(abs, f), { force: true });
        } catch {
          /* ignore */
        }
      }
    }
    throw explained(e, dir);
  }
  return created(ctx, dir, pool);
}

async function created(ctx: Ctx, dir: string, pool: ThinPool): Promise<number> {
  const st = pool.status();
  pool.closeSync();
  await writeStdout(
    ctx.io,
    `created pool ${dir}: ${humanSize(st.dataBlocks.total * st.blockSize)} of data (${st.dataBlocks.total} blocks of ${humanSize(st.blockSize)}), ${humanSize(st.metadataBlocks.total * 4096)} of metadata\n`,
  );
  return 0;
}

export async function create(ctx: Ctx, [dir, name]: string[], opts: Record<string, unknown>): Promise<number> {
  checkName(name);
  const size = sizeArg(opts.size, '--size');
  if (size % 512 !== 0) throw new UsageError(`--size ${opts.size as string} must be a multiple of 512 bytes`);
  const labels = parseLabels(opts.label);
  const id = await withPool(ctx, dir, 'write', (pool) => pool.createThinSync(name, { size, labels }).id);
  await writeStdout(ctx.io, `created volume ${name} (id ${id}, ${humanSize(size)})\n`);
  return 0;
}

export async function snapshot(ctx: Ctx, [dir, origin, name]: string[], opts: Record<string, unknown> = {}): Promise<number> {
  checkName(name, 'snapshot name');
  const labels = parseLabels(opts.label);
  const id = await withPool(ctx, dir, 'write', (pool) => pool.snapshotSync(origin, name, { labels, readOnly: opts.readOnly === true }).id);
  await writeStdout(ctx.io, `created ${opts.readOnly ? 'read-only ' : ''}snapshot ${name} of ${origin} (id ${id})\n`);
  return 0;
}

/** Bytes the host has allocated to the pool's data file, or null when it cannot be read. */
function hostBytes(dataFile: string): number | null {
  try {
    return allocatedBytes(dataFile);
  } catch {
    return null;
  }
}

export async function remove(ctx: Ctx, [dir, name]: string[]): Promise<number> {
  const dataFile = join(resolvePath(ctx, dir), 'data');
  let hostBefore: number | null = null;
  const freed = await withPool(ctx, dir, 'write', (pool) => {
    const before = pool.status().dataBlocks.used;
    const label = pool.volume(name).label;
    hostBefore = hostBytes(dataFile);
    pool.deleteSync(name);
    pool.commitSync();
    return { label, blocks: before - pool.status().dataBlocks.used, bs: pool.blockSize, passdown: pool.spaceSettings.discardPassdown };
  });
  // What the pool freed (blocks no other volume maps) and, separately, what the host file system got back (the
  // data file's allocation before and after the commit's hole punching).
  const hostAfter = hostBytes(dataFile);
  const poolFreed = freed.blocks * freed.bs;
  let host: string;
  if (poolFreed === 0) host = 'nothing to return to the host';
  else if (hostBefore === null || hostAfter === null) host = "the host's share could not be measured";
  else if (hostBefore - hostAfter > 0) host = `${humanSize(hostBefore - hostAfter)} returned to the host`;
  else if (!freed.passdown) host = `none returned to the host yet: discard passdown is off (run "thinpool trim ${dir}")`;
  else if (holePunchPath() === 'none')
    host =
      'none returned to the host: hole punching is unavailable here (install util-linux or build the native helper; see "thinpool status")';
  else
    host = `none returned to the host: the file system of ${q(dir)} refused to punch holes (the blocks stay allocated but are reused by the pool)`;
  await writeStdout(
    ctx.io,
    `deleted volume ${q(freed.label)}: ${humanSize(poolFreed)} freed in the pool${poolFreed === 0 ? ' (every block is shared with another volume)' : ''}, ${host}\n`,
  );
  return 0;
}

export async function resize(ctx: Ctx, [dir, name]: string[], opts: Record<string, unknown>): Promise<number> {
  const size = sizeArg(opts.size, '--size');
  if (size % 512 !== 0) throw new UsageError(`--size ${opts.size as string} must be a multiple of 512 bytes`);
  const old = await withPool(ctx, dir, 'write', (pool) => {
    const vol = pool.volume(name);
    const old = vol.sizeBytes;
    // Shrinking to a partial block zeroes the tail of that block: a write that may need a block.
    if (size < old && size % pool.blockSize !== 0) preflightSpace(pool, dir, blocksNeeded(pool, vol.id, size, 1));
    pool.resizeSync(vol.id, size);
    return old;
  });
  await writeStdout(ctx.io, `resized volume ${name} from ${humanSize(old)} to ${humanSize(size)}\n`);
  return 0;
}
