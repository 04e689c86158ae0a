/** Figures of a run: one per (scenario, case, metric, system), a median of repeated runs with its spread. */
import type { Chart } from './svg.js';
import { summarize } from './stats.js';

export const SYSTEMS = ['thinpool', 'ext4-nbd', 'overlayfs', 'union', 'qcow2', 'raw', 'ctrd-thinpool', 'ctrd-overlayfs'] as const;
export type System = (typeof SYSTEMS)[number];

export const SYSTEM_LABEL: Record<System, string> = {
  thinpool: 'thinpool',
  'ext4-nbd': 'ext4 on thinpool via NBD',
  overlayfs: 'kernel overlayfs',
  union: 'union (userspace)',
  qcow2: 'qcow2 chain',
  raw: 'raw file',
  'ctrd-thinpool': 'containerd + thinpool',
  'ctrd-overlayfs': 'containerd + overlayfs',
};

/** The system a row's ratios are taken against: thinpool, or for containerd's rows containerd on thinpool. */
export const BASELINES: readonly System[] = ['thinpool', 'ctrd-thinpool'];

export type Unit = 'ms' | 'µs' | 'bytes' | 'ops/s' | 'MiB/s' | 'ratio';

export interface Figure {
  scenario: string;
  case: string;
  metric: string;
  unit: Unit;
  system: System;
  median: number | null;
  min?: number;
  max?: number;
  runs?: number[];
  skipped?: string;
  note?: string;
}

export interface ScenarioResult {
  name: string;
  title: string;
  ms: number;
  figures: Figure[];
  charts: { file: string; chart: Chart }[];
  notes: string[];
}

export type Mode = 'quick' | 'default' | 'full';

export interface Ctx {
  work: string;
  mode: Mode;
  /** Repetitions per measured case (medians are over these). */
  reps: number;
  /** Why a system cannot run here (absent: it runs). */
  unavailable: Partial<Record<System, string>>;
  log(msg: string): void;
}

export class Recorder {
  readonly figures: Figure[] = [];
  readonly charts: { file: string; chart: Chart }[] = [];
  readonly notes: string[] = [];
  constructor(
    readonly scenario: string,
    private readonly ctx: Ctx,
  ) {}

  add(kase: string, metric: string, unit: Unit, system: System, runs: number[], note?: string): void {
    const s = summarize(runs);
    this.figures.push({
      scenario: this.scenario,
      case: kase,
      metric,
      unit,
      system,
      median: s.median,
      min: s.min,
      max: s.max,
      runs: s.runs,
      ...(note ? { note } : {}),
    });
  }

  skip(kase: string, metric: string, unit: Unit, system: System, reason: string): void {
    this.figures.push({ scenario: this.scenario, case: kase, metric, unit, system, median: null, skipped: reason });
  }

  /** Is system runnable here? If not, its figures for these (case, metric, unit) rows say why. */
  runs(system: System, rows: [string, string, Unit][]): boolean {
    const why = this.ctx.unavailable[system];
    if (why === undefined) return true;
    for (const [k, m, u] of rows) this.skip(k, m, u, system, why);
    return false;
  }

  get(kase: string, metric: string, system: System): number | null {
    return this.figures.find((f) => f.case === kase && f.metric === metric && f.system === system)?.median ?? null;
  }

  chart(file: string, chart: Chart): void {
    this.charts.push({ file, chart });
  }

  note(s: string): void {
    this.notes.push(s);
  }
}

export interface Scenario {
  name: string;
  title: string;
  run(ctx: Ctx, rec: Recorder): void;
}
