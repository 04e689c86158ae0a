// `thinpool image import` under SIGKILL: a real CLI process is killed at seeded moments of its run; after each
// kill the pool checks clean, the image is either absent or whole (never half-imported: its whole file tree,
// paths, types, modes, link targets, content hashes and times, equals the reference extraction of its layers),
// the snapshotter's state names only volumes that exist, and the next import collects what the killed one left
// behind.
//
// Runs the built CLI (dist/, as test/cli-safety/kill.test.ts does); THINPOOL_CLI_MAIN may point at another build
// of src/cli/main.js.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { cleanup, cli, tempDir } from '../cli/helpers.js';
import { requireFreshBuild } from '../support/dist.js';
import { needTool } from '../support/tools.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import { ThinPool } from '../../src/thin/pool.js';
import { ImageStore } from '../../src/images/images.js';
import { withFs } from '../../src/images/fs-worker.js';
import { dirTree, fsTree, makeTar, pattern, referenceExtract, type TEntry } from './support.js';

const ROOT = join(import.meta.dirname, '../..');
const MAIN = process.env.THINPOOL_CLI_MAIN ?? join(ROOT, 'dist/src/cli/main.js');
const haveTools = needTool('mkfs.ext4', 'e2fsprogs');
const KILLS = 6;
/** More runs, only while none of the first KILLS was killed (runs can get faster than the timed one). */
const MAX_RUNS = 2 * KILLS;
const work = tempDir('tp-images-kill-');
afterAll(() => cleanup(work));

function runCli(
  args: string[],
  killAt: number | null,
): Promise<{ code: number | null; signal: string | null; ms: number; stderr: string }> {
  const script = `const { main } = await import(${JSON.stringify(MAIN)}); process.exitCode = await main(${JSON.stringify(args)});`;
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = killAt === null ? undefined : setTimeout(() => child.kill('SIGKILL'), killAt);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, ms: performance.now() - t0, stderr });
    });
  });
}

describe.skipIf(!haveTools)('image import under SIGKILL', () => {
  test('the image is absent or whole after every kill; leftovers are collected', async () => {
    if (process.env.THINPOOL_CLI_MAIN === undefined) requireFreshBuild();
    const pool = join(work, 'pool');
    expect((await cli(['init', pool, '--size', '2G'])).code).toBe(0);
    const dir = join(work, 'layers');
    mkdirSync(dir);
    const base = [join(dir, 'l0.tar'), join(dir, 'l1.tar')];
    const baseLayers: TEntry[][] = [
      [
        { name: 'etc/', type: 'directory' },
        { name: 'etc/os', body: 'base' },
        { name: 'etc/secret', body: 'k', mode: 0o600 },
        { name: 'bin/', type: 'directory', mode: 0o750 },
        { name: 'bin/run', body: pattern(70 * 1024, 3), mode: 0o755 },
        { name: 'data0', body: pattern(3 * 1024 * 1024, 1) },
      ],
      [
        { name: 'data1', body: pattern(3 * 1024 * 1024, 2) },
        { name: 'etc/os-link', type: 'symlink', linkname: 'os' },
      ],
    ];
    writeFileSync(base[0], await makeTar(baseLayers[0]));
    writeFileSync(base[1], await makeTar(baseLayers[1]));
    const topLayer = (i: number): TEntry[] => [
      { name: 'app', body: pattern(2 * 1024 * 1024, 100 + i) },
      { name: 'id', body: `run ${i}` },
    ];
    /** The whole tree of image app<i> must equal the reference extraction of its three layers. */
    const expectWhole = async (store: ImageStore, i: number): Promise<void> => {
      const ref = join(work, `ref-${i}`);
      referenceExtract(ref, [...baseLayers, topLayer(i)]);
      const got = await withFs(store.resolveVolume(`app${i}`), (fs) => fsTree(fs, { times: true }));
      expect(got, `image app${i}`).toEqual(dirTree(ref, { times: true }));
    };
    // A full run first (timing the kills), then runs killed at seeded moments.
    const top = (i: number): string => {
      const p = join(dir, `top${i}.tar`);
      return p;
    };
    for (let i = 0; i <= MAX_RUNS; i++) writeFileSync(top(i), await makeTar(topLayer(i)));
    const full = await runCli(['image', 'import', pool, 'app0', ...base, top(0), '--fs-size', '128M'], null);
    expect(full.code, full.stderr).toBe(0);
    {
      const p = ThinPool.openSync(pool);
      try {
        await expectWhole(new ImageStore(p), 0);
      } finally {
        p.closeSync();
      }
    }
    let seed = 12345;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    let killed = 0;
    // Kill moments fall inside the shortest run seen so far: the timed run may have been slowed by other work.
    let shortest = full.ms;
    let runs = 0;
    for (let i = 1; i <= MAX_RUNS && (i <= KILLS || killed === 0); i++) {
      runs++;
      const at = 40 + rand() * Math.max(0, shortest - 40);
      const r = await runCli(['image', 'import', pool, `app${i}`, ...base, top(i), '--fs-size', '128M'], at);
      if (r.signal === 'SIGKILL') killed++;
      else {
        expect(r.code, r.stderr).toBe(0);
        shortest = Math.min(shortest, r.ms);
      }
      expect((await cli(['check', pool])).code).toBe(0);
      const p = ThinPool.openSync(pool);
      try {
        const store = new ImageStore(p);
        for (const s of store.snapshotter.walk()) expect(p.has(s.volume), `${s.key} -> ${s.volume}`).toBe(true);
        const names = store.images().map((m) => m.name);
        if (names.includes(`app${i}`)) await expectWhole(store, i);
        else expect(r.signal).toBe('SIGKILL');
        expect(names).toContain('app0');
      } finally {
        p.closeSync();
      }
    }
    expect(killed).toBeGreaterThan(0);
    console.log(
      `image import kill -9: ${runs} runs (full run ${full.ms.toFixed(0)} ms, shortest ${shortest.toFixed(0)} ms), ${killed} killed; after each: check passed, image absent or whole`,
    );
    // The next import collects every volume no record names.
    const p = ThinPool.openSync(pool);
    const store = new ImageStore(p, { size: 128 * 1024 * 1024 });
    writeFileSync(join(dir, 'last.tar'), await makeTar([{ name: 'last', body: 'x' }]));
    await store.import('last', [join(dir, 'last.tar')]);
    const owned = store.snapshotter.ownedVolumes();
    expect(
      p
        .list()
        .filter((v) => !owned.has(v.name!))
        .map((v) => v.name),
    ).toEqual([]);
    p.closeSync();
    verifyMetadataFile(join(pool, 'metadata'));
  }, 300_000);
});
