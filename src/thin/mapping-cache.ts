/**
 * A cache of recent data-block lookups for reads (virtual block -> data block or -1), so a read that hits it
 * does not walk the mapping tree.
 *
 * Contract:
 * - Entries are tagged with a generation: a number ThinMetadata gives each device and replaces by a fresh one
 *   (from one counter per metadata, never reused) whenever that device's mappings or sharing may change
 *   (insert, remove, snapshot of it, rollback, create, delete) and gives every device afresh on a reload
 *   (open, abort). An entry answers only for its own generation, so a change makes all of the device's entries
 *   stale at once, in constant time, and an id reused by a new device never sees the old device's entries.
 * - Direct-mapped: one slot per (generation, vblock) hash; a fill overwrites whatever was there. Memory is
 *   fixed at open (32 bytes an entry, all four numbers of an entry in one cache line).
 * - Only the data block is kept (no time, no sharing): the write path always looks up the tree.
 * - Capacity 0 turns the cache off (every lookup walks the tree).
 */

/** Entries of the default cache (1 MiB): the random-read working set of 2 GiB of 64 KiB blocks. */
export const DEFAULT_MAPPING_CACHE_ENTRIES = 32768;

const STRIDE = 4; // generation, vblock, dblock, (pad to 32 bytes)

export class MappingCache {
  readonly entries: number;
  private readonly mask: number;
  private readonly t: Float64Array;
  private nextGen = 1;

  /** entries: rounded down to a power of two; 0 (or less) turns the cache off. */
  constructor(entries: number) {
    const n = entries >= 1 ? 2 ** Math.floor(Math.log2(Math.min(entries, 1 << 24))) : 0;
    this.entries = n;
    this.mask = n - 1;
    this.t = new Float64Array(n * STRIDE); // generation 0 is never handed out: all slots start empty
  }

  /** A generation never handed out before by this cache. */
  fresh(): number {
    return this.nextGen++;
  }

  /**
   * The cached data block of vblock under generation gen, else the result of walk(vblock) (stored).
   * With the cache off, walk(vblock).
   */
  get(gen: number, vblock: number, root: number, walk: (root: number, vblock: number) => number): number {
    if (this.entries === 0) return walk(root, vblock);
    const t = this.t;
    const i = ((Math.imul(gen, 0x9e3779b1) ^ vblock) & this.mask) * STRIDE;
    if (t[i] === gen && t[i + 1] === vblock) return t[i + 2];
    const d = walk(root, vblock);
    t[i] = gen;
    t[i + 1] = vblock;
    t[i + 2] = d;
    return d;
  }
}
