/**
 * A full consistency check of committed dm-thin metadata (spec 6, 9; a superset of thin_check 0.9.0).
 *
 * `checkMetadata(md)` walks, from the superblock and from the held metadata snapshot (if any), every tree —
 * device details, mapping level 0 and each distinct level-1 tree, the data space map's index tree and ref-count
 * tree, the metadata ref-count tree — plus the metadata index block and every bitmap, and checks:
 * - per node (on read, by the block cache): checksum, block number, flags, max_entries, nr_entries, value size,
 *   key order; here additionally: min entries for non-root nodes, parent key <= first key of the child, leaf keys
 *   increasing across the tree, all leaves at one depth, a node used by one kind of tree only;
 * - details <-> level-0 device-set equality, `mapped_blocks` = number of level-1 entries, every mapped data block
 *   < nr data blocks, mapping time <= superblock time;
 * - exact metadata reference counts (6.1: each distinct node contributes its outgoing pointers once) against
 *   the metadata space map's count of every metadata block, and exact data counts (6.2: entries of distinct
 *   level-1 leaves, live and held) against the data space map's count of every data block; bitmap value 3 <-> ref-count tree entry.
 * Space-map counters (`nr_allocated`, index `nr_free` / `none_free_before`) are hints, known stale in
 * thin_restore output (spec 4.8): a mismatch is a warning, never an error.
 *
 * Everything is bounded: a node reached twice within one tree walk, or a walk deeper than 16 levels, is an
 * error (ECYCLE), never a hang. Errors name the structure and block, worded like thin_check where it has a
 * wording ("metadata reference counts differ for block 6, expected 2, but got 1").
 *
 * The check reads the committed state: use a freshly opened ThinMetadata (read-only is enough), or one that has
 * just committed. `checkMetadataDevice(dev)` opens read-only and turns an error thrown by the open itself into a
 * report entry. The parts: check-state.ts (reporting, expected counts, the tree walk), check-space-maps.ts (both
 * space maps), this file (the thin trees, the order of the run, the entry points). Memory is bounded by the
 * metadata device and one window of data blocks (`windowBlocks`, see check-state.ts), not by the mappings.
 *
 * The check reads each node and bitmap about once and copies what it read out of the block cache
 * (metadata-inspect.ts), so a small cache serves it: `CHECK_CACHE_BLOCKS`, what `checkMetadataDevice` and
 * `thinpool check` open with. A larger one only costs memory: each block read into a slot not used before
 * touches a fresh page (at 1 M mappings the default 32 MiB cache added 32 MiB of peak RSS and ~130 ms of page
 * faults to `thinpool check`).
 */
import type { BlockDevice } from '../io/block-device.js';
import { isThinpoolError, ThinpoolError } from '../errors.js';
import { blockOf, timeOf } from './block-time.js';
import { SpaceMapChecker } from './check-space-maps.js';
import { DETAILS, L0, L1, type CheckOptions, type CheckReport } from './check-state.js';
import type { DeviceDetails } from './device-details.js';
import { ThinMetadata } from './metadata.js';
import type { Superblock } from './superblock.js';

export {
  DEFAULT_WINDOW_BLOCKS,
  MAX_REPORTED,
  type CheckIssue,
  type CheckOptions,
  type CheckReport,
  type CheckStats,
} from './check-state.js';

/** Metadata cache blocks (4 KiB each) to open metadata with for a check: 1 MiB (see the module comment). */
export const CHECK_CACHE_BLOCKS = 256;

/** The whole check: the thin trees of the live superblock and the held snapshot, then the space maps. */
class Checker extends SpaceMapChecker {
  /** Per-tree counters of entry-level problems, reported as one error each with a count. */
  private badData = 0;
  private badDataFirst = '';
  private badTime = 0;
  private badTimeFirst = '';

  // ---- thin structures ----
  /** Details, level 0 and every level-1 tree of one superblock (live or held). */
  thinTrees(sb: Superblock, held: boolean): void {
    const pre = held ? 'metadata snapshot ' : '';
    const details = new Map<number, DeviceDetails>();
    const detailsOk =
      this.walk(sb.deviceDetailsRoot, DETAILS, {
        context: held ? 'the metadata snapshot' : undefined,
        collect: (id: number, d: DeviceDetails) => details.set(id, d),
      }) !== null;
    const tops = new Map<number, number>();
    const topsOk =
      this.walk(sb.dataMappingRoot, L0, {
        context: held ? 'the metadata snapshot' : undefined,
        collect: (id: number, root: number) => tops.set(id, root),
        distinctLeaf: (id: number, root: number) => void this.ref(root, `${pre}mapping tree (level 0) entry for thin device ${id}`),
      }) !== null;
    if (detailsOk && topsOk) {
      for (const id of details.keys()) {
        if (!tops.has(id)) this.error('ECORRUPT', L0.name, `${pre}thin device ${id} has details but no mapping tree`, sb.dataMappingRoot);
      }
      for (const id of tops.keys()) {
        if (!details.has(id))
          this.error('ECORRUPT', DETAILS.name, `${pre}thin device ${id} has mappings but no details`, sb.deviceDetailsRoot);
      }
    }
    for (const [id, d] of details) {
      if (!(d.creationTime <= d.snapshottedTime && d.snapshottedTime <= sb.time)) {
        this.warn(
          'ECORRUPT',
          DETAILS.name,
          `${pre}thin device ${id}: expected creation_time ${d.creationTime} <= snap_time ${d.snapshottedTime} <= superblock time ${sb.time}`,
        );
      }
    }
    const time = sb.time;
    const nrData = this.nrData;
    for (const [id, root] of tops) {
      const s = this.walk(root, L1, {
        context: `${pre}thin device ${id}`,
        distinctLeafWords: (keys: Float64Array, words: Uint32Array, nr: number, leaf: number) => {
          for (let i = 0; i < nr; i++) {
            const d = blockOf(words, 8 * i);
            const t = timeOf(words, 8 * i);
            if (d >= nrData) {
              if (this.badData++ === 0)
                this.badDataFirst = `virtual block ${keys[i]} of ${pre}thin device ${id} maps data block ${d} (leaf block ${leaf})`;
            } else {
              this.dataRef(d);
            }
            if (t > time) {
              if (this.badTime++ === 0)
                this.badTimeFirst = `virtual block ${keys[i]} of ${pre}thin device ${id} has time ${t} (leaf block ${leaf})`;
            }
          }
        },
      });
      if (s === null) continue;
      if (!held) this.stats.mappings += s.entries;
      const d = details.get(id);
      if (d !== undefined && d.mappedBlocks !== s.entries) {
        this.error(
          'ECORRUPT',
          DETAILS.name,
          `${pre}thin device ${id} has mapped_blocks ${d.mappedBlocks}, but its mapping tree has ${s.entries} entries`,
          sb.deviceDetailsRoot,
        );
      }
    }
    if (!held) this.stats.devices = tops.size;
    if (this.badData > 0) {
      this.error(
        'ECORRUPT',
        L1.name,
        `${this.badData} mapping(s) beyond the end of the data device (${nrData} blocks), first: ${this.badDataFirst}`,
      );
    }
    if (this.badTime > 0) {
      this.error(
        'ECORRUPT',
        L1.name,
        `${this.badTime} mapping(s) with a time above the ${pre}superblock time ${time}, first: ${this.badTimeFirst}`,
      );
    }
    this.badData = this.badTime = 0;
  }

  run(): void {
    const sb = this.sb;
    this.expected[0]++;
    // Roots held by the live superblock.
    this.ref(sb.deviceDetailsRoot, 'superblock device_details_root');
    this.ref(sb.dataMappingRoot, 'superblock data_mapping_root');
    this.ref(sb.dataSm.bitmapRoot, 'superblock data space map root');
    this.ref(sb.dataSm.refCountRoot, 'superblock data space map ref-count root');
    this.ref(sb.metadataSm.refCountRoot, 'superblock metadata space map ref-count root');
    this.ref(sb.metadataSm.bitmapRoot, 'superblock metadata space map index root');
    this.thinTrees(sb, false);
    if (sb.heldRoot !== 0) {
      if (this.ref(sb.heldRoot, 'superblock held_root')) {
        let held: Superblock | null = null;
        try {
          held = this.md.heldSuperblock();
        } catch (e) {
          this.caught(e, 'metadata snapshot');
        }
        if (held !== null) {
          this.ref(held.deviceDetailsRoot, 'metadata snapshot device_details_root');
          this.ref(held.dataMappingRoot, 'metadata snapshot data_mapping_root');
          this.thinTrees(held, true);
        }
      }
    }
    const readable = this.dataSpaceMap();
    this.metadataSpaceMap();
    this.compareMetadataCounts();
    this.compareDataCounts(readable);
  }
}

/** Check the committed state of an open ThinMetadata (see the module comment). */
export function checkMetadata(md: ThinMetadata, opts: CheckOptions = {}): CheckReport {
  if (md.dirty) {
    throw new ThinpoolError('EBUSY', 'checkMetadata reads the committed state: commit (or reopen) first');
  }
  const c = new Checker(md.inspect(), opts);
  try {
    c.run();
  } catch (e) {
    c.caught(e);
  }
  return c.report();
}

/**
 * Open dev read-only (with `CHECK_CACHE_BLOCKS` unless `cacheBlocks` says otherwise) and check it; an error
 * thrown by the open itself becomes the report's only error.
 */
export function checkMetadataDevice(dev: BlockDevice, opts: { cacheBlocks?: number } & CheckOptions = {}): CheckReport {
  let md: ThinMetadata;
  try {
    md = ThinMetadata.open(dev, { readOnly: true, cacheBlocks: opts.cacheBlocks ?? CHECK_CACHE_BLOCKS });
  } catch (e) {
    if (!isThinpoolError(e)) throw e;
    return {
      ok: false,
      errors: [
        { code: e.code, structure: e.structure ?? 'metadata', ...(e.mblock === undefined ? {} : { mblock: e.mblock }), message: e.message },
      ],
      warnings: [],
      stats: { devices: 0, mappings: 0, metadataBlocksUsed: 0, dataBlocksUsed: 0 },
    };
  }
  return checkMetadata(md, opts);
}
