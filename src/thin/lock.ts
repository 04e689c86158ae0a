/**
 * One opener per pool. Within this process a registry of open pool directories; across processes a lock file
 * holding the owner's pid and process start time, created with O_EXCL. A lock whose owner is no longer running
 * (or whose pid now belongs to a different process) is stale and taken over, so a killed holder never keeps the
 * pool locked. No dependency: flock is not in node:fs. A lock taken over from a holder that died says so
 * (`tookOverStale`): that holder stopped without closing the pool, so it may have written data it never committed.
 */
import { closeSync, openSync, readFileSync, realpathSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ThinpoolError } from '../errors.js';

const openHere = new Set<string>();

/** Remove the lock file if it is there (unlinkSync, not rmSync: rmSync loads node's rimraf on every release). */
function removeLockFile(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

function alive(pid: number, started: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const now = startTime(pid);
  return now === '' || started === '' || now === started;
}

export interface PoolLock {
  release(): void;
  /** The lock file was left by a holder that is no longer running (it stopped without closing the pool). */
  tookOverStale: boolean;
}

/**
 * Take the pool's lock. A read-only opener in a directory it cannot write (a read-only mount, no permission)
 * still refuses a live writer's lock but goes on without creating one.
 */
export function lockPool(dir: string, opts: { readOnly?: boolean } = {}): PoolLock {
  const real = realpathSync(dir);
  if (openHere.has(real)) throw new ThinpoolError('EBUSY', `pool ${dir} is already open in this process`);
  const path = join(real, 'lock');
  let tookOverStale = false;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${process.pid} ${startTime(process.pid)}\n`);
      closeSync(fd);
      openHere.add(real);
      return {
        release: () => {
          openHere.delete(real);
          removeLockFile(path);
        },
        tookOverStale,
      };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (opts.readOnly && (code === 'EACCES' || code === 'EROFS' || code === 'EPERM')) {
        openHere.add(real);
        return {
          release: () => {
            openHere.delete(real);
          },
          tookOverStale,
        };
      }
      if (code !== 'EEXIST') throw new ThinpoolError('EIO', `cannot create ${path}: ${(e as Error).message}`, { cause: e });
    }
    let owner = '';
    try {
      owner = readFileSync(path, 'utf8').trim();
    } catch {
      continue;
    }
    const [pidText, started = ''] = owner.split(' ');
    const pid = Number(pidText);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid, started)) {
      throw new ThinpoolError('EBUSY', `pool ${dir} is open in process ${pid}`);
    }
    removeLockFile(path); // stale: its holder is gone
    tookOverStale = true;
  }
  throw new ThinpoolError('EBUSY', `cannot take the lock of pool ${dir}`);
}
