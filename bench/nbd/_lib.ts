/**
 * What the NBD benches (speed.ts, tls.ts) share: their command-line settings (`--NAME=VALUE`) and child
 * processes; medians and CPU time come from bench/compare/lib/stats.ts, commands run through
 * test/nbd/support.ts (not a bench itself: `_` files are helpers).
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { runOk } from '../../test/nbd/support.js';

export { median, processCpuSeconds } from '../compare/lib/stats.js';

export const args = process.argv.slice(2);
export const QUICK = args.includes('--quick');
/** `--NAME=N`, or `def`. */
export const arg = (name: string, def: number): number => {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.split('=')[1]) : def;
};
/** `--NAME=TEXT`, or undefined. */
export const flag = (name: string): string | undefined => args.find((x) => x.startsWith(`--${name}=`))?.slice(name.length + 3);
export const ROUNDS = arg('rounds', QUICK ? 1 : 3);
export const RUNTIME = arg('runtime', QUICK ? 1 : 4);
export const MiB = 1024 * 1024;
/** Both benches' exports: 256 MiB. */
export const SIZE = 256 * MiB;

export function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

/** The standard output of a command that must succeed (else an error with its output); fio runs for --runtime. */
export function must(cmd: string, argv: string[]): Promise<string> {
  return runOk(cmd, argv, { timeoutMs: 3_600_000 });
}

/** Stop what a bench started: its children (SIGTERM, waiting for each to exit) and daemons known by pid. */
export async function stopAll(children: ChildProcess[], pids: number[]): Promise<void> {
  for (const c of children) {
    c.kill('SIGTERM');
    if (c.exitCode === null) await new Promise((r) => c.once('exit', r));
  }
  for (const p of pids) {
    try {
      process.kill(p, 'SIGTERM');
    } catch {
      // already gone
    }
  }
}

/** One measurement of a case on a system: its rate and the server's CPU per unit of work. */
export interface BenchCase<S extends string> {
  name: string;
  run(system: S): Promise<[number, number]>;
}

/** Each case's rates and CPU figures, per system, one entry per round. */
export type RoundResults<S extends string> = Map<string, Record<S, { v: number[]; cpu: number[] }>>;

/**
 * `rounds` rounds of every case on every system, the systems taking turns at going first (rotated each round, so
 * none is always measured on a cooler or warmer machine); a dot on stderr after each case.
 */
export async function runRounds<S extends string>(cases: BenchCase<S>[], systems: S[], rounds: number): Promise<RoundResults<S>> {
  const res: RoundResults<S> = new Map();
  for (let round = 0; round < rounds; round++) {
    for (const c of cases) {
      const order = systems.map((_, i) => systems[(i + round) % systems.length]);
      const r =
        res.get(c.name) ??
        (Object.fromEntries(systems.map((s) => [s, { v: [] as number[], cpu: [] as number[] }])) as unknown as Record<
          S,
          { v: number[]; cpu: number[] }
        >);
      for (const s of order) {
        const [v, cpu] = await c.run(s);
        r[s].v.push(v);
        r[s].cpu.push(cpu);
      }
      res.set(c.name, r);
      process.stderr.write('.');
    }
  }
  process.stderr.write('\n');
  return res;
}
