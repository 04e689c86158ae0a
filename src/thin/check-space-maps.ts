/**
 * The checker's part for both space maps (spec 4, 6): their bitmaps, index (block or tree) and ref-count trees
 * are read and cross-checked, then every block's count is compared with what the walks of check.ts expect.
 *
 * Contract:
 * - A bitmap value 3 must have a ref-count tree entry (>= 3) and such an entry a bitmap value 3; every count the
 *   space map reports must equal the expected count (metadata: exactly, spec 6.1; data: spec 6.2).
 * - Counters that are only hints (`nr_allocated`, index `nr_free` / `none_free_before`) give warnings, not errors
 *   (thin_restore leaves them stale, spec 4.8). Unreadable bitmaps are reported once and their blocks skipped.
 * - The data space map's bitmaps are read one at a time and not kept (its ref-count tree entries are); data
 *   counts are compared window by window (check-state.ts), each window's bitmaps read through the cache.
 */
import { ENTRIES_PER_BITMAP } from '../pd/space-map-metadata.js';
import type { IndexEntry } from '../pd/value-types.js';
import { CheckState, DATA_INDEX, DATA_REF, META_REF, type TreeType } from './check-state.js';

/** The space-map half of the check, over the walks' expected counts. */
export class SpaceMapChecker extends CheckState {
  /** Per data bitmap: the block dataSpaceMap read it from (meaningful where it was readable). */
  private dataBitmapBlocks = new Float64Array(0);

  // ---- space maps ----
  /**
   * Read one bitmap: its values (as counted in `values` from `base`), free count and first free entry. Returns
   * false when the block is unreadable (reported).
   */
  protected readBitmap(block: number, covered: number, structure: string, j: number): Uint8Array | null {
    try {
      return this.md.readBitmap(block, covered);
    } catch (e) {
      this.caught(e, `${structure} bitmap ${j}`);
      return null;
    }
  }

  protected hints(vals: Uint8Array, nrFree: number, nfb: number, structure: string, j: number, block: number): number {
    let free = 0;
    let firstFree = -1;
    for (let i = 0; i < vals.length; i++) {
      if (vals[i] === 0) {
        free++;
        if (firstFree < 0) firstFree = i;
      }
    }
    if (firstFree < 0) firstFree = vals.length;
    if (nrFree !== free)
      this.warn('ECORRUPT', structure, `index entry ${j}: nr_free ${nrFree}, but bitmap block ${block} has ${free} free entries`, block);
    if (nfb > firstFree)
      this.warn(
        'ECORRUPT',
        structure,
        `index entry ${j}: none_free_before ${nfb}, but entry ${firstFree} of bitmap block ${block} is free`,
        block,
      );
    return vals.length - free;
  }

  /** Ref-count tree entries of a space map, cross-checked against the bitmap values. */
  protected refTree(root: number, t: TreeType, nrBlocks: number, valueOf?: (b: number) => number | undefined): Map<number, number> {
    const entries = new Map<number, number>();
    this.walk(root, t, { collect: (b: number, count: number) => entries.set(b, count) });
    const what = t === META_REF ? 'metadata' : 'data';
    for (const [b, c] of entries) {
      if (b >= nrBlocks) {
        this.error('ECORRUPT', t.name, `${t.name} has an entry for ${what} block ${b}, beyond the space map (${nrBlocks} blocks)`, root);
        continue;
      }
      if (c < 3) this.error('ECORRUPT', t.name, `${t.name} entry for ${what} block ${b} holds ${c} (< 3)`, root);
      const v = valueOf?.(b);
      if (v !== undefined && v !== 3) this.notThree(t, b, v, root);
    }
    return entries;
  }

  private notThree(t: TreeType, b: number, v: number, root: number): void {
    const what = t === META_REF ? 'metadata' : 'data';
    this.error('ECORRUPT', t.name, `${t.name} has an entry for ${what} block ${b}, but its bitmap value is ${v}`, root);
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
      for (const e of this.md.readMetadataIndex(sm.bitmapRoot, nBitmaps)) index.push([e.block, e.nrFree, e.noneFreeBefore]);
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
      this.warn(
        'ECORRUPT',
        'superblock',
        `metadata_nr_blocks is ${this.sb.metadataNrBlocks}, but the metadata space map has ${this.nrMeta} blocks`,
        0,
      );
    }
    this.stats.metadataBlocksUsed = this.md.metadataAllocated;
  }

  dataSpaceMap(): Uint8Array {
    const sm = this.sb.dataSm;
    const structure = 'data space map';
    const nBitmaps = Math.ceil(this.nrData / ENTRIES_PER_BITMAP);
    const index = new Map<number, [number, number, number]>();
    const readable = new Uint8Array(nBitmaps);
    this.dataBitmapBlocks = new Float64Array(nBitmaps);
    this.walk(sm.bitmapRoot, DATA_INDEX, {
      collect: (k: number, e: IndexEntry) => index.set(k, [e.block, e.nrFree, e.noneFreeBefore]),
    });
    for (const k of index.keys()) {
      if (k >= nBitmaps)
        this.error(
          'ECORRUPT',
          DATA_INDEX.name,
          `data space map index has an entry for bitmap ${k}, but ${this.nrData} data blocks need ${nBitmaps}`,
          sm.bitmapRoot,
        );
    }
    // The ref-count tree first, then each bitmap once: its hints, and bitmap value 3 <-> ref-count tree entry.
    const refs = this.refTree(sm.refCountRoot, DATA_REF, this.nrData);
    const refBlocks = Float64Array.from(refs.keys()).sort();
    let p = 0;
    let used = 0;
    let all = true;
    for (let j = 0; j < nBitmaps; j++) {
      const e = index.get(j);
      if (e === undefined) {
        this.error('ECORRUPT', DATA_INDEX.name, `data space map index has no entry for bitmap ${j}`, sm.bitmapRoot);
        all = false;
        continue;
      }
      const [block, nrFree, nfb] = e;
      if (!this.ref(block, `data space map index entry ${j}`)) {
        all = false;
        continue;
      }
      const base = j * ENTRIES_PER_BITMAP;
      const covered = Math.min(ENTRIES_PER_BITMAP, this.nrData - base);
      const vals = this.readBitmap(block, covered, structure, j);
      if (vals === null) {
        all = false;
        continue;
      }
      readable[j] = 1;
      this.dataBitmapBlocks[j] = block;
      used += this.hints(vals, nrFree, nfb, structure, j, block);
      while (p < refBlocks.length && refBlocks[p] < base) p++;
      for (; p < refBlocks.length && refBlocks[p] < base + covered; p++) {
        const v = vals[refBlocks[p] - base];
        if (v !== 3) this.notThree(DATA_REF, refBlocks[p], v, sm.refCountRoot);
      }
      for (let i = 0; i < covered; i++) {
        if (vals[i] === 3 && !refs.has(base + i)) {
          this.error('ECORRUPT', structure, `data block ${base + i} has bitmap value 3 but no ref-count tree entry`);
        }
      }
    }
    if (all && sm.nrAllocated !== used) {
      this.warn('ECORRUPT', structure, `nr_allocated is ${sm.nrAllocated}, but the bitmaps count ${used} data blocks in use`);
    }
    this.stats.dataBlocksUsed = this.md.dataAllocated;
    return readable;
  }

  compareMetadataCounts(): void {
    for (let b = 0; b < this.nrMeta; b++) {
      const e = this.expected[b];
      const got = this.md.metadataCount(b);
      if (got !== e) {
        this.error('ECORRUPT', 'metadata space map', `metadata reference counts differ for block ${b}, expected ${e}, but got ${got}`, b);
      }
    }
  }

  /** Expected against actual data counts, window by window (the first was counted by the tree walks). */
  compareDataCounts(readable: Uint8Array): void {
    for (let start = 0; start < this.nrData; start += this.windowBlocks) {
      if (start > 0) this.countWindow(start);
      this.compareWindow(readable, start, Math.min(this.nrData, start + this.windowBlocks));
    }
  }

  /**
   * Compare [start, end) bitmap by bitmap. The space map's count of a block is its bitmap value when that is
   * below 3 (read here once per bitmap); a value of 3 (or a bitmap that cannot be read again) is asked of the
   * data space map block by block, which reads the ref-count tree.
   */
  private compareWindow(readable: Uint8Array, start: number, end: number): void {
    for (let j = Math.floor(start / ENTRIES_PER_BITMAP); j * ENTRIES_PER_BITMAP < end; j++) {
      if (!readable[j]) continue;
      const base = j * ENTRIES_PER_BITMAP;
      let vals: Uint8Array | null = null;
      try {
        vals = this.md.readBitmap(this.dataBitmapBlocks[j], Math.min(ENTRIES_PER_BITMAP, this.nrData - base));
      } catch {
        // read before, unreadable now: every count is asked of the data space map
      }
      const to = Math.min(end, base + ENTRIES_PER_BITMAP);
      for (let d = Math.max(start, base); d < to; d++) {
        const e = this.expectedData(d);
        let got = vals === null ? 3 : vals[d - base];
        if (got === 3) {
          try {
            got = this.md.dataCount(d);
          } catch (err) {
            this.caught(err, `data block ${d}`);
            continue;
          }
        }
        if (got !== e) {
          this.error('ECORRUPT', 'data space map', `data reference counts differ for block ${d}, expected ${e}, but got ${got}`);
        }
      }
    }
  }
}
