// Crash points: seeded random workloads (create, snapshot, write, discard, delete, resize, rename, labels,
// catalog-only commits, held metadata snapshots, setTransactionId, data and metadata growth, auto-extend,
// commits) on a tiny pool over CrashDevices, cut at every I/O call (device reads, writes, block copies (copy-on-write
// through copyWithin, the reflink / copy_file_range path of file devices), flushes, and the
// catalog's stage / publish), crashed with a seeded rng (random subset of unflushed writes kept, last one torn
// per 512-byte sector), reopened and checked against the model. Strict: no tolerance for any known bug.
// A cut in a commit phase is crashed COMMIT_CRASHES times, with different subsets of the unflushed writes: the
// seeded random one, none kept, all kept, and further random ones.
// Counting: the cuts made while the pool opens (the workload's first reads) are reported apart; the target
// (10,000 here, 100,000 in soak) counts only cuts inside operations and commits.
//
// Env: THINPOOL_SOAK=1 for the soak setting (>= 100,000 cut points); THINPOOL_CRASH_SEED=<n> to change the base
// seed; THINPOOL_CRASH_ONLY=<workloadSeed>:<cut> to replay one case (see the failure message);
// THINPOOL_CRASH_SECONDS=<s> stops after s seconds (for measuring rates; the count check is then skipped);
// THINPOOL_FIGURES_DIR=<dir> writes the run's counts to <dir>/crash-points.json (docs/figures, rendered into
// docs/crash-safety.md by scripts/render-figures.mjs).
// The machinery lives beside it: crash-cut.ts (workloads, their dry run, one cut checked) and crash-replay.ts
// (the I/O log and the post-crash images replayed from it).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { AE_BLOCKS, cut, DATA_BLOCKS, META_BYTES, type Templates, type Workload, workload } from './crash-cut.js';
import { Replayer } from './crash-replay.js';
import { BS, COMMITTING_OPS, makeTemplate } from './harness.js';

const SOAK = process.env.THINPOOL_SOAK === '1';
const TARGET_CUTS = Number(process.env.THINPOOL_CRASH_CUTS ?? (SOAK ? 100_000 : 10_000));
const BASE_SEED = Number(process.env.THINPOOL_CRASH_SEED ?? 20240601);
const ONLY = process.env.THINPOOL_CRASH_ONLY;
/** External tools (thin_check, dmthin.py, thin_dump) on every Nth cut. */
const EXTERNAL_EVERY = Number(process.env.THINPOOL_CRASH_EXTERNAL_EVERY ?? (SOAK ? 1000 : 250));
/** A post-crash write + commit + check on every Nth cut. */
const REUSE_EVERY = 7;
/** The engine itself re-run and cut (armAt) on every Nth cut, checked against the replayed images. */
const ENGINE_EVERY = Number(process.env.THINPOOL_CRASH_ENGINE_EVERY ?? 8);
/** Time cap in seconds (measuring throughput): stop after the workload in progress when reached. */
const SECONDS = process.env.THINPOOL_CRASH_SECONDS === undefined ? undefined : Number(process.env.THINPOOL_CRASH_SECONDS);
/** Crashes per commit-phase cut, each keeping a different subset of the unflushed writes. */
const COMMIT_CRASHES = 3;

test(
  `crash points: ${TARGET_CUTS} cuts across every phase of a commit`,
  async () => {
    const started = performance.now();
    const tpls: Templates = {
      plain: makeTemplate(DATA_BLOCKS, META_BYTES),
      autoExtend: makeTemplate(AE_BLOCKS, META_BYTES, (p) => {
        p.configureSpace({ autoExtend: { enabled: true, atPercent: 60, percent: 50, maxBytes: 512 * BS } });
      }),
    };
    const tplOf = (w: Workload) => (w.autoExtend ? tpls.autoExtend : tpls.plain);
    if (ONLY) {
      const [s, k, variant] = ONLY.split(':').map(Number);
      const w = await workload(s!, tpls);
      console.log(`replaying workload ${s} cut ${k} (${w.phase[k!]}) crash variant ${variant ?? 0}`);
      await cut(tplOf(w), w, new Replayer(tplOf(w), w.log, w.quiet), k!, {
        external: true,
        reuse: true,
        engine: true,
        variant: variant ?? 0,
      });
      return;
    }
    /** Cuts inside operations and commits (the target counts these). */
    let cuts = 0;
    /** Cuts while the pool opens (reported apart). */
    let openCuts = 0;
    /** Commit-phase cuts, and the crashes made of them (COMMIT_CRASHES each). */
    let commitCuts = 0;
    let commitCrashes = 0;
    /** Commit-phase cuts with unflushed writes, where keeping none and keeping all are different crashes. */
    let commitCutsWithUnflushed = 0;
    let workloads = 0;
    let external = 0;
    let landedNew = 0;
    let landedOld = 0;
    let engineCuts = 0;
    let aeWorkloads = 0;
    let aeGrowths = 0;
    const byPhase = new Map<string, number>();
    const byCode = new Map<string, number>();
    const byOp = new Map<string, number>();
    for (let n = 0; cuts < TARGET_CUTS; n++) {
      if (SECONDS !== undefined && performance.now() - started > SECONDS * 1000) break;
      const w = await workload(BASE_SEED + n, tpls);
      workloads++;
      for (const o of w.t.ops) byOp.set(o.op, (byOp.get(o.op) ?? 0) + 1);
      if (w.autoExtend) {
        aeWorkloads++;
        aeGrowths += [...w.commitsInside].filter((i) => !COMMITTING_OPS.has(w.t.ops[i]!.op)).length;
      }
      const tpl = tplOf(w);
      const rep = new Replayer(tpl, w.log, w.quiet);
      for (let k = 0; k < w.phase.length; k++) {
        const all = cuts + openCuts;
        const ext = all % EXTERNAL_EVERY === 0;
        const engine = all % ENGINE_EVERY === 0;
        const res = await cut(tpl, w, rep, k, { external: ext, reuse: all % REUSE_EVERY === 0, engine });
        if (res.phase.startsWith('open:')) openCuts++;
        else cuts++;
        if (engine) engineCuts++;
        if (ext) external++;
        byPhase.set(res.phase, (byPhase.get(res.phase) ?? 0) + 1);
        byCode.set(res.code, (byCode.get(res.code) ?? 0) + 1);
        if (res.phase.includes('commit:')) {
          if (res.landed === 'new') landedNew++;
          else landedOld++;
          commitCuts++;
          commitCrashes++;
          if (res.unflushed > 0) commitCutsWithUnflushed++;
          for (let variant = 1; variant < COMMIT_CRASHES; variant++) {
            const more = await cut(tpl, w, rep, k, { external: false, reuse: false, engine: false, variant });
            commitCrashes++;
            if (more.landed === 'new') landedNew++;
            else landedOld++;
          }
        }
      }
    }
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    const commitPhases = [...byPhase].filter(([p]) => p.startsWith('commit:')).sort();
    const innerCommits = new Map<string, number>();
    for (const [p, c] of byPhase)
      if (p.includes('/commit:')) innerCommits.set(p.split('/')[0]!, (innerCommits.get(p.split('/')[0]!) ?? 0) + c);
    const otherPhases = [...byPhase].filter(([p]) => !p.includes('commit:')).sort((a, b) => b[1] - a[1]);
    const rate = (cuts / Number(secs)).toFixed(0);
    console.log(
      `crash points: ${cuts} cut points inside operations and commits (plus ${openCuts} while opening) over ${workloads} workloads,` +
        ` 0 failures, ${secs}s (${rate} cut points/s); ${commitCuts} commit-phase cuts crashed ${COMMIT_CRASHES} ways each` +
        ` (${commitCrashes} crashes; ${commitCutsWithUnflushed} of those cuts had unflushed writes)` +
        ` (engine re-run and cut with armAt on ${engineCuts}, the others replayed from the dry run's I/O log;` +
        ` external tools on ${external}; crashes inside a commit landed on the new state ${landedNew}, old ${landedOld})` +
        `\n  commit phases: ${commitPhases.map(([p, c]) => `${p.slice(7)} ${c}`).join(', ')}` +
        `\n  commits inside other ops: ${[...innerCommits]
          .sort()
          .map(([p, c]) => `${p} ${c}`)
          .join(', ')}` +
        `\n  other phases: ${otherPhases.map(([p, c]) => `${p} ${c}`).join(', ')}` +
        `\n  ops in the workloads: ${[...byOp]
          .sort((a, b) => b[1] - a[1])
          .map(([p, c]) => `${p} ${c}`)
          .join(', ')}` +
        `\n  auto-extend: ${aeWorkloads} workloads on an ${AE_BLOCKS}-block pool growing by 50 % at 60 % use, ${aeGrowths} ops that grew the pool inside a write` +
        `\n  errors surfaced by the cut op: ${[...byCode].map(([c, n]) => `${c} ${n}`).join(', ')}`,
    );
    for (const p of [
      'data-flush',
      'metadata-write',
      'metadata-flush',
      'catalog-stage',
      'superblock-write',
      'superblock-flush',
      'catalog-publish',
    ]) {
      expect(byPhase.get(`commit:${p}`) ?? 0, `cuts in commit phase ${p}`).toBeGreaterThan(0);
    }
    for (const p of ['reserve-snap', 'release-snap', 'txid', 'grow', 'grow-meta', 'write']) {
      expect(innerCommits.get(p) ?? 0, `cuts inside the commit of ${p}`).toBeGreaterThan(0);
    }
    if (SECONDS === undefined) expect(cuts).toBeGreaterThanOrEqual(TARGET_CUTS);
    expect(commitCrashes).toBe(commitCuts * COMMIT_CRASHES);
    expect(commitCutsWithUnflushed, 'commit-phase cuts where the subsets of unflushed writes differ').toBeGreaterThan(commitCuts / 2);
    const figuresDir = process.env.THINPOOL_FIGURES_DIR;
    if (figuresDir !== undefined) {
      mkdirSync(figuresDir, { recursive: true });
      const sorted = (m: Map<string, number>) => Object.fromEntries([...m].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)));
      writeFileSync(
        join(figuresDir, 'crash-points.json'),
        `${JSON.stringify(
          {
            suite: 'crash points',
            soak: SOAK,
            seed: BASE_SEED,
            target: TARGET_CUTS,
            workloads,
            autoExtendWorkloads: aeWorkloads,
            cutsInOperations: cuts,
            cutsAtOpen: openCuts,
            commitCuts,
            commitCrashesPerCut: COMMIT_CRASHES,
            commitCrashes,
            commitCutsWithUnflushed,
            landedNew,
            landedOld,
            engineReruns: engineCuts,
            externalChecks: external,
            failures: 0,
            commitPhases: Object.fromEntries(commitPhases.map(([p, c]) => [p.slice(7), c])),
            commitsInsideOps: Object.fromEntries([...innerCommits].sort()),
            otherPhases: sorted(new Map(otherPhases)),
            ops: sorted(byOp),
            errorCodes: sorted(byCode),
          },
          null,
          2,
        )}\n`,
      );
    }
  },
  SOAK ? 3_600_000 : 900_000,
);
