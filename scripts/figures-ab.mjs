// A/B runs of two builds (bench/_ab.ts `--figures docs/figures/ab.json --as NAME`): one row per recorded run, the
// medians of each side and new / old computed here from the per-run times. Used by render-figures.mjs for the
// docs sections that quote what a change bought (`ab` + a filter on the run names).
import { median } from './figures-stats.mjs';

const ms = (x) => `${x.toFixed(x < 100 ? 1 : 0)} ms`;

/** The A/B runs whose names start with `prefix`, as a table (newest last). */
export function abRuns(f, prefix) {
  const rows = Object.entries(f.runs).filter(([k]) => k.startsWith(prefix));
  if (rows.length === 0)
    return `No A/B run named ${prefix}... recorded yet (\`node dist/bench/_ab.js --old REV --figures docs/figures/ab.json --as ${prefix}NAME -- CMD\`).`;
  return [
    "| run | command (`{root}`: the side's tree) | old | new | old: median | new: median | new / old | runs each, load |",
    '|---|---|---|---|---:|---:|---:|---|',
    ...rows.map(
      ([k, r]) =>
        `| ${k} (${r.date}) | \`${r.command.replace(/\|/g, '\\|')}\`${r.setup ? ` (before each, untimed: \`${r.setup.replace(/\|/g, '\\|')}\`)` : ''} | ${r.old} | ${r.new === 'tree' ? `${r.commit} (tree)` : r.new} | ${ms(median(r.oldMs))} | ${ms(median(r.newMs))} | **${(median(r.newMs) / median(r.oldMs)).toFixed(2)}** | ${r.runs}, ${r.loadAverage.join(' -> ')} |`,
    ),
  ].join('\n');
}
