// Shared helpers of the NBD tests: pools in temp dirs, a server in this process, clients as child processes.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ThinPool } from '../../src/thin/pool.js';
import { NbdServer, type NbdServerOptions } from '../../src/nbd/server.js';

export const MiB = 1024 * 1024;

export function tempDir(prefix = 'tp-nbd-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Served {
  server: NbdServer;
  uri: string;
  port: number;
  /** URI of a named export. */
  at(name: string): string;
}

export async function serveTcp(pool: ThinPool, opts: NbdServerOptions = {}): Promise<Served> {
  const server = new NbdServer(pool, opts);
  const a = await server.listen({ host: '127.0.0.1', port: 0 });
  return { server, uri: a.uri, port: a.port!, at: (n) => `${a.uri}/${n}` };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run a program without blocking the event loop (the server under test lives in this process, so a
 * spawnSync would deadlock it). Kills the child after timeoutMs.
 */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const t = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60000);
    child.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** run() that throws with the output when the exit status is not 0. */
export async function runOk(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** A file pool with one volume. */
export function filePool(dir: string, volumes: { name: string; size: number }[], poolSize = 512 * MiB): ThinPool {
  const pool = ThinPool.formatSync(join(dir, 'pool'), { size: poolSize });
  for (const v of volumes) pool.createThinSync(v.name, { size: v.size });
  pool.commitSync();
  return pool;
}
