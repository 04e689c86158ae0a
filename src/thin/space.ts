/**
 * Space accounting of an open pool: low-water threshold events, metadata use as operations see it, and
 * returning freed data blocks to the host (discard passdown after a commit, trim of every unused block).
 *
 * Contract:
 * - Nothing here changes metadata or commits: it reads counts and emits events ('threshold', 'warning').
 * - A threshold event fires once per upward crossing (space-policy.ts ThresholdTracker).
 * - Passdown releases only blocks whose count is still 0 after the commit that freed them: never before it.
 * - A device that cannot punch holes is reported once ('warning' NO_PUNCH_HOLE) and not asked again in a run.
 * - releaseUncommitted (after an unclean stop, or when a command is interrupted before its commit) releases the
 *   blocks the COMMITTED space map calls free, only below the data high-water mark (blocks above it were never
 *   written): its time is bounded by the mark, not by the pool's size. Run it only with nothing uncommitted.
 */
import { OP_METADATA_MARGIN, type PoolState } from './pool-state.js';

/**
 * Metadata use against what operations may really use: the device less the reserve kept for commits and the
 * headroom every operation needs (so thresholds are reached before ENOSPC_METADATA, not after).
 */
export function metadataUse(s: PoolState): { used: number; usable: number } {
  const md = s.md;
  const usable = Math.max(1, md.metadataNrBlocks - md.metadataReserve - OP_METADATA_MARGIN);
  const used = Math.min(usable, md.metadataNrBlocks - md.metadataFreeBlocks - md.metadataReserve);
  return { used, usable };
}

/** Report threshold crossings (events only: nothing here commits). */
export function checkSpace(s: PoolState): void {
  const md = s.md;
  const set = s.spaceSettings;
  const dataUsed = md.dataUsedBlocks;
  const dataTotal = md.nrDataBlocks;
  const t = s.thresholds.update('data', set.thresholds.data, dataUsed, dataTotal);
  if (t !== null) s.gate.emit('threshold', { resource: 'data', threshold: t, usedBlocks: dataUsed, totalBlocks: dataTotal });
  const meta = metadataUse(s);
  const tm = s.thresholds.update('metadata', set.thresholds.metadata, meta.used, meta.usable);
  if (tm !== null) s.gate.emit('threshold', { resource: 'metadata', threshold: tm, usedBlocks: meta.used, totalBlocks: meta.usable });
}

/** Discard passdown: release data blocks freed by the commit that just landed (never before it). */
export function passDown(s: PoolState, freed: number[]): void {
  if (freed.length === 0 || !s.spaceSettings.discardPassdown) return;
  const md = s.md;
  const free = freed.filter((d) => md.dataBlockCount(d) === 0).sort((a, b) => a - b);
  releaseRuns(s, free);
}

/** Release every data block no volume uses (trim); the caller commits first. Returns the blocks released. */
export function releaseUnused(s: PoolState, onProgress?: (done: number, total: number) => void): number {
  const md = s.md;
  const free: number[] = [];
  for (let d = 0; d < md.nrDataBlocks; d++) if (md.dataBlockCount(d) === 0) free.push(d);
  return releaseRuns(s, free, onProgress);
}

/** Punch holes for sorted data blocks, coalesced into runs; warns once when the device cannot. */
function releaseRuns(s: PoolState, sorted: number[], onProgress?: (done: number, total: number) => void): number {
  const bs = s.blockSize;
  let released = 0;
  for (let i = 0; i < sorted.length; ) {
    let j = i + 1;
    while (j < sorted.length && sorted[j] === sorted[j - 1] + 1) j++;
    if (s.storage.data.discard(sorted[i] * bs, (j - i) * bs)) released += j - i;
    else if (!s.warnedNoPunch) {
      s.warnedNoPunch = true;
      s.gate.emit('warning', {
        code: 'NO_PUNCH_HOLE',
        message: 'the data device cannot release space (no hole punching here): freed blocks stay allocated in the data file',
      });
      return released;
    }
    onProgress?.(j, sorted.length);
    i = j;
  }
  return released;
}

/**
 * Release data blocks written but never committed (the committed space map calls them free, the data file may
 * still hold them): every free block below the high-water mark. The caller has nothing uncommitted.
 * Returns the blocks released.
 */
export function releaseUncommitted(s: PoolState): number {
  const md = s.md;
  const bound = Math.min(md.nrDataBlocks, s.highWater.writtenBelow);
  const free: number[] = [];
  for (let d = 0; d < bound; d++) if (md.dataBlockCount(d) === 0) free.push(d);
  return releaseRuns(s, free);
}
