/**
 * The checker's state and its tree walk (check.ts runs the check): what it reports, what it expects the space
 * maps to count, and the validation of one btree from its root.
 *
 * Contract:
 * - Errors and warnings are kept up to MAX_REPORTED each; the rest are counted and summarised by `report()`.
 * - `ref(b)` counts one expected reference to metadata block b (spec 6.1), `dataRef(d)` one to data block d
 *   (6.2): each distinct node's outgoing pointers are counted once, however many trees share it.
 * - Memory is bounded by the metadata device and one window of data blocks, never by the number of mappings or
 *   the size of the data device: per metadata block one byte of state (the tree kind of a validated node,
 *   damaged, a level-1 leaf whose entries were counted) and 4 bytes of expected count; a node summary is kept
 *   only for nodes the metadata space map counts as shared (count > 1). Expected data counts are kept for one
 *   window of `windowBlocks` data blocks at a time (2 bits each like dm-thin's bitmaps, counts of 3 and more
 *   in an overflow map, as many entries as the data ref-count tree holds on a sound pool): the
 *   first window is counted during the tree walks, each further one by reading the counted level-1 leaves
 *   again (`countWindow`, in metadata block order).
 * - `walk` validates a tree (beyond what the block cache checks on read: min entries, parent keys, leaf key order
 *   across leaves, equal leaf depths, a node used by one kind of tree only) and never hangs: a node reached
 *   twice in one walk or a walk deeper than MAX_DEPTH is an ECYCLE error. Nodes are read through the metadata's
 *   read-only inspection door, values decoded by the tree's value type.
 */
import { ThinpoolError, type ErrorCode } from '../errors.js';
import { MAX_DEPTH } from '../pd/btree.js';
import { INDEX_ENTRY, TREE_ROOT, U32, type ValueType } from '../pd/value-types.js';
import { BLOCK_TIME, blockOf } from './block-time.js';
import { DEVICE_DETAILS } from './device-details.js';
import type { MetadataInspection, NodeView } from './metadata-inspect.js';
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

export interface TreeType {
  /** Distinguishes trees whose nodes must never be mixed. */
  kind: string;
  /** The kind as stored per metadata block (1..7, unique). */
  code: number;
  name: string;
  // biome-ignore lint/suspicious/noExplicitAny: each tree's walk options name its own value type
  vt: ValueType<any>;
}

/** What a validated subtree looks like from above (so a shared subtree is read and counted once). */
export interface Summary {
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

export interface WalkOptions {
  /** Every leaf entry of this tree, in key order (shared subtrees included). No cache calls inside. */
  // biome-ignore lint/suspicious/noExplicitAny: the value type of the tree walked (TreeType.vt)
  collect?: (key: number, value: any) => void;
  /** Leaf entries of leaves seen for the first time in this check (distinct leaves). No cache calls inside. */
  // biome-ignore lint/suspicious/noExplicitAny: the value type of the tree walked (TreeType.vt)
  distinctLeaf?: (key: number, value: any, leaf: number) => void;
  /**
   * Instead of distinctLeaf (for trees of many entries: no object per value): each distinct leaf once, its
   * keys[0..nr) and its values undecoded (NodeView.words: value i at byte address i * value size). No cache
   * calls inside.
   */
  distinctLeafWords?: (keys: Float64Array, words: Uint32Array, nr: number, leaf: number) => void;
  /** Context for messages ("thin device 3"). */
  context?: string;
}

/** The trees the checker walks, with their leaf value types. */
export const DETAILS: TreeType = { kind: 'details', code: 1, name: 'device details tree', vt: DEVICE_DETAILS };
export const L0: TreeType = { kind: 'l0', code: 2, name: 'mapping tree (level 0)', vt: TREE_ROOT };
export const L1: TreeType = { kind: 'l1', code: 3, name: 'mapping tree (level 1)', vt: BLOCK_TIME };
export const DATA_INDEX: TreeType = { kind: 'data-index', code: 4, name: 'data space map index tree', vt: INDEX_ENTRY };
export const DATA_REF: TreeType = { kind: 'data-ref', code: 5, name: 'data ref-count tree', vt: U32 };
export const META_REF: TreeType = { kind: 'meta-ref', code: 6, name: 'metadata ref-count tree', vt: U32 };
const KINDS = ['', DETAILS.kind, L0.kind, L1.kind, DATA_INDEX.kind, DATA_REF.kind, META_REF.kind];

/** Per metadata block state (nodeState): low bits the kind code of a validated node, or these flags. */
const KIND_MASK = 0x0f;
const DAMAGED = 0x40;
/** A level-1 leaf whose entries were counted as data references (read again by countWindow). */
const COUNTED = 0x80;

/** Default data blocks per window of expected data counts (4 MiB of 2-bit counts; 1 TiB of data at 64 KiB). */
export const DEFAULT_WINDOW_BLOCKS = 1 << 24;

export interface CheckOptions {
  /** Data blocks whose expected counts are held at once (default DEFAULT_WINDOW_BLOCKS). */
  windowBlocks?: number;
}

export class CheckState {
  readonly md: MetadataInspection;
  readonly sb: Superblock;
  readonly nrMeta: number;
  readonly nrData: number;
  readonly errors: CheckIssue[] = [];
  readonly warnings: CheckIssue[] = [];
  private droppedErrors = 0;
  private droppedWarnings = 0;
  /** Expected metadata counts (spec 6.1). */
  readonly expected: Uint32Array;
  /** Expected data counts (spec 6.2) of the window [winStart, winStart + winLen): 2 bits per data block (index
   * i in the window: byte i >> 2, bits 2 * (i & 3)); a count of 3 or more is 3 there and held in `over`. */
  private readonly counts: Uint8Array;
  private winLen: number;
  private readonly over = new Map<number, number>();
  private winStart = 0;
  readonly windowBlocks: number;
  /** Per metadata block: kind code of a validated node | DAMAGED | COUNTED (see the constants). */
  private readonly nodeState: Uint8Array;
  /** Summaries of validated nodes the metadata space map counts as shared (reached again by other trees). */
  private readonly summaries = new Map<number, Summary>();
  stats: CheckStats = { devices: 0, mappings: 0, metadataBlocksUsed: 0, dataBlocksUsed: 0 };

  constructor(md: MetadataInspection, opts: CheckOptions = {}) {
    this.md = md;
    this.sb = md.superblock as Superblock;
    this.nrMeta = md.nrMetadataBlocks;
    this.nrData = md.nrDataBlocks;
    this.expected = new Uint32Array(this.nrMeta);
    this.nodeState = new Uint8Array(this.nrMeta);
    const w = opts.windowBlocks ?? DEFAULT_WINDOW_BLOCKS;
    if (!(Number.isSafeInteger(w) && w > 0)) throw new ThinpoolError('EINVAL', `bad check window ${w} (data blocks, > 0)`);
    this.windowBlocks = w;
    this.winLen = Math.min(this.nrData, w);
    this.counts = new Uint8Array(Math.ceil(this.winLen / 4));
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

  /** One reference to data block d (< nrData), counted when d falls in the current window. */
  dataRef(d: number): void {
    const i = d - this.winStart;
    if (i < 0 || i >= this.winLen) return;
    const sh = (i & 3) << 1;
    const c = (this.counts[i >>> 2] >>> sh) & 3;
    if (c < 3) this.counts[i >>> 2] += 1 << sh;
    if (c === 2) this.over.set(i, 3);
    else if (c === 3) this.over.set(i, (this.over.get(i) as number) + 1);
  }

  /** Expected count of data block d, which must fall in the current window. */
  expectedData(d: number): number {
    const i = d - this.winStart;
    const c = (this.counts[i >>> 2] >>> ((i & 3) << 1)) & 3;
    return c < 3 ? c : (this.over.get(i) as number);
  }

  /** Count the window starting at data block `start` again: the entries of every counted level-1 leaf. */
  countWindow(start: number): void {
    this.winStart = start;
    this.winLen = Math.min(this.nrData - start, this.windowBlocks);
    this.counts.fill(0);
    this.over.clear();
    const st = this.nodeState;
    const nrData = this.nrData;
    for (let b = 0; b < st.length; b++) {
      if ((st[b] & COUNTED) === 0) continue;
      let node: NodeView<unknown>;
      try {
        node = this.md.readNode(b, BLOCK_TIME, false);
      } catch (e) {
        this.caught(e, `${L1.name} leaf ${b}`);
        continue;
      }
      const words = node.words;
      for (let i = 0; i < node.nr; i++) {
        const d = blockOf(words, 8 * i);
        if (d < nrData) this.dataRef(d);
      }
    }
  }

  /** Whether the metadata space map counts block b as shared (then its summary is kept). */
  private shared(b: number): boolean {
    try {
      return this.md.metadataCount(b) > 1;
    } catch {
      return true;
    }
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
      const state = this.nodeState[b];
      if (state & DAMAGED) return null;
      const kindCode = state & KIND_MASK;
      if (kindCode !== 0 && kindCode !== t.code) {
        this.error('ECORRUPT', t.name, `block ${b} is used by the ${ctx} and by a ${KINDS[kindCode]} tree`, b);
        return null;
      }
      // Seen before: its summary when the space map counts it shared; else (a count of 1, yet reached again:
      // the metadata counts will differ) it is read and validated again, counting nothing.
      const known = kindCode !== 0 ? this.summaries.get(b) : undefined;
      if (known !== undefined && opts.collect === undefined) {
        // Shared subtree already validated and counted: check only how it fits here.
        this.fitChecks(known, b, parentKey, isRoot, lastLeafKey, t);
        if (known.entries > 0) lastLeafKey = known.lastKey;
        return known;
      }
      const first = kindCode === 0;
      let counted = 0;
      let node: NodeView<unknown>;
      try {
        node = this.md.readNode(b, t.vt, opts.distinctLeafWords === undefined || opts.collect !== undefined);
      } catch (e) {
        this.caught(e, ctx);
        if (first) this.nodeState[b] = DAMAGED;
        return null;
      }
      const { internal, nr: n, max, keys } = node;
      const s: Summary = {
        kind: t.kind,
        nr: n,
        max,
        firstKey: n > 0 ? keys[0] : -1,
        lastKey: n > 0 ? keys[n - 1] : -1,
        entries: 0,
        height: 0,
      };
      let ok = this.fitChecks(s, b, parentKey, isRoot, internal ? -1 : lastLeafKey, t, !internal);
      if (!internal) {
        if (n > 0) lastLeafKey = keys[n - 1];
        if (first && opts.distinctLeafWords) {
          opts.distinctLeafWords(keys, node.words, n, b);
          if (t === L1) counted = COUNTED;
        } else if (first && opts.distinctLeaf) {
          for (let i = 0; i < n; i++) opts.distinctLeaf(keys[i], node.values[i], b);
          if (t === L1) counted = COUNTED;
        }
        if (opts.collect) for (let i = 0; i < n; i++) opts.collect(keys[i], node.values[i]);
        s.entries = n;
      } else {
        const kids = node.children;
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
      if (first) {
        this.nodeState[b] = (ok ? t.code : DAMAGED) | counted;
        if (ok && this.shared(b)) this.summaries.set(b, s);
      }
      return ok ? s : null;
    };

    return visit(root, 0, -1, true);
  }

  /** Checks of a node that depend on where it sits: min entries, parent key, leaf key order across leaves. */
  private fitChecks(s: Summary, b: number, parentKey: number, isRoot: boolean, lastLeafKey: number, t: TreeType, leaf = true): boolean {
    let ok = true;
    const min = Math.floor(s.max / 3);
    if (!isRoot && s.nr < min) {
      this.error(
        'EBADNODE',
        t.name,
        `too few entries in btree_node: ${s.nr}, expected at least ${min} (block ${b}, max_entries = ${s.max})`,
        b,
      );
      ok = false;
    }
    if (parentKey >= 0 && s.firstKey >= 0 && s.firstKey < parentKey) {
      this.error('EBADNODE', t.name, `parent key mismatch: parent was ${parentKey}, but lowest in node was ${s.firstKey} (block ${b})`, b);
      ok = false;
    }
    if (leaf && lastLeafKey >= 0 && s.firstKey >= 0 && s.firstKey <= lastLeafKey) {
      this.error(
        'EBADNODE',
        t.name,
        `the last key of the previous leaf was ${lastLeafKey} and the first key of this leaf is ${s.firstKey} (block ${b})`,
        b,
      );
      ok = false;
    }
    return ok;
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
