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
 *   `md.msm.countOf(b)` for every metadata block, and exact data counts (6.2: entries of distinct level-1 leaves,
 *   live and held) against `md.dsm.count(d)` for every data block; bitmap value 3 <-> ref-count tree entry.
 * Space-map counters (`nr_allocated`, index `nr_free` / `none_free_before`) are hints, known stale in
 * thin_restore output (spec 4.8): a mismatch is a warning, never an error.
 *
 * Everything is bounded: a node reached twice within one tree walk, or a walk deeper than 16 levels, is an
 * error (ECYCLE), never a hang. Errors name the structure and block, worded like thin_check where it has a
 * wording ("metadata reference counts differ for block 6, expected 2, but got 1").
 *
 * The check reads the committed state: use a freshly opened ThinMetadata (read-only is enough), or one that has
 * just committed. `checkMetadataDevice(dev)` opens read-only and turns an error thrown by the open itself into a
 * report entry.
 */
import type { BlockDevice } from '../io/block-device.js';
import { isThinpoolError, ThinpoolError, type ErrorCode } from '../errors.js';
import { BlockKind } from '../pd/block-kinds.js';
import { MAX_DEPTH } from '../pd/btree.js';
import { ENTRIES_PER_BITMAP } from '../pd/space-map-metadata.js';
import { INTERNAL } from '../pd/transaction-manager.js';
import { INDEX_ENTRY, readU64, U32 } from '../pd/value-types.js';
import { blockOf, timeOf } from './block-time.js';
import { DEVICE_DETAILS, type DeviceDetails } from './device-details.js';
import { ThinMetadata } from './metadata.js';
import type { Superblock } from './superblock.js';

export interface CheckIssue {
  code: ErrorCode;
  /** The structure concerned ("device details tree", "metadata space map", "btree node", ...). */
  structure: string;
  /** The metadata block concerned, when there is one. */
  mblock?: number;
  message: string;
}

export interface CheckStats {
  /** Live thin devices. */
  devices: number;
  /** Mappings of the live devices (sum of their level-1 entries; shared subtrees count for each device). */
  mappings: number;
  /** Metadata blocks with a non-zero count in the metadata space map. */
  metadataBlocksUsed: number;
  /** Data blocks with a non-zero count in the data space map. */
  dataBlocksUsed: number;
}

export interface CheckReport {
  ok: boolean;
  errors: CheckIssue[];
  /** Non-fatal findings: stale space-map counters and hints (thin_restore quirk, spec 4.8), odd device times. */
  warnings: CheckIssue[];
  stats: CheckStats;
}

/** At most this many errors (and warnings) are listed; the rest are summarised in one last entry. */
export const MAX_REPORTED = 1000;

interface TreeType {
  /** Distinguishes trees whose nodes must never be mixed. */
  kind: string;
  name: string;
  leafVs: number;
}

const DETAILS: TreeType = { kind: 'details', name: 'device details tree', leafVs: 24 };
const L0: TreeType = { kind: 'l0', name: 'mapping tree (level 0)', leafVs: 8 };
const L1: TreeType = { kind: 'l1', name: 'mapping tree (level 1)', leafVs: 8 };
const DATA_INDEX: TreeType = { kind: 'data-index', name: 'data space map index tree', leafVs: 16 };
const DATA_REF: TreeType = { kind: 'data-ref', name: 'data ref-count tree', leafVs: 4 };
const META_REF: TreeType = { kind: 'meta-ref', name: 'metadata ref-count tree', leafVs: 4 };

/** What a validated subtree looks like from above (so a shared subtree is read and counted once). */
interface Summary {
  kind: string;
  nr: number;
  max: number;
  /** Smallest and largest key stored in the subtree's leaves (-1 when it has no entries). */
  firstKey: number;
  lastKey: number;
  /** Leaf entries in the subtree. */
  entries: number;
  /** 0 for a leaf. */
  height: number;
}

interface WalkOptions {
  /** Every leaf entry of this tree, in key order (shared subtrees included). No cache calls inside. */
  collect?: (key: number, valueAddr: number) => void;
  /** Leaf entries of leaves seen for the first time in this check (distinct leaves). No cache calls inside. */
  distinctLeaf?: (key: number, valueAddr: number, leaf: number) => void;
  /** Context for messages ("thin device 3"). */
  context?: string;
}

class Checker {
  readonly md: ThinMetadata;
  readonly sb: Superblock;
  readonly nrMeta: number;
  readonly nrData: number;
  readonly errors: CheckIssue[] = [];
  readonly warnings: CheckIssue[] = [];
  private droppedErrors = 0;
  private droppedWarnings = 0;
  /** Expected metadata counts (spec 6.1). */
  readonly expected: Uint32Array;
  /** Expected data counts (spec 6.2); a Map for absurdly large data devices. */
  /** One byte per data block; a count that reaches 255 goes on in dataMap. */
  private readonly dataTyped?: Uint8Array;
  private readonly dataMap = new Map<number, number>();
  /** Validated nodes (null: the node or something below it is damaged; reported once). */
  private readonly summaries = new Map<number, Summary | null>();
  stats: CheckStats = { devices: 0, mappings: 0, metadataBlocksUsed: 0, dataBlocksUsed: 0 };
  /** Per-tree counters of entry-level problems, reported as one error each with a count. */
  private badData = 0;
  private badDataFirst = '';
  private badTime = 0;
  private badTimeFirst = '';

  constructor(md: ThinMetadata) {
    this.md = md;
    this.sb = md.superblock as Superblock;
    this.nrMeta = md.msm.nrBlocks;
    this.nrData = md.dsm.nrBlocks;
    this.expected = new Uint32Array(this.nrMeta);
    if (this.nrData <= 1 << 29) this.dataTyped = new Uint8Array(this.nrData);
  }

  // ---- reporting ----
  error(code: ErrorCode, structure: string, message: string, mblock?: number): void {
    if (this.errors.length >= MAX_REPORTED) {
      this.droppedErrors++;
      return;
    }
    this.errors.push(mblock === undefined ? { code, structure, message } : { code, structure, mblock, message });
  }

  warn(code: ErrorCode, structure: string, message: string, mblock?: number): void {
    if (this.warnings.length >= MAX_REPORTED) {
      this.droppedWarnings++;
      return;
    }
    this.warnings.push(mblock === undefined ? { code, structure, message } : { code, structure, mblock, message });
  }

  /** Record a thrown error; anything that is not a ThinpoolError is a bug and propagates. */
  caught(e: unknown, context?: string): void {
    if (!(e instanceof ThinpoolError)) throw e;
    const msg = context === undefined ? e.message : `${context}: ${e.message}`;
    this.error(e.code, e.structure ?? 'metadata', msg, e.mblock);
  }

  // ---- counting ----
  /** One reference to metadata block b from `from`. */
  ref(b: number, from: string): boolean {
    if (!(Number.isInteger(b) && b >= 0 && b < this.nrMeta)) {
      this.error('EBADBLOCKNR', from, `reference to block ${b} beyond the metadata device (${this.nrMeta} blocks) from ${from}`, b);
      return false;
    }
    if (b === 0 && from !== 'superblock') {
      this.error('EBADBLOCKNR', from, `reference to the superblock (block 0) from ${from}`, 0);
      return false;
    }
    this.expected[b]++;
    return true;
  }

  private dataRef(d: number): void {
    const t = this.dataTyped;
    if (t !== undefined && t[d] < 255) t[d]++;
    else this.dataMap.set(d, (this.dataMap.get(d) ?? (t !== undefined ? 255 : 0)) + 1);
  }

  private expectedData(d: number): number {
    const t = this.dataTyped;
    if (t !== undefined && t[d] < 255) return t[d];
    return this.dataMap.get(d) ?? (t !== undefined ? 255 : 0);
  }

  // ---- btree walk ----
  /**
   * Walk one tree from root, validating it and counting each distinct node's outgoing pointers once. Returns the
   * root's summary, or null when the tree (or part of it) is damaged (already reported).
   */
  walk(root: number, t: TreeType, opts: WalkOptions = {}): Summary | null {
    const visited = new Set<number>();
    let lastLeafKey = -1;
    const ctx = opts.context === undefined ? t.name : `${t.name} of ${opts.context}`;
    const core = this.md.core;
    const u32 = core.u32;

    const visit = (b: number, depth: number, parentKey: number, isRoot: boolean): Summary | null => {
      if (depth >= MAX_DEPTH) {
        this.error('ECYCLE', t.name, `${ctx} is deeper than ${MAX_DEPTH} levels at block ${b} (cycle?)`, b);
        return null;
      }
      if (visited.has(b)) {
        this.error('ECYCLE', t.name, `${ctx} reaches block ${b} twice (cycle or shared node within one tree)`, b);
        return null;
      }
      visited.add(b);
      if (!(Number.isInteger(b) && b > 0 && b < this.nrMeta)) {
        this.error('EBADBLOCKNR', t.name, `${ctx} points to block ${b}, beyond the metadata device (${this.nrMeta} blocks)`, b);
        return null;
      }
      const known = this.summaries.get(b);
      if (known === null) return null;
      if (known !== undefined && known.kind !== t.kind) {
        this.error('ECORRUPT', t.name, `block ${b} is used by the ${ctx} and by a ${known.kind} tree`, b);
        return null;
      }
      if (known !== undefined && opts.collect === undefined) {
        // Shared subtree already validated and counted: check only how it fits here.
        this.fitChecks(known, b, parentKey, isRoot, lastLeafKey, t);
        if (known.entries > 0) lastLeafKey = known.lastKey;
        return known;
      }
      const first = known === undefined;
      let a: number;
      try {
        a = this.md.cache.get(b, BlockKind.Node, t.leafVs);
      } catch (e) {
        this.caught(e, ctx);
        if (first) this.summaries.set(b, null);
        return null;
      }
      const internal = u32[(a + 4) >>> 2] === INTERNAL;
      const n = u32[(a + 16) >>> 2];
      const max = u32[(a + 20) >>> 2];
      const vs = u32[(a + 24) >>> 2];
      const keys = new Float64Array(n);
      for (let i = 0; i < n; i++) keys[i] = core.u64(a + 32 + 8 * i);
      const vbase = a + 32 + 8 * max;
      const s: Summary = { kind: t.kind, nr: n, max, firstKey: n > 0 ? keys[0] : -1, lastKey: n > 0 ? keys[n - 1] : -1, entries: 0, height: 0 };
      let ok = this.fitChecks(s, b, parentKey, isRoot, internal ? -1 : lastLeafKey, t, !internal);
      if (!internal) {
        if (n > 0) lastLeafKey = keys[n - 1];
        if (first && opts.distinctLeaf) for (let i = 0; i < n; i++) opts.distinctLeaf(keys[i], vbase + vs * i, b);
        if (opts.collect) for (let i = 0; i < n; i++) opts.collect(keys[i], vbase + vs * i);
        s.entries = n;
      } else {
        const kids = new Float64Array(n);
        for (let i = 0; i < n; i++) kids[i] = core.u64(vbase + 8 * i);
        if (first) for (let i = 0; i < n; i++) this.ref(kids[i], `${ctx} (internal node ${b})`);
        let height = -1;
        for (let i = 0; i < n; i++) {
          const c = visit(kids[i], depth + 1, keys[i], false);
          if (c === null) {
            ok = false;
            continue;
          }
          if (i === 0) s.firstKey = c.firstKey;
          if (c.entries > 0) s.lastKey = c.lastKey;
          s.entries += c.entries;
          if (height >= 0 && c.height !== height) {
            this.error('EBADNODE', t.name, `leaves at different depths below internal node of ${ctx} (block ${b})`, b);
            ok = false;
          }
          height = Math.max(height, c.height);
        }
        s.height = height + 1;
        if (s.entries === 0) s.firstKey = s.lastKey = -1;
      }
      if (first) this.summaries.set(b, ok ? s : null);
      return ok ? s : null;
    };

    return visit(root, 0, -1, true);
  }

  /** Checks of a node that depend on where it sits: min entries, parent key, leaf key order across leaves. */
  private fitChecks(s: Summary, b: number, parentKey: number, isRoot: boolean, lastLeafKey: number, t: TreeType, leaf = true): boolean {
    let ok = true;
    const min = Math.floor(s.max / 3);
    if (!isRoot && s.nr < min) {
      this.error('EBADNODE', t.name, `too few entries in btree_node: ${s.nr}, expected at least ${min} (block ${b}, max_entries = ${s.max})`, b);
      ok = false;
    }
    if (parentKey >= 0 && s.firstKey >= 0 && s.firstKey < parentKey) {
      this.error('EBADNODE', t.name, `parent key mismatch: parent was ${parentKey}, but lowest in node was ${s.firstKey} (block ${b})`, b);
      ok = false;
    }
    if (leaf && lastLeafKey >= 0 && s.firstKey >= 0 && s.firstKey <= lastLeafKey) {
      this.error('EBADNODE', t.name, `the last key of the previous leaf was ${lastLeafKey} and the first key of this leaf is ${s.firstKey} (block ${b})`, b);
      ok = false;
    }
    return ok;
  }

  // ---- thin structures ----
  /** Details, level 0 and every level-1 tree of one superblock (live or held). */
  thinTrees(sb: Superblock, held: boolean): void {
    const pre = held ? 'metadata snapshot ' : '';
    const u32 = this.md.core.u32;
    const details = new Map<number, DeviceDetails>();
    const detailsOk = this.walk(sb.deviceDetailsRoot, DETAILS, {
      context: held ? 'the metadata snapshot' : undefined,
      collect: (id, v) => details.set(id, DEVICE_DETAILS.read(u32, v)),
    }) !== null;
    const tops = new Map<number, number>();
    const topsOk = this.walk(sb.dataMappingRoot, L0, {
      context: held ? 'the metadata snapshot' : undefined,
      collect: (id, v) => tops.set(id, readU64(u32, v)),
      distinctLeaf: (id, v) => void this.ref(readU64(u32, v), `${pre}mapping tree (level 0) entry for thin device ${id}`),
    }) !== null;
    if (detailsOk && topsOk) {
      for (const id of details.keys()) {
        if (!tops.has(id)) this.error('ECORRUPT', L0.name, `${pre}thin device ${id} has details but no mapping tree`, sb.dataMappingRoot);
      }
      for (const id of tops.keys()) {
        if (!details.has(id)) this.error('ECORRUPT', DETAILS.name, `${pre}thin device ${id} has mappings but no details`, sb.deviceDetailsRoot);
      }
    }
    for (const [id, d] of details) {
      if (!(d.creationTime <= d.snapshottedTime && d.snapshottedTime <= sb.time)) {
        this.warn('ECORRUPT', DETAILS.name, `${pre}thin device ${id}: expected creation_time ${d.creationTime} <= snap_time ${d.snapshottedTime} <= superblock time ${sb.time}`);
      }
    }
    const time = sb.time;
    const nrData = this.nrData;
    for (const [id, root] of tops) {
      const s = this.walk(root, L1, {
        context: `${pre}thin device ${id}`,
        distinctLeaf: (v, a, leaf) => {
          const d = blockOf(u32, a);
          const t = timeOf(u32, a);
          if (d >= nrData) {
            if (this.badData++ === 0) this.badDataFirst = `virtual block ${v} of ${pre}thin device ${id} maps data block ${d} (leaf block ${leaf})`;
          } else {
            this.dataRef(d);
          }
          if (t > time) {
            if (this.badTime++ === 0) this.badTimeFirst = `virtual block ${v} of ${pre}thin device ${id} has time ${t} (leaf block ${leaf})`;
          }
        },
      });
      if (s === null) continue;
      if (!held) this.stats.mappings += s.entries;
      const d = details.get(id);
      if (d !== undefined && d.mappedBlocks !== s.entries) {
        this.error('ECORRUPT', DETAILS.name, `${pre}thin device ${id} has mapped_blocks ${d.mappedBlocks}, but its mapping tree has ${s.entries} entries`, sb.deviceDetailsRoot);
      }
    }
    if (!held) this.stats.devices = tops.size;
    if (this.badData > 0) {
      this.error('ECORRUPT', L1.name, `${this.badData} mapping(s) beyond the end of the data device (${nrData} blocks), first: ${this.badDataFirst}`);
    }
    if (this.badTime > 0) {
      this.error('ECORRUPT', L1.name, `${this.badTime} mapping(s) with a time above the ${pre}superblock time ${time}, first: ${this.badTimeFirst}`);
    }
    this.badData = this.badTime = 0;
  }

  // ---- space maps ----
  /**
   * Read one bitmap: its values (as counted in `values` from `base`), free count and first free entry. Returns
   * false when the block is unreadable (reported).
   */
  private readBitmap(block: number, covered: number, structure: string, j: number): Uint8Array | null {
    try {
      const p = this.md.cache.get(block, BlockKind.Bitmap);
      const out = new Uint8Array(covered);
      const x = this.md.core.x;
      for (let i = 0; i < covered; i++) out[i] = x.bitmapGet(p, i);
      return out;
    } catch (e) {
      this.caught(e, `${structure} bitmap ${j}`);
      return null;
    }
  }

  private hints(vals: Uint8Array, nrFree: number, nfb: number, structure: string, j: number, block: number): number {
    let free = 0;
    let firstFree = -1;
    for (let i = 0; i < vals.length; i++) {
      if (vals[i] === 0) {
        free++;
        if (firstFree < 0) firstFree = i;
      }
    }
    if (firstFree < 0) firstFree = vals.length;
    if (nrFree !== free) this.warn('ECORRUPT', structure, `index entry ${j}: nr_free ${nrFree}, but bitmap block ${block} has ${free} free entries`, block);
    if (nfb > firstFree) this.warn('ECORRUPT', structure, `index entry ${j}: none_free_before ${nfb}, but entry ${firstFree} of bitmap block ${block} is free`, block);
    return vals.length - free;
  }

  /** Ref-count tree entries of a space map, cross-checked against the bitmap values. */
  private refTree(root: number, t: TreeType, nrBlocks: number, valueOf: (b: number) => number | undefined): Map<number, number> {
    const entries = new Map<number, number>();
    const u32 = this.md.core.u32;
    this.walk(root, t, { collect: (b, v) => entries.set(b, U32.read(u32, v)) });
    const what = t === META_REF ? 'metadata' : 'data';
    for (const [b, c] of entries) {
      if (b >= nrBlocks) {
        this.error('ECORRUPT', t.name, `${t.name} has an entry for ${what} block ${b}, beyond the space map (${nrBlocks} blocks)`, root);
        continue;
      }
      if (c < 3) this.error('ECORRUPT', t.name, `${t.name} entry for ${what} block ${b} holds ${c} (< 3)`, root);
      const v = valueOf(b);
      if (v !== undefined && v !== 3) this.error('ECORRUPT', t.name, `${t.name} has an entry for ${what} block ${b}, but its bitmap value is ${v}`, root);
    }
    return entries;
  }

  metadataSpaceMap(): void {
    const sm = this.sb.metadataSm;
    const structure = 'metadata space map';
    const nBitmaps = Math.ceil(this.nrMeta / ENTRIES_PER_BITMAP);
    const values = new Uint8Array(this.nrMeta);
    const readable = new Uint8Array(nBitmaps);
    let used = 0;
    let index: Array<[number, number, number]> = [];
    try {
      const a = this.md.cache.get(sm.bitmapRoot, BlockKind.Index);
      const u32 = this.md.core.u32;
      for (let j = 0; j < nBitmaps; j++) {
        const e = INDEX_ENTRY.read(u32, a + 16 + 16 * j);
        index.push([e.block, e.nrFree, e.noneFreeBefore]);
      }
    } catch (e) {
      this.caught(e, 'metadata space map index');
      index = [];
    }
    index.forEach(([block, nrFree, nfb], j) => {
      if (!this.ref(block, `metadata space map index entry ${j}`)) return;
      const covered = Math.min(ENTRIES_PER_BITMAP, this.nrMeta - j * ENTRIES_PER_BITMAP);
      const vals = this.readBitmap(block, covered, structure, j);
      if (vals === null) return;
      values.set(vals, j * ENTRIES_PER_BITMAP);
      readable[j] = 1;
      used += this.hints(vals, nrFree, nfb, structure, j, block);
    });
    const all = index.length === nBitmaps && readable.every((r) => r === 1);
    const valueOf = (b: number): number | undefined => (readable[Math.floor(b / ENTRIES_PER_BITMAP)] ? values[b] : undefined);
    const refs = this.refTree(sm.refCountRoot, META_REF, this.nrMeta, valueOf);
    for (let b = 0; b < this.nrMeta; b++) {
      if (values[b] === 3 && !refs.has(b)) {
        this.error('ECORRUPT', structure, `metadata block ${b} has bitmap value 3 but no ref-count tree entry`, b);
      }
    }
    if (all && sm.nrAllocated !== used) {
      this.warn('ECORRUPT', structure, `nr_allocated is ${sm.nrAllocated}, but the bitmaps count ${used} blocks in use`);
    }
    if (this.sb.metadataNrBlocks !== this.nrMeta) {
      this.warn('ECORRUPT', 'superblock', `metadata_nr_blocks is ${this.sb.metadataNrBlocks}, but the metadata space map has ${this.nrMeta} blocks`, 0);
    }
    this.stats.metadataBlocksUsed = this.md.msm.nrAllocated;
  }

  dataSpaceMap(): Uint8Array {
    const sm = this.sb.dataSm;
    const structure = 'data space map';
    const nBitmaps = Math.ceil(this.nrData / ENTRIES_PER_BITMAP);
    const index = new Map<number, [number, number, number]>();
    const u32 = this.md.core.u32;
    const readable = new Uint8Array(nBitmaps);
    this.walk(sm.bitmapRoot, DATA_INDEX, {
      collect: (k, v) => {
        const e = INDEX_ENTRY.read(u32, v);
        index.set(k, [e.block, e.nrFree, e.noneFreeBefore]);
      },
    });
    for (const k of index.keys()) {
      if (k >= nBitmaps) this.error('ECORRUPT', DATA_INDEX.name, `data space map index has an entry for bitmap ${k}, but ${this.nrData} data blocks need ${nBitmaps}`, sm.bitmapRoot);
    }
    const bitmapValues: Array<Uint8Array | null> = [];
    let used = 0;
    let all = true;
    for (let j = 0; j < nBitmaps; j++) {
      const e = index.get(j);
      if (e === undefined) {
        this.error('ECORRUPT', DATA_INDEX.name, `data space map index has no entry for bitmap ${j}`, sm.bitmapRoot);
        bitmapValues.push(null);
        all = false;
        continue;
      }
      const [block, nrFree, nfb] = e;
      if (!this.ref(block, `data space map index entry ${j}`)) {
        bitmapValues.push(null);
        all = false;
        continue;
      }
      const covered = Math.min(ENTRIES_PER_BITMAP, this.nrData - j * ENTRIES_PER_BITMAP);
      const vals = this.readBitmap(block, covered, structure, j);
      bitmapValues.push(vals);
      if (vals === null) {
        all = false;
        continue;
      }
      readable[j] = 1;
      used += this.hints(vals, nrFree, nfb, structure, j, block);
    }
    const valueOf = (d: number): number | undefined => bitmapValues[Math.floor(d / ENTRIES_PER_BITMAP)]?.[d % ENTRIES_PER_BITMAP];
    const refs = this.refTree(sm.refCountRoot, DATA_REF, this.nrData, valueOf);
    for (let j = 0; j < nBitmaps; j++) {
      const vals = bitmapValues[j];
      if (!vals) continue;
      for (let i = 0; i < vals.length; i++) {
        if (vals[i] === 3 && !refs.has(j * ENTRIES_PER_BITMAP + i)) {
          this.error('ECORRUPT', structure, `data block ${j * ENTRIES_PER_BITMAP + i} has bitmap value 3 but no ref-count tree entry`);
        }
      }
    }
    if (all && sm.nrAllocated !== used) {
      this.warn('ECORRUPT', structure, `nr_allocated is ${sm.nrAllocated}, but the bitmaps count ${used} data blocks in use`);
    }
    this.stats.dataBlocksUsed = this.md.dsm.nrAllocated;
    return readable;
  }

  compareMetadataCounts(): void {
    const msm = this.md.msm;
    for (let b = 0; b < this.nrMeta; b++) {
      const e = this.expected[b];
      const got = msm.countOf(b);
      if (got !== e) {
        this.error('ECORRUPT', 'metadata space map', `metadata reference counts differ for block ${b}, expected ${e}, but got ${got}`, b);
      }
    }
  }

  compareDataCounts(readable: Uint8Array): void {
    const dsm = this.md.dsm;
    for (let d = 0; d < this.nrData; d++) {
      if (!readable[Math.floor(d / ENTRIES_PER_BITMAP)]) {
        d = (Math.floor(d / ENTRIES_PER_BITMAP) + 1) * ENTRIES_PER_BITMAP - 1;
        continue;
      }
      const e = this.expectedData(d);
      let got: number;
      try {
        got = dsm.count(d);
      } catch (err) {
        this.caught(err, `data block ${d}`);
        continue;
      }
      if (got !== e) {
        this.error('ECORRUPT', 'data space map', `data reference counts differ for block ${d}, expected ${e}, but got ${got}`);
      }
    }
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

  report(): CheckReport {
    if (this.droppedErrors > 0) {
      this.errors.push({ code: 'ECORRUPT', structure: 'check', message: `... and ${this.droppedErrors} more errors` });
    }
    if (this.droppedWarnings > 0) {
      this.warnings.push({ code: 'ECORRUPT', structure: 'check', message: `... and ${this.droppedWarnings} more warnings` });
    }
    return { ok: this.errors.length === 0, errors: this.errors, warnings: this.warnings, stats: this.stats };
  }
}

/** Check the committed state of an open ThinMetadata (see the module comment). */
export function checkMetadata(md: ThinMetadata): CheckReport {
  if (md.dirty) {
    throw new ThinpoolError('EBUSY', 'checkMetadata reads the committed state: commit (or reopen) first');
  }
  const c = new Checker(md);
  try {
    c.run();
  } catch (e) {
    c.caught(e);
  }
  return c.report();
}

/** Open dev read-only and check it; an error thrown by the open itself becomes the report's only error. */
export function checkMetadataDevice(dev: BlockDevice, opts: { cacheBlocks?: number } = {}): CheckReport {
  let md: ThinMetadata;
  try {
    md = ThinMetadata.open(dev, { readOnly: true, cacheBlocks: opts.cacheBlocks });
  } catch (e) {
    if (!isThinpoolError(e)) throw e;
    return {
      ok: false,
      errors: [{ code: e.code, structure: e.structure ?? 'metadata', ...(e.mblock === undefined ? {} : { mblock: e.mblock }), message: e.message }],
      warnings: [],
      stats: { devices: 0, mappings: 0, metadataBlocksUsed: 0, dataBlocksUsed: 0 },
    };
  }
  return checkMetadata(md);
}
