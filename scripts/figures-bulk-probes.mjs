// Issue 21's probe sections of docs/cli.md: `bulk-buffer` (bench/bulk/buffer-size.ts runs, from
// docs/figures/bulk-buffer.json: why the bulk commands copy 128 KiB at a time) and `bulk-floors`
// (bench/bulk/floors.ts runs, from docs/figures/bulk-floors.json: what the bulk commands cannot go below on the
// machine, and what that implies for their goals). Every ratio is computed here from the runs' per-round
// seconds. Used by render-figures.mjs; the commands' own tables are figures-bulk.mjs's.
import { median } from './figures-stats.mjs';

/** Each section shows this many runs, the newest; the JSON keeps every run. */
const SHOWN = 3;

const load = (r) => `load average ${r.loadAverage[0]} before and ${r.loadAverage[1]} after`;
const older = (all, names, file) =>
  all.length > names.length ? [`The tables show the newest ${names.length} runs; the others are in docs/figures/${file}.`] : [];

/** bench/bulk/buffer-size.ts runs: MiB/s per batch setting and its time against cp's, the newest SHOWN side by side. */
export function bulkBuffer(f) {
  const all = Object.keys(f.runs);
  const names = all.slice(-SHOWN);
  const out = [
    ...all.map((k) => {
      const r = f.runs[k];
      return `- Run "${k}": commit ${r.commit}, ${r.date}, ${r.mib} MiB copied, median of ${r.rounds} rounds${r.quick ? ' (--quick)' : ''}, node ${r.node}, ${r.cpus} shared CPUs, ${load(r)}.`;
    }),
    ...older(all, names, 'bulk-buffer.json'),
    '',
    `| loop | ${names.map((k) => `${k}: MiB/s | ${k}: time vs \`cp --sparse=always\``).join(' | ')} |`,
    `|---|${names.map(() => '---:|---:|').join('')}`,
  ];
  const cpS = (r) => median(r.cpS);
  out.push(
    `| \`cp --sparse=always\` (a process) | ${names.map((k) => `${(f.runs[k].mib / cpS(f.runs[k])).toFixed(0)} | 1.00`).join(' | ')} |`,
  );
  // Rows match by name, in the newest run's order.
  for (const { name } of f.runs[names.at(-1)].settings) {
    const cells = names.map((k) => {
      const r = f.runs[k];
      const s = r.settings.find((x) => x.name === name);
      if (s === undefined) return '- | -';
      const t = median(s.s);
      return `${(r.mib / t).toFixed(0)} | ${(t / cpS(r)).toFixed(2)}`;
    });
    out.push(`| ${name} | ${cells.join(' | ')} |`);
  }
  out.push('');
  for (const k of names) {
    const r = f.runs[k];
    const t = (s) => median(s.s);
    const batch = r.settings.find((s) => s.batchKiB === 128 && s.pieceKiB === 128);
    const before = r.settings.find((s) => s.name.includes('(before)'));
    const best = r.settings.reduce((a, b) => (t(b) < t(a) ? b : a));
    out.push(
      `Run "${k}": the fastest loop is "${best.name}" (${(t(best) / cpS(r)).toFixed(2)}x cp's time)` +
        (batch && before ? `; the 128 KiB batch copies ${(t(before) / t(batch)).toFixed(2)}x as fast as the setting before.` : '.'),
    );
  }
  return out.join('\n');
}

/** A time: ms under a second. */
const time = (s) => (s === null || s === undefined ? '-' : s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`);

/** The probes' rows: the probe's key in a run's medians (seconds), its label, and whether its cell adds the MB/s. */
const PROBE_ROWS = [
  ['nodeStartup', '`node -e ""`: Node\'s start-up, which any Node command line pays'],
  ['thinpoolLs', "`thinpool ls POOL`: a whole command on the pool (start-up, the CLI's modules, the pool's open)"],
  ['poolOpen', "the pool's open alone in a fresh process (read-only open, the volume's map, close)"],
  ['cp', '`cp --sparse=always` of the data file'],
  ['loopReadWrite', 'Node, pread + pwrite in batches (native helper)'],
  ['loopReadZeroWrite', "Node, pread + zero test per block + pwrite of the non-zero runs (export's loop)"],
  ['loopCopyRange', 'Node, `copy_file_range` in batches (nothing read into the process)'],
  ['loopReadZeroCopyRange', 'Node, pread + zero test per block + `copy_file_range` of the non-zero runs'],
  ['catToNull', '`cat raw.img > /dev/null`'],
  ['catPipeCat', '`cat raw.img \\| cat > /dev/null`'],
  ['catToFile', "`cat raw.img > file` (write's reference)"],
  ['ddSparseFdatasync', "`cat raw.img \\| dd bs=64K iflag=fullblock conv=sparse,fdatasync` (write's like-for-like reference)"],
  ['ddDirect', "`dd oflag=direct bs=8M` of the data file (the disk's direct write rate)", true],
  ['ddFdatasync', '`dd conv=fdatasync bs=128K` of the data file (page-cache writes, then a flush)', true],
];
const rate = (s, r) => (s === null || s === undefined ? '-' : `${time(s)} (${((r.dataMiB * 1048576) / s / 1e6).toFixed(0)} MB/s)`);

/** A run's medians (seconds per probe; null where the probe failed) and its best pipe read. */
function medians(r) {
  const m = {};
  for (const [k, xs] of Object.entries(r.probes)) m[k] = r.failed[k] === undefined ? median(xs) : null;
  m.bestPipe = r.pipeReads.reduce((a, b) => (median(b.loopS) < median(a.loopS) ? b : a));
  m.bestPipeLoop = median(m.bestPipe.loopS);
  m.durable = [m.ddDirect, m.ddFdatasync].filter((x) => x !== null).reduce((a, b) => Math.min(a, b), Infinity);
  if (m.durable === Infinity) m.durable = null;
  return m;
}

const add = (...xs) => (xs.some((x) => x === null || x === undefined) ? null : xs.reduce((a, b) => a + b, 0));
const over = (a, b) => (a === null || b === null ? null : a / b);

/** What the probes imply: label, how it is computed, the ratio from a run's medians, the goal it bounds. */
const IMPLIED = [
  ["export's floor: Node's start-up", '(`node -e ""` + cp) / cp', (m) => over(add(m.nodeStartup, m.cp), m.cp), 1.5],
  ["... and the pool's open", '(`node -e ""` + the pool\'s open + cp) / cp', (m) => over(add(m.nodeStartup, m.poolOpen, m.cp), m.cp), 1.5],
  [
    "... with export's loop instead of cp's copy",
    '(`node -e ""` + the pool\'s open + export\'s loop) / cp',
    (m) => over(add(m.nodeStartup, m.poolOpen, m.loopReadZeroWrite), m.cp),
    1.5,
  ],
  [
    "... with the CLI's modules too",
    "(`thinpool ls` + export's loop) / cp",
    (m) => over(add(m.thinpoolLs, m.loopReadZeroWrite), m.cp),
    1.5,
  ],
  ["Node's copy loop against cp", '(pread + pwrite) / cp', (m) => over(m.loopReadWrite, m.cp)],
  ['`copy_file_range` instead of pread + pwrite', '`copy_file_range` / pread + pwrite', (m) => over(m.loopCopyRange, m.loopReadWrite)],
  [
    '... where every block is read for the zero test',
    '(pread + zero test + `copy_file_range`) / (pread + zero test + pwrite)',
    (m) => over(m.loopReadZeroCopyRange, m.loopReadZeroWrite),
  ],
  [
    'a pipe between two processes, against writing the file',
    '`cat \\| cat > /dev/null` / `cat > file`',
    (m) => over(m.catPipeCat, m.catToFile),
  ],
  [
    'Node reading the pipe (its best setting), against writing the file',
    'read loop / `cat > file`',
    (m) => over(m.bestPipeLoop, m.catToFile),
  ],
  ["write's floor: the data made durable", 'the faster `dd` to the disk / `cat > file`', (m) => over(m.durable, m.catToFile), 2],
  [
    "... with Node's start-up and the pipe read (overlapped with the writes at best)",
    '(`node -e ""` + max(durable write, read loop)) / `cat > file`',
    (m) => over(add(m.nodeStartup, m.durable === null ? null : Math.max(m.durable, m.bestPipeLoop)), m.catToFile),
    2,
  ],
  [
    "write's like-for-like reference against `cat > file`",
    '`dd conv=sparse,fdatasync` / `cat > file`',
    (m) => over(m.ddSparseFdatasync, m.catToFile),
  ],
];

/**
 * bench/bulk/floors.ts runs: the probes (medians, the newest SHOWN runs side by side), then what they imply, each
 * floor with a goal of issue 21 said to leave room under the goal or to put it out of reach.
 */
export function bulkFloors(f) {
  const all = Object.keys(f.runs);
  const names = all.slice(-SHOWN);
  const ms = Object.fromEntries(names.map((k) => [k, medians(f.runs[k])]));
  const out = [
    ...all.map((k) => {
      const r = f.runs[k];
      const failed = Object.entries(r.failed).map(([p, why]) => ` Not measured: ${p} (${why}).`);
      return `- Run "${k}": commit ${r.commit}, ${r.date}, ${r.dataMiB} MiB of data (the data file, and the data of raw.img: ${r.pipedMiB} MiB, holes between), batches of ${r.batchKiB} KiB, zero test per ${r.blockKiB} KiB block, median of ${r.rounds} interleaved rounds${r.quick ? ' (--quick)' : ''}, node ${r.node}, ${r.cpus} shared CPUs, ${load(r)}.${failed.join('')}`;
    }),
    ...older(all, names, 'bulk-floors.json'),
    '',
    `| probe | ${names.join(' | ')} |`,
    `|---|${names.map(() => '---:|').join('')}`,
    ...PROBE_ROWS.map(
      ([key, label, mbs]) => `| ${label} | ${names.map((k) => (mbs ? rate(ms[k][key], f.runs[k]) : time(ms[k][key]))).join(' | ')} |`,
    ),
  ];
  // The pipe reads: one row per setting of the newest run (the line's time, and the child's read loop alone).
  for (const p of f.runs[names.at(-1)].pipeReads) {
    const cells = names.map((k) => {
      const x = f.runs[k].pipeReads.find((y) => y.pipeKiB === p.pipeKiB && y.readKiB === p.readKiB);
      return x === undefined ? '-' : `${time(median(x.s))} (loop ${time(median(x.loopS))})`;
    });
    out.push(
      `| \`cat raw.img \\| node\` reading it, pipe of ${p.pipeKiB} KiB, reads of ${p.readKiB} KiB: the line (the read loop) | ${cells.join(' | ')} |`,
    );
  }
  out.push(
    '',
    'What they imply (ratios of the medians of one run, below 1x where the first is faster; a floor above its goal puts the goal out of reach on this machine):',
    '',
    `| what | computed as | ${names.join(' | ')} | goal |`,
    `|---|---|${names.map(() => '---:|').join('')}---|`,
  );
  for (const [label, how, ratio, goal] of IMPLIED) {
    const cells = names.map((k) => {
      const x = ratio(ms[k]);
      if (x === null) return '-';
      const verdict = goal === undefined ? '' : x > goal ? ', out of reach' : ', leaves room';
      return `${x.toFixed(2)}x${verdict}`;
    });
    out.push(`| ${label} | ${how} | ${cells.join(' | ')} | ${goal === undefined ? '' : `${goal}x`} |`);
  }
  out.push(
    '',
    ...names.map((k) => {
      const b = ms[k].bestPipe;
      return `Run "${k}": the best pipe read was a pipe of ${b.pipeKiB} KiB (granted ${b.pipeBytes < 0 ? 'unknown: no helper' : `${b.pipeBytes / 1024} KiB`}) read ${b.readKiB} KiB at a time.`;
    }),
  );
  return out.join('\n');
}
