// The `nbd-speed` section of docs/nbd.md: bench/nbd/speed.ts runs (`--figures=docs/figures/nbd-speed.json
// --as=NAME`), rendered from docs/figures/nbd-speed.json: a table per run (medians, ratios and the issue's goal
// computed here from the per-round values), and the comparisons the same bench makes with its environment
// switches (busy-poll window off against on, the portable I/O path against the fast one). Used by
// render-figures.mjs.
import { median } from './figures-stats.mjs';

/**
 * The section shows this many runs in full, the newest made with the default settings (every case, the default
 * busy-poll window, the fast I/O path); the JSON keeps every run, and the comparisons take theirs from all.
 */
const NBD_SPEED_SHOWN = 3;
/** The issue's bar: thinpool at least this fraction of nbdkit memory's figure (IOPS, MiB/s), per case. */
const GOAL = 0.8;
const JSON_FILE = 'docs/figures/nbd-speed.json';
const BENCH = 'node dist/bench/nbd/speed.js';

/** A figure in its unit's format: IOPS in thousands, MiB/s whole. */
const fmt = (x, unit) => (unit === 'IOPS' ? `${(x / 1000).toFixed(1)} k` : x.toFixed(0));
/** One case of a run with its medians and the ratio thinpool / nbdkit (higher is better for thinpool). */
const stats = (row) => {
  const tp = median(row.thinpool);
  const kit = median(row.nbdkit);
  return { ...row, tp, kit, ratio: tp / kit, cpuTp: median(row.cpuThinpool), cpuKit: median(row.cpuNbdkit) };
};
/** "a" or "a-b" (d decimals, default 2), over the values given. */
const range = (xs, d = 2) => {
  const lo = Math.min(...xs).toFixed(d);
  const hi = Math.max(...xs).toFixed(d);
  return lo === hi ? lo : `${lo}-${hi}`;
};
const pollWindow = (r) => (r.busyPollUs === 'default' ? 'default' : `${r.busyPollUs} µs`);
/** A full run of the default settings (not --quick): what the section shows in full. */
const isDefault = (r) => r.cases === null && r.busyPollUs === 'default' && !r.portableIO && !r.quick;

/** One sentence on how a run was made: commit, machine, settings. */
function describe(name, r) {
  const settings = [
    `${r.rounds} round${r.rounds === 1 ? '' : 's'}`,
    `fio runtime ${r.runtimeS} s`,
    `busy-poll window ${pollWindow(r)}`,
    r.portableIO ? 'portable I/O path (`NBD_PORTABLE_IO=1`)' : undefined,
    r.cases === null ? undefined : `\`--cases=${r.cases}\``,
    r.quick ? '`--quick`' : undefined,
  ].filter((x) => x !== undefined);
  return (
    `Run "${name}": commit ${r.commit}, ${r.date}, ${r.cpus} CPUs (shared, load average ${r.loadAverage[0]} before and ` +
    `${r.loadAverage[1]} after), ${settings.join(', ')}.`
  );
}

/** Ranges of the ratio per kind of case, and the goal's verdict, for one run. */
const GROUPS = [
  ['queue depth 1', /\bqd1\b/],
  ['queue depth 16', /\bqd16\b/],
  ['nbdcopy', /^nbdcopy/],
];
function verdict(rows) {
  const missed = rows.filter((x) => x.ratio < GOAL);
  const groups = GROUPS.map(([label, re]) => [label, rows.filter((x) => re.test(x.case))]).filter(([, xs]) => xs.length);
  const qd1 = rows.filter((x) => /\bqd1\b/.test(x.case));
  const closest = rows.reduce((a, b) => (b.ratio < a.ratio ? b : a));
  return [
    `Goal (thinpool at least ${GOAL} of nbdkit memory, per case): **${missed.length === 0 ? 'met in every case' : `met in ${rows.length - missed.length} of ${rows.length} cases`}**` +
      `${missed.length === 0 ? '' : ` (not met: ${missed.map((x) => `${x.case} ${x.ratio.toFixed(2)}`).join(', ')})`}.`,
    `Ratios: ${groups.map(([label, xs]) => `${label} ${range(xs.map((x) => x.ratio))}`).join(', ')}; closest to the bar: ${closest.case} (${closest.ratio.toFixed(2)}).`,
    qd1.length === 0
      ? ''
      : `Server CPU per request at queue depth 1: thinpool ${range(
          qd1.map((x) => x.cpuTp),
          1,
        )} µs against nbdkit ${range(
          qd1.map((x) => x.cpuKit),
          1,
        )} µs.`,
  ]
    .filter((x) => x !== '')
    .join(' ');
}

function runTable(name, r) {
  const rows = r.rows.map(stats);
  return [
    describe(name, r),
    '',
    `| case | thinpool | nbdkit memory | thinpool / nbdkit | goal (>= ${GOAL}) | thinpool runs | nbdkit runs | server CPU thinpool / nbdkit |`,
    '|---|---:|---:|---:|---|---|---|---|',
    ...rows.map(
      (x) =>
        `| ${x.case} | ${fmt(x.tp, x.unit)} ${x.unit} | ${fmt(x.kit, x.unit)} ${x.unit} | **${x.ratio.toFixed(2)}** | ${x.ratio >= GOAL ? 'met' : '**not met**'} ` +
        `| ${x.thinpool.map((v) => fmt(v, x.unit)).join(', ')} | ${x.nbdkit.map((v) => fmt(v, x.unit)).join(', ')} ` +
        `| ${x.cpuTp.toFixed(1)} / ${x.cpuKit.toFixed(1)} ${x.cpuUnit} |`,
    ),
    '',
    verdict(rows),
  ];
}

/**
 * Two runs side by side, case by case (the cases both measured): in each, the ratio (thinpool / nbdkit medians)
 * and, in brackets, the two medians and thinpool's server CPU.
 */
function compare([aName, a], [bName, b], aLabel, bLabel) {
  const bRows = new Map(b.rows.map((x) => [x.case, stats(x)]));
  const both = a.rows.map(stats).filter((x) => bRows.has(x.case));
  const cell = (x) => `${x.ratio.toFixed(2)} (${fmt(x.tp, x.unit)} / ${fmt(x.kit, x.unit)} ${x.unit}, ${x.cpuTp.toFixed(1)} ${x.cpuUnit})`;
  const about = (name, r) =>
    `"${name}" (commit ${r.commit}, ${r.date}, ${r.rounds} round${r.rounds === 1 ? '' : 's'} of ${r.runtimeS} s, load average ${r.loadAverage[0]} before and ${r.loadAverage[1]} after)`;
  const same = a.commit === b.commit && a.date === b.date;
  return [
    `${aLabel}: ${about(aName, a)}; ${bLabel}: ${about(bName, b)}${same ? '' : '. Not the same build and day: compare with care'}.`,
    '',
    `| case | ${aLabel}: thinpool / nbdkit (medians, thinpool server CPU) | ${bLabel}: thinpool / nbdkit (medians, thinpool server CPU) |`,
    '|---|---|---|',
    ...both.map((x) => `| ${x.case} | ${cell(x)} | ${cell(bRows.get(x.case))} |`),
  ];
}

/** The newest run (as [name, run]) that `pred` accepts and that shares a case with `other` (if given). */
function newest(entries, pred, other) {
  const shares = (r) => other === undefined || r.rows.some((x) => other.rows.some((y) => y.case === x.case));
  // A run made with the same --cases filter as `other` first, then any that shares a case.
  const ok = entries.filter(([, r]) => pred(r) && shares(r));
  const same = ok.filter(([, r]) => other !== undefined && r.cases === other.cases);
  return (same.length ? same : ok).at(-1);
}

function busyPollAB(entries) {
  const off = newest(entries, (r) => r.busyPollUs === '0' && !r.portableIO);
  const on = off && newest(entries, (r) => r.busyPollUs !== '0' && !r.portableIO, off[1]);
  if (!on) {
    return [
      `No A/B pair recorded yet. One after the other: \`NBD_BUSY_POLL_US=0 ${BENCH} --rounds=3 --runtime=3 --cases=qd1 --figures=${JSON_FILE} --as=window-off\`, then the same with \`NBD_BUSY_POLL_US=50\` and \`--as=window-50\`.`,
    ];
  }
  return compare(off, on, 'window off', `window ${pollWindow(on[1])}`);
}

function portableAB(entries) {
  const portable = newest(entries, (r) => r.portableIO);
  const fast = portable && newest(entries, (r) => !r.portableIO && r.busyPollUs === portable[1].busyPollUs, portable[1]);
  if (!fast) {
    return [
      `No pair recorded yet: \`NBD_PORTABLE_IO=1 ${BENCH} --quick --runtime=2 --figures=${JSON_FILE} --as=portable\`, right after (or before) a run of the fast path with the same busy-poll setting.`,
    ];
  }
  return compare(portable, fast, 'portable I/O path', 'fast I/O path');
}

/** bench/nbd/speed.ts runs: the newest NBD_SPEED_SHOWN of the default settings in full, then the two comparisons. */
export function nbdSpeed(f) {
  const entries = Object.entries(f.runs);
  const shown = entries.filter(([, r]) => isDefault(r)).slice(-NBD_SPEED_SHOWN);
  const rest = entries.filter((e) => !shown.includes(e));
  const out = [];
  if (shown.length === 0) out.push(`No run with the default settings recorded yet: \`${BENCH} --figures=${JSON_FILE} --as=NAME\`.`, '');
  if (rest.length > 0) {
    const names = rest.map(([k]) => `"${k}"`).join(', ');
    out.push(
      `${shown.length === 0 ? 'Runs recorded' : 'Shown in full: the newest runs made with the default settings (every case, the default busy-poll window, the fast I/O path). The others'} (${names}) are in ${JSON_FILE}; the comparisons at the end use them.`,
      '',
    );
  }
  for (const [name, r] of shown) out.push(...runTable(name, r), '');
  out.push('**Busy-poll window, off against on** (see "The busy-poll window" below):', '', ...busyPollAB(entries), '');
  out.push('**Portable I/O path against the fast one** (`NBD_PORTABLE_IO=1`, see "Socket I/O" above):', '', ...portableAB(entries));
  return out.join('\n');
}

/** README: the newest run with the default settings, as the goal's verdict and the ratio ranges in one paragraph. */
export function nbdSpeedHeadline(f) {
  const last = Object.entries(f.runs)
    .filter(([, r]) => isDefault(r))
    .at(-1);
  if (last === undefined) return `no run with the default settings recorded yet (\`${BENCH} --figures=${JSON_FILE} --as=NAME\`)`;
  const [name, r] = last;
  return `run "${name}" (${r.commit}, ${r.date}, load ${r.loadAverage.join(' / ')}): ${verdict(r.rows.map(stats))}`;
}
