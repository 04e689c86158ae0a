/**
 * metadata-snap reserve / release: the held metadata snapshot of a pool, dm-thin's `reserve_metadata_snap` and
 * `release_metadata_snap` pool messages as commands. While one is held, `dump --metadata-snap` (and thin_dump -m
 * on the metadata) print the pool as it was at the reserve, and read-only opens of a rados:// pool read that
 * state for as long as it is held instead of failing with ESTALE when the writer commits. At most one is held;
 * it holds mappings, not data contents (dm-thin's semantics): the metadata and data blocks it references stay
 * allocated until release, but writes to blocks live volumes still map land in place. Each is one commit.
 */
import { CliError, write } from '../io.js';
import type { Ctx } from '../io.js';
import { withPool } from '../pool.js';

export async function reserve(ctx: Ctx, [dir]: string[], opts: Record<string, unknown>): Promise<number> {
  const held = await withPool(ctx, dir, 'write', async (pool) => {
    const was = pool.status().heldMetadataRoot;
    if (was !== null)
      throw new CliError(
        `${dir} already holds a metadata snapshot (block ${was}): release it first ("thinpool metadata-snap release ${dir}")`,
      );
    const block = await pool.reserveMetadataSnap();
    return { block, transactionId: pool.status().transactionId };
  });
  if (opts.json) await write(ctx.io.stdout, `${JSON.stringify({ heldMetadataRoot: held.block, transactionId: held.transactionId })}\n`);
  else
    await write(
      ctx.io.stdout,
      `${dir}: metadata snapshot held at block ${held.block} (transaction ${held.transactionId}); "thinpool dump ${dir} --metadata-snap" reads it\n`,
    );
  return 0;
}

export async function release(ctx: Ctx, [dir]: string[], opts: Record<string, unknown>): Promise<number> {
  const was = await withPool(ctx, dir, 'write', async (pool) => {
    const block = pool.status().heldMetadataRoot;
    if (block === null) throw new CliError(`${dir} holds no metadata snapshot: nothing to release`);
    await pool.releaseMetadataSnap(); // the pool is locked: the snapshot seen above is still held
    return block;
  });
  if (opts.json) await write(ctx.io.stdout, `${JSON.stringify({ releasedMetadataRoot: was })}\n`);
  else await write(ctx.io.stdout, `${dir}: released the metadata snapshot at block ${was}\n`);
  return 0;
}
