// docs/crash-safety.md's crash-points and metadata-fuzz sections: the counts the suites write under THINPOOL_FIGURES_DIR
// (crash-points.json, metadata-fuzz.json). Used by render-figures.mjs.
import { n, pct, list } from './figures-format.mjs';

export function crashPoints(f) {
  return [
    `Seed ${f.seed}, target ${n(f.target)} cuts inside operations and commits${f.soak ? ' (soak)' : ''}.`,
    '',
    '| what | count |',
    '|---|---|',
    `| cut points inside operations and commits (the target counts these) | **${n(f.cutsInOperations)}** |`,
    `| cut points while the pool opens (reported apart) | ${n(f.cutsAtOpen)} |`,
    `| workloads (on the auto-extend pool) | ${n(f.workloads)} (${n(f.autoExtendWorkloads)}) |`,
    `| commit-phase cuts, each crashed ${f.commitCrashesPerCut} ways (seeded random subset, none, all of the unflushed writes) | ${n(f.commitCuts)} cuts, ${n(f.commitCrashes)} crashes |`,
    `| commit-phase cuts with unflushed writes (where the subsets differ) | ${n(f.commitCutsWithUnflushed)} |`,
    `| crashes inside a commit that landed on the new state / the old | ${n(f.landedNew)} / ${n(f.landedOld)} |`,
    `| engine re-runs cut with \`armAt\` / external-tool checks | ${n(f.engineReruns)} / ${n(f.externalChecks)} |`,
    `| failures | ${n(f.failures)} (nothing tolerated) |`,
    `| commit phases | ${list(f.commitPhases)} |`,
    `| commits inside other ops | ${list(f.commitsInsideOps)} |`,
    `| other phases | ${list(f.otherPhases)} |`,
    `| ops in the workloads | ${list(f.ops)} |`,
    `| errors surfaced by the cut op | ${list(f.errorCodes)} |`,
  ].join('\n');
}

const CLASS_NAMES = {
  live: 'live, checksum not recomputed',
  'live-resealed': 'live, checksum recomputed',
  stale: 'stale',
  'stale-resealed': 'stale, checksum recomputed',
  truncated: 'truncated past the last live block',
  unchanged: 'unchanged bytes',
};
const CLASS_RULE = {
  live: 'checker 100 % and pool refuses 100 % (asserted)',
  'live-resealed': 'checker rate >= floor (asserted)',
  stale: 'checker and pool find nothing (asserted)',
  'stale-resealed': 'checker and pool find nothing (asserted)',
  truncated: 'reported only',
  unchanged: 'reported only',
};

export function metadataFuzz(f) {
  const c = f.classes;
  const lr = c['live-resealed'];
  return [
    `Seed ${f.seed}, ${n(f.mutants)} mutants (${n(f.resealed)} with checksums recomputed)${f.soak ? ' (soak)' : ''}; ` +
      `${f.crashes} crashes, ${f.hangs} hangs (bound ${n(f.hangBoundMs)} ms, the child is killed past it), ${f.unnamedErrors} errors not naming structure and block. ` +
      `Floor for live mutants with checksums recomputed: ${(100 * f.liveResealedFloor).toFixed(0)} % (measured here: ${pct(lr.detected, lr.mutants)}).`,
    '',
    '| class | mutants | checker reported | pool opened | pool refused | rule |',
    '|---|---|---|---|---|---|',
    ...Object.entries(CLASS_NAMES).map(
      ([k, name]) =>
        `| ${name} | ${n(c[k].mutants)} | ${n(c[k].detected)} (${pct(c[k].detected, c[k].mutants)}) | ${n(c[k].poolTried)} | ${n(c[k].poolRefused)} | ${CLASS_RULE[k]} |`,
    ),
    '',
    `Mutation kinds: ${list(f.kinds)}. Error codes: ${list(f.codes)}.`,
  ].join('\n');
}
