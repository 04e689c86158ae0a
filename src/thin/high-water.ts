/**
 * The data high-water mark: a durable upper bound on the data blocks that have ever been written. Blocks at
 * or above it are still holes of the freshly created data file, so provisioning one needs no zeroing (dm-thin
 * zeroes every new block; with 64 KiB blocks and 4 KiB writes that is 16x the data). The mark is raised
 * durably, in steps, BEFORE data is written at or above it, so after a crash every block above the mark is
 * still pristine. Pools written by other tools have no mark: every block is zeroed when provisioned.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileDurable } from '../io/durable-file.js';

export interface HighWaterStore {
  /** The durable mark, or null when unknown (treat every block as possibly written). */
  read(): number | null;
  /** Durably record a new mark (only ever raised). */
  write(dblock: number): void;
}

export class MemoryHighWaterStore implements HighWaterStore {
  private v: number | null;
  constructor(initial: number | null = 0) {
    this.v = initial;
  }
  read(): number | null {
    return this.v;
  }
  write(dblock: number): void {
    this.v = dblock;
  }
}

export class FileHighWaterStore implements HighWaterStore {
  readonly path: string;
  constructor(dir: string) {
    this.path = join(dir, 'data.hwm');
  }
  read(): number | null {
    if (!existsSync(this.path)) return null;
    const n = Number(readFileSync(this.path, 'utf8').trim());
    return Number.isSafeInteger(n) && n >= 0 ? n : null;
  }
  write(dblock: number): void {
    writeFileDurable(this.path, `${dblock}\n`);
  }
}

/** Tracks which fresh data blocks still need zeroing. */
export class HighWater {
  private readonly store: HighWaterStore | undefined;
  /** Blocks >= pristineFrom have never been written. */
  private pristineFrom: number;
  private durable: number;
  private readonly step: number;

  constructor(store: HighWaterStore | undefined, step = 4096) {
    this.store = store;
    const v = store?.read() ?? null;
    this.pristineFrom = v === null ? Number.MAX_SAFE_INTEGER : v;
    this.durable = v === null ? Number.MAX_SAFE_INTEGER : v;
    this.step = step;
  }

  /**
   * Blocks at or above this were never written (the durable mark); MAX_SAFE_INTEGER when unknown. After an
   * unclean stop, data written but not committed lies below it.
   */
  get writtenBelow(): number {
    return this.durable;
  }

  /** Is dblock still a hole of the data file (reads zeros, needs no zeroing)? */
  isPristine(dblock: number): boolean {
    return dblock >= this.pristineFrom;
  }

  /** Call before writing any data into dblock. */
  beforeWrite(dblock: number): void {
    if (dblock >= this.durable) {
      this.durable = dblock + this.step;
      this.store!.write(this.durable);
    }
    if (dblock >= this.pristineFrom) this.pristineFrom = dblock + 1;
  }
}
