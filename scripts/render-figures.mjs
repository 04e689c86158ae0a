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
import { list, n, pct } from './figures-format.mjs';
import { images } from './figures-images.mjs';
import { mergeMutation, mutation } from './figures-mutation.mjs';
import { nbdSpeed } from './figures-nbd.mjs';
import { rados, radosCompletions, radosDepth } from './figures-rados.mjs';
import { stream } from './figures-stream.mjs';
import { summary } from './figures-summary.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const figures = join(root, 'docs/figures');
const readJson = (name) => JSON.parse(readFileSync(join(figures, name), 'utf8'));

function crashPoints(f) {
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

function metadataFuzz(f) {
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

const TOOL = { restore: 'thin_restore', check: 'thin_check', dump: 'thin_dump', ls: 'thin_ls', 'ls-held': 'thin_ls' };
/** How a row is named in the table (a run measures `ls` a second time with a metadata snapshot held). */
const WHAT = { 'ls-held': 'ls (metadata snapshot held)' };
const mib = (b) => `${(b / 1048576).toFixed(0)} MiB`;
const secs = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms} ms`);
const millions = (m) => `${(m / 1e6).toLocaleString('en-US')} M`;

function metadataTools(f) {
  return [
    `From \`${f.bench}\` (${f.machine}): whole processes on the same XML and metadata, median wall time of the runs, ` +
      'ratio = thinpool / C++ tool (below 1: thinpool is faster), peak RSS of each CLI run from `/usr/bin/time -v` (largest of the runs).',
    '',
    '| mappings | command | thinpool | C++ tool | ratio | thinpool peak RSS | C++ peak RSS |',
    '|---|---|---|---|---|---|---|',
    ...f.sizes.flatMap((z) =>
      z.rows.map(
        (r) =>
          `| ${millions(z.mappings)} | ${WHAT[r.what] ?? r.what} vs ${TOOL[r.what]} | ${secs(r.oursMs)} | ${secs(r.theirsMs)} | **${r.ratio.toFixed(2)}x** | ${mib(r.oursRssBytes)} | ${mib(r.theirsRssBytes)} |`,
      ),
    ),
    '',
    ...f.sizes.map(
      (z) =>
        `- ${millions(z.mappings)}: XML ${mib(z.xmlBytes)}, metadata ${mib(z.metadataBytes)}, median of ${z.runs} run${z.runs === 1 ? '' : 's'}, measured ${z.date} at load average ${z.loadAverage} on 2 cores.`,
    ),
  ].join('\n');
}

function metadataToolsHeadline(f) {
  return [
    '| mappings | restore | check | dump | ls | thinpool peak RSS (largest of the four) |',
    '|---|---|---|---|---|---|',
    ...f.sizes.map((z) => {
      const by = Object.fromEntries(z.rows.map((r) => [r.what, r]));
      const cell = (w) => `${by[w].ratio.toFixed(2)}x ${TOOL[w]} (${secs(by[w].oursMs)})`;
      return `| ${millions(z.mappings)} | ${cell('restore')} | ${cell('check')} | ${cell('dump')} | ${cell('ls')} | ${mib(Math.max(...z.rows.map((r) => r.oursRssBytes)))} |`;
    }),
  ].join('\n');
}

// Overheads (issue 17): written by the benches when THINPOOL_FIGURES_DIR names a directory
// (`THINPOOL_FIGURES_DIR=docs/figures node dist/bench/engine/io.js`, `... dist/bench/cli-startup.js 15`,
// `... dist/bench/engine/cow.js`, the last as root to include the loop-mounted XFS and btrfs).
const RAW_READ = 'fs.readSync, pool data file (raw)';
const ns = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} ms` : x >= 1e3 ? `${(x / 1e3).toFixed(2)} µs` : `${x.toFixed(0)} ns`);
const readVsRaw = (f) => {
  const raw = f.rows.find((r) => r.name === RAW_READ).nsPerOp;
  return { raw, rows: f.rows.map((r) => ({ ...r, ratio: raw / r.nsPerOp })) };
};

function readPath(f) {
  const { rows } = readVsRaw(f);
  return [
    `${n(f.blocks)} provisioned 64 KiB blocks, random 4 KiB-aligned offsets, page cache warm; median of ${f.rounds} interleaved rounds of ${n(f.perRound)} reads, timed by ${f.clock === 'cpu' ? "the process's CPU time" : 'the wall clock'}; load average ${f.loadAverage} on 2 shared cores (noisy).`,
    '',
    "| case | ns per read | against fs.readSync on the pool's data file |",
    '|---|---|---|',
    ...rows.map((r) => `| ${r.name} | ${n(r.nsPerOp)} | ${r.ratio.toFixed(2)}${r.name === 'volume.readSync' ? ' (goal >= 0.92)' : ''} |`),
  ].join('\n');
}

function startup(f) {
  return [
    `\`thinpool snapshot\` on a pool with ${f.volumes} volumes against \`node -e ""\`, whole processes, interleaved, medians of ${f.runs} runs; load average ${f.loadAverage} on 2 shared cores (noisy).`,
    '',
    '| measure | node -e "" | thinpool snapshot | ratio (goal <= 1.3x) |',
    '|---|---|---|---|',
    `| wall time | ${f.nodeWallMs.toFixed(0)} ms | ${f.snapshotWallMs.toFixed(0)} ms | ${(f.snapshotWallMs / f.nodeWallMs).toFixed(2)}x |`,
    `| CPU time (user + system) | ${f.nodeCpuMs.toFixed(0)} ms | ${f.snapshotCpuMs.toFixed(0)} ms | ${(f.snapshotCpuMs / f.nodeCpuMs).toFixed(2)}x |`,
  ].join('\n');
}

function cow(f) {
  // Runs recorded before the bench measured the copy alone (on a bare file) lack it and the floor; runs before
  // the deferred copies (pending-copies.ts) lack the settled and filled cases.
  const floor = f.rows.every((r) => r.floorRatio !== undefined);
  const settled = f.rows.every((r) => r.settledRatio !== undefined);
  const atOnce = f.rows.every((r) => r.atOnceRatio !== undefined);
  return [
    `${n(f.blocks)} provisioned 64 KiB blocks, a snapshot taken, medians of interleaved rounds (wall clock); load average ${f.loadAverage} on 2 shared cores (noisy). \`read-write\` is the same run without the native helper (the path before copy_file_range and reflinks).${floor ? ' Copy alone: the 64 KiB copy on a bare file of the same file system (no pool); floor: (unshared write + copy alone) / unshared write, the ratio were the copy the only extra work.' : ''}${settled ? ' The copy of a 4 KiB write is deferred (pending-copies.ts); "settled": the same writes with every owed copy made inside the timed round, against unshared writes with the same call; "filled": shared blocks written whole 4 KiB at a time (nothing owed), per write, against the unshared write.' : ''}${atOnce ? ' "Copied at once": the same 4 KiB write 512 bytes off the 4 KiB grid, which is copied at once as every first write was before the copies were deferred (the old path, same run).' : ''}`,
    '',
    `| file system | copy path | 4 KiB write, unshared block | first 4 KiB write, shared block | ratio (goal <= 2x) | first write, unprovisioned block |${floor ? ' copy alone | floor |' : ''}${settled ? ' settled: shared / unshared | filled 4 KiB at a time |' : ''}${atOnce ? ' copied at once (off the 4 KiB grid) |' : ''}`,
    `|---|---|---|---|---|---|${floor ? '---|---|' : ''}${settled ? '---|---|' : ''}${atOnce ? '---|' : ''}`,
    ...f.rows.map(
      (r) =>
        `| ${r.fs} | ${r.path} | ${ns(r.unsharedNs)} | ${ns(r.sharedNs)} | ${r.ratio.toFixed(2)}x | ${ns(r.unprovisionedNs)} |${floor ? ` ${ns(r.copyNs)} | ${r.floorRatio.toFixed(2)}x |` : ''}${settled ? ` ${ns(r.settledSharedNs)} / ${ns(r.settledUnsharedNs)} = ${r.settledRatio.toFixed(2)}x | ${ns(r.fillNs)} = ${r.fillRatio.toFixed(2)}x |` : ''}${atOnce ? ` ${ns(r.atOnceNs)} = ${r.atOnceRatio.toFixed(2)}x |` : ''}`,
    ),
  ].join('\n');
}

/** The README's copy-on-write rows: per file system with the native helper, or (older runs) the best of each path. */
function cowHeadline(cw, best) {
  if (!cw.rows.every((r) => r.atOnceRatio !== undefined)) {
    return [
      `| first 4 KiB write into a shared 64 KiB block against an unshared one | ${best((r) => r.path !== 'read-write')}; old path ${best((r) => r.path === 'read-write')} | <= 2x |`,
    ];
  }
  const fast = cw.rows.filter((r) => r.path !== 'read-write');
  const per = (fn) => fast.map((r) => `${fn(r).toFixed(2)}x (${r.fs.replace(/ \(.*\)/, '')})`).join(', ');
  return [
    `| first 4 KiB write into a shared 64 KiB block against an unshared one (the copy deferred) | ${per((r) => r.ratio)} | <= 2x |`,
    `| the same, copied at once (the path before, same run) | ${per((r) => r.atOnceRatio)} | |`,
    `| the same, its deferred copy made in the timed round | ${per((r) => r.settledRatio)} | (the copy moved, not removed) |`,
    `| shared blocks written whole 4 KiB at a time (nothing copied) | ${per((r) => r.fillRatio)} | |`,
  ];
}

function overheadsHeadline([read, start, cw]) {
  const v = readVsRaw(read).rows.find((r) => r.name === 'volume.readSync');
  const best = (pred) =>
    cw.rows
      .filter(pred)
      .map((r) => `${r.ratio.toFixed(2)}x (${r.fs.replace(/ \(.*\)/, '')}, ${r.path})`)
      .join(', ');
  return [
    '| what (same run, 2 shared cores: noisy) | measured | goal |',
    '|---|---|---|',
    `| random 4 KiB \`volume.readSync\` against \`fs.readSync\` on the pool's data file | ${v.ratio.toFixed(2)} | >= 0.92 |`,
    `| \`thinpool snapshot\` (100 volumes) against \`node -e ""\`, CPU time / wall time | ${(start.snapshotCpuMs / start.nodeCpuMs).toFixed(2)}x / ${(start.snapshotWallMs / start.nodeWallMs).toFixed(2)}x | <= 1.3x |`,
    ...cowHeadline(cw, best),
  ].join('\n');
}

/** bench/nbd/tls.ts runs (`--figures=docs/figures/nbd-tls.json --as=NAME`): one table per run, ratios against nbdkit of the same run. */
function nbdTls(f) {
  const out = [];
  const fmt = (x, unit) => (unit === 'IOPS' ? `${(x / 1000).toFixed(1)} k` : x.toFixed(0));
  for (const [name, r] of Object.entries(f.runs)) {
    out.push(
      `**${name}** (commit ${r.commit}, ${r.date}, ${r.cpus} CPUs, ${r.rounds} round(s), fio ${r.runtimeS} s, ` +
        `busy-poll window ${r.busyPollUs === 'default' ? 'default (50 µs)' : `${r.busyPollUs} µs`}, load average at the end ${r.load}):`,
      '',
    );
    out.push(
      '| case | thinpool TLS | nbdkit TLS | thinpool / nbdkit (TLS) | thinpool plain | nbdkit plain | TLS cost thinpool / nbdkit | server CPU thinpool / nbdkit (TLS) |',
    );
    out.push('|---|---|---|---|---|---|---|---|');
    for (const x of r.rows) {
      out.push(
        `| ${x.case} | ${fmt(x.thinpoolTls, x.unit)} ${x.unit} | ${fmt(x.nbdkitTls, x.unit)} ${x.unit} | **${(x.thinpoolTls / x.nbdkitTls).toFixed(2)}** ` +
          `| ${fmt(x.thinpoolPlain, x.unit)} | ${fmt(x.nbdkitPlain, x.unit)} | ${(x.thinpoolTls / x.thinpoolPlain).toFixed(2)} / ${(x.nbdkitTls / x.nbdkitPlain).toFixed(2)} ` +
          `| ${x.cpuThinpoolTls.toFixed(1)} / ${x.cpuNbdkitTls.toFixed(1)} ${x.cpuUnit} |`,
      );
    }
    out.push('');
  }
  out.push('Goal: thinpool / nbdkit (TLS) at least 0.8. TLS cost: TLS / plain for the same server (1.00: free).');
  return out.join('\n');
}

const CTRD_COMMAND =
  'npm run build && node dist/bench/compare/run.js --scenario containerd --out /tmp/ctrd-bench --figures=docs/figures/containerd.json --as=NAME';

/** bench/compare's `containerd` scenario (`--figures=docs/figures/containerd.json --as=NAME`): per run, overlayfs against thinpool. */
function containerdRuns(f) {
  if (f === undefined) return `No run recorded yet. Measure with:\n\n    ${CTRD_COMMAND}`;
  const bytes = (v) => (v >= 1048576 ? `${(v / 1048576).toFixed(1)} MiB` : `${(v / 1024).toFixed(0)} KiB`);
  const ms = (v) => (v >= 100 ? `${v.toFixed(0)} ms` : `${v.toFixed(1)} ms`);
  const val = (x) =>
    x === undefined ? '-' : x.median === null ? `skipped: ${x.skipped}` : x.unit === 'bytes' ? bytes(x.median) : ms(x.median);
  const out = [];
  for (const [name, r] of Object.entries(f.runs)) {
    const sc = r.scenarios.find((x) => x.name === 'containerd');
    if (sc === undefined) continue;
    out.push(
      `**${name}**: commit ${r.commit}, ${r.date}, ${r.mode} scale, ${r.cpus} CPUs shared with other work (load average ${r.loadAverage[0]} before, ${r.loadAverage[1]} after), ${(sc.ms / 1000).toFixed(0)} s.`,
      '',
      '| case | metric | containerd + overlayfs | containerd + thinpool | overlayfs / thinpool | lower |',
      '|---|---|---:|---:|---:|---|',
    );
    const keys = [...new Set(sc.figures.map((x) => `${x.case}\u0000${x.metric}`))];
    for (const k of keys) {
      const [kase, metric] = k.split('\u0000');
      const get = (s) => sc.figures.find((x) => x.case === kase && x.metric === metric && x.system === s);
      const o = get('ctrd-overlayfs');
      const t = get('ctrd-thinpool');
      const ok = o?.median > 0 && t?.median > 0;
      const ratio = ok ? o.median / t.median : null;
      out.push(
        `| ${kase} | ${metric} | ${val(o)} | ${val(t)} | ${ratio === null ? '-' : `**${ratio.toFixed(2)}**`} | ${ratio === null ? '-' : ratio >= 1 ? 'thinpool' : 'overlayfs'} |`,
      );
    }
    out.push('');
    for (const n of sc.notes.filter((x) => !x.includes('overlayfs / thinpool ='))) out.push(`- ${n}`);
    out.push('');
  }
  out.push('![containerd: times](plots/containerd-time.svg)', '![containerd: bytes](plots/containerd-space.svg)');
  return out.join('\n');
}

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
