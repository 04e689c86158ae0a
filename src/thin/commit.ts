/**
 * The transaction of an open pool: how a metadata change is run, what a failure does, and the commit order.
 *
 * Contract:
 * - `change(fn)` runs a metadata change. It refuses (EROFS) unless the metadata is writable, makes sure an
 *   operation's worth of metadata blocks is free first (committing once to reclaim blocks freed in this
 *   transaction), and reports threshold crossings after success. On failure: a WASM trap fails the pool
 *   (EFAILED, until reopened); an error outside CLEAN_ERRORS aborts the transaction to the last commit, sets
 *   needs_check and leaves the pool read-only (spec 7.9); a clean error leaves the transaction as it was.
 * - `freeing` changes (delete, discard, shrink) skip the headroom check and may use the metadata reserve, so
 *   deleting volumes always makes room again.
 * - `continueChange(fn)` is the second change of an operation whose first change made sure of the headroom (a
 *   data block allocated, then mapped or given back): no headroom check, so no commit can come between the two
 *   (such a commit would find a block allocated and not mapped: a leak after a crash there).
 * - `commit()`: settle the deferred copy-on-write copies (pending-copies.ts: no committed mapping may point at a
 *   block that still owes copied bytes; a failed copy fails the commit only, with the transaction intact), flush
 *   the data device (when data was written or it grew since the last commit), commit the
 *   metadata (superblock last, flushed), then publish the catalog, staged between "all blocks written and
 *   flushed" and "superblock written" with the fingerprint of the new superblock (two-phase, catalog.ts); then
 *   discard passdown of the blocks the commit freed. A failed commit aborts as above. In read-only mode, data
 *   written in place is still flushed.
 */
import { sha256Hex } from '../sha256.js';
import { ThinpoolError, isThinpoolError } from '../errors.js';
import type { BlockDevice } from '../io/block-device.js';
import { emptyCatalog } from './catalog.js';
import { OP_METADATA_MARGIN, type PoolState } from './pool-state.js';
import { checkSpace, passDown } from './space.js';

/** Errors raised before a metadata change starts: they leave the transaction intact and the pool writable. */
const CLEAN_ERRORS = new Set(['EINVAL', 'EEXIST', 'ENOENT', 'EBUSY', 'ENOSPC_DATA', 'EROFS']);

/** Identity of the superblock on disk: what a staged catalog is tied to. */
export function superblockFingerprint(dev: BlockDevice): string {
  const b = new Uint8Array(512);
  dev.read(b, 0);
  return sha256Hex(b);
}

/** Run a metadata change; on any failure except a clean out-of-space, abort and go read-only (spec 7.9). */
export function change<T>(s: PoolState, fn: () => T, freeing = false): T {
  return runChange(s, fn, !freeing, freeing);
}

/** The second change of an operation (see the contract): the first one's headroom check covers it. */
export function continueChange<T>(s: PoolState, fn: () => T): T {
  return runChange(s, fn, false, false);
}

function runChange<T>(s: PoolState, fn: () => T, headroom: boolean, reserve: boolean): T {
  s.alive();
  if (s.md.mode !== 'write') {
    throw new ThinpoolError(
      'EROFS',
      s.md.needsCheck
        ? 'pool is read-only: needs_check is set after a failed metadata operation (run `thinpool check`)'
        : `pool is ${s.md.mode === 'fail' ? 'failed' : 'read-only'}`,
    );
  }
  // One operation for the event gate (event-gate.ts): a threshold this change crosses reaches listeners when the
  // outermost operation ends, never between the steps of one (a data block allocated and not yet mapped).
  return s.gate.operation(() => {
    if (headroom) ensureMetadataHeadroom(s);
    return reserve ? s.md.usingMetadataReserve(() => runFn(s, fn)) : runFn(s, fn);
  });
}

/** fn, then the threshold check; a failure fails, aborts or leaves the transaction as the contract says. */
function runFn<T>(s: PoolState, fn: () => T): T {
  try {
    const result = fn();
    checkSpace(s);
    return result;
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) {
      // A trap leaves the core's state unknown: refuse all further work until the pool is reopened.
      s.md.mode = 'fail';
      throw new ThinpoolError('EFAILED', `the WASM core trapped (${e.message}); the pool has failed: close and reopen it`, { cause: e });
    }
    if (!(isThinpoolError(e) && CLEAN_ERRORS.has(e.code))) {
      abortToNeedsCheck(s);
    }
    throw e;
  }
}

/** Abort to the last commit (metadata and catalog) and set needs_check. */
function abortToNeedsCheck(s: PoolState): void {
  s.pending.clear(); // the blocks it names are the dropped transaction's
  try {
    s.md.abort();
    s.catalog = s.storage.catalog.readPublished() ?? emptyCatalog();
    s.catalogDirty = false;
  } catch {
    // abort already marked the metadata failed
  }
  s.md.setNeedsCheck();
}

function ensureMetadataHeadroom(s: PoolState): void {
  const md = s.md;
  if (md.metadataFreeBlocks >= OP_METADATA_MARGIN) return;
  if (md.dirty) commit(s);
  if (s.md.metadataFreeBlocks < OP_METADATA_MARGIN) {
    throw new ThinpoolError(
      'ENOSPC_METADATA',
      `out of metadata space (${s.md.metadataFreeBlocks} free blocks of ${s.md.metadataNrBlocks}): delete volumes or grow the metadata device`,
    );
  }
}

/**
 * Flush the data device if anything was written to it (or it grew) since the last flush. Nothing written since
 * the last commit (a snapshot, a delete, a rename): nothing can be unflushed, and the sync is skipped.
 */
function flushData(s: PoolState): void {
  if (s.dataDirty) s.storage.data.flush();
  s.dataDirty = false;
}

/** Commit everything written so far (data flush, metadata, catalog). */
export function commit(s: PoolState): void {
  s.alive();
  // First, outside the abort below: a copy that fails is a data error, which fails this commit only (as dm-thin
  // errors the bio only); the transaction and what it owes stay, and the next commit copies again.
  s.pending.settleAll();
  if (s.md.mode !== 'write' || (!s.md.dirty && !s.catalogDirty)) {
    flushData(s); // nothing to commit; in-place writes (also in read-only mode) are still made durable
    return;
  }
  try {
    flushData(s); // data before the mappings that point at it
    stageThenCommit(s, s.catalogDirty);
    s.catalogDirty = false;
  } catch (e) {
    abortToNeedsCheck(s);
    throw e;
  }
}

/**
 * Two-phase catalog commit. The fingerprint of the new superblock is known only once the metadata commit has
 * prepared it, so the metadata commit is told to call back between "all blocks written and flushed" and
 * "superblock written": the catalog is staged there.
 */
function stageThenCommit(s: PoolState, catalogChanged: boolean): void {
  const md = s.md;
  if (!md.dirty) {
    if (!catalogChanged) return;
    s.storage.catalog.stage(s.catalog, superblockFingerprint(s.storage.metadata));
    s.storage.catalog.publish();
    return;
  }
  md.commit(
    catalogChanged
      ? (sbBytes) => {
          const fp = sha256Hex(sbBytes.subarray(0, 512));
          s.storage.catalog.stage(s.catalog, fp);
        }
      : undefined,
  );
  if (catalogChanged) s.storage.catalog.publish();
  passDown(s, md.takeFreedDataBlocks());
}
