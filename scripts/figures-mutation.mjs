// The mutation-testing section of docs/testing-the-engine.md: Stryker JSON reports merged into the compact
// docs/figures/mutation.json (per file: counts and every survivor), rendered with the verdicts of
// docs/figures/mutation-equivalent.json. Used by render-figures.mjs.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { n, pct } from './figures-format.mjs';

/**
 * Merge Stryker reports into the compact form, on top of the files already in docs/figures/mutation.json (a run
 * over one file replaces that file's entry and leaves the others; later reports win for a file measured twice).
 */
export function mergeMutation(root, figures, paths) {
  const mp = join(figures, 'mutation.json');
  const out = { files: existsSync(mp) ? JSON.parse(readFileSync(mp, 'utf8')).files : {} };
  for (const p of paths) {
    const r = JSON.parse(readFileSync(p, 'utf8'));
    for (const [file, f] of Object.entries(r.files)) {
      const current = existsSync(join(root, file)) ? readFileSync(join(root, file), 'utf8') : undefined;
      const changed = current !== f.source;
      if (changed) console.warn(`${p}: ${file} has changed since that run; marked so in the table (run the mutation test on it again)`);
      const lines = f.source.split('\n');
      const e = { killed: 0, timeout: 0, survived: 0, noCoverage: 0, errors: 0, survivors: [], ...(changed ? { changedSince: true } : {}) };
      for (const m of f.mutants) {
        if (m.status === 'Killed') e.killed++;
        else if (m.status === 'Timeout') e.timeout++;
        else if (m.status === 'Survived' || m.status === 'NoCoverage') {
          if (m.status === 'Survived') e.survived++;
          else e.noCoverage++;
          const { start, end } = m.location;
          const original =
            start.line === end.line
              ? lines[start.line - 1].slice(start.column - 1, end.column - 1)
              : `${lines[start.line - 1].slice(start.column - 1)} ...`;
          e.survivors.push({
            at: `${start.line}:${start.column}`,
            mutator: m.mutatorName,
            status: m.status,
            original: original.trim().slice(0, 80),
            replacement: m.replacement.trim().slice(0, 80),
          });
        } else e.errors++;
      }
      e.survivors.sort(
        (a, b) => Number(a.at.split(':')[0]) - Number(b.at.split(':')[0]) || Number(a.at.split(':')[1]) - Number(b.at.split(':')[1]),
      );
      out.files[file] = e;
    }
  }
  out.files = Object.fromEntries(Object.entries(out.files).sort(([a], [b]) => (a < b ? -1 : 1)));
  return out;
}

export function mutation(figures, f) {
  const eqPath = join(figures, 'mutation-equivalent.json');
  const equivalent = existsSync(eqPath) ? JSON.parse(readFileSync(eqPath, 'utf8')) : {};
  const score = (e) => pct(e.killed + e.timeout, e.killed + e.timeout + e.survived + e.noCoverage);
  const rows = Object.entries(f.files).map(([file, e]) => {
    const eq = e.survivors.filter((s) => equivalent[`${file}:${s.at} ${s.mutator}`] !== undefined).length;
    const total = e.killed + e.timeout + e.survived + e.noCoverage;
    return `| ${file}${e.changedSince ? ' (measured on the version before its last change)' : ''} | ${n(total)} | ${n(e.killed)} | ${n(e.timeout)} | ${n(e.survived)} | ${n(e.noCoverage)} | **${score(e)}** | ${n(eq)} | ${pct(e.killed + e.timeout + eq, total)} |`;
  });
  const sum = Object.values(f.files).reduce(
    (a, e) => ({
      killed: a.killed + e.killed,
      timeout: a.timeout + e.timeout,
      survived: a.survived + e.survived,
      noCoverage: a.noCoverage + e.noCoverage,
    }),
    { killed: 0, timeout: 0, survived: 0, noCoverage: 0 },
  );
  const survivors = [];
  for (const [file, e] of Object.entries(f.files)) {
    for (const s of e.survivors) {
      const why = equivalent[`${file}:${s.at} ${s.mutator}`];
      survivors.push(
        `| ${file}:${s.at} | ${s.mutator}${s.status === 'NoCoverage' ? ' (no coverage)' : ''} | \`${s.original.replace(/\|/g, '\\|')}\` -> \`${s.replacement.replace(/\|/g, '\\|')}\` | ${why === undefined ? 'not killed' : `equivalent: ${why}`} |`,
      );
    }
  }
  return [
    '| file | mutants | killed | timed out | survived | no coverage | score | judged equivalent | score without them |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
    `| all measured | ${n(sum.killed + sum.timeout + sum.survived + sum.noCoverage)} | ${n(sum.killed)} | ${n(sum.timeout)} | ${n(sum.survived)} | ${n(sum.noCoverage)} | **${score(sum)}** | | |`,
    '',
    'Survivors (and mutants no fast test reaches):',
    '',
    '| where | mutator | change | verdict |',
    '|---|---|---|---|',
    ...survivors,
  ].join('\n');
}
