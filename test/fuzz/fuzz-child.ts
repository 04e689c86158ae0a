// The child process of the metadata fuzz test (metadata-fuzz.test.ts): runs mutants [first, last) of a seed and
// reports over IPC. Before each mutant it sends {type: 'mutant', i, what}, so the parent knows which mutant is
// running and can kill this process when one takes longer than the hang bound (a synchronous loop, in JS or in
// WASM, cannot be stopped from inside). At the end it sends {type: 'done', tally}; a mutant that makes the
// checker throw, or the pool throw anything but a ThinpoolError, ends the run with {type: 'fail'}.
//
// Test-only hook: `plantHangAt` makes the child spin forever in mutant plantHangAt, to prove that the parent's
// bound fires. It lives here, in the test's child, not in any production path.
import { CLASSES, FuzzFailure, makeBases, mutantAt, runMutant, type MutantClass } from './fuzz-lib.js';

export interface ChildConfig {
  seed: number;
  first: number;
  last: number;
  poolEvery: number;
  seconds?: number;
  plantHangAt?: number;
}

export interface ClassTally {
  mutants: number;
  detected: number;
  poolTried: number;
  poolRefused: number;
  /** Up to 10 mutants of the class the checker found nothing in, and up to 10 the pool opened and read. */
  undetected: string[];
  poolClean: string[];
}

export interface ChildTally {
  mutants: number;
  resealed: number;
  maxMs: number;
  totalMs: number;
  classes: Record<MutantClass, ClassTally>;
  kinds: Record<string, number>;
  codes: Record<string, number>;
  unnamed: Record<string, number>;
  seconds: number;
}

const send = (msg: unknown) => new Promise<void>((ok) => process.send!(msg, () => ok()));

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]!) as ChildConfig;
  const started = performance.now();
  const bases = await makeBases();
  const t: ChildTally = {
    mutants: 0,
    resealed: 0,
    maxMs: 0,
    totalMs: 0,
    kinds: {},
    codes: {},
    unnamed: {},
    seconds: 0,
    classes: Object.fromEntries(
      CLASSES.map((c) => [c, { mutants: 0, detected: 0, poolTried: 0, poolRefused: 0, undetected: [], poolClean: [] }]),
    ) as unknown as Record<MutantClass, ClassTally>,
  };
  for (let i = cfg.first; i < cfg.last; i++) {
    if (cfg.seconds !== undefined && (i & 63) === 0 && performance.now() - started > cfg.seconds * 1000) break;
    const { base, m } = mutantAt(bases, cfg.seed, i);
    const what = `mutant ${i} of ${base.name}: ${m.what}`;
    process.send!({ type: 'mutant', i, what });
    if (i === cfg.plantHangAt) for (;;);
    let o;
    try {
      o = await runMutant(base, m, i % cfg.poolEvery === 0);
    } catch (e) {
      if (!(e instanceof FuzzFailure)) throw e;
      await send({ type: 'fail', i, what, message: e.message });
      process.exit(1);
    }
    t.mutants++;
    if (m.resealed) t.resealed++;
    t.totalMs += o.ms;
    t.maxMs = Math.max(t.maxMs, o.ms);
    const c = t.classes[o.cls];
    c.mutants++;
    if (o.detected) c.detected++;
    else if (c.undetected.length < 10) c.undetected.push(what);
    if (o.pool !== undefined) {
      c.poolTried++;
      if (o.pool === 'refused') c.poolRefused++;
      else if (c.poolClean.length < 10) c.poolClean.push(what);
    }
    const kind = m.what.split(/ \d| at | in | :=| @/)[0]!;
    t.kinds[kind] = (t.kinds[kind] ?? 0) + 1;
    for (const code of o.codes) t.codes[code] = (t.codes[code] ?? 0) + 1;
    for (const u of o.unnamed) t.unnamed[u] = (t.unnamed[u] ?? 0) + 1;
  }
  t.seconds = (performance.now() - started) / 1000;
  await send({ type: 'done', tally: t });
  process.exit(0);
}

main().catch(async (e: unknown) => {
  await send({ type: 'fail', i: -1, what: 'the child itself', message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  process.exit(1);
});
