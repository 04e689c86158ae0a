/** ls-pools, lock break, dump-metadata: pools in Ceph RADOS (dump-metadata also takes a pool directory). */
import { closeSync, copyFileSync, existsSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { breakRadosLock, isRadosAddress, listRadosPools, readRadosMetadata } from '../../thin/rados-pool.js';
import { CliError, UsageError, formatTable, q, writeStdout } from '../io.js';
import type { Ctx } from '../io.js';
import { cephOptions, explained, requirePoolDir, resolvePath } from '../pool.js';

export async function lsPools(ctx: Ctx, [where]: string[], opts: Record<string, unknown>): Promise<number> {
  if (!isRadosAddress(where)) throw new UsageError(`${q(where)} is not a Ceph pool address: use rados://CEPH_POOL`);
  let pools;
  try {
    pools = listRadosPools(where, cephOptions(ctx));
  } catch (e) {
    throw explained(e, where);
  }
  if (opts.json) {
    await writeStdout(ctx.io, JSON.stringify(pools, null, 2) + '\n');
    return 0;
  }
  const rows = pools.map((p) => [
    p.address,
    p.created.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
    p.holder === null ? '-' : `pid ${p.holder.pid} on ${p.holder.host} since ${p.holder.since}`,
  ]);
  await writeStdout(ctx.io, formatTable(['POOL', 'CREATED', 'WRITER'], rows));
  return 0;
}

export async function lockBreak(ctx: Ctx, [pool]: string[], opts: Record<string, unknown>): Promise<number> {
  if (!isRadosAddress(pool))
    throw new UsageError(`${q(pool)} is not a rados:// pool: a pool directory's lock frees itself when its holder exits`);
  let broken;
  try {
    broken = breakRadosLock(pool, cephOptions(ctx));
  } catch (e) {
    throw explained(e, pool);
  }
  if (opts.json) await writeStdout(ctx.io, JSON.stringify(broken, null, 2) + '\n');
  else if (broken.length === 0) await writeStdout(ctx.io, `${pool}: nobody held the write lock\n`);
  else
    for (const h of broken)
      await writeStdout(
        ctx.io,
        `${pool}: fenced ${h.client} at ${h.addr} (process ${h.pid} on ${h.host} since ${h.since}) and removed its lock\n`,
      );
  return 0;
}

export async function dumpMetadata(ctx: Ctx, [pool, file]: string[]): Promise<number> {
  const out = resolvePath(ctx, file);
  if (existsSync(out)) throw new UsageError(`${q(file)} exists: give a new file name`);
  if (!existsSync(dirname(out))) throw new CliError(`cannot write ${q(file)}: directory ${q(dirname(file))} does not exist`);
  if (!isRadosAddress(pool)) {
    copyFileSync(join(requirePoolDir(ctx, pool), 'metadata'), out);
    return 0;
  }
  const tmp = `${out}.partial`;
  const fd = openSync(tmp, 'w');
  try {
    readRadosMetadata(pool, cephOptions(ctx), (chunk, off) => {
      writeSync(fd, chunk, 0, chunk.length, off);
    });
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw explained(e, pool);
  }
  closeSync(fd);
  renameSync(tmp, out);
  if (ctx.io.stderr.isTTY) ctx.io.stderr.write(`${file}: ${statSync(out).size} bytes of metadata\n`);
  return 0;
}
