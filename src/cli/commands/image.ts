/** image import, ls, history, rm: images as stacks of committed thin snapshots. */
import { CliError, UsageError, formatTable, q, writeStdout } from '../io.js';
import { ThinpoolError } from '../../errors.js';
import type { Ctx } from '../io.js';
import { checkpoint, humanSize, resolvePath, sizeArg, withPool } from '../pool.js';
import { ImageStore } from '../../images/images.js';
import { checkImageName } from '../../images/names.js';
import { MIN_FS_SIZE } from '../../images/mkfs.js';
import { exportVolume } from './data.js';

/** Bad image input (corrupt tar, digest mismatch, escaping path) is a failure (exit 1), not a usage error. */
export function badInput(e: unknown): unknown {
  if (e instanceof ThinpoolError && e.code === 'EINVAL') return new CliError(e.message, 1);
  return e;
}

function json(v: unknown): string {
  return JSON.stringify(v, null, 2) + '\n';
}

function short(id: string, full: unknown): string {
  if (full || !id.startsWith('sha256:')) return id;
  return id.slice(7, 19);
}

function when(iso: string | undefined): string {
  return iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-';
}

/**
 * Errors of the images code said for the command line: a full pool (a libext2fs write that reached the pool)
 * says so and what to do; a volume without a filesystem says where filesystems are. Others pass through.
 */
export function imagesError(e: unknown, dir: string): unknown {
  if (!(e instanceof ThinpoolError)) return e;
  const d = q(dir);
  if (e.code === 'ENOSPC_DATA') {
    return new CliError(
      `pool ${d} is full: no free data blocks for this change; nothing was changed: free space with "thinpool container rm ${d} NAME", "thinpool image rm ${d} NAME" or "thinpool delete ${d} NAME", or grow the pool with "thinpool extend ${d} --size SIZE"`,
      1,
    );
  }
  if (e.code === 'ENOSPC_METADATA') {
    return new CliError(
      `pool ${d} is full: its metadata device has no free blocks; nothing was changed: free space by removing containers, images or volumes, or grow it with "thinpool extend ${d} --metadata-size SIZE"`,
      1,
    );
  }
  if (e.code === 'ENOENT' && /holds no ext4 filesystem/.test(e.message)) {
    return new CliError(
      `${e.message}: fs commands work on images and containers (see "thinpool image ls ${d}" and "thinpool container ls ${d}") and on volumes formatted with ext4`,
      1,
    );
  }
  return e;
}

function storeOptions(opts: Record<string, unknown>): { size?: number } {
  if (opts.fsSize === undefined) return {};
  const size = sizeArg(opts.fsSize, '--fs-size');
  if (size < MIN_FS_SIZE)
    throw new UsageError(
      `--fs-size ${q(String(opts.fsSize))} is too small for an ext4 filesystem: use at least 1M (the minimum is ${MIN_FS_SIZE} bytes)`,
    );
  return { size };
}

export async function importImage(ctx: Ctx, args: string[], opts: Record<string, unknown>): Promise<number> {
  const [dir, name, ...sources] = args.flat();
  // The command line first (usage errors, exit 2), before the pool is opened.
  try {
    checkImageName(name);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const store = storeOptions(opts);
  const paths = sources.map((s) => resolvePath(ctx, s));
  const r = await withPool(
    ctx,
    dir,
    'write',
    async (pool) => {
      try {
        return await new ImageStore(pool, store).import(name, paths, { checkpoint });
      } catch (e) {
        throw badInput(imagesError(e, dir));
      }
    },
    { interruptible: true },
  );
  if (opts.json) {
    await writeStdout(
      ctx.io,
      json({ name, id: r.image.id, layers: r.image.chainIds, applied: r.applied, reused: r.reused, bytes: r.bytes }),
    );
    return 0;
  }
  await writeStdout(
    ctx.io,
    `imported image ${name} (${short(r.image.id, false)}): ${r.image.chainIds.length} layers, ${r.applied} applied, ${r.reused} reused, ${humanSize(r.bytes)} of files\n`,
  );
  return 0;
}

export async function ls(ctx: Ctx, [dir]: string[], opts: Record<string, unknown>): Promise<number> {
  const rows = await withPool(ctx, dir, 'read', (pool) => {
    const store = new ImageStore(pool);
    return store.images().map((im) => ({ ...im, size: store.layerSizes(im).reduce((a, b) => a + b, 0) }));
  });
  if (opts.json) {
    await writeStdout(
      ctx.io,
      json(
        rows.map((r) => ({
          name: r.name,
          id: r.id,
          layers: r.chainIds.length,
          sizeBytes: r.size,
          created: r.created ?? null,
          imported: r.importedAt,
        })),
      ),
    );
    return 0;
  }
  await writeStdout(
    ctx.io,
    formatTable(
      ['NAME', 'IMAGE ID', 'LAYERS', 'SIZE', 'CREATED'],
      rows.map((r) => [r.name, short(r.id, opts.trunc === false), String(r.chainIds.length), humanSize(r.size), when(r.created)]),
      ['left', 'left', 'right', 'right', 'left'],
    ),
  );
  return 0;
}

export async function history(ctx: Ctx, [dir, name]: string[], opts: Record<string, unknown>): Promise<number> {
  const rows = await withPool(ctx, dir, 'read', (pool) => new ImageStore(pool).history(name));
  if (opts.json) {
    await writeStdout(
      ctx.io,
      json(
        rows.map((r) => ({
          layer: r.layer,
          created: r.created ?? null,
          createdBy: r.createdBy ?? null,
          comment: r.comment ?? null,
          sizeBytes: r.size,
        })),
      ),
    );
    return 0;
  }
  const by = (s: string | undefined): string => {
    const t = (s ?? '').replace(/\s+/g, ' ');
    return opts.trunc === false || t.length <= 45 ? t : `${t.slice(0, 44)}…`;
  };
  await writeStdout(
    ctx.io,
    formatTable(
      ['LAYER', 'CREATED', 'CREATED BY', 'SIZE'],
      rows.map((r) => [
        short(r.layer, opts.trunc === false),
        when(r.created),
        by(r.createdBy),
        opts.bytes ? String(r.size) : humanSize(r.size),
      ]),
      ['left', 'left', 'left', 'right'],
    ),
  );
  return 0;
}

export async function remove(ctx: Ctx, [dir, name]: string[]): Promise<number> {
  const freed = await withPool(ctx, dir, 'write', (pool) =>
    new ImageStore(pool).removeImage(name).catch((e: unknown) => {
      throw imagesError(e, dir);
    }),
  );
  await writeStdout(ctx.io, `removed image ${name} (${humanSize(freed)} freed)\n`);
  return 0;
}

/** An image's disk (the filesystem of its top layer, all layers applied) as a raw image file, by the image's name. */
export async function exportImage(ctx: Ctx, [dir, name, file]: string[]): Promise<number> {
  try {
    return await exportVolume(ctx, dir, file, (pool) => new ImageStore(pool).imageVolume(name));
  } catch (e) {
    throw imagesError(e, dir);
  }
}
