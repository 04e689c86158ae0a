/**
 * rename, rollback, set: what LVM, ZFS and RBD users reach for (lvrename / zfs rename / rbd rename, zfs rollback
 * / lvconvert --merge, zfs set readonly / lvchange -p, labels). Each change is checked before the pool is
 * opened where it can be (names, labels) and by the engine before anything changes; one commit makes it
 * durable, so a refused command leaves the pool byte-identical.
 */
import { isThinpoolError } from '../../errors.js';
import { CliError, UsageError, q, type Ctx, writeStdout } from '../io.js';
import { parseLabels, parseUnlabels } from '../labels.js';
import { checkName, humanSize, withPool } from '../pool.js';

function json(v: unknown): string {
  return JSON.stringify(v, null, 2) + '\n';
}

export async function rename(ctx: Ctx, [dir, from, to]: string[], opts: Record<string, unknown>): Promise<number> {
  checkName(to, 'new name');
  const res = await withPool(ctx, dir, 'write', (pool) => {
    const vol = pool.volume(from);
    const old = vol.label;
    pool.renameSync(vol.id, to);
    pool.commitSync();
    return { id: vol.id, old };
  });
  if (opts.json) await writeStdout(ctx.io, json({ id: res.id, from: res.old, to }));
  else await writeStdout(ctx.io, `renamed ${q(res.old)} to ${q(to)} (id ${res.id})\n`);
  return 0;
}

export async function rollback(ctx: Ctx, [dir, volume, snapshot]: string[], opts: Record<string, unknown>): Promise<number> {
  const res = await withPool(ctx, dir, 'write', (pool) => {
    const before = pool.status().dataBlocks.used;
    const vol = pool.volume(volume);
    const snap = pool.volume(snapshot);
    try {
      pool.rollbackSync(vol.id, snap.id);
    } catch (e) {
      // Not a usage error: the command line was well formed, the volumes are not related (or are the same).
      if (isThinpoolError(e, 'EINVAL')) throw new CliError(e.message, 1);
      throw e;
    }
    pool.commitSync();
    return {
      id: vol.id,
      volume: vol.label,
      snapshot: snap.label,
      freedBytes: (before - pool.status().dataBlocks.used) * pool.blockSize,
      sizeBytes: vol.sizeBytes,
    };
  });
  if (opts.json) await writeStdout(ctx.io, json(res));
  else
    await writeStdout(
      ctx.io,
      `rolled ${q(res.volume)} back to ${q(res.snapshot)} (id ${res.id}, ${humanSize(res.sizeBytes)}; ${humanSize(res.freedBytes)} freed)\n`,
    );
  return 0;
}

export async function set(ctx: Ctx, [dir, volume]: string[], opts: Record<string, unknown>): Promise<number> {
  if (opts.readOnly && opts.writable) throw new UsageError('--read-only and --writable contradict each other: give one');
  const add = parseLabels(opts.label);
  const remove = parseUnlabels(opts.unlabel);
  for (const k of remove) if (k in add) throw new UsageError(`--label and --unlabel both name ${q(k)}: give one`);
  if (!opts.readOnly && !opts.writable && Object.keys(add).length === 0 && remove.length === 0) {
    throw new UsageError('nothing to set: give --read-only, --writable, --label K=V or --unlabel K');
  }
  const res = await withPool(ctx, dir, 'write', (pool) => {
    const vol = pool.volume(volume);
    const info = pool.list().find((v) => v.id === vol.id)!;
    const labels = { ...info.labels, ...add };
    for (const k of remove) {
      if (!(k in labels))
        throw new CliError(`volume ${q(vol.label)} has no label ${q(k)}: see its labels with "thinpool ls ${q(dir)} --json"`);
      delete labels[k];
    }
    // Labels of an owned volume (an image layer, a container) can be added; it stays owned (thinpool.* keys are
    // refused above), and making it writable is refused by the engine: that is its owner's call.
    pool.updateSync(vol.id, { labels, ...(opts.readOnly ? { readOnly: true } : opts.writable ? { readOnly: false } : {}) });
    pool.commitSync();
    return { id: vol.id, name: vol.label, readOnly: vol.readOnly, labels };
  });
  if (opts.json) await writeStdout(ctx.io, json(res));
  else {
    const l = Object.entries(res.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    await writeStdout(
      ctx.io,
      `${q(res.name)} (id ${res.id}): ${res.readOnly ? 'read-only' : 'writable'}${l ? `, labels ${l}` : ', no labels'}\n`,
    );
  }
  return 0;
}
