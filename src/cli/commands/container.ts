/**
 * container create, ls, rm, commit, diff, export: writable thin snapshots of an image's top layer. `ls` names each
 * container's pool volume (the one `thinpool map`, `serve` and `export` take); `export` writes a container's disk
 * by the container's name.
 */
import { UsageError, formatTable, writeStdout } from '../io.js';
import type { Ctx } from '../io.js';
import { humanSize, withPool } from '../pool.js';
import { ImageStore } from '../../images/images.js';
import { checkContainerName, checkImageName } from '../../images/names.js';
import { imagesError } from './image.js';
import { exportVolume } from './data.js';

/** A name given on the command line is checked before the pool is opened: a bad one is a usage error. */
function usage(check: (name: string) => void, name: string): void {
  try {
    check(name);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Run an images call; its errors said for the command line (a full pool, a missing filesystem). */
async function run<T>(dir: string, f: () => Promise<T> | T): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw imagesError(e, dir);
  }
}

export async function create(ctx: Ctx, [dir, image, name]: string[]): Promise<number> {
  usage(checkContainerName, name);
  const t0 = performance.now();
  await withPool(ctx, dir, 'write', (pool) => run(dir, () => new ImageStore(pool).createContainer(image, name)));
  await writeStdout(ctx.io, `created container ${name} from image ${image} (${(performance.now() - t0).toFixed(0)} ms)\n`);
  return 0;
}

export async function ls(ctx: Ctx, [dir]: string[], opts: Record<string, unknown>): Promise<number> {
  const rows = await withPool(ctx, dir, 'read', (pool) => {
    const store = new ImageStore(pool);
    return store.containers().map((c) => {
      const v = store.containerVolume(c.name);
      return { ...c, size: store.containerUsage(c.name), volume: v.name ?? `#${v.id}`, volumeId: v.id };
    });
  });
  if (opts.json) {
    await writeStdout(
      ctx.io,
      JSON.stringify(
        rows.map((r) => ({
          name: r.name,
          image: r.image,
          imageId: r.imageId,
          volume: r.volume,
          volumeId: r.volumeId,
          created: r.created,
          sizeBytes: r.size,
        })),
        null,
        2,
      ) + '\n',
    );
    return 0;
  }
  await writeStdout(
    ctx.io,
    formatTable(
      ['NAME', 'IMAGE', 'VOLUME', 'CREATED', 'SIZE'],
      rows.map((r) => [
        r.name,
        r.image,
        r.volume,
        r.created.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
        opts.bytes ? String(r.size) : humanSize(r.size),
      ]),
      ['left', 'left', 'left', 'left', 'right'],
    ),
  );
  return 0;
}

export async function remove(ctx: Ctx, [dir, name]: string[]): Promise<number> {
  const freed = await withPool(ctx, dir, 'write', (pool) => run(dir, () => new ImageStore(pool).removeContainer(name)));
  await writeStdout(ctx.io, `removed container ${name} (${humanSize(freed)} freed)\n`);
  return 0;
}

export async function commit(ctx: Ctx, [dir, name, image]: string[], opts: Record<string, unknown>): Promise<number> {
  usage(checkImageName, image);
  const im = await withPool(ctx, dir, 'write', (pool) =>
    run(dir, () =>
      new ImageStore(pool).commitContainer(name, image, {
        ...(typeof opts.message === 'string' ? { comment: opts.message } : {}),
      }),
    ),
  );
  await writeStdout(ctx.io, `committed container ${name} as image ${image} (${im.id.slice(7, 19)}, ${im.chainIds.length} layers)\n`);
  return 0;
}

export async function diff(ctx: Ctx, [dir, name]: string[], opts: Record<string, unknown>): Promise<number> {
  const changes = await withPool(ctx, dir, 'read', (pool) => run(dir, () => new ImageStore(pool).diff(name)));
  if (opts.json) {
    await writeStdout(ctx.io, JSON.stringify(changes, null, 2) + '\n');
    return 0;
  }
  await writeStdout(ctx.io, changes.map((c) => `${c.kind} ${c.path}\n`).join(''));
  return 0;
}

/** The container's disk (its whole ext4 filesystem) as a raw image file, by the container's name. */
export async function exportContainer(ctx: Ctx, [dir, name, file]: string[]): Promise<number> {
  try {
    return await exportVolume(ctx, dir, file, (pool) => new ImageStore(pool).containerVolume(name));
  } catch (e) {
    throw imagesError(e, dir);
  }
}
