// Metadata fuzzing: mutate metadata written by the engine (test/fuzz/fuzz-lib.ts: random bytes, bit flips,
// truncation, swapped or duplicated blocks, cycles and wrong pointers in trees, counts and fields out of range,
// half of them with checksums recomputed) and check every mutant with checkMetadataDevice; live mutants, and
// every 8th of the others, are also opened as pools (read-only), listed and read in full.
//
// Asserted, per class of mutant (fuzz-lib.ts's classify):
// - live (a block reachable from the committed superblock changed, checksum not recomputed): the checker reports
//   it AND the pool refuses to open or read with a ThinpoolError — 100 %;
// - live with the checksum recomputed: the checker's detection rate is at least LIVE_RESEALED_FLOOR (measured);
// - stale (only blocks outside the committed state changed): the checker finds nothing and the pool opens and
//   reads — 100 % (nothing that matters changed, so nothing may be reported);
// - never a crash (checker throwing, pool throwing anything but a ThinpoolError); every error names its
//   structure and block.
// The mutants run in a child process (fuzz-child.ts) under a hang bound: a mutant running longer than HANG_MS
// gets the child killed and the test fails naming it. A second test proves the bound fires, with a planted
// infinite loop (a test-only hook of the child).
//
// Env: THINPOOL_SOAK=1 for 1,000,000 mutants; THINPOOL_FUZZ_MUTANTS=<n>, THINPOOL_FUZZ_SEED=<n>,
// THINPOOL_FUZZ_SECONDS=<s> (stop after s seconds, for measuring rates); THINPOOL_FUZZ_ONLY=<mutant index>
// replays one mutant (its description is printed on failure); THINPOOL_FIGURES_DIR=<dir> writes the counts to
// <dir>/metadata-fuzz.json (docs/figures, rendered into docs/crash-safety.md by scripts/render-figures.mjs).
import { fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';
import type { ChildConfig, ChildTally } from './fuzz-child.js';

const SOAK = process.env.THINPOOL_SOAK === '1';
const MUTANTS = Number(process.env.THINPOOL_FUZZ_MUTANTS ?? (SOAK ? 1_000_000 : 20_000));
const SEED = Number(process.env.THINPOOL_FUZZ_SEED ?? 777);
const ONLY = process.env.THINPOOL_FUZZ_ONLY;
const SECONDS = process.env.THINPOOL_FUZZ_SECONDS === undefined ? undefined : Number(process.env.THINPOOL_FUZZ_SECONDS);
/** Also open as a pool, list and read every volume, on every Nth mutant (and on every live one). */
const POOL_EVERY = 8;
/** The hang bound: a mutant still running after this long gets the child killed (a loaded machine stays far below). */
const HANG_MS = 10_000;
/**
 * Floor for the checker's detection rate on live mutants with checksums recomputed. Measured: 77.2 % (seed 777,
 * 20,000 mutants: 3,069 of 3,976; 79.8 % on the first 2,000). The undetected ones leave a consistent pool: a
 * superblock time or hint changed, a bit flipped in unused space of a node, an index entry's free count.
 */
const LIVE_RESEALED_FLOOR = 0.75;

const here = fileURLToPath(new URL('.', import.meta.url));
const register = join(here, '../support/ts-register.mjs');

interface ChildResult {
  tally?: ChildTally;
  fail?: { i: number; what: string; message: string };
  hung?: { i: number; what: string; ms: number };
  /** How the child ended: its exit code, or the signal that killed it. */
  exit: number | string | null;
}

/** Run mutants in a child under the hang bound. */
function runChild(cfg: ChildConfig, hangMs: number): Promise<ChildResult> {
  return new Promise((resolve) => {
    const child = fork(join(here, 'fuzz-child.ts'), [JSON.stringify(cfg)], {
      execArgv: ['--import', register],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const result: ChildResult = { exit: null };
    let current: { i: number; what: string; since: number } | undefined;
    const watchdog = setInterval(() => {
      if (current && performance.now() - current.since > hangMs && !result.hung) {
        result.hung = { i: current.i, what: current.what, ms: Math.round(performance.now() - current.since) };
        child.kill('SIGKILL');
      }
    }, 100);
    child.on('message', (msg: { type: string; i: number; what: string; tally: ChildTally; message: string }) => {
      if (msg.type === 'mutant') current = { i: msg.i, what: msg.what, since: performance.now() };
      else if (msg.type === 'done') {
        result.tally = msg.tally;
        current = undefined;
      } else if (msg.type === 'fail') {
        result.fail = { i: msg.i, what: msg.what, message: msg.message };
        current = undefined;
      }
    });
    child.on('exit', (code, signal) => {
      clearInterval(watchdog);
      result.exit = signal ?? code;
      resolve(result);
    });
  });
}

const pct = (n: number, d: number) => (d === 0 ? '-' : `${((100 * n) / d).toFixed(1)} %`);

test(
  `metadata fuzzing: ${MUTANTS} mutants, detection asserted per class, under a hang bound`,
  async () => {
    const first = ONLY ? Number(ONLY) : 0;
    const last = ONLY ? Number(ONLY) + 1 : MUTANTS;
    const r = await runChild({ seed: SEED, first, last, poolEvery: ONLY ? 1 : POOL_EVERY, seconds: SECONDS }, HANG_MS);
    const replay = (i: number) => `replay: THINPOOL_FUZZ_SEED=${SEED} THINPOOL_FUZZ_ONLY=${i}`;
    if (r.hung) expect.fail(`${r.hung.what} still ran after ${r.hung.ms} ms (bound ${HANG_MS} ms): child killed (${replay(r.hung.i)})`);
    if (r.fail) expect.fail(`${r.fail.what}: ${r.fail.message} (${replay(r.fail.i)})`);
    expect(r.exit).toBe(0);
    const t = r.tally!;
    const c = t.classes;
    const line = (name: string, k: keyof typeof c) =>
      `  ${name}: ${c[k].mutants}, checker reported ${c[k].detected} (${pct(c[k].detected, c[k].mutants)}); pool opened on ${c[k].poolTried}, refused ${c[k].poolRefused}`;
    console.log(
      `metadata fuzzing: ${t.mutants} mutants (${t.resealed} with checksums recomputed), 0 crashes, 0 hangs (bound ${HANG_MS} ms, child killed past it), ` +
        `${t.seconds.toFixed(1)}s (${(t.mutants / t.seconds).toFixed(0)} mutants/s); max ${t.maxMs.toFixed(1)} ms per mutant, mean ${(t.totalMs / Math.max(1, t.mutants)).toFixed(2)} ms\n` +
        `${line('live, checksum not recomputed', 'live')}\n${line('live, checksum recomputed', 'live-resealed')}\n` +
        `${line('stale', 'stale')}\n${line('stale, checksum recomputed', 'stale-resealed')}\n${line('truncated past the live blocks', 'truncated')}\n${line('unchanged bytes', 'unchanged')}\n` +
        `  undetected live, checksum recomputed (first ${c['live-resealed'].undetected.length}): ${c['live-resealed'].undetected.map((w) => `\n    ${w}`).join('')}\n` +
        `  mutation kinds: ${Object.entries(t.kinds)
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => `${k} ${n}`)
          .join(', ')}\n` +
        `  error codes: ${Object.entries(t.codes)
          .sort((a, b) => b[1] - a[1])
          .map(([k, n]) => `${k} ${n}`)
          .join(', ')}`,
    );
    if (SECONDS === undefined) expect(t.mutants).toBe(last - first);
    expect(Object.entries(t.unnamed), 'every error names its structure and metadata block').toEqual([]);
    expect(c.live.undetected, 'live mutants (checksum not recomputed) the checker found nothing in').toEqual([]);
    expect(c.live.poolClean, 'live mutants (checksum not recomputed) the pool opened and read').toEqual([]);
    expect(c.live.poolTried).toBe(c.live.mutants);
    expect(c.stale.detected + c['stale-resealed'].detected, `stale mutants the checker reported: ${[...c.stale.undetected]}`).toBe(0);
    expect(c.stale.poolRefused + c['stale-resealed'].poolRefused, 'stale mutants the pool refused').toBe(0);
    if (!ONLY) {
      expect(c.live.mutants, 'live mutants in the run').toBeGreaterThan(t.mutants / 5);
      expect(
        c['live-resealed'].detected / c['live-resealed'].mutants,
        'detection rate, live mutants with checksums recomputed',
      ).toBeGreaterThanOrEqual(LIVE_RESEALED_FLOOR);
    }
    const figuresDir = process.env.THINPOOL_FIGURES_DIR;
    if (figuresDir !== undefined && !ONLY) {
      mkdirSync(figuresDir, { recursive: true });
      const classes = Object.fromEntries(
        Object.entries(c).map(([k, v]) => [
          k,
          { mutants: v.mutants, detected: v.detected, poolTried: v.poolTried, poolRefused: v.poolRefused },
        ]),
      );
      const sorted = (o: Record<string, number>) =>
        Object.fromEntries(Object.entries(o).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)));
      writeFileSync(
        join(figuresDir, 'metadata-fuzz.json'),
        `${JSON.stringify(
          {
            suite: 'metadata fuzzing',
            soak: SOAK,
            seed: SEED,
            mutants: t.mutants,
            resealed: t.resealed,
            hangBoundMs: HANG_MS,
            liveResealedFloor: LIVE_RESEALED_FLOOR,
            crashes: 0,
            hangs: 0,
            unnamedErrors: 0,
            classes,
            kinds: sorted(t.kinds),
            codes: sorted(t.codes),
          },
          null,
          2,
        )}\n`,
      );
    }
  },
  SOAK ? 7_200_000 : 600_000,
);

test('the hang bound fires: a planted infinite loop in mutant 5 gets the child killed and is named', async () => {
  const r = await runChild({ seed: SEED, first: 0, last: 20, poolEvery: POOL_EVERY, plantHangAt: 5 }, 2000);
  expect(r.hung?.i).toBe(5);
  expect(r.hung?.what).toMatch(/^mutant 5 of pool/);
  expect(r.exit).toBe('SIGKILL');
  expect(r.tally).toBeUndefined();
}, 120_000);
