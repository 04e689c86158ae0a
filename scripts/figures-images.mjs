// The figures section of docs/images.md: bench/images/import.ts runs (`--figures docs/figures/images.json --as
// NAME`), rendered from docs/figures/images.json. Used by render-figures.mjs.
import { median } from './figures-stats.mjs';

/** The section shows this many runs, the newest; the JSON keeps every run. */
const SHOWN = 3;

const STEPS = [
  ['tarX', '`tar -x` of the layers into a directory'],
  ['tarXSync', '`tar -x` + `sync`'],
  ['importInProcess', 'import in a process (`ImageStore.import`, the commit with its fdatasync included)'],
  ['importCommand', '`thinpool image import` as a command (a fresh process)'],
  ['importAgainCommand', 'the same image again as a command (every layer reused)'],
  ['lsCommand', '`thinpool ls` of the pool (start-up alone)'],
];
/** Issue 21's goal for the command, as a ratio to `tar -x`. */
const GOALS = { importCommand: 1.5 };

export function images(f) {
  const all = Object.keys(f.runs);
  const names = all.slice(-SHOWN);
  const out = [
    all
      .map((k) => {
        const r = f.runs[k];
        return `Run "${k}": commit ${r.commit}, ${r.date}, ${r.image.layers} layers (${r.image.tarMiB} MiB of tar, ${r.image.entries} entries)${r.quick ? ' (--quick)' : ''}, ${r.rounds.tarX.length} rounds, ${r.cpus} shared CPUs, load average ${r.loadAverage[0]} before and ${r.loadAverage[1]} after.`;
      })
      .join(' ') +
      (all.length > names.length ? ` The table shows the newest ${names.length}; the others are in docs/figures/images.json.` : ''),
    '',
    'Each cell: the best of the rounds, and the median over the rounds of the ratio to `tar -x` in the same round.',
    '',
    `| step | ${names.map((k) => `${k}: best | ${k}: vs \`tar -x\``).join(' | ')} | goal |`,
    `|---|${names.map(() => '---:|---:|').join('')}---:|`,
  ];
  for (const [key, label] of STEPS) {
    if (!names.some((k) => f.runs[k].rounds[key] !== undefined)) continue;
    const cells = names.map((k) => {
      const r = f.runs[k].rounds;
      const xs = r[key];
      if (xs === undefined) return '- | -';
      const ratio = median(xs.map((x, i) => x / r.tarX[i]));
      return `${Math.min(...xs)} ms | ${key === 'tarX' ? '1.00x' : `${ratio.toFixed(2)}x`}`;
    });
    out.push(`| ${label} | ${cells.join(' | ')} | ${GOALS[key] === undefined ? '' : `${GOALS[key]}x`} |`);
  }
  // What the goal leaves, from the newest run's rounds: a command that applies no layer (the same image again)
  // already costs `again` x tar -x, so an import within the goal has (goal - again) x tar -x to apply them.
  const newest = f.runs[names[names.length - 1]].rounds;
  if (newest.importAgainCommand !== undefined && newest.importCommand !== undefined && newest.tarXSync !== undefined) {
    const per = (xs, ys) => median(xs.map((x, i) => x / ys[i]));
    const again = per(newest.importAgainCommand, newest.tarX);
    const left = GOALS.importCommand - again;
    const tarMs = median(newest.tarX);
    out.push(
      '',
      `What the goal leaves (run "${names[names.length - 1]}", medians over its rounds): the same image again as a command reads and hashes every layer, starts the worker and commits, and applies nothing; it alone is ${again.toFixed(2)}x \`tar -x\`. ` +
        (left <= 0
          ? 'A command within 1.5x would have no time left to apply the layers: the goal is out of reach for a command on this machine.'
          : `A command within 1.5x would have ${left.toFixed(2)}x \`tar -x\` (${Math.round(left * tarMs)} ms) to apply layers that \`tar -x\` itself takes ${Math.round(tarMs)} ms to write into the page cache.`) +
        ` Against \`tar -x\` + \`sync\` (the import's commit makes the layers durable; \`tar -x\` alone leaves them in the page cache) the command is ${per(newest.importCommand, newest.tarXSync).toFixed(2)}x.`,
    );
  }
  // The other tables come from the newest run that measured them (an --import-only run does not).
  const latest = (field) => [...names].reverse().find((k) => f.runs[k][field] !== undefined);
  const big = latest('bigImport');
  if (big !== undefined) {
    const b = f.runs[big].bigImport;
    out.push(
      '',
      `A larger image (run "${big}"): ${b.layers} layers, ${b.mib} MiB of layers, imported in ${(b.ms / 1000).toFixed(1)} s (${(b.mib / (b.ms / 1000)).toFixed(0)} MiB/s) in a process.`,
    );
  }
  const cc = latest('containerCreate');
  if (cc !== undefined) {
    out.push(
      '',
      `Container creation (run "${cc}", median of 9, the pool commit included):`,
      '',
      '| image | `container create` |',
      '|---|---:|',
    );
    for (const c of f.runs[cc].containerCreate) out.push(`| ${c.image} | ${c.medianMs} ms |`);
  }
  const rf = latest('readFile');
  if (rf !== undefined) {
    out.push(
      '',
      `Reading a file through an image against reading it from the extracted directory (run "${rf}", medians of 5, page cache warm on both sides):`,
      '',
      '| file | image: mount + read + unmount | image: read in an open session | extracted directory |',
      '|---|---:|---:|---:|',
    );
    for (const r of f.runs[rf].readFile) out.push(`| ${r.file} | ${r.mountReadMs} ms | ${r.sessionReadMs} ms | ${r.directoryMs} ms |`);
  }
  return out.join('\n');
}
