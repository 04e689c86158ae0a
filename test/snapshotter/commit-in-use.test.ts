// Commit of a snapshot whose filesystem outlives its unmount. A process that enters a new mount namespace while a
// snapshot is mounted keeps a copy of that mount: unmounting it here then does not shut the filesystem down, its
// loop device stays attached, and its latest changes may still be only in memory. Commit must still make the
// committed snapshot hold what the mount showed (the snapshotter writes the filesystem out), so a child prepared
// from it sees every file. (The likely cause of containerd's 128LayersMount case failing once in CI: a test
// running containers at the same time copies the mount tree.) Through `thinpool snapshotter serve` in its own process
// and its gRPC socket; everything started is stopped by pid; nothing is left under the test's directory.
import { execSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { needTool } from '../support/tools.js';
import {
  SnapshotterProcess,
  checkPool,
  leaksUnder,
  run,
  snapshotsClient,
  snapshotterUnavailable,
  thinpool,
  waitNoLeaks,
} from './support.js';

const reason =
  snapshotterUnavailable([['unshare', 'util-linux']]) ?? (needTool('thin_check', 'thin-provisioning-tools') ? null : 'thin_check missing');
if (reason) console.warn(`skipping commit of a snapshot still mounted elsewhere: ${reason}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Mount {
  type: string;
  source: string;
  options: string[];
}
type Unary = (req: unknown, cb: (e: Error | null, r: { mounts?: Mount[] }) => void) => void;

async function client(socket: string) {
  const c = (await snapshotsClient(socket)) as unknown as Record<string, Unary> & { close(): void };
  const call = (m: string, req: Record<string, unknown>) =>
    new Promise<{ mounts?: Mount[] }>((resolve, reject) =>
      c[m].call(c, { snapshotter: 'thinpool', ...req }, (e, r) => (e ? reject(e) : resolve(r))),
    );
  return {
    prepare: async (key: string, parent: string) => (await call('Prepare', { key, parent })).mounts!,
    commit: async (name: string, key: string) => {
      await call('Commit', { name, key });
    },
    close: () => c.close(),
  };
}

async function mountOk(m: Mount, dir: string): Promise<void> {
  expect(m.type).toBe('ext4');
  const r = await run('mount', ['-t', 'ext4', '-o', m.options.join(','), m.source, dir]);
  expect(r.code, `mount ${m.source}: ${r.stderr}`).toBe(0);
}

describe('commit of a snapshot still mounted in another mount namespace', () => {
  if (reason) {
    test.skipIf(reason !== null)(`(skipped: ${reason})`, () => {});
    return;
  }
  const work = mkdtempSync(join(tmpdir(), 'tp-commit-in-use-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  test('a child prepared from it sees every file the mount showed', async () => {
    const pool = join(work, 'pool');
    expect((await thinpool(['init', pool, '--size', '2G'])).code).toBe(0);
    const socket = join(work, 's.sock');
    const sn = new SnapshotterProcess(pool, socket, ['--state-dir', join(work, 'st'), '--fs-size', '64M']);
    const a = join(work, 'a');
    const b = join(work, 'b');
    mkdirSync(a);
    mkdirSync(b);
    let holder: ReturnType<typeof spawn> | null = null;
    try {
      await sn.ready();
      const snaps = await client(socket);
      try {
        await mountOk((await snaps.prepare('layer-a', ''))[0], a);
        const files = Array.from({ length: 20 }, (_, i) => [`f${i}`, `content ${i} `.repeat(100 + i)] as const);
        for (const [n, body] of files) writeFileSync(join(a, n), body);
        mkdirSync(join(a, 'dir'));
        writeFileSync(join(a, 'dir', 'inner'), 'inner file');

        // A process in a new mount namespace (private: our unmount does not reach it) keeps a copy of the mount.
        holder = spawn('unshare', ['-m', 'sleep', '120'], { stdio: 'ignore' });
        const hp = holder.pid!;
        const deadline = Date.now() + 10000;
        // Ready once it runs sleep (unshare has made its namespace and its propagation private) and its own
        // mount table has the copy.
        const holds = () => {
          try {
            return (
              readFileSync(`/proc/${hp}/comm`, 'utf8').trim() === 'sleep' &&
              readlinkSync(`/proc/${hp}/ns/mnt`) !== readlinkSync('/proc/self/ns/mnt') &&
              readFileSync(`/proc/${hp}/mountinfo`, 'utf8').includes(` ${a} `)
            );
          } catch {
            return false;
          }
        };
        while (!holds()) {
          if (Date.now() > deadline) throw new Error('the holder did not enter its mount namespace within 10 s');
          await sleep(20);
        }
        const um = await run('umount', [a]);
        expect(um.code, um.stderr).toBe(0);
        const table = () =>
          execSync('for n in /sys/block/loop*/loop/backing_file; do echo "$n $(cat $n)"; done 2>/dev/null; true', { encoding: 'utf8' });
        expect(leaksUnder(join(work, 'st')).loops.length, `the filesystem lives on: its loop device stays\n${table()}`).toBeGreaterThan(0);

        await snaps.commit('layer-a-done', 'layer-a');
        await mountOk((await snaps.prepare('layer-b', 'layer-a-done'))[0], b);
        for (const [n, body] of files) expect(readFileSync(join(b, n), 'utf8'), n).toBe(body);
        expect(readFileSync(join(b, 'dir', 'inner'), 'utf8')).toBe('inner file');
        expect((await run('umount', [b])).code).toBe(0);
      } finally {
        snaps.close();
      }
    } finally {
      await run('umount', [b]);
      if (holder && holder.exitCode === null) holder.kill('SIGKILL');
      if (holder) await new Promise((r) => (holder!.exitCode !== null || holder!.signalCode !== null ? r(null) : holder!.once('exit', r)));
      const stopped = await sn.stop();
      expect(stopped.code, sn.stderr).toBe(0);
    }
    expect(sn.stderr).toContain('still in use: writing it out (sync)');
    expect(await waitNoLeaks(work)).toEqual({ loops: [], fuseMounts: [], mounts: [], processes: [] });
    expect(await checkPool(pool)).toEqual([]);
  }, 180000);
});
