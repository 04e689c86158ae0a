// `thinpool serve` run the way README.md documents for a service: the bin itself (the sample systemd unit's
// ExecStart, as systemd runs it: no shell) and `exec` in a wrapper script. SIGTERM to the process the
// supervisor started must stop the server with exit 0, commit the pool and leave no process behind.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const work = mkdtempSync(join(tmpdir(), 'tp-service-'));
const binDir = join(work, 'bin');
const started: ChildProcess[] = [];

beforeAll(() => {
  // As `npm install -g thinpool` (or node_modules/.bin) links it.
  mkdirSync(binDir);
  symlinkSync(join(root, 'bin', 'thinpool.js'), join(binDir, 'thinpool'));
});

afterEach(() => {
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

/** pids of the live processes whose parent is pid. */
function children(pid: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** pids of live processes whose command line mentions text. */
function processesMentioning(text: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(text)) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

function newPool(name: string): string {
  const pool = join(work, name);
  const bin = join(binDir, 'thinpool');
  for (const argv of [
    ['init', pool, '--size', '64M'],
    ['create', pool, 'vol', '--size', '4M'],
  ]) {
    const r = spawnSync(bin, argv, { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  }
  return pool;
}

/** Start argv, wait for "serving ...", SIGTERM the started process, and return how it ended. */
async function serveAndTerminate(
  argv: string[],
  socket: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; pid: number }> {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env });
  started.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => {
    stdout += b.toString();
  });
  child.stderr!.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const ended = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const deadline = Date.now() + 30_000;
  while (!/^serving /m.test(stdout)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`serve did not start: ${stdout} ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  expect(existsSync(socket)).toBe(true);
  // The process the supervisor holds is the server: no child process to leave behind.
  expect(children(child.pid!)).toEqual([]);
  child.kill('SIGTERM');
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no exit 10 s after SIGTERM: ${stderr}`)), 10_000));
  const end = await Promise.race([ended, timeout]);
  return { ...end, stdout, stderr, pid: child.pid! };
}

describe('running thinpool serve as a service', () => {
  test('the sample systemd unit: ExecStart on the bin, KillSignal=SIGTERM; SIGTERM gives exit 0 and no process', async () => {
    const unit = readFileSync(join(root, 'docs', 'thinpool-serve.service'), 'utf8');
    expect(readFileSync(join(root, 'README.md'), 'utf8')).toContain(unit.slice(unit.indexOf('[Unit]')).trim());
    expect(unit).toMatch(/^KillSignal=SIGTERM$/m);
    const exec = /^ExecStart=(.*)$/m.exec(unit)![1].split(/\s+/);
    expect(exec[0]).toMatch(/\/thinpool$/);
    expect(exec[1]).toBe('serve');
    expect(exec).not.toContain('npx');
    // The unit's command line on this machine: the linked bin, a pool of ours, a socket instead of the fixed port.
    const pool = newPool('unit-pool');
    const socket = join(work, 'unit.sock');
    const argv = [
      join(binDir, 'thinpool'),
      'serve',
      pool,
      ...exec.slice(3).filter((a, i, all) => a !== '--listen' && all[i - 1] !== '--listen'),
      '--socket',
      socket,
    ];
    const r = await serveAndTerminate(argv, socket);
    expect(r, r.stderr).toMatchObject({ code: 0, signal: null });
    expect(processesMentioning(socket)).toEqual([]);
    expect(existsSync(`/proc/${r.pid}`)).toBe(false);
    const check = spawnSync(join(binDir, 'thinpool'), ['check', pool], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
  });

  test("a wrapper script that execs the bin: SIGTERM to the script's pid gives exit 0 and no process", async () => {
    const pool = newPool('script-pool');
    const socket = join(work, 'script.sock');
    const script = join(work, 'serve.sh');
    writeFileSync(script, `#!/bin/sh\nset -e\ncd "${work}"\nexec thinpool serve "${pool}" vol --socket "${socket}"\n`, { mode: 0o755 });
    const r = await serveAndTerminate([script], socket, { ...process.env, PATH: `${binDir}:${process.env.PATH}` });
    expect(r, r.stderr).toMatchObject({ code: 0, signal: null });
    expect(processesMentioning(socket)).toEqual([]);
  });
});
