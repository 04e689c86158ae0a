// The CLI under SIGKILL and a full pool. A built `node bin/thinpool.js write` / `import` process is killed with
// SIGKILL at seeded random moments of its run (from start-up to the end of its commit); after each kill
// `thinpool check` passes, the pool opens for writing at once (the dead holder's lock is free), committed data
// is intact byte for byte, and what the killed command wrote is all-or-nothing per the pool's promise:
// - write into a volume: each 512-byte sector shows the old bytes or the new ones (in-place writes into
//   provisioned blocks may land before the commit; new blocks are invisible until it lands);
// - import: the volume does not exist, or it exists with the whole image.
// A full pool through the CLI: write and import fail with the documented "is full ... nothing was written"
// message and exit status 1 (in process, and as a real process), and the pool is unchanged byte for byte.
//
// Runs the built CLI (dist/): run `npm run build` first when src/ is newer. Env: THINPOOL_SOAK=1 for more kills;
// THINPOOL_FIGURES_DIR=<dir>: the counts go to <dir>/crash-suites.json as 'cli-kill' (recordSuite of
// scripts/figures-crash-suites.mjs), rendered into docs/crash-safety.md by scripts/render-figures.mjs.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireFreshBuild } from '../support/dist.js';
import { afterAll, expect, test } from 'vitest';
import { cleanup, cli, hashPool, tempDir } from '../cli/helpers.js';
import { fill, mulberry32 } from '../support/model.js';
import { recordSuiteFigures } from '../support/suite-figures.js';

const SOAK = process.env.THINPOOL_SOAK === '1';
const KILLS = { write: SOAK ? 60 : 12, import: SOAK ? 40 : 8 };
const BIN = join(import.meta.dirname, '../../bin/thinpool.js');
const MiB = 1024 * 1024;
const VOL = 24 * MiB;
const dirs: string[] = [];
afterAll(() => dirs.forEach(cleanup));

/** What the tests did: the kill rounds and how each ended, and the full-pool refusals checked. */
const did = {
  soak: SOAK,
  write: { runs: 0, killed: 0, completed: 0, sawNew: 0, sawOld: 0, sawMix: 0, fullRunMs: 0 },
  import: { runs: 0, killed: 0, completed: 0, absent: 0, whole: 0, fullRunMs: 0 },
  fullPool: [] as string[],
};
recordSuiteFigures('cli-kill', () => did);

function built(): void {
  requireFreshBuild();
}

async function ok(argv: string[]): Promise<string> {
  const r = await cli(argv);
  if (r.code !== 0) throw new Error(`thinpool ${argv.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function readVol(pool: string, name: string): Promise<Buffer> {
  const r = await cli(['read', pool, name]);
  if (r.code !== 0) throw new Error(`read ${name}: ${r.stderr}`);
  return r.stdoutBytes;
}

/**
 * When to kill: `{ at }` ms after the spawn, or `{ afterWrite }` ms after the pool's data file was first
 * modified by the process (polled every 2 ms), which lands the kill inside the data-writing phase or the commit.
 */
type Kill = { at: number } | { afterWrite: number; dataFile: string };

/** Run the built CLI; kill it with SIGKILL as `kill` says (if still running). */
function runBin(
  args: string[],
  kill: Kill | undefined,
): Promise<{ code: number | null; signal: string | null; ms: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    let timer: NodeJS.Timeout | undefined;
    let poll: NodeJS.Timeout | undefined;
    if (kill && 'at' in kill) timer = setTimeout(() => child.kill('SIGKILL'), kill.at);
    else if (kill) {
      const m0 = statSync(kill.dataFile).mtimeMs;
      poll = setInterval(() => {
        if (statSync(kill.dataFile).mtimeMs !== m0) {
          clearInterval(poll);
          timer = setTimeout(() => child.kill('SIGKILL'), kill.afterWrite);
        }
      }, 2);
    }
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      clearInterval(poll);
      resolve({ code, signal, ms: performance.now() - t0, stderr });
    });
  });
}

/** A pool with committed volumes: `keep` (never touched again) and `target` (half provisioned with old bytes). */
async function setup(): Promise<{
  dir: string;
  pool: string;
  keep: Buffer;
  target: Buffer;
  input: string;
  image: string;
  inputBytes: Buffer;
}> {
  const dir = tempDir('tp-kill-');
  dirs.push(dir);
  const pool = join(dir, 'pool');
  await ok(['init', pool, '--size', '160M']);
  await ok(['create', pool, 'keep', '--size', '4M']);
  await ok(['create', pool, 'target', '--size', `${VOL}`]);
  const keep = Buffer.from(fill(3 * MiB, 11));
  writeFileSync(join(dir, 'keep.bin'), keep);
  await ok(['write', pool, 'keep', join(dir, 'keep.bin'), '--offset', '4096']);
  const old = Buffer.from(fill(VOL / 2, 12));
  writeFileSync(join(dir, 'old.bin'), old);
  await ok(['write', pool, 'target', join(dir, 'old.bin')]);
  const inputBytes = Buffer.from(fill(VOL - 3 * 512, 13));
  const input = join(dir, 'new.bin');
  writeFileSync(input, inputBytes);
  const image = join(dir, 'image.bin');
  const img = Buffer.from(fill(20 * MiB, 14));
  img.fill(0, 5 * MiB, 9 * MiB); // all-zero blocks stay unprovisioned
  writeFileSync(image, img);
  const keepWant = Buffer.alloc(4 * MiB);
  keep.copy(keepWant, 4096);
  const target = Buffer.alloc(VOL);
  old.copy(target, 0);
  return { dir, pool, keep: keepWant, target, input, image, inputBytes };
}

/** A kill moment: a third uniform over the whole run, the others 0-60 ms after the first data write. */
function killMoment(rng: () => number, ms: number, pool: string): Kill {
  return rng() < 1 / 3 ? { at: Math.floor(rng() * ms * 1.1) } : { afterWrite: Math.floor(rng() * 60), dataFile: join(pool, 'data') };
}

function firstDiff(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

async function afterKill(pool: string, what: string): Promise<void> {
  const r = await cli(['check', pool]);
  if (r.code !== 0) throw new Error(`${what}: thinpool check exited ${r.code}: ${r.stdout}${r.stderr}`);
}

test('kill -9 of `thinpool write` at random moments: check passes, committed data intact, the write all-or-nothing per sector', async () => {
  built();
  const s = await setup();
  const rng = mulberry32(4242);
  // An uninterrupted run first (on a copy of the state: the write lands), to time the process.
  const full = await runBin(['write', s.pool, 'target', s.input, '--offset', '512'], undefined);
  expect(full.code, `a full run: ${full.stderr}`).toBe(0);
  const newState = Buffer.from(s.target);
  s.inputBytes.copy(newState, 512);
  expect(firstDiff(await readVol(s.pool, 'target'), newState), 'the full run wrote the input').toBe(-1);
  // Put the old bytes back, committed, for the kill rounds.
  writeFileSync(join(s.dir, 'old-full.bin'), s.target);
  await ok(['write', s.pool, 'target', join(s.dir, 'old-full.bin')]);
  const tally = did.write;
  tally.fullRunMs = Math.round(full.ms);
  for (let n = 0; n < KILLS.write; n++) {
    const killAt = killMoment(rng, full.ms, s.pool);
    const what = `write kill #${n} ${JSON.stringify(killAt)} (full run ${full.ms.toFixed(0)} ms)`;
    const res = await runBin(['write', s.pool, 'target', s.input, '--offset', '512'], killAt);
    tally.runs++;
    if (res.signal === 'SIGKILL') tally.killed++;
    else {
      expect(res.code, `${what}: ${res.stderr}`).toBe(0);
      tally.completed++;
    }
    await afterKill(s.pool, what);
    expect(firstDiff(await readVol(s.pool, 'keep'), s.keep), `${what}: the untouched volume`).toBe(-1);
    const got = await readVol(s.pool, 'target');
    expect(got.length, `${what}: size`).toBe(VOL);
    const expected = res.signal === 'SIGKILL' ? null : newState;
    if (expected) expect(firstDiff(got, expected), `${what}: completed write`).toBe(-1);
    let news = 0;
    let olds = 0;
    for (let off = 0; off < VOL; off += 512) {
      const g = got.subarray(off, off + 512);
      const o = Buffer.compare(g, s.target.subarray(off, off + 512)) === 0;
      const w = Buffer.compare(g, newState.subarray(off, off + 512)) === 0;
      if (!o && !w) throw new Error(`${what}: sector at ${off} is neither the old nor the new bytes`);
      if (w && !o) news++;
      else if (o && !w) olds++;
    }
    if (olds === 0) tally.sawNew++;
    else if (news === 0) tally.sawOld++;
    else tally.sawMix++;
    // Back to the old state (committed) for the next round.
    await ok(['write', s.pool, 'target', join(s.dir, 'old-full.bin')]);
  }
  console.log(
    `cli kill -9 (write): ${tally.runs} runs of a ${(s.inputBytes.length / MiB).toFixed(1)} MiB write (full run ${full.ms.toFixed(0)} ms), ${tally.killed} killed, ${tally.completed} completed; after each: check passed, committed data intact; target showed the new bytes ${tally.sawNew}, the old ${tally.sawOld}, old and new per sector ${tally.sawMix}; 0 failures`,
  );
  expect(tally.killed).toBeGreaterThan(0);
}, 240_000);

test('kill -9 of `thinpool import` at random moments: check passes, the volume is absent or the whole image', async () => {
  built();
  const s = await setup();
  const rng = mulberry32(4343);
  const image = readFileSync(s.image);
  const full = await runBin(['import', s.pool, 'probe', s.image], undefined);
  expect(full.code, `a full run: ${full.stderr}`).toBe(0);
  expect(firstDiff(await readVol(s.pool, 'probe'), image)).toBe(-1);
  await ok(['delete', s.pool, 'probe']);
  const tally = did.import;
  tally.fullRunMs = Math.round(full.ms);
  for (let n = 0; n < KILLS.import; n++) {
    const killAt = killMoment(rng, full.ms, s.pool);
    const what = `import kill #${n} ${JSON.stringify(killAt)} (full run ${full.ms.toFixed(0)} ms)`;
    const res = await runBin(['import', s.pool, 'img', s.image], killAt);
    tally.runs++;
    if (res.signal === 'SIGKILL') tally.killed++;
    else {
      expect(res.code, `${what}: ${res.stderr}`).toBe(0);
      tally.completed++;
    }
    await afterKill(s.pool, what);
    expect(firstDiff(await readVol(s.pool, 'keep'), s.keep), `${what}: the untouched volume`).toBe(-1);
    expect(firstDiff(await readVol(s.pool, 'target'), s.target), `${what}: the other volume`).toBe(-1);
    const ls = JSON.parse(await ok(['ls', s.pool, '--json'])) as Array<{ name: string }>;
    if (ls.some((v) => v.name === 'img')) {
      expect(firstDiff(await readVol(s.pool, 'img'), image), `${what}: the imported volume is the whole image`).toBe(-1);
      tally.whole++;
      await ok(['delete', s.pool, 'img']);
    } else {
      expect(res.signal, `${what}: a completed import left no volume`).toBe('SIGKILL');
      tally.absent++;
    }
  }
  console.log(
    `cli kill -9 (import): ${tally.runs} runs of a 20 MiB image import (full run ${full.ms.toFixed(0)} ms), ${tally.killed} killed, ${tally.completed} completed; after each: check passed, other volumes intact; volume absent ${tally.absent}, whole image ${tally.whole}; 0 failures`,
  );
  expect(tally.killed).toBeGreaterThan(0);
}, 240_000);

test('a full pool through the CLI: "is full ... nothing was written", exit status 1, pool unchanged', async () => {
  built();
  const dir = tempDir('tp-full-');
  dirs.push(dir);
  const pool = join(dir, 'pool');
  await ok(['init', pool, '--size', '1M']); // 16 blocks of 64 KiB
  await ok(['create', pool, 'a', '--size', '4M']);
  const first = join(dir, 'first.bin');
  writeFileSync(first, fill(640 * 1024, 1)); // 10 blocks
  await ok(['write', pool, 'a', first]);
  const big = join(dir, 'big.bin');
  writeFileSync(big, fill(512 * 1024, 2)); // 8 more blocks: only 6 are free
  const before = hashPool(pool);
  const w = await cli(['write', pool, 'a', big, '--offset', '1M']);
  expect(w.code, w.stderr).toBe(1);
  expect(w.stderr).toMatch(/is full: this needs 8 free data blocks .* but 6 are free .*nothing was written: delete volumes/);
  expect(hashPool(pool), 'the pool is unchanged').toEqual(before);
  did.fullPool.push('write (file)');
  const imp = await cli(['import', pool, 'b', big]);
  expect(imp.code, imp.stderr).toBe(1);
  expect(imp.stderr).toMatch(/is full: .*nothing was written/);
  expect(hashPool(pool), 'the pool is unchanged').toEqual(before);
  did.fullPool.push('import');
  // Standard input too (the size is known only after reading it).
  const si = await cli(['write', pool, 'a', '-', '--offset', '1M'], { stdin: readFileSync(big) });
  expect(si.code, si.stderr).toBe(1);
  expect(si.stderr).toMatch(/is full/);
  expect(hashPool(pool)).toEqual(before);
  did.fullPool.push('write (stdin)');
  // The real process: exit status 1 and the same message.
  const real = spawnSync(process.execPath, [BIN, 'write', pool, 'a', big, '--offset', '1M'], { encoding: 'utf8' });
  expect(real.status, real.stderr).toBe(1);
  expect(real.stderr).toMatch(/^thinpool( write)?: .*is full: .*nothing was written/);
  expect(hashPool(pool)).toEqual(before);
  did.fullPool.push('write (a real process)');
  // Deleting makes room, and the write goes through.
  await ok(['delete', pool, 'a']);
  await ok(['create', pool, 'a', '--size', '4M']);
  await ok(['write', pool, 'a', big, '--offset', '1M']);
  expect((await cli(['check', pool])).code).toBe(0);
  console.log(
    'cli full pool: write (file and stdin) and import refused with "is full ... nothing was written", exit status 1 (in process and as a process), pool unchanged byte for byte; 0 failures',
  );
}, 60_000);
