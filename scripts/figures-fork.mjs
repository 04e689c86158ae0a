// The figures section `fork-vs-copy` of docs/testing.md: bench/testing/fork-vs-copy.ts runs (`node
// dist/bench/testing/fork-vs-copy.js --figures docs/figures/fork-vs-copy.json --as NAME`), rendered from
// docs/figures/fork-vs-copy.json. Used by render-figures.mjs.
import { n } from './figures-format.mjs';

/** The section shows this many runs, the newest; the JSON keeps every run. */
const SHOWN = 3;

const MiB = 1024 * 1024;
const dur = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1 ? `${ms.toFixed(1)} ms` : `${(ms * 1000).toFixed(1)} µs`);
const sizeOf = (x) => (x >= 1024 * MiB ? `${x / (1024 * MiB)} GiB` : `${x / MiB} MiB`);
const STORE = { memory: 'memory', temp: 'temp (file pool)' };

/** How a figure grows from the smallest image to the largest: `16.2x`. */
const growth = (a, b) => `${(b / a).toFixed(2)}x`;

/** One table per run: per image and store, cp against fork + dispose (medians), and the ratio. */
export function forkVsCopy(f) {
  const all = Object.keys(f.runs);
  const names = all.slice(-SHOWN);
  const out = [];
  if (all.length > names.length)
    out.push(`The newest ${names.length} of ${all.length} runs; the others are in docs/figures/fork-vs-copy.json.`, '');
  for (const name of names) {
    const r = f.runs[name];
    const cpRuns = r.sizes.map((z) => `${z.cpRunsMs.length} at ${sizeOf(z.sizeBytes)}`).join(', ');
    out.push(
      `**${name}**: commit ${r.commit}, ${r.date}, ${r.cpus} shared CPUs, load average ${r.loadAverage[0]} before and ${r.loadAverage[1]} after${r.quick ? ' (--quick)' : ''}. Medians of the \`cp\` runs (${cpRuns}) and of ${r.batches} batches of ${r.forksPerBatch} forks each (${r.forksPerBatchWrite} with the 4 KiB write).`,
      '',
      '| image | store | `cp --sparse=always` | fork + dispose | ratio | fork + 4 KiB write + dispose | ratio | load once |',
      '|---|---|---:|---:|---:|---:|---:|---:|',
    );
    for (const z of r.sizes)
      for (const s of z.stores)
        out.push(
          `| ${sizeOf(z.sizeBytes)} | ${STORE[s.store] ?? s.store} | ${dur(z.cpMs)} | ${dur(s.forkMs)} | ${n(Math.round(z.cpMs / s.forkMs))}x | ${dur(s.forkWriteMs)} | ${n(Math.round(z.cpMs / s.forkWriteMs))}x | ${dur(s.loadMs)} |`,
        );
    // How each figure grows with the image (a run that measured more than one size).
    if (r.sizes.length > 1) {
      const [a, b] = [r.sizes[0], r.sizes.at(-1)];
      const forks = b.stores
        .map((s) => {
          const t = a.stores.find((x) => x.store === s.store);
          return t === undefined ? undefined : `${growth(t.forkMs, s.forkMs)} (${s.store})`;
        })
        .filter((x) => x !== undefined);
      out.push(
        '',
        `From the ${sizeOf(a.sizeBytes)} image to the ${sizeOf(b.sizeBytes)} one (${growth(a.sizeBytes, b.sizeBytes)} the size): \`cp\` takes ${growth(a.cpMs, b.cpMs)} as long, fork + dispose ${forks.join(', ')}.`,
      );
    }
    out.push('');
  }
  return out.join('\n').trimEnd();
}
