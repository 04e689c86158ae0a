/**
 * An NBD export shown as a file by `nbdfuse` (Debian libnbd-bin), as the kernel sees it: loop devices backed by
 * that file, the FUSE mount it lives in, and the one teardown order both users follow (kernel-mount.ts for tests
 * and benchmarks, snapshotter/exports.ts for containerd).
 *
 * Teardown order (`stopNbdfuse`), each step bounded:
 * 1. the caller has detached or waited out every loop device on the file (`loopsBacking` says which remain);
 * 2. `fusermount3 -u` on the mount, retried while the kernel still holds the file (a loop device being let go,
 *    an autoclear detach in flight), then lazily (`-z`) if it never succeeds or `lazy` was asked for;
 * 3. nbdfuse exits by itself once unmounted; if not, SIGTERM, then SIGKILL.
 * After it, nothing is mounted at or under the mount point, so the directory can be removed. A SIGKILLed nbdfuse
 * leaves its mount behind ("transport endpoint is not connected"): that is why step 2 always ends lazily.
 *
 * Every child is started asynchronously (never spawnSync): a FUSE unmount may need this process's event loop to
 * answer NBD requests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Run a command; never rejects: exit code (null if killed, -1 if it could not start) and standard error. */
export function runTool(cmd: string, args: string[], timeoutMs = 30000): Promise<{ code: number | null; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('error', (e) => {
      clearTimeout(t);
      resolve({ code: -1, err: e.message });
    });
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, err: err.trim() });
    });
  });
}

/** Loop devices (e.g. "loop3") whose backing file is one of the given paths, by path. */
export function loopsBacking(files: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let names: string[] = [];
  try {
    names = readdirSync('/sys/block').filter((n) => n.startsWith('loop'));
  } catch {
    return out;
  }
  const want = new Set(files);
  for (const n of names) {
    let backing: string;
    try {
      backing = readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').trim();
    } catch {
      continue; // not attached
    }
    if (want.has(backing)) out.set(backing, [...(out.get(backing) ?? []), n]);
  }
  return out;
}

/** True while the loop device (e.g. "/dev/loop3" or "loop3") is attached to a backing file. */
export function loopAttached(loop: string): boolean {
  const name = loop.replace(/^\/dev\//, '');
  try {
    readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8');
    return true;
  } catch {
    return false;
  }
}

/** Mount points (from /proc/self/mountinfo) at or under dir. */
export function mountsUnder(dir: string): string[] {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4])
      .filter((p): p is string => p !== undefined)
      .map((p) => p.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
      .filter((p) => p === dir || p.startsWith(`${dir}/`));
  } catch {
    return [];
  }
}

export function exited(c: ChildProcess): boolean {
  return c.exitCode !== null || c.signalCode !== null;
}

/** Wait up to ms for the child to exit; true if it has. */
export async function waitExit(c: ChildProcess, ms: number): Promise<boolean> {
  if (exited(c)) return true;
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      c.off('exit', done);
      resolve(false);
    }, ms);
    function done() {
      clearTimeout(t);
      resolve(true);
    }
    c.once('exit', done);
  });
}

/** Wait (bounded) until the loop device has let go of its backing file; true if it has. */
export async function waitLoopDetached(loop: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (loopAttached(loop)) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

/**
 * Steps 2 and 3 of the teardown order above: unmount nbdfuse's mount at mnt (retried for up to retryMs, lazily
 * at once with `lazy`, lazily in the end if it will not go) and see the child exit (SIGTERM, then SIGKILL).
 * Returns what went wrong on the way (empty when the plain unmount worked), for the caller's log.
 */
export async function stopNbdfuse(child: ChildProcess, mnt: string, opts: { lazy?: boolean; retryMs?: number } = {}): Promise<string[]> {
  const notes: string[] = [];
  const deadline = Date.now() + (opts.retryMs ?? 10000);
  while (mountsUnder(mnt).length > 0) {
    const r = await runTool('fusermount3', ['-u', ...(opts.lazy ? ['-z'] : []), mnt]);
    if (r.code === 0 || mountsUnder(mnt).length === 0) break;
    if (Date.now() > deadline) {
      notes.push(`fusermount3 -u ${mnt}: ${r.err}; unmounted lazily`);
      await runTool('fusermount3', ['-u', '-z', mnt]);
      break;
    }
    await sleep(20);
  }
  if (!(await waitExit(child, 5000))) {
    notes.push('nbdfuse did not exit after its unmount: SIGTERM');
    child.kill('SIGTERM');
    if (!(await waitExit(child, 2000))) {
      child.kill('SIGKILL');
      await waitExit(child, 5000);
    }
  }
  // A killed nbdfuse leaves its mount behind; nothing may stay mounted under a directory about to be removed.
  if (mountsUnder(mnt).length > 0) await runTool('fusermount3', ['-u', '-z', mnt]);
  return notes;
}
