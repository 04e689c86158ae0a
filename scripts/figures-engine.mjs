// Issue 2's sections of docs/benchmarks-engine.md: `engine-goals`, the goals table, from the engine benches'
// JSON (docs/figures/{snapshot,read-path,depth,scale,core,cow}.json, written when THINPOOL_FIGURES_DIR is set:
// bench/engine/_lib.ts recordFigures appends runs, io.ts and cow.ts write one run), with each verdict computed here
// against its goal; and `engine-run`, the run of the engine benches recorded by `bench/run.js --record`
// (docs/runs/engine.md), put in as it is. Used by render-figures.mjs.
import { median } from './figures-stats.mjs';
import { n } from './figures-format.mjs';

/** The command that records both: the goals' JSON and docs/runs/engine.md (cow.json: see the Overheads section). */
export const ENGINE_RECORD =
  'THINPOOL_FIGURES_DIR=docs/figures node dist/bench/run.js engine/core.bench engine/depth engine/io engine/io.bench engine/refcounts engine/scale engine/snapshot --record docs/runs/engine.md';

/** Runs shown per goal: the newest with its figures, the ones before it by ratio and verdict; the JSON keeps all. */
const ENGINE_SHOWN = 3;

const mib = (b) => `${(b / 1048576).toFixed(1)} MiB`;
const ms = (x) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(x < 10 ? 3 : 1)} ms`);
const ops = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} M/s` : `${(x / 1e3).toFixed(1)} k/s`);
const r2 = (x) => x.toFixed(2);
const verdict = (ok) => (ok ? 'met' : '**not met**');
const quick = (r) => (r.flags ?? []).includes('--quick');

/** Where a run comes from: commit, date, load average (before and after when recorded), --quick. */
function stamp(r) {
  const load = Array.isArray(r.loadAverages ?? r.loadAverage)
    ? (r.loadAverages ?? r.loadAverage).join(' -> ')
    : `${r.loadAverage} (at the end)`;
  const who = r.commit === undefined ? 'commit and date not recorded' : `${r.commit}, ${r.date}`;
  return `${who}; load ${load}${r.cpus ? ` on ${r.cpus} CPUs` : ''}${quick(r) ? '; **--quick**' : ''}`;
}

/** A bench's runs, oldest first: `runs` of an appended file, or the file itself when it holds one run. */
const runsOf = (f) => (Array.isArray(f.runs) ? f.runs : [f]);

// Each goal: its text and, per run, [measured (long), measured (short, for earlier runs), verdict]. A `--quick`
// run gets no verdict (engineGoals), nor a run made smaller than the goal's size in another way.
const notAtSize = (what) => `none: not at the goal's size (${what})`;
/** A run's figures and verdict for a goal; a --quick run (a smoke run of the bench) gets no verdict. */
function judged(measure, r) {
  const m = measure(r);
  return quick(r) && m[2] !== '-' && !m[2].startsWith('reported') ? [m[0], m[1], 'none: a `--quick` run'] : m;
}

function scale(r) {
  const bytes = r.metadataBlockBytes;
  const atSize = r.blocks >= 1e6 && r.snapshots >= 100;
  const inDefault = r.cacheSlots === r.defaultCacheBlocks;
  return [
    `${n(r.blocks)} blocks (${r.provisioning}) + ${r.snapshots} divergent snapshots: metadata ${mib(r.metadataBlocks.used * bytes)} ` +
      `at the end (${mib(r.metadataBlocksAfterProvisioning * bytes)} after provisioning) through a cache of ${n(r.cacheSlots)} blocks ` +
      `(${mib(r.cacheSlots * bytes)}${inDefault ? ', the default' : `, default ${n(r.defaultCacheBlocks)}`}); peak RSS ${mib(r.peakRssBytes)}; ` +
      `snapshot + commit ${ms(median(r.snapshotCommitMs))} median, ${ms(Math.max(...r.snapshotCommitMs))} max`,
    `peak RSS ${mib(r.peakRssBytes)}`,
    atSize ? verdict(inDefault) : notAtSize(`${n(r.blocks)} blocks, ${r.snapshots} snapshots`),
  ];
}

function snapshot(r) {
  const [small, big] = r.pools;
  const rs = big.medianSnapshotMs / small.medianSnapshotMs;
  const rb = big.medianSnapshotCommitMs / small.medianSnapshotCommitMs;
  return [
    `snapshotSync ${r2(rs)}, snapshot + commit ${r2(rb)} (${ms(big.medianSnapshotCommitMs)} at ${n(big.mappedBlocks)} against ` +
      `${ms(small.medianSnapshotCommitMs)} at ${n(small.mappedBlocks)} mapped blocks; medians of ${r.rounds} interleaved rounds)`,
    `${r2(rs)}, ${r2(rb)}`,
    big.mappedBlocks >= 1e6 ? verdict(rs <= 1.5 && rb <= 1.5) : notAtSize(`${n(big.mappedBlocks)} mapped blocks`),
  ];
}

/** Ratios against io.ts's baseline row (the first): baseline ns / case ns, higher is better. */
function against(rows, names, goal, label) {
  const base = rows[0].nsPerOp;
  const got = names.map((x) => [x, base / rows.find((r) => r.name === x[0]).nsPerOp]);
  const missed = got.filter(([, v]) => v < goal).map(([x]) => x[1]);
  return [
    `${got.map(([x, v]) => `${x[1]} ${r2(v)}`).join(', ')} (${label} ${n(base)} ns per op)`,
    got.map(([, v]) => r2(v)).join(', '),
    missed.length === 0 ? verdict(true) : `${verdict(false)} (${missed.join(', ')})`,
  ];
}

function reads(r) {
  const m = against(
    r.rows,
    [
      ['volume.readSync', 'readSync'],
      ['await volume.read (one at a time)', 'await read'],
    ],
    0.8,
    'fs.readSync',
  );
  m[0] += `; ${r.blocks === undefined ? '' : `${n(r.blocks)} blocks, `}median of ${r.rounds} rounds, ${r.clock === 'cpu' ? 'CPU' : 'wall'} time`;
  return m;
}

function writes(r) {
  if (r.writes === undefined) return ['not in this read-path.json (written before io.ts recorded its writes)', '-', '-'];
  return against(
    r.writes,
    [
      ['volume.writeSync', 'writeSync'],
      ['await volume.write (one at a time)', 'await write'],
    ],
    0.7,
    'fs.writeSync',
  );
}

function depth(r) {
  const c = Object.fromEntries(r.cases.map((x) => [x.key, x.nsPerOp]));
  const fair = c.flat / c.s100;
  return [
    `s${r.depth} against \`flat\` (depth 0, no origin, mapping the same data blocks): ${r2(fair)}; against v: ${r2(c.v / c.s100)} ` +
      `(the pread at s${r.depth}'s data offsets / at v's: ${r2(c['fs-s100'] / c['fs-v'])}); engine time per read ${n(c.v - c['fs-v'])} ns (v), ` +
      `${n(c.s100 - c['fs-s100'])} ns (s${r.depth}), ${n(c.flat - c['fs-s100'])} ns (flat); ${n(r.blocks)} blocks, median of ${r.rounds} rounds`,
    r2(fair),
    r.depth >= 100 ? verdict(fair >= 0.95) : notAtSize(`depth ${r.depth}`),
  ];
}

function core(r) {
  const rate = (k) => {
    const i = r.inserts.find((x) => x.key === k);
    return ops(i.count / (i.ms / 1000));
  };
  const lookup = (list) => list.find((l) => l.name === 'ThinMetadata.lookupDblock');
  return [
    `lookupDblock ${ops(lookup(r.lookups).ops)} (±${lookup(r.lookups).rme} %, tree in the cache), ${ops(lookup(r.lookupsOverCache).ops)} ` +
      `(metadata > cache); insertMapping ${rate('sequential')} sequential, ${rate('random')} random; ${n(r.mappings)} mappings`,
    `${ops(lookup(r.lookups).ops)}, ${rate('random')}`,
    'reported (no goal figure)',
  ];
}

function cow(r) {
  const fast = r.rows.filter((x) => x.path !== 'read-write');
  return [
    `${fast.map((x) => `${x.fs} (${x.path}): ${r2(x.ratio)}x`).join('; ')} (the copy deferred; see the copy-on-write table)`,
    fast.map((x) => `${r2(x.ratio)}x`).join(', '),
    verdict(fast.every((x) => x.ratio <= 2)),
  ];
}

/** The goals table: [snapshot, read-path, depth, scale, core, cow] JSON, as the SECTIONS entry lists them. */
export function engineGoals([snap, readPath, dep, sc, co, cw]) {
  const goals = [
    ['1 M blocks + 100 snapshots within the default metadata cache', 'scale', sc, scale],
    ['snapshot at 1 M vs 1 k mapped blocks: about 1, at most 1.5', 'snapshot', snap, snapshot],
    ['random 4 KiB reads >= 0.8 x fs.readSync (plain file, same write history)', 'read-path', readPath, reads],
    ['4 KiB writes to provisioned unshared blocks >= 0.7 x fs.writeSync', 'read-path', readPath, writes],
    ['reads at snapshot depth 100 >= 0.95 x depth 0', 'depth', dep, depth],
    ['WASM core: lookups and inserts', 'core', co, core],
    ['first 4 KiB write into a shared block <= 2x a write into an unshared one (issue 17)', 'cow', cw, cow],
  ];
  const out = [
    'Each goal from the newest run of its bench (`docs/figures/NAME.json`, column "run"; earlier runs by their ratios, ' +
      `newest first, at most ${ENGINE_SHOWN - 1}; the JSON keeps every run). The verdict is computed from the figures against the goal; ` +
      'a `--quick` run, smaller than the goal, gets none. 2 cores shared with other jobs: the figures are noisy, the ratios less.',
    '',
    '| goal (issue 2) | measured | verdict | run | earlier runs |',
    '|---|---|---|---|---|',
  ];
  for (const [goal, file, f, measure] of goals) {
    const runs = runsOf(f);
    const last = runs[runs.length - 1];
    const [long, , v] = judged(measure, last);
    const earlier = runs
      .slice(0, -1)
      .slice(-(ENGINE_SHOWN - 1))
      .reverse()
      .map((r) => {
        const [, short, ev] = judged(measure, r);
        return `${short}: ${ev} (${r.commit ?? '?'}, ${r.date ?? '?'})`;
      });
    out.push(`| ${goal} | ${long} | ${v} | ${file}: ${stamp(last)} | ${earlier.length ? earlier.join('; ') : '-'} |`);
  }
  return out.join('\n');
}

/** docs/runs/engine.md as bench/run.js --record wrote it. */
export function engineRun(text) {
  return text.trim();
}
