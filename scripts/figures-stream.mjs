// The figures section `stream` of docs/cli.md: bench/stream/send.ts runs (`node dist/bench/stream/send.js
// [--ceph-conf=FILE | --start-ceph] --figures docs/figures/stream.json --as NAME`), rendered from
// docs/figures/stream.json. Used by render-figures.mjs.

/** The section shows this many runs, the newest; the JSON keeps every run. */
const SHOWN = 3;

/** The rows of a run, by the key the bench gives them. */
const LABELS = {
  sendIncremental: '`thinpool send NEXT --from BASE`',
  sendFull: '`thinpool send NEXT` (full)',
  export: '`thinpool export NEXT` (full raw image)',
  rbdExportDiff: '`rbd export-diff --from-snap BASE` of the same change',
};

const MiB = 1024 * 1024;
const ms = (x) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(x >= 100 ? 0 : 1)} ms`);
const mib = (x) => `${(x / MiB).toFixed(2)} MiB`;
const sizeOf = (x) => (x >= 1024 * MiB ? `${x / (1024 * MiB)} GiB` : `${x / MiB} MiB`);

/** One paragraph and table per run: each row's time and bytes, as ratios to the incremental send of the same run. */
export function stream(f) {
  const all = Object.keys(f.runs);
  const names = all.slice(-SHOWN);
  const out = [];
  if (all.length > names.length)
    out.push(`The newest ${names.length} of ${all.length} runs; the others are in docs/figures/stream.json.`, '');
  for (const name of names) {
    const r = f.runs[name];
    const inc = r.rows.find((x) => x.key === 'sendIncremental');
    const rbd = r.rows.find((x) => x.key === 'rbdExportDiff');
    out.push(
      `**${name}**: commit ${r.commit}, ${r.date}, ${r.cpus} shared CPUs, load average ${r.loadAverage[0]} before and ${r.loadAverage[1]} after, one run${r.quick ? ' (--quick)' : ''}: a ${sizeOf(r.volumeBytes)} volume of random data, ${r.changedBlocks} of its ${r.blocks} blocks of ${r.blockBytes / 1024} KiB changed by 4 KiB writes since BASE. ` +
        (r.rbd.ran ? `rbd: ${r.rbd.cluster}.` : `No rbd row: ${r.rbd.why}.`),
      '',
      '| what | time | x incremental send | bytes written | x incremental stream |',
      '|---|---:|---:|---:|---:|',
      ...r.rows.map(
        (x) =>
          `| ${LABELS[x.key] ?? x.what} | ${ms(x.ms)} | ${(x.ms / inc.ms).toFixed(1)} | ${mib(x.bytes)}${x.bytesOf === 'allocated' ? ' (allocated)' : ''} | ${(x.bytes / inc.bytes).toFixed(2)} |`,
      ),
    );
    if (rbd !== undefined) {
      const same = rbd.bytes === inc.bytes;
      out.push(
        '',
        same
          ? `The incremental stream is the same size as rbd's (${inc.bytes.toLocaleString('en-US')} bytes each).`
          : `The incremental stream is ${((100 * inc.bytes) / rbd.bytes).toFixed(1)} % of rbd's (${inc.bytes.toLocaleString('en-US')} against ${rbd.bytes.toLocaleString('en-US')} bytes).`,
      );
    }
    out.push('');
  }
  return out.join('\n').trimEnd();
}
