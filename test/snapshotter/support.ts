// Shared helpers of the containerd snapshotter tests: what the machine must offer, the snapshotter as a child
// process (`bin/thinpool.js snapshotter serve`, never in the test process: a kernel mount of a volume served by
// the test's own event loop would deadlock a synchronous file call), and counting what could leak (loop devices,
// FUSE mounts, processes) under one test's own temp directory, since other tests run on the machine at once.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { needPrerequisite, needTool } from '../support/tools.js';

export const ROOT = join(import.meta.dirname, '..', '..');
export const CLI = join(ROOT, 'bin', 'thinpool.js');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Null when the snapshotter can run here (tools, root, FUSE, loop devices), else why not. */
export function snapshotterUnavailable(extra: [string, string][] = []): string | null {
  const tools: [string, string][] = [
    ['nbdfuse', 'libnbd-bin'],
    ['fusermount3', 'fuse3'],
    ['mkfs.ext4', 'e2fsprogs'],
    ['debugfs', 'e2fsprogs'],
    ['losetup', 'mount'],
    ...extra,
  ];
  for (const [t, p] of tools) if (!needTool(t, p)) return `${t} not installed (Debian package ${p})`;
  const what = 'kernel mounts of snapshots';
  if (!needPrerequisite(what, process.getuid?.() === 0 ? undefined : 'needs root (loop devices and mounts)'))
    return 'needs root (loop devices and mounts)';
  if (!needPrerequisite(what, existsSync('/dev/fuse') ? undefined : 'no /dev/fuse (FUSE not available here)'))
    return 'no /dev/fuse (FUSE not available here)';
  if (!needPrerequisite(what, existsSync('/dev/loop-control') ? undefined : 'no /dev/loop-control (no loop devices here)'))
    return 'no /dev/loop-control (no loop devices here)';
  return null;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a program asynchronously; killed (SIGKILL) after timeoutMs. */
export function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const t = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120000);
    child.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export async function runOk(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code ?? r.signal}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The thinpool CLI (built dist/) as a child process. */
export function thinpool(args: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], opts);
}

export interface Leaks {
  loops: string[];
  fuseMounts: string[];
  mounts: string[];
  processes: string[];
}

/** Loop devices backed by files under dir, mounts under dir (FUSE ones apart), processes naming dir. */
export function leaksUnder(dir: string): Leaks {
  const loops: string[] = [];
  for (const n of readdirSync('/sys/block').filter((x) => x.startsWith('loop'))) {
    try {
      const b = readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').trim();
      if (b.startsWith(dir)) loops.push(`${n}:${b}`);
    } catch {
      /* not attached */
    }
  }
  const fuseMounts: string[] = [];
  const mounts: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f.length < 5 || !f[4].startsWith(dir)) continue;
    if (line.includes(' - fuse')) fuseMounts.push(f[4]);
    else mounts.push(f[4]);
  }
  const processes: string[] = [];
  for (const p of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    if (Number(p) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      const state = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]?.[0];
      if (cmd.includes(dir) && state !== 'Z') processes.push(`${p} ${cmd}`);
    } catch {
      /* gone */
    }
  }
  return { loops, fuseMounts, mounts, processes };
}

/** Poll until nothing is left under dir (loop autoclear and process exit are asynchronous), or give up. */
export async function waitNoLeaks(dir: string, ms = 15000): Promise<Leaks> {
  const deadline = Date.now() + ms;
  let l = leaksUnder(dir);
  while (Date.now() < deadline && l.loops.length + l.fuseMounts.length + l.mounts.length + l.processes.length > 0) {
    await sleep(100);
    l = leaksUnder(dir);
  }
  return l;
}

/** `thinpool snapshotter serve` as a child process. */
export class SnapshotterProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly pool: string,
    readonly socket: string,
    args: string[] = [],
  ) {
    this.child = spawn(process.execPath, [CLI, 'snapshotter', 'serve', pool, '--address', socket, '--verbose', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (d) => {
      this.stdout += d;
    });
    this.child.stderr!.on('data', (d) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Resolves once it prints that it serves (it then accepts connections). */
  async ready(timeoutMs = 60000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stdout.includes('serving containerd snapshots')) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`snapshotter exited early: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`snapshotter not ready within ${timeoutMs} ms: ${this.stderr}`);
      await sleep(20);
    }
  }

  /** SIGTERM and wait (bounded); returns the exit status. */
  async stop(timeoutMs = 60000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const r = await this.exited;
    clearTimeout(t);
    return r;
  }

  kill(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.kill('SIGKILL');
    return this.exited;
  }
}

/** thin_check (thin-provisioning-tools) and `thinpool check` (every reference count) on a closed pool. */
export async function checkPool(poolDir: string): Promise<string[]> {
  const problems: string[] = [];
  const own = await thinpool(['check', poolDir]);
  if (own.code !== 0) problems.push(`thinpool check ${poolDir} exited ${own.code}: ${own.stdout}${own.stderr}`);
  if (needTool('thin_check', 'thin-provisioning-tools')) {
    const tc = await run('thin_check', [join(poolDir, 'metadata')]);
    if (tc.code !== 0) problems.push(`thin_check ${poolDir}/metadata exited ${tc.code}: ${tc.stdout}${tc.stderr}`);
  }
  return problems;
}

/**
 * The snapshot names the snapshotter itself has (its List, straight over its socket): containerd's own list
 * drops a snapshot before its garbage collection removes it from the snapshotter.
 */
export async function backendSnapshots(socket: string): Promise<string[]> {
  const client = (await snapshotsClient(socket)) as unknown as { List(req: unknown): NodeJS.EventEmitter; close(): void };
  try {
    return await new Promise<string[]>((resolve, reject) => {
      const names: string[] = [];
      const call = client.List({ snapshotter: 'thinpool', filters: [] });
      call.on('data', (m: { info: { name: string }[] }) => names.push(...m.info.map((i) => i.name)));
      call.on('error', reject);
      call.on('end', () => resolve(names));
    });
  } finally {
    client.close();
  }
}

/** A gRPC client of containerd's Snapshots service on the snapshotter's socket (its methods by name). */
export async function snapshotsClient(socket: string): Promise<Record<string, (...a: unknown[]) => unknown> & { close(): void }> {
  const grpc = await import('@grpc/grpc-js');
  const loader = await import('@grpc/proto-loader');
  const def = loader.loadSync('containerd/services/snapshots/v1/snapshots.proto', {
    includeDirs: [join(ROOT, 'src', 'snapshotter', 'proto')],
    keepCase: true,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    containerd: {
      services: {
        snapshots: { v1: { Snapshots: new (a: string, c: unknown) => Record<string, (...a: unknown[]) => unknown> & { close(): void } } };
      };
    };
  };
  return new pkg.containerd.services.snapshots.v1.Snapshots(`unix://${socket}`, grpc.credentials.createInsecure());
}
