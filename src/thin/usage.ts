/**
 * Space usage per thin device (thin_ls 0.9.0) and differences between two devices (thin_delta 0.9.0).
 *
 * deviceUsage — thin_ls semantics exactly:
 * - `mappedBlocks` is the device's `mapped_blocks` as the details say (thin_ls prints it, it does not recount);
 *   the live view is the engine's current device table (equal to the details tree once committed), `-m` the
 *   held snapshot's details tree;
 * - a mapping is *exclusive* when its data block is mapped exactly once in the whole pool (all devices of the
 *   view); a block mapped twice, even twice by the same device, is shared (thin_ls's mapping_set);
 * - `sharedBlocks = mappedBlocks - exclusiveBlocks`.
 * How (live view, no held metadata snapshot): a mapping is mapped once in the pool exactly when every node on
 * its path from its device's root has metadata reference count 1 (no other device or parent reaches it) and its
 * data block has reference count 1 (no other leaf holds it, and this leaf holds it once). So each device walks
 * only the part of its tree no one else shares, stopping at the first shared node, and asks the data space map
 * for each entry's count: a subtree shared by snapshots is never walked, and nothing is kept per data block.
 * This trusts the space maps' counts (`thinpool check` verifies them). With a held metadata snapshot (whose trees
 * also reference data blocks) or for `-m`, one pass over every device's mappings fills an owner table over the
 * data blocks (device index + 1, or MANY) instead; that table grows with the data device.
 *
 * diffDevices — thin_delta semantics: both devices' mappings are compared in virtual block order by data block
 * (times are ignored): `same` (both map v to the same data block), `different` (both map v, to different
 * blocks), `left_only` / `right_only`. Adjacent ranges of one kind are coalesced, as thin_delta's non-verbose
 * output does. (thin_delta 0.9.0's merge loop drops the unconsumed rest of a run when the other side's last run
 * has been fetched; this implementation reports those blocks as left_only / right_only instead.)
 */
import { ThinpoolError } from '../errors.js';
import { ENTRIES_PER_BITMAP } from '../pd/space-map-metadata.js';
import { blockOf } from './block-time.js';
import { DEFAULT_CACHE_BLOCKS, type ThinMetadata } from './metadata.js';
import { forEachL1, readTopLevel, viewDevices, viewSuperblock } from './dump.js';

export interface DeviceUsage {
  mappedBlocks: number;
  exclusiveBlocks: number;
  sharedBlocks: number;
}

export interface UsageOptions {
  /** Use the held metadata snapshot (thin_ls -m). */
  metadataSnap?: boolean;
}

/** Data blocks unsharedEntries looks up per batch. */
const BATCH = 1 << 16;

/**
 * Metadata cache blocks for a usage run (`thinpool ls`) over nrDataBlocks data blocks: what one batch of
 * unsharedEntries uses, so that nothing it needs again is evicted: every bitmap of the data space map, twice
 * over (then batches are looked up in walk order, unsorted: see unsharedEntries), and the level-1 leaves walked
 * to fill a batch (BATCH / 128: leaves at least half full). At most DEFAULT_CACHE_BLOCKS; at least 512 (2 MiB).
 * A larger cache only costs memory: the run reads each node about once, and each block read into a slot not
 * used before touches a fresh page.
 */
export function usageCacheBlocks(nrDataBlocks: number): number {
  return Math.min(DEFAULT_CACHE_BLOCKS, 2 * Math.ceil(nrDataBlocks / ENTRIES_PER_BITMAP) + BATCH / 128);
}

const MANY = 0xffffffff;
/** Above this many data blocks the owner table is a Map of the mapped blocks only. */
const MAX_TYPED_BLOCKS = 1 << 27;

export function deviceUsage(md: ThinMetadata, opts: UsageOptions = {}): Map<number, DeviceUsage> {
  if (opts.metadataSnap === true || md.heldRoot !== 0) return usageByOwnerTable(md, opts.metadataSnap === true);
  const out = new Map<number, DeviceUsage>();
  for (const dev of viewDevices(md, false)) {
    const excl = unsharedEntries(md, dev.root);
    out.set(dev.id, { mappedBlocks: dev.mappedBlocks, exclusiveBlocks: excl, sharedBlocks: dev.mappedBlocks - excl });
  }
  return out;
}

/** Entries below root reached only through nodes of metadata count 1 whose data block has count 1. */
function unsharedEntries(md: ThinMetadata, root: number): number {
  const { l1 } = md.inspect();
  const look = md.inspect();
  const nrData = look.nrDataBlocks;
  let n = 0;
  // Data blocks are looked up in batches. When every bitmap of the data space map fits in half the metadata
  // cache, they stay resident and the batch is looked up in walk order; else each batch is sorted first, so
  // each bitmap is read once per batch, not once per entry.
  const sortBatches = Math.ceil(nrData / ENTRIES_PER_BITMAP) > md.cacheBlocks / 2;
  const batch = new Float64Array(BATCH);
  const counts = new Uint32Array(batch.length);
  let held = 0;
  const flush = (): void => {
    const blocks = sortBatches ? batch.subarray(0, held).sort() : batch;
    look.dataCounts(blocks, held, counts);
    for (let i = 0; i < held; i++) if (counts[i] === 1) n++;
    held = 0;
  };
  l1.walkPartsWhere(
    root,
    (b) => look.metadataCount(b) === 1,
    blockOf,
    (dblocks, count) => {
      for (let i = 0; i < count; i++) {
        if (held === batch.length) flush();
        const d = dblocks[i];
        if (d < nrData) batch[held++] = d;
      }
    },
  );
  flush();
  return n;
}

function usageByOwnerTable(md: ThinMetadata, metadataSnap: boolean): Map<number, DeviceUsage> {
  const devices = viewDevices(md, metadataSnap);
  const nrData = md.nrDataBlocks;
  const typed = nrData <= MAX_TYPED_BLOCKS ? new Uint32Array(nrData) : undefined;
  const overflow = new Map<number, number>();
  const { l1 } = md.inspect();
  devices.forEach((dev, i) => {
    const tag = i + 1;
    // Every node of every device's tree, shared ones included: each visit tags its data blocks. The data blocks
    // are read raw from each leaf (blockOf), no object per mapping.
    l1.walkPartsWhere(
      dev.root,
      () => true,
      blockOf,
      (dblocks, count) => {
        for (let k = 0; k < count; k++) {
          const d = dblocks[k];
          if (typed !== undefined && d < nrData) typed[d] = typed[d] === 0 ? tag : MANY;
          else overflow.set(d, overflow.has(d) ? MANY : tag);
        }
      },
    );
  });
  const exclusive = new Float64Array(devices.length + 1);
  if (typed !== undefined) {
    for (let d = 0; d < typed.length; d++) {
      const o = typed[d];
      if (o !== 0 && o !== MANY) exclusive[o]++;
    }
  }
  for (const o of overflow.values()) if (o !== MANY) exclusive[o]++;
  const out = new Map<number, DeviceUsage>();
  devices.forEach((dev, i) => {
    const mapped = dev.mappedBlocks;
    const excl = exclusive[i + 1];
    out.set(dev.id, { mappedBlocks: mapped, exclusiveBlocks: excl, sharedBlocks: mapped - excl });
  });
  return out;
}

export type DeltaKind = 'same' | 'different' | 'left_only' | 'right_only';

export interface DeltaRange {
  kind: DeltaKind;
  begin: number;
  length: number;
}

/** Alias used by the pool API. */
export type DiffRange = DeltaRange;

export interface DeltaOptions {
  /** Compare the devices of the held metadata snapshot (thin_delta -m). */
  metadataSnap?: boolean;
}

/** Runs of a device: virtual and data blocks both contiguous (thin_delta's mapping_recorder). */
interface Runs {
  v: number[];
  d: number[];
  len: number[];
}

function recordRuns(md: ThinMetadata, root: number): Runs {
  const r: Runs = { v: [], d: [], len: [] };
  let last = -1;
  forEachL1(md, root, (v, d) => {
    if (last >= 0 && v === r.v[last] + r.len[last] && d === r.d[last] + r.len[last]) {
      r.len[last]++;
      return;
    }
    r.v.push(v);
    r.d.push(d);
    r.len.push(1);
    last++;
  });
  return r;
}

export function diffDevices(md: ThinMetadata, a: number, b: number, opts: DeltaOptions = {}): DeltaRange[] {
  const snap = opts.metadataSnap === true;
  const tops = snap ? readTopLevel(md, viewSuperblock(md, true).dataMappingRoot) : undefined;
  const rootOf = (id: number): number | undefined => (tops !== undefined ? tops.get(id) : md.hasDevice(id) ? md.rootOf(id) : undefined);
  const ra = rootOf(a);
  if (ra === undefined) throw new ThinpoolError('ENOENT', `Unable to find mapping tree for snap1 (${a})`);
  const rb = rootOf(b);
  if (rb === undefined) throw new ThinpoolError('ENOENT', `Unable to find mapping tree for snap2 (${b})`);
  const L = recordRuns(md, ra);
  const R = recordRuns(md, rb);

  const out: DeltaRange[] = [];
  const emit = (kind: DeltaKind, begin: number, length: number): void => {
    if (length <= 0) return;
    const prev = out[out.length - 1];
    if (prev !== undefined && prev.kind === kind && prev.begin + prev.length === begin) prev.length += length;
    else out.push({ kind, begin, length });
  };

  let i = 0;
  let j = 0;
  // Current (partly consumed) runs of each side.
  let lv = 0,
    ld = 0,
    ll = 0;
  let rv = 0,
    rd = 0,
    rl = 0;
  for (;;) {
    if (ll === 0 && i < L.v.length) {
      lv = L.v[i];
      ld = L.d[i];
      ll = L.len[i];
      i++;
    }
    if (rl === 0 && j < R.v.length) {
      rv = R.v[j];
      rd = R.d[j];
      rl = R.len[j];
      j++;
    }
    if (ll === 0 && rl === 0) break;
    if (rl === 0 || (ll > 0 && lv < rv)) {
      const n = rl === 0 ? ll : Math.min(ll, rv - lv);
      emit('left_only', lv, n);
      lv += n;
      ld += n;
      ll -= n;
    } else if (ll === 0 || rv < lv) {
      const n = ll === 0 ? rl : Math.min(rl, lv - rv);
      emit('right_only', rv, n);
      rv += n;
      rd += n;
      rl -= n;
    } else {
      const n = Math.min(ll, rl);
      emit(ld === rd ? 'same' : 'different', lv, n);
      lv += n;
      ld += n;
      ll -= n;
      rv += n;
      rd += n;
      rl -= n;
    }
  }
  return out;
}
