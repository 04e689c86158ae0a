// The comparison's containerd scenario (`thinpool bench --quick --scenario containerd`, issue 14) at a tiny size (a 10 MiB image with a 4 MiB file,
// 2 containers per case), as a child process (dist/bench/compare/run.js), with --figures: every row of the scenario has a number from both
// containerd + overlayfs and containerd + thinpool, the results and the merged figures file have the same rows,
// both plots are written, and what is not timing is checked for sense: overlayfs's first 4 KiB write into the
// inherited 4 MiB file writes at least the whole file (copy-up), thinpool's less than 1 MiB. Nothing about speed.
// The bench starts its own containerd and snapshotter under the work directory given; afterwards no loop
// device, mount, FUSE mount or process may be left there.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { requireFreshBuild } from '../support/dist.js';
import { whyNoContainerdComparison } from '../snapshotter/containerd-support.js';
import { ROOT, run, waitNoLeaks } from '../snapshotter/support.js';

const reason = whyNoContainerdComparison();

interface Figure {
  case: string;
  metric: string;
  unit: string;
  system: string;
  median: number | null;
  skipped?: string;
}

const MiB = 1024 * 1024;
const SYSTEMS = ['ctrd-overlayfs', 'ctrd-thinpool'];

describe('thinpool bench --scenario containerd', () => {
  if (reason) {
    test.skipIf(reason !== null)(`containerd bench (skipped: ${reason})`, () => {});
    return;
  }
  const dir = mkdtempSync('/tmp/tp-ctrd-bench-');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('both storages produce every row; overlayfs copies the whole file up, thinpool one block; nothing left behind', async () => {
    requireFreshBuild();
    const work = join(dir, 'work');
    mkdirSync(work);
    const out = join(dir, 'out');
    const figures = join(dir, 'docs', 'figures', 'containerd.json');
    const bench = join(ROOT, 'dist', 'bench', 'compare', 'run.js');
    const args = ['--quick', '--scenario', 'containerd', '--out', out, '--work', work, `--figures=${figures}`, '--as=check'];
    const r = await run(process.execPath, [bench, ...args], { timeoutMs: 540_000 });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const left = await waitNoLeaks(work);
    expect(left).toEqual({ loops: [], fuseMounts: [], mounts: [], processes: [] });

    const results = JSON.parse(readFileSync(join(out, 'benchmark-results.json'), 'utf8')) as {
      scenarios: { name: string; figures: Figure[]; notes: string[] }[];
    };
    expect(results.scenarios.map((s) => s.name)).toEqual(['containerd']);
    const sc = results.scenarios[0]!;
    expect(sc.notes.filter((n) => n.startsWith('The scenario stopped'))).toEqual([]);
    const rows = [...new Set(sc.figures.map((f) => `${f.case} | ${f.metric}`))];
    const expected = [
      'import the image | time',
      'import the image | space used',
      'ctr run of a trivial command | time',
      'first 4 KiB write into a 4 MiB file of the image | time (write)',
      'first 4 KiB write into a 4 MiB file of the image | time (write + fsync)',
      'first 4 KiB write into a 4 MiB file of the image | bytes written',
      'first 4 KiB write into a 4 MiB file of the image | space used',
      'small files: read 200 files | time',
      'small files: copy 200 files (cp -a) | time',
      'small files: fsync each of the 200 copies | time',
      '2 containers, each changing 1% of the image inside the 4 MiB file | space used',
      '2 containers, each adding 1% of the image as new 4 KiB files | space used',
      'remove a container (unchanged) | time (ctr containers rm)',
      'remove a container (unchanged) | time until the storage let go',
      'remove a container (changed 1% of the image) | time (ctr containers rm)',
      'remove a container (changed 1% of the image) | time until the storage let go',
    ];
    expect(rows.sort()).toEqual([...expected].sort());
    const get = (row: string, system: string) => {
      const f = sc.figures.find((x) => `${x.case} | ${x.metric}` === row && x.system === system);
      expect(f, `${row} for ${system}`).toBeDefined();
      expect(f!.skipped, `${row} for ${system}`).toBeUndefined();
      expect(Number.isFinite(f!.median), `${row} for ${system}: ${f!.median}`).toBe(true);
      return f!.median!;
    };
    for (const row of expected) {
      for (const s of SYSTEMS) {
        const v = get(row, s);
        // Times are positive; space may be 0 only where nothing had to be stored.
        if (row.includes('time')) expect(v, `${row} for ${s}`).toBeGreaterThan(0);
        else expect(v, `${row} for ${s}`).toBeGreaterThanOrEqual(0);
      }
    }
    const fw = 'first 4 KiB write into a 4 MiB file of the image';
    expect(get(`${fw} | bytes written`, 'ctrd-overlayfs')).toBeGreaterThanOrEqual(4 * MiB);
    expect(get(`${fw} | space used`, 'ctrd-overlayfs')).toBeGreaterThanOrEqual(4 * MiB);
    expect(get(`${fw} | bytes written`, 'ctrd-thinpool')).toBeGreaterThan(0);
    expect(get(`${fw} | bytes written`, 'ctrd-thinpool')).toBeLessThan(MiB);
    expect(get(`${fw} | space used`, 'ctrd-thinpool')).toBeGreaterThanOrEqual(64 * 1024);
    expect(get(`${fw} | space used`, 'ctrd-thinpool')).toBeLessThan(MiB);
    // Two containers each rewriting parts of the 4 MiB file: overlayfs holds two copies of it.
    expect(get('2 containers, each changing 1% of the image inside the 4 MiB file | space used', 'ctrd-overlayfs')).toBeGreaterThanOrEqual(
      8 * MiB,
    );
    expect(get('import the image | space used', 'ctrd-overlayfs')).toBeGreaterThan(4 * MiB);
    expect(get('import the image | space used', 'ctrd-thinpool')).toBeGreaterThan(4 * MiB);
    for (const p of ['containerd-time.svg', 'containerd-space.svg']) expect(existsSync(join(out, 'plots', p)), p).toBe(true);
    expect(r.stdout).toContain('| containerd + thinpool | containerd + overlayfs |');
    // --figures: the same figures merged under runs.check, the plots beside the figures' directory.
    const merged = JSON.parse(readFileSync(figures, 'utf8')) as {
      runs: Record<string, { commit: string; loadAverage: number[]; scenarios: { name: string; figures: Figure[] }[] }>;
    };
    expect(Object.keys(merged.runs)).toEqual(['check']);
    expect(merged.runs.check!.commit).toMatch(/^[0-9a-f]{7,}(\+changes)?$/);
    expect(merged.runs.check!.loadAverage).toHaveLength(2);
    const strip = (f: Figure[]) => f.map((x) => [x.case, x.metric, x.system, x.median]);
    expect(strip(merged.runs.check!.scenarios[0]!.figures)).toEqual(strip(sc.figures));
    for (const p of ['containerd-time.svg', 'containerd-space.svg']) expect(existsSync(join(dir, 'docs', 'plots', p)), p).toBe(true);
  }, 600_000);
});
