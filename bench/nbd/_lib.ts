/**
 * What the NBD benches (speed.ts, tls.ts) share: their command-line settings, child processes and CPU
 * accounting (not a bench itself: `_` files are helpers).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export const args = process.argv.slice(2);
export const QUICK = args.includes('--quick');
/** `--NAME=N`, or `def`. */
export const arg = (name: string, def: number): number => {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.split('=')[1]) : def;
};
export const ROUNDS = arg('rounds', QUICK ? 1 : 3);
export const RUNTIME = arg('runtime', QUICK ? 1 : 4);
export const MiB = 1024 * 1024;
/** Both benches' exports: 256 MiB. */
export const SIZE = 256 * MiB;

export function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Run a command to its end, collecting its output. */
export function runAsync(cmd: string, argv: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => {
      stdout += d;
    });
    c.stderr.on('data', (d) => {
      stderr += d;
    });
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The standard output of a command that must succeed (else an error with its standard error). */
export async function must(cmd: string, argv: string[]): Promise<string> {
  const r = await runAsync(cmd, argv);
  if (r.code !== 0) throw new Error(`${cmd} ${argv.join(' ')}: exit ${r.code}\n${r.stderr}`);
  return r.stdout;
}

/** CPU time (user + system, in seconds) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
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
