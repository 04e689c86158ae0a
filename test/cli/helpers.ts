// Running the CLI in-process and checking that failed commands leave a pool byte-for-byte unchanged.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { main } from '../../src/cli/main.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

class Sink extends Writable {
  chunks: Buffer[] = [];
  isTTY = false;
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.chunks.push(Buffer.from(chunk));
    cb();
  }
}

export async function cli(argv: string[], opts: { stdin?: string | Buffer; cwd?: string; tty?: boolean } = {}): Promise<CliResult> {
  const stdout = new Sink();
  const stderr = new Sink();
  stderr.isTTY = opts.tty === true;
  const stdin = opts.stdin === undefined ? Readable.from([]) : Readable.from([Buffer.from(opts.stdin)]);
  const code = await main(argv, { stdout, stderr, stdin, cwd: opts.cwd });
  const out = Buffer.concat(stdout.chunks);
  return { code, stdout: out.toString('utf8'), stderr: Buffer.concat(stderr.chunks).toString('utf8'), stdoutBytes: out };
}

export function tempDir(prefix = 'tp-cli-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** sha256 of every file in a pool directory (the lock file aside) and the list of names. */
export function hashPool(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return { '<missing>': '' };
  for (const f of readdirSync(dir).sort()) {
    if (f === 'lock') continue;
    const p = join(dir, f);
    const st = statSync(p);
    out[f] = st.isFile() ? `${st.size}:${createHash('sha256').update(readFileSync(p)).digest('hex')}` : 'dir';
  }
  return out;
}

/** Make dir read-only for this process (chattr +i as root, who ignores permission bits; chmod otherwise). */
export function makeReadOnly(dir: string): () => void {
  if (process.getuid?.() === 0) {
    const r = spawnSync('chattr', ['+i', dir]);
    if (r.status !== 0) throw new Error(`chattr +i ${dir} failed: ${r.stderr}`);
    return () => {
      spawnSync('chattr', ['-i', dir]);
    };
  }
  chmodSync(dir, 0o555);
  return () => chmodSync(dir, 0o755);
}

/** A live process that holds the pool's lock file (as another thinpool would). */
export function holdLock(dir: string): ChildProcess {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
  const started = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  writeFileSync(join(dir, 'lock'), `${child.pid} ${started}\n`);
  return child;
}

export function cleanup(dir: string): void {
  try {
    spawnSync('chattr', ['-R', '-i', dir], { stdio: 'ignore' });
  } catch { /* ignore */ }
  rmSync(dir, { recursive: true, force: true });
}

/** Bytes of a file range (for export comparisons). */
export function fileBytes(path: string): Buffer {
  return readFileSync(path);
}
