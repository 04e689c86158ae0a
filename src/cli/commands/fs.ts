/** fs ls, cat, put, rm: files inside the ext4 filesystem of a volume, image or container (no mount). */
import { readFileSync } from 'node:fs';
import { CliError, UsageError, formatTable, q, writeStdout } from '../io.js';
import type { Ctx } from '../io.js';
import { resolvePath, withPool } from '../pool.js';
import { ImageStore } from '../../images/images.js';
import { withFs, type FsStat } from '../../images/fs-worker.js';
import { cleanPath } from '../../images/layer.js';
import { imagesError } from './image.js';

/** Run an images call; its errors said for the command line (a full pool, a volume without a filesystem). */
async function run<T>(dir: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw imagesError(e, dir);
  }
}

/** --mode: octal digits only (644, 0755, 4755), at most 07777. */
function modeArg(v: unknown): number {
  const text = String(v);
  const mode = /^[0-7]{1,6}$/.test(text) ? parseInt(text, 8) : NaN;
  if (!(mode >= 0 && mode <= 0o7777))
    throw new UsageError(`--mode ${q(text)} must be an octal mode such as 644 or 0755 (digits 0-7, at most 7777)`);
  return mode;
}

function absPath(p: string | undefined): string {
  if (p === undefined || p === '') return '/';
  try {
    return cleanPath(p) || '/';
  } catch {
    throw new UsageError(`path ${q(p)} escapes the filesystem's root`);
  }
}

function modeString(s: FsStat): string {
  const t = s.type === 'dir' ? 'd' : s.type === 'symlink' ? 'l' : s.type === 'file' ? '-' : '?';
  let out = t;
  for (let i = 8; i >= 0; i--) out += s.mode & (1 << i) ? 'rwx'[(8 - i) % 3] : '-';
  return out;
}

export async function ls(ctx: Ctx, [dir, ref, path]: string[], opts: Record<string, unknown>): Promise<number> {
  const p = absPath(path);
  const rows = await withPool(ctx, dir, 'read', (pool) =>
    run(dir, () =>
      withFs(
        new ImageStore(pool).resolveVolume(ref),
        async (fs) => {
          const st = await fs.lstat(p);
          if (!st) throw new CliError(`no such file or directory ${q(p)} in ${q(ref)}`);
          if (st.type !== 'dir') return [st];
          if (opts.recursive) return fs.tree(p);
          const out: FsStat[] = [];
          for (const n of await fs.readdir(p)) out.push((await fs.lstat(p === '/' ? `/${n}` : `${p}/${n}`))!);
          return out;
        },
        { readOnly: true },
      ),
    ),
  );
  if (opts.json) {
    await writeStdout(ctx.io, JSON.stringify(rows, null, 2) + '\n');
    return 0;
  }
  const name = (s: FsStat): string =>
    (opts.recursive ? s.path : s.path.slice(s.path.lastIndexOf('/') + 1)) + (s.type === 'symlink' ? ` -> ${s.target}` : '');
  if (!opts.long) {
    await writeStdout(ctx.io, rows.map((s) => `${name(s)}\n`).join(''));
    return 0;
  }
  await writeStdout(
    ctx.io,
    formatTable(
      ['MODE', 'UID', 'GID', 'SIZE', 'NAME'],
      rows.map((s) => [modeString(s), String(s.uid), String(s.gid), String(s.size), name(s)]),
      ['left', 'right', 'right', 'right', 'left'],
    ),
  );
  return 0;
}

export async function cat(ctx: Ctx, [dir, ref, path]: string[]): Promise<number> {
  const p = absPath(path);
  await withPool(ctx, dir, 'read', (pool) =>
    run(dir, () =>
      withFs(
        new ImageStore(pool).resolveVolume(ref),
        async (fs) => {
          const st = await fs.lstat(p);
          if (!st) throw new CliError(`no such file ${q(p)} in ${q(ref)}`);
          if (st.type !== 'file') throw new CliError(`${q(p)} in ${q(ref)} is a ${st.type === 'dir' ? 'directory' : st.type}, not a file`);
          for await (const chunk of fs.readChunks(p)) await writeStdout(ctx.io, chunk);
        },
        { readOnly: true },
      ),
    ),
  );
  return 0;
}

async function readInput(ctx: Ctx, file: string | undefined): Promise<Buffer> {
  if (file !== undefined && file !== '-') return readFileSync(resolvePath(ctx, file));
  const parts: Buffer[] = [];
  for await (const c of ctx.io.stdin) parts.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(parts);
}

function refuseCommitted(store: ImageStore, ref: string): void {
  const v = store.resolveVolume(ref);
  if (v.readOnly)
    throw new CliError(
      `${q(ref)} is read-only (a committed image layer or a view): change a container instead ("thinpool container create POOL IMAGE NAME")`,
    );
}

export async function put(ctx: Ctx, [dir, ref, path, file]: string[], opts: Record<string, unknown>): Promise<number> {
  const p = absPath(path);
  if (p === '/') throw new UsageError('put needs a file path, not the root');
  const mode = opts.mode === undefined ? 0o644 : modeArg(opts.mode);
  const data = await readInput(ctx, file);
  await withPool(ctx, dir, 'write', async (pool) => {
    const store = new ImageStore(pool);
    refuseCommitted(store, ref);
    await run(dir, () => withFs(store.resolveVolume(ref), (fs) => fs.writeFile(p, data, { mode })));
  });
  await writeStdout(ctx.io, `wrote ${data.length} bytes to ${p} in ${ref}\n`);
  return 0;
}

export async function rm(ctx: Ctx, [dir, ref, path]: string[], opts: Record<string, unknown>): Promise<number> {
  const p = absPath(path);
  if (p === '/') throw new UsageError('refusing to remove the root');
  await withPool(ctx, dir, 'write', async (pool) => {
    const store = new ImageStore(pool);
    refuseCommitted(store, ref);
    await run(dir, () =>
      withFs(store.resolveVolume(ref), async (fs) => {
        const st = await fs.lstat(p);
        if (!st) throw new CliError(`no such file or directory ${q(p)} in ${q(ref)}`);
        if (st.type === 'dir' && !opts.recursive) throw new CliError(`${q(p)} is a directory: use --recursive`);
        await fs.rmrf(p);
        await fs.trim();
      }),
    );
  });
  await writeStdout(ctx.io, `removed ${p} from ${ref}\n`);
  return 0;
}
