// README's "Figures from this machine": one row per headline figure, each computed from the JSON its bench
// recorded (docs/benchmark-results.json of bench/compare, docs/figures/*.json of the others); a row whose JSON
// is not recorded yet says which command records it. Used by render-figures.mjs, which hands in `read(name)`:
// the parsed file (a path under docs/figures/, or `../NAME` for docs/) or undefined when it does not exist.
import { n } from './figures-format.mjs';
import { nbdSpeedHeadline } from './figures-nbd.mjs';

const mib = (b) =>
  b >= 1 << 30 ? `${(b / (1 << 30)).toFixed(2)} GiB` : b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${(b / 1024).toFixed(0)} KiB`;
const ms = (x) => (x >= 1000 ? `${(x / 1000).toFixed(1)} s` : x >= 1 ? `${x.toFixed(x < 10 ? 1 : 0)} ms` : `${(x * 1000).toFixed(1)} µs`);
const rate = (x) => (x >= 1000 ? `${n(Math.round(x))}/s` : `${x.toFixed(0)}/s`);
const SYSTEM = {
  thinpool: 'thinpool',
  qcow2: 'qcow2 chain',
  overlayfs: 'kernel overlayfs',
  union: 'userspace union',
  'ext4-nbd': 'ext4 on thinpool via NBD',
  raw: 'raw file',
};
const notYet = (cmd) => `not recorded yet (\`${cmd}\`)`;

/** The compare bench's median for one scenario, case and metric, per system (skipped systems left out). */
function compareFigures(r, scenario, kase, metric) {
  const s = r.scenarios.find((x) => x.name === scenario);
  const out = new Map();
  for (const f of s?.figures ?? []) if (f.case === kase && f.metric === metric && f.median !== null) out.set(f.system, f.median);
  return out;
}

function compareRows(r) {
  const when = `\`node dist/bench/compare/run.js\`, ${r.startedAt.slice(0, 10)}`;
  const rows = [];
  const row = (what, figs, fmt, others, better, names = SYSTEM) => {
    const tp = figs.get('thinpool');
    if (tp === undefined) return;
    const cells = others.filter((s) => figs.has(s)).map((s) => `${names[s]} ${fmt(figs.get(s))} (${better(figs.get(s), tp)})`);
    rows.push([`${what} (${when})`, `thinpool ${fmt(tp)}; ${cells.join('; ')}`]);
  };
  // Each system's figure over thinpool's: whole above 10, two digits below.
  const worseBy = (x, tp) => {
    const q = x / tp;
    return `${q >= 10 ? n(Math.round(q)) : q >= 0.01 ? q.toFixed(2) : q.toPrecision(1)}x thinpool's`;
  };
  row(
    '4 KiB write into a 64 MiB inherited file: bytes written',
    compareFigures(r, 'small-write', '64 MiB', 'first write: bytes written'),
    mib,
    ['overlayfs', 'union', 'qcow2'],
    worseBy,
  );
  row(
    'Random 4 KiB reads through a stack 1,000 deep',
    compareFigures(r, 'deep-read', 'depth 1000', 'random 4 KiB reads'),
    rate,
    ['qcow2', 'raw'],
    worseBy,
  );
  row('A snapshot on a stack 1,000 deep', compareFigures(r, 'create', 'depth 1000', 'snapshot at depth'), ms, ['qcow2'], worseBy);
  row(
    '100 containers each changing 1% of a 64 MiB image: disk used',
    compareFigures(r, 'many', 'scattered', 'space on disk'),
    mib,
    ['qcow2', 'overlayfs', 'union', 'raw'],
    worseBy,
    { ...SYSTEM, raw: 'full copies' },
  );
  return rows;
}

function streamRow(f) {
  const [name, r] = Object.entries(f.runs).at(-1);
  const get = (k) => r.rows.find((x) => x.key === k);
  const inc = get('sendIncremental');
  const exp = get('export');
  const rbd = get('rbdExportDiff');
  const volume = mib(r.volumeBytes);
  return [
    `\`thinpool send --from BASE\` of a ${volume} volume with ${((100 * r.changedBlocks) / r.blocks).toFixed(0)}% of its blocks changed, against a full \`thinpool export\`${rbd ? ' and `rbd export-diff` of the same change' : ''} (run "${name}", ${r.date}, load ${r.loadAverage.join(' / ')})`,
    `${ms(inc.ms)} against ${ms(exp.ms)} (${(exp.ms / inc.ms).toFixed(1)}x)${rbd ? ` and ${ms(rbd.ms)}` : ''}; ${mib(inc.bytes)} stream${rbd ? `, rbd's ${mib(rbd.bytes)}` : ''}`,
  ];
}

function forkRow(f) {
  const [name, r] = Object.entries(f.runs).at(-1);
  const big = r.sizes.reduce((a, b) => (b.sizeBytes > a.sizeBytes ? b : a));
  const forks = big.stores.map((s) => `${s.store} ${ms(s.forkMs)} (${n(Math.round(big.cpMs / s.forkMs))}x)`);
  return [
    `Fork + dispose of a ${mib(big.sizeBytes)} golden image against \`cp --sparse=always\` (run "${name}", ${r.date})`,
    `cp ${ms(big.cpMs)}; fork ${forks.join(', ')}`,
  ];
}

/** The README table. */
export function summary(read) {
  const rows = [];
  const compare = read('../benchmark-results.json');
  if (compare) rows.push(...compareRows(compare));
  else rows.push(['Block-level against file-level copy-on-write', notYet('node dist/bench/compare/run.js --out docs')]);
  const stream = read('stream.json');
  rows.push(
    stream
      ? streamRow(stream)
      : [
          '`thinpool send --from BASE` against a full export',
          notYet('node dist/bench/stream/send.js --start-ceph --figures docs/figures/stream.json --as NAME'),
        ],
  );
  const fork = read('fork-vs-copy.json');
  rows.push(
    fork
      ? forkRow(fork)
      : [
          'Fork + dispose against `cp --sparse=always`',
          notYet('node dist/bench/testing/fork-vs-copy.js --figures docs/figures/fork-vs-copy.json --as NAME'),
        ],
  );
  const nbd = read('nbd-speed.json');
  rows.push([
    'NBD against `nbdkit memory` (fio 4 KiB random at queue depth 1 and 16, nbdcopy 1 MiB)',
    nbd ? nbdSpeedHeadline(nbd) : notYet('node dist/bench/nbd/speed.js --figures=docs/figures/nbd-speed.json --as=NAME'),
  ]);
  const crash = read('crash-points.json');
  if (crash)
    rows.push([
      `Crash points (${crash.soak ? 'soak' : 'the CI setting of `npm test`'})`,
      `${n(crash.cutsInOperations)} cuts inside operations and commits, ${n(crash.commitCuts)} of them in commit phases, ${n(crash.failures)} failures`,
    ]);
  const fuzz = read('metadata-fuzz.json');
  if (fuzz)
    rows.push([
      `Metadata fuzzing (${fuzz.soak ? 'soak' : 'the CI setting'})`,
      `${n(fuzz.mutants)} mutants, ${n(fuzz.resealed)} with checksums recomputed: ${n(fuzz.crashes)} crashes, ${n(fuzz.hangs)} hangs, ${n(fuzz.unnamedErrors)} errors not naming their block`,
    ]);
  return ['| what | figure |', '|---|---|', ...rows.map(([a, b]) => `| ${a} | ${b} |`)].join('\n');
}
