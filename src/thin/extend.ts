/**
 * Growing an open pool (spec 7.8): the data device by extend() or by the auto-extend policy, the metadata
 * device by extend().
 *
 * Contract:
 * - Only a writable pool grows; neither device shrinks (EINVAL).
 * - Data: the device is resized first, then the data space map is extended and committed; only then is the
 *   'extended' event emitted. Auto-extend grows by the policy's percentage (at least one block) up to its
 *   maxBytes, and is asked before an allocation, never between an allocation and its mapping (it commits).
 * - Metadata: commit, resize the device, reopen the metadata grown to the new size (replacing `s.md`), commit.
 */
import { ThinpoolError } from '../errors.js';
import { MAX_METADATA_BLOCKS } from '../pd/space-map-metadata.js';
import { change, commit } from './commit.js';
import { ThinMetadata } from './metadata.js';
import type { PoolState } from './pool-state.js';
import type { SpaceSettings } from './space-policy.js';

export interface ExtendOptions {
  /** New data device size in bytes. */
  size?: number;
  /** New metadata device size in bytes. */
  metadataSize?: number;
}

export function grow(s: PoolState, opts: ExtendOptions, auto: boolean): void {
  s.alive();
  if (s.md.mode !== 'write') throw new ThinpoolError('EROFS', 'pool is read-only: it cannot grow (needs_check set?)');
  const bs = s.blockSize;
  if (opts.size !== undefined) {
    const nr = Math.floor(opts.size / bs);
    const old = s.md.nrDataBlocks;
    if (nr < old) {
      throw new ThinpoolError('EINVAL', `shrinking the data device (${old} -> ${nr} blocks) is not supported`);
    }
    if (nr > old) {
      s.storage.data.resize(nr * bs);
      s.dataDirty = true; // the commit's data flush makes the new size durable before the metadata claims it
      change(s, () => s.md.extendData(nr));
      commit(s);
      s.gate.emit('extended', { resource: 'data', fromBlocks: old, toBlocks: nr, auto });
    }
  }
  if (opts.metadataSize !== undefined) {
    const nr = Math.min(Math.floor(opts.metadataSize / 4096), MAX_METADATA_BLOCKS);
    const old = s.md.metadataNrBlocks;
    if (nr < old) throw new ThinpoolError('EINVAL', `shrinking the metadata device (${old} -> ${nr} blocks) is not supported`);
    if (nr > old) {
      commit(s);
      const { cacheBlocks, mappingCacheEntries } = s.md;
      s.storage.metadata.resize(nr * 4096);
      s.md = ThinMetadata.open(s.storage.metadata, { cacheBlocks, mappingCacheEntries, growTo: nr });
      commit(s);
      s.gate.emit('extended', { resource: 'metadata', fromBlocks: old, toBlocks: nr, auto });
    }
  }
}

/** Grow the data device by the policy's percentage (at least one block), up to its maximum. Returns success. */
export function autoExtend(s: PoolState, set: SpaceSettings): boolean {
  const ae = set.autoExtend;
  const bs = s.blockSize;
  const old = s.md.nrDataBlocks;
  const max = Math.floor(ae.maxBytes / bs);
  const target = Math.min(max, old + Math.max(1, Math.ceil((old * ae.percent) / 100)));
  if (!ae.enabled || target <= old) return false;
  grow(s, { size: target * bs }, true);
  return true;
}
