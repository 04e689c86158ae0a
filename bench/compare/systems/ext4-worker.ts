/**
 * The worker thread behind the "ext4 on thinpool via NBD" system (systems/ext4.ts). It owns the pool and the
 * NBD servers: the kernel's ext4 reaches the volume through loop -> nbdfuse -> NBD -> this thread, so the main
 * thread can do plain synchronous file I/O on the mounts (and block in it) while this event loop answers.
 * Requests come on a MessagePort; the reply is posted back and the shared flag set, which the main thread
 * waits on with Atomics.wait (see Ext4Host.call).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { workerData, type MessagePort } from 'node:worker_threads';
import { ThinPool } from '../../../src/index.js';
import { mountExt4, type MountedVolume } from '../../../src/nbd/kernel-mount.js';

interface Data {
  port: MessagePort;
  flag: Int32Array;
}
const { port, flag } = workerData as Data;

let pool: ThinPool | undefined;
const mounts = new Map<string, MountedVolume>();

/** Bytes this thread (the NBD server and the pool) caused to be written to storage. */
function threadWritten(): number {
  const s = readFileSync('/proc/thread-self/io', 'utf8');
  const w = Number(/write_bytes:\s*(\d+)/.exec(s)?.[1] ?? NaN);
  const c = Number(/cancelled_write_bytes:\s*(\d+)/.exec(s)?.[1] ?? 0);
  return w - c;
}

function thePool(): ThinPool {
  if (!pool || pool.isClosed) throw new Error('no pool open');
  return pool;
}

type Req =
  | { op: 'format'; dir: string; size: number; blockSize: number; metadataSize?: number }
  | { op: 'create'; name: string; size: number }
  | { op: 'snapshot'; from: string; to: string; commit: boolean }
  | { op: 'commit' }
  | { op: 'delete'; name: string }
  | { op: 'mount'; name: string; dir: string; mkfs: boolean; mkfsArgs: string[] }
  | { op: 'unmount'; dir: string }
  | { op: 'written' }
  | { op: 'usedBytes' }
  | { op: 'close' };

async function handle(r: Req): Promise<unknown> {
  switch (r.op) {
    case 'format':
      if (pool && !pool.isClosed) throw new Error('a pool is already open');
      pool = ThinPool.formatSync(r.dir, {
        size: r.size,
        blockSize: r.blockSize,
        ...(r.metadataSize ? { metadataSize: r.metadataSize } : {}),
      });
      return null;
    case 'create':
      thePool().createThinSync(r.name, { size: r.size });
      thePool().commitSync();
      return null;
    case 'snapshot':
      thePool().snapshotSync(r.from, r.to);
      if (r.commit) thePool().commitSync();
      return null;
    case 'commit':
      thePool().commitSync();
      return null;
    case 'delete':
      thePool().deleteSync(r.name);
      thePool().commitSync();
      return null;
    case 'mount': {
      const m = await mountExt4(thePool(), r.name, { dir: r.dir, mkfs: r.mkfs, mkfsArgs: r.mkfsArgs });
      mounts.set(r.dir, m);
      // The nbdfuse file behind the loop device: lets the main thread undo everything on Ctrl-C by itself.
      let back = '';
      try {
        back = execFileSync('losetup', ['-n', '-O', 'BACK-FILE', '--list', m.loop], { encoding: 'utf8' }).trim();
      } catch {
        /* best effort */
      }
      return { loop: m.loop, back };
    }
    case 'unmount': {
      const m = mounts.get(r.dir);
      if (!m) return null;
      mounts.delete(r.dir);
      await m.unmount();
      return null;
    }
    case 'written':
      return threadWritten();
    case 'usedBytes': {
      const p = thePool();
      return p.status().dataBlocks.used * p.blockSize;
    }
    case 'close':
      for (const [d, m] of [...mounts]) {
        mounts.delete(d);
        await m.unmount().catch(() => undefined);
      }
      if (pool && !pool.isClosed) pool.closeSync();
      pool = undefined;
      return null;
  }
}

port.on('message', (r: Req) => {
  handle(r)
    .then(
      (value) => port.postMessage({ value }),
      (e: unknown) => port.postMessage({ error: e instanceof Error ? e.message : String(e) }),
    )
    .finally(() => {
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
    });
});
