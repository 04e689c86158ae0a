// Issue 21's sections: the bulk tables of docs/cli.md and README.md (bench/bulk/speed.ts runs, from
// docs/figures/bulk.json), each run listed with its note. Used by render-figures.mjs. The probes of the same
// commands (buffer sizes, floors) are figures-bulk-probes.mjs's.

/**
 * One bulk row's ratio for a table cell: `-` when not measured, why when it failed, else the ratio (in bold when
 * asked) and, for a run that timed Node's start-up (`node -e ""`), the floor that start-up sets.
 */
function bulkRatio(r, bold) {
  if (r === undefined) return '-';
  if (r.ratio === null) return r.failed ?? 'failed';
  const x = `${r.ratio.toFixed(2)}x`;
  return `${bold ? `**${x}**` : x}${r.floorRatio === undefined ? '' : ` (floor ${r.floorRatio.toFixed(2)}x)`}`;
}

/** The bulk tables show this many runs, the newest; the JSON keeps every run (their notes list all). */
const BULK_SHOWN = 3;

/**
 * bench/bulk/speed.ts runs (`--figures docs/figures/bulk.json --as NAME [--note TEXT]`): a list of every run (its
 * stamp and its note: what changed in it), then one table per image, the newest BULK_SHOWN runs side by side.
 */
export function bulk(f) {
  const all = Object.keys(f.runs);
  const names = all.slice(-BULK_SHOWN);
  const sec = (x) => (x === null || x === undefined ? '-' : `${x.toFixed(2)} s`);
  const ratio = (r) => bulkRatio(r, true);
  const rss = (x) => (x === null || x === undefined ? '-' : `${x.toFixed(0)} MiB`);
  // One line per run: its stamp, then what changed in it (the run's `note`, recorded with `--note`).
  const out = [
    ...all.map((k) => {
      const r = f.runs[k];
      const load = r.loadAverage ? `, load average ${r.loadAverage[0]} before and ${r.loadAverage[1]} after` : ', loaded';
      return `- Run "${k}": commit ${r.commit}, ${r.date}, ${r.cpus} CPUs (shared${load}), median of ${r.reps} runs${r.quick ? ' (--quick)' : ''}.${r.note === undefined ? '' : ` ${r.note}`}`;
    }),
    ...(all.length > names.length
      ? ['', `The tables show the newest ${names.length} runs; the others are in docs/figures/bulk.json.`]
      : []),
  ];
  // Every image size any run measured (a run may cover only some, e.g. `--gib 1`), in order of first appearance.
  const labels = [...new Set(names.flatMap((k) => f.runs[k].sizes.map((z) => z.label)))];
  for (const label of labels) {
    const size = [...names]
      .reverse()
      .map((k) => f.runs[k].sizes.find((z) => z.label === label))
      .find((z) => z !== undefined);
    out.push(
      '',
      `${size.label}:`,
      '',
      `| command | reference | ${names.map((k) => `${k}: thinpool / reference | ratio | CPU ratio | thinpool peak RSS`).join(' | ')} | goal |`,
      `|---|---|${names.map(() => '---|---|---|---|').join('')}---|`,
    );
    // Rows match by command and reference (runs may have measured other rows: a newer one adds some).
    size.rows.forEach((row) => {
      const cells = names.map((k) => {
        const r = f.runs[k].sizes
          .find((s) => s.label === size.label)
          ?.rows.find((x) => x.command === row.command && x.reference === row.reference);
        const cpu =
          r?.cpuRatio === undefined || r.cpuRatio === null
            ? '-'
            : `${r.cpuRatio.toFixed(1)}x (${r.thinpoolCpuS.toFixed(2)} / ${r.referenceCpuS.toFixed(2)} s)`;
        return `${sec(r?.thinpoolS)} / ${sec(r?.referenceS)} | ${ratio(r)} | ${cpu} | ${rss(r?.thinpoolRssMiB)}`;
      });
      out.push(
        `| \`${row.command.replace(/\|/g, '\\|')}\` | \`${row.reference.replace(/\|/g, '\\|')}\` | ${cells.join(' | ')} | ${row.goal}x |`,
      );
    });
  }
  return out.join('\n');
}

/** README: the newest bulk run, one row per command and reference, a column per image size. */
export function bulkHeadline(f) {
  const name = Object.keys(f.runs).at(-1);
  const run = f.runs[name];
  const rows = [];
  for (const size of run.sizes)
    for (const r of size.rows) {
      let row = rows.find((x) => x.command === r.command && x.reference === r.reference);
      if (!row) rows.push((row = { command: r.command, reference: r.reference, goal: r.goal, cells: new Map() }));
      row.cells.set(size.label, r);
    }
  const labels = run.sizes.map((z) => z.label);
  return [
    `Run "${name}" (commit ${run.commit}, ${run.date}, load average ${run.loadAverage ? run.loadAverage.join(' / ') : 'unknown'}); "floor" is Node's start-up plus the reference, over the reference.`,
    '',
    `| command | against | ${labels.map((l) => l.replace(/,.*$/, '')).join(' | ')} | goal |`,
    `|---|---|${labels.map(() => '---|').join('')}---|`,
    ...rows.map(
      (row) =>
        `| \`${row.command.replace(/\|/g, '\\|')}\` | \`${row.reference.replace(/\|/g, '\\|')}\` | ${labels.map((l) => bulkRatio(row.cells.get(l), false)).join(' | ')} | ${row.goal}x |`,
    ),
  ].join('\n');
}
