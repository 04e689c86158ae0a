#!/usr/bin/env node
// Renders the figures quoted in the docs from checked-in JSON, so that no count in the docs is typed by hand.
//
//   node scripts/render-figures.mjs            rewrite the generated sections of the docs from docs/figures/*.json
//   node scripts/render-figures.mjs --check    exit 1 (naming the sections) when a doc differs from what the JSON makes
//   node scripts/render-figures.mjs --mutation reports/mutation/a.json [b.json ...]
//                                              merge Stryker JSON reports into docs/figures/mutation.json, replacing the
//                                              entries of the files they measured and keeping the others (per file:
//                                              killed, timed out, survived, no coverage; every survivor), then render;
//                                              a file whose source changed since its report is marked so
//
// Sources: docs/figures/metadata-tools.json is written by `THINPOOL_FIGURES_DIR=docs/figures node
// dist/bench/engine/metadata-tools.js [--sizes=1,5,20]` (merged per size). docs/figures/crash-points.json and docs/figures/metadata-fuzz.json are written by the suites when
// THINPOOL_FIGURES_DIR names a directory (`THINPOOL_FIGURES_DIR=docs/figures npx vitest run
// test/crash/crash-points.test.ts test/fuzz/metadata-fuzz.test.ts`); docs/figures/mutation.json by --mutation from
// `npm run mutate`'s report, with the survivors judged equivalent (and why) in docs/figures/mutation-equivalent.json;
// docs/figures/crash-suites.json (docs/crash-safety.md's "Other suites") by the suites under THINPOOL_FIGURES_DIR, each merging its own key (figures-crash-suites.mjs's CRASH_SUITES_COMMAND);
// docs/figures/bulk.json (the bulk table in docs/cli.md) by `node dist/bench/bulk/speed.js --figures docs/figures/bulk.json --as NAME`;
// docs/figures/bulk-buffer.json and bulk-floors.json (docs/cli.md's bulk probes) by `node dist/bench/bulk/buffer-size.js` and `node dist/bench/bulk/floors.js`, each with `--figures docs/figures/<that file> --as NAME`;
// docs/figures/images.json (docs/images.md) by `node dist/bench/images/import.js --figures docs/figures/images.json --as NAME`;
// docs/figures/{snapshot,depth,scale,core}.json (issue 2's goals in docs/benchmarks-engine.md, with read-path and cow) and docs/runs/engine.md (a `text` section: the file as it is) by figures-engine.mjs's ENGINE_RECORD;
// docs/figures/stream.json (docs/cli.md) by `node dist/bench/stream/send.js --start-ceph --figures docs/figures/stream.json --as NAME`;
// docs/figures/fork-vs-copy.json (docs/testing.md) by `node dist/bench/testing/fork-vs-copy.js --figures docs/figures/fork-vs-copy.json --as NAME`;
// docs/figures/nbd-tls.json by `node dist/bench/nbd/tls.js --figures=docs/figures/nbd-tls.json --as=NAME`;
// docs/figures/ab.json (A/B runs of two builds, sections filtered by run name) by `node dist/bench/_ab.js --old REV
// --figures docs/figures/ab.json --as NAME -- CMD`;
// README.md's summary table: figures-summary.mjs, from the files above and docs/benchmark-results.json;
// docs/figures/nbd-speed.json (docs/nbd.md) by `node dist/bench/nbd/speed.js --figures=docs/figures/nbd-speed.json --as=NAME`;
// docs/figures/rados.json by `node dist/bench/rados/speed.js --quick --figures=docs/figures/rados.json --as=NAME`;
// docs/figures/rados-depth.json by `node dist/bench/rados/depth.js --figures=docs/figures/rados-depth.json --as=NAME`
// (a section whose SECTIONS entry has `missing` shows that text while its JSON does not exist yet);
// docs/figures/containerd.json (and docs/plots/containerd-*.svg) by `node dist/bench/compare/run.js --scenario
// containerd --out DIR --figures=docs/figures/containerd.json --as=NAME`;
// A generated section sits between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->`; everything else in the
// doc is left alone. test/docs/figures.test.ts runs --check.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { abRuns } from './figures-ab.mjs';
import { bulk, bulkHeadline } from './figures-bulk.mjs';
import { bulkBuffer, bulkFloors } from './figures-bulk-probes.mjs';
import { CRASH_SUITES_COMMAND, crashSuites } from './figures-crash-suites.mjs';
import { ENGINE_RECORD, engineGoals, engineRun } from './figures-engine.mjs';
import { forkVsCopy } from './figures-fork.mjs';
import { images } from './figures-images.mjs';
import { mergeMutation, mutation } from './figures-mutation.mjs';
import { nbdSpeed } from './figures-nbd.mjs';
import { cow, metadataTools, metadataToolsHeadline, overheadsHeadline, readPath, startup } from './figures-overheads.mjs';
import { rados, radosCompletions, radosDepth, radosHopSummary } from './figures-rados.mjs';
import { containerdRuns, nbdTls } from './figures-services.mjs';
import { stream } from './figures-stream.mjs';
import { summary } from './figures-summary.mjs';
import { crashPoints, metadataFuzz } from './figures-tests.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const figures = join(root, 'docs/figures');
const readJson = (name) => JSON.parse(readFileSync(join(figures, name), 'utf8'));

const SECTIONS = [
  { doc: 'docs/crash-safety.md', name: 'crash-points', json: 'crash-points.json', render: crashPoints },
  { doc: 'docs/crash-safety.md', name: 'metadata-fuzz', json: 'metadata-fuzz.json', render: metadataFuzz },
  {
    doc: 'docs/crash-safety.md',
    name: 'crash-suites',
    json: 'crash-suites.json',
    render: crashSuites,
    missing: `No run recorded yet: \`${CRASH_SUITES_COMMAND}\` records one.`,
  },
  { doc: 'docs/testing-the-engine.md', name: 'mutation', json: 'mutation.json', render: (f) => mutation(figures, f) },
  { doc: 'docs/cli.md', name: 'bulk', json: 'bulk.json', render: bulk },
  { doc: 'README.md', name: 'bulk-headline', json: 'bulk.json', render: bulkHeadline },
  {
    doc: 'docs/cli.md',
    name: 'bulk-buffer',
    json: 'bulk-buffer.json',
    render: bulkBuffer,
    missing: 'No run recorded yet: `node dist/bench/bulk/buffer-size.js --figures docs/figures/bulk-buffer.json --as NAME` records one.',
  },
  {
    doc: 'docs/cli.md',
    name: 'bulk-floors',
    json: 'bulk-floors.json',
    render: bulkFloors,
    missing: 'No run recorded yet: `node dist/bench/bulk/floors.js --figures docs/figures/bulk-floors.json --as NAME` records one.',
  },
  { doc: 'docs/rados.md', name: 'rados', json: 'rados.json', render: rados },
  { doc: 'docs/rados.md', name: 'rados-hop', json: 'rados.json', render: radosHopSummary },
  {
    doc: 'docs/rados.md',
    name: 'rados-depth',
    json: 'rados-depth.json',
    render: radosDepth,
    // Until a run is recorded the section says how to record one (the figures come only from runs).
    missing: 'No run recorded yet: `node dist/bench/rados/depth.js --figures=docs/figures/rados-depth.json --as=NAME` records one.',
  },
  {
    doc: 'docs/rados.md',
    name: 'rados-completions',
    json: 'rados-completions.json',
    render: radosCompletions,
    missing:
      'No run recorded yet: `node dist/bench/rados/completions.js --figures=docs/figures/rados-completions.json --as=NAME` records one.',
  },
  { doc: 'docs/benchmarks-engine.md', name: 'metadata-tools', json: 'metadata-tools.json', render: metadataTools },
  { doc: 'README.md', name: 'metadata-tools-headline', json: 'metadata-tools.json', render: metadataToolsHeadline },
  { doc: 'docs/benchmarks-engine.md', name: 'read-path', json: 'read-path.json', render: readPath },
  { doc: 'docs/benchmarks-engine.md', name: 'startup', json: 'startup.json', render: startup },
  { doc: 'docs/benchmarks-engine.md', name: 'cow', json: 'cow.json', render: cow },
  {
    doc: 'docs/benchmarks-engine.md',
    name: 'engine-goals',
    json: ['snapshot.json', 'read-path.json', 'depth.json', 'scale.json', 'core.json', 'cow.json'],
    render: engineGoals,
    missing: `No run recorded yet: \`${ENGINE_RECORD}\` records one.`,
  },
  // The tables bench/compare/run.ts writes (`--out docs`) beside its JSON, as they are, less their first line
  // (a comment naming the run's command and time, which the doc's text around the section gives).
  {
    doc: 'docs/benchmarks.md',
    name: 'compare-tables',
    text: 'docs/benchmark-tables.md',
    render: (t) => t.replace(/^<!--[^\n]*-->\n/, '').trim(),
  },
  {
    doc: 'docs/benchmarks-engine.md',
    name: 'engine-run',
    text: 'docs/runs/engine.md',
    render: engineRun,
    missing: `No run recorded yet: \`${ENGINE_RECORD}\` records one.`,
  },
  { doc: 'docs/nbd.md', name: 'nbd-tls', json: 'nbd-tls.json', render: nbdTls },
  {
    doc: 'docs/nbd.md',
    name: 'nbd-speed',
    json: 'nbd-speed.json',
    render: nbdSpeed,
    missing: 'No run recorded yet: `node dist/bench/nbd/speed.js --figures=docs/figures/nbd-speed.json --as=NAME` records one.',
  },
  {
    doc: 'docs/cli.md',
    name: 'stream',
    json: 'stream.json',
    render: stream,
    missing: 'No run recorded yet: `node dist/bench/stream/send.js --start-ceph --figures docs/figures/stream.json --as NAME` records one.',
  },
  {
    doc: 'docs/testing.md',
    name: 'fork-vs-copy',
    json: 'fork-vs-copy.json',
    render: forkVsCopy,
    missing:
      'No run recorded yet: `node dist/bench/testing/fork-vs-copy.js --figures docs/figures/fork-vs-copy.json --as NAME` records one.',
  },
  {
    doc: 'docs/images.md',
    name: 'images',
    json: 'images.json',
    render: images,
    missing: 'No run recorded yet: `node dist/bench/images/import.js --figures docs/figures/images.json --as NAME` records one.',
  },
  {
    doc: 'docs/benchmarks-engine.md',
    name: 'engine-ab',
    json: 'ab.json',
    render: (f) => abRuns(f, 'engine-'),
    missing:
      'No A/B run recorded yet: `node dist/bench/_ab.js --old REV --figures docs/figures/ab.json --as engine-NAME -- CMD` records one.',
  },
  {
    doc: 'docs/images.md',
    name: 'images-ab',
    json: 'ab.json',
    render: (f) => abRuns(f, 'images-'),
    missing:
      'No A/B run recorded yet: `node dist/bench/_ab.js --old REV --figures docs/figures/ab.json --as images-NAME -- CMD` records one.',
  },
  {
    doc: 'docs/cli.md',
    name: 'bulk-ab',
    json: 'ab.json',
    render: (f) => abRuns(f, 'bulk-'),
    missing:
      'No A/B run recorded yet: `node dist/bench/_ab.js --old REV --figures docs/figures/ab.json --as bulk-NAME -- CMD` records one.',
  },
  { doc: 'docs/benchmarks.md', name: 'containerd', json: 'containerd.json', render: containerdRuns, optional: true },
  // README's headline table reads the files it needs itself (each row says how to record what is missing).
  { doc: 'README.md', name: 'summary', json: [], render: () => summary((f) => (existsSync(join(figures, f)) ? readJson(f) : undefined)) },
  {
    doc: 'README.md',
    name: 'engine-goals-headline',
    json: ['snapshot.json', 'read-path.json', 'depth.json', 'scale.json', 'core.json', 'cow.json'],
    render: engineGoals,
    missing: `Not recorded yet: \`${ENGINE_RECORD}\` records the runs.`,
  },
  { doc: 'README.md', name: 'overheads', json: ['read-path.json', 'startup.json', 'cow.json'], render: overheadsHeadline },
];

/** The docs as the JSON makes them: Map of doc path -> [current text, rendered text, names of the sections]. */
export function renderDocs() {
  const docs = new Map();
  for (const s of SECTIONS) {
    const path = join(root, s.doc);
    if (!docs.has(path)) docs.set(path, { before: readFileSync(path, 'utf8'), names: [] });
    const d = docs.get(path);
    d.after ??= d.before;
    const open = `<!-- figures:${s.name} -->`;
    const close = `<!-- /figures:${s.name} -->`;
    const i = d.after.indexOf(open);
    const j = d.after.indexOf(close);
    if (i < 0 || j < i) throw new Error(`${s.doc}: no section ${open} ... ${close}`);
    // A section with `missing` shows that text while its JSON (any of a list) does not exist yet; an optional one
    // renders without its JSON (saying no run is recorded yet). A `text` section renders a file of the repository.
    const src = s.text !== undefined ? [join(root, s.text)] : [s.json].flat().map((f) => join(figures, f));
    const absent = s.missing !== undefined && !src.every((f) => existsSync(f));
    const json = absent
      ? undefined
      : s.text !== undefined
        ? readFileSync(src[0], 'utf8')
        : Array.isArray(s.json)
          ? s.json.map(readJson)
          : s.optional && !existsSync(join(figures, s.json))
            ? undefined
            : readJson(s.json);
    const text = absent ? s.missing : s.render(json);
    d.after = `${d.after.slice(0, i + open.length)}\n${text}\n${d.after.slice(j)}`;
    d.names.push(s.name);
  }
  return docs;
}

const args = process.argv.slice(2);
if (args[0] === '--mutation') {
  writeFileSync(join(figures, 'mutation.json'), `${JSON.stringify(mergeMutation(root, figures, args.slice(1)), null, 2)}\n`);
}
const docs = renderDocs();
if (args[0] === '--check') {
  const stale = [...docs].filter(([, d]) => d.before !== d.after);
  for (const [path, d] of stale)
    console.error(
      `${path.slice(root.length + 1)}: the figures (${d.names.join(', ')}) differ from what docs/figures/*.json makes; run node scripts/render-figures.mjs`,
    );
  process.exit(stale.length === 0 ? 0 : 1);
}
for (const [path, d] of docs) if (d.before !== d.after) writeFileSync(path, d.after);
