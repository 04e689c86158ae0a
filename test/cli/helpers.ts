// Running the CLI in-process and checking that failed commands leave a pool byte-for-byte unchanged.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { expect } from 'vitest';
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
  } catch {
    /* ignore */
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Bytes of a file range (for export comparisons). */
export function fileBytes(path: string): Buffer {
  return readFileSync(path);
}

/** A sparse copy of a pool directory under root (`cp -a --sparse=always`), named copy0, copy1, ... */
export function poolCopier(root: string): (src: string) => string {
  let copies = 0;
  return (src) => {
    const dst = join(root, `copy${copies++}`);
    const r = spawnSync('cp', ['-a', '--sparse=always', src, dst]);
    if (r.status !== 0) throw new Error(String(r.stderr));
    return dst;
  };
}

/** Invert one byte of a file in place (damage that checksums catch). */
export function flipByte(path: string, pos: number): void {
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, pos);
  b[0] ^= 0xff;
  writeSync(fd, b, 0, 1, pos);
  closeSync(fd);
}

/**
 * A failed command's stderr: the exit status, one line starting "thinpool CMD: " (cmd '' for errors before a
 * command is known), no raw control characters, no stack trace, and the pattern if given.
 */
export function expectOneLineError(r: CliResult, exit: number, cmd: string, pattern?: RegExp): void {
  expect(r.code, r.stderr).toBe(exit);
  expect(r.stderr.endsWith('\n'), JSON.stringify(r.stderr)).toBe(true);
  expect(r.stderr.trimEnd().includes('\n'), JSON.stringify(r.stderr)).toBe(false);
  expect(r.stderr.startsWith(`thinpool ${cmd}: `) || (cmd === '' && r.stderr.startsWith('thinpool')), r.stderr).toBe(true);
  // eslint-disable-next-line no-control-regex
  expect(r.stderr.trimEnd(), JSON.stringify(r.stderr)).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  if (pattern) expect(r.stderr).toMatch(pattern);
}

export type SharedCond =
  | 'no such directory'
  | 'not a pool'
  | 'locked'
  | 'corrupt superblock'
  | 'truncated metadata'
  | 'read-only directory';

/** The shared conditions, in the order the suites try them. */
export const SHARED_CONDS: readonly SharedCond[] = [
  'no such directory',
  'not a pool',
  'locked',
  'corrupt superblock',
  'truncated metadata',
  'read-only directory',
];

export function isSharedCond(cond: string): cond is SharedCond {
  return (SHARED_CONDS as readonly string[]).includes(cond);
}

/**
 * What a command does on a pool in a shared condition: it fails with that condition's one-line error, checked by
 * `fails` (the suite's own check, which also finds the pool unchanged), except that a command that only reads
 * works in a read-only directory and leaves the pool as it was. `damaged`: the error expected for corrupt or
 * truncated metadata.
 */
export async function expectUnderCondition(
  cond: SharedCond,
  pool: string,
  argv: string[],
  writes: boolean,
  fails: (pattern: RegExp) => Promise<unknown>,
  damaged: RegExp = /damaged|superblock/,
): Promise<void> {
  switch (cond) {
    case 'no such directory':
      await fails(/no pool at .*(no such (file or )?directory)/);
      return;
    case 'not a pool':
      await fails(/is not a thinpool pool \(no metadata file\)/);
      return;
    case 'locked':
      await fails(/is open in process \d+: wait for it to finish \(or stop it\) and retry/);
      return;
    case 'corrupt superblock':
    case 'truncated metadata':
      await fails(damaged);
      return;
    case 'read-only directory': {
      if (writes) {
        await fails(/is not writable .*: this command changes the pool/);
        return;
      }
      const before = hashPool(pool);
      const r = await cli(argv);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(hashPool(pool)).toEqual(before);
    }
  }
}

/**
 * Pools in the conditions every command is tried against, made from copies of master: a missing directory, a
 * directory that is no pool, a pool locked by a live process (added to children), a corrupt superblock, a
 * truncated metadata file and a read-only directory. Call undo() to make the read-only one writable again.
 */
export function conditionPools(
  root: string,
  copy: () => string,
  children: ChildProcess[],
): { pools: Map<string, string>; undo: () => void } {
  const pools = new Map<string, string>();
  pools.set('no such directory', join(root, 'does-not-exist'));
  const empty = join(root, 'empty-dir');
  mkdirSync(empty, { recursive: true });
  pools.set('not a pool', empty);
  const locked = copy();
  children.push(holdLock(locked));
  pools.set('locked', locked);
  const sb = copy();
  flipByte(join(sb, 'metadata'), 100);
  pools.set('corrupt superblock', sb);
  const tr = copy();
  truncateSync(join(tr, 'metadata'), 8192);
  pools.set('truncated metadata', tr);
  const ro = copy();
  const undo = makeReadOnly(ro);
  pools.set('read-only directory', ro);
  return { pools, undo };
}
