/**
 * Space policy of a pool (kept in the catalog's settings, committed with it): discard passdown, low-water
 * thresholds, auto-extend and what to do when the pool is full. Pure logic: the pool applies it.
 */
import { ThinpoolError } from '../errors.js';

export interface SpaceSettings {
  /** Release freed data blocks from the data file after the commit that freed them (dm-thin's default). */
  discardPassdown: boolean;
  /** Percentages of use at which a 'threshold' event fires, for data and metadata (LVM-like defaults). */
  thresholds: { data: number[]; metadata: number[] };
  /** Grow the data device by `percent` (at least one block) when its use reaches `atPercent`, up to maxBytes. */
  autoExtend: { enabled: boolean; atPercent: number; percent: number; maxBytes: number };
  /** When no data block is free and the pool cannot grow: fail at once, or (async writes) wait for space. */
  whenFull: 'error' | 'wait';
  waitTimeoutMs: number;
}

const DEFAULT_SPACE_SETTINGS: SpaceSettings = {
  discardPassdown: true,
  thresholds: { data: [80, 90, 95], metadata: [80, 90, 95] },
  autoExtend: { enabled: false, atPercent: 80, percent: 20, maxBytes: 0 },
  whenFull: 'error',
  waitTimeoutMs: 60_000,
};

export function mergeSpaceSettings(stored: unknown, patch: Partial<SpaceSettings> = {}): SpaceSettings {
  const s = (stored ?? {}) as Partial<SpaceSettings>;
  const out: SpaceSettings = {
    ...DEFAULT_SPACE_SETTINGS,
    ...s,
    ...patch,
    thresholds: { ...DEFAULT_SPACE_SETTINGS.thresholds, ...s.thresholds, ...patch.thresholds },
    autoExtend: { ...DEFAULT_SPACE_SETTINGS.autoExtend, ...s.autoExtend, ...patch.autoExtend },
  };
  for (const list of [out.thresholds.data, out.thresholds.metadata]) {
    if (!Array.isArray(list) || list.some((p) => !(p > 0 && p <= 100))) {
      throw new ThinpoolError('EINVAL', 'thresholds are percentages in (0, 100]');
    }
    list.sort((a, b) => a - b);
  }
  const ae = out.autoExtend;
  if (!(ae.percent > 0) || !(ae.atPercent > 0 && ae.atPercent <= 100) || !(ae.maxBytes >= 0)) {
    throw new ThinpoolError('EINVAL', 'auto-extend needs percent > 0, atPercent in (0, 100] and maxBytes >= 0');
  }
  if (out.whenFull !== 'error' && out.whenFull !== 'wait') throw new ThinpoolError('EINVAL', `whenFull is 'error' or 'wait'`);
  return out;
}

export interface ThresholdEvent {
  resource: 'data' | 'metadata';
  /** The threshold crossed (percent). */
  threshold: number;
  usedBlocks: number;
  totalBlocks: number;
}

/** The highest threshold (percent) that `used` of `total` has reached, or 0. */
export function thresholdLevel(thresholds: number[], used: number, total: number): number {
  const pct = total === 0 ? 100 : (100 * used) / total;
  let reached = 0;
  for (const t of thresholds) if (pct >= t) reached = t;
  return reached;
}

/** Remembers the highest threshold reported per resource, so each crossing is reported once. */
export class ThresholdTracker {
  private level = { data: 0, metadata: 0 };

  /** The threshold newly crossed upward, if any; falling below resets so a later rise reports again. */
  update(resource: 'data' | 'metadata', thresholds: number[], used: number, total: number): number | null {
    const reached = thresholdLevel(thresholds, used, total);
    const prev = this.level[resource];
    this.level[resource] = reached;
    return reached > prev ? reached : null;
  }

  current(resource: 'data' | 'metadata'): number {
    return this.level[resource];
  }
}
