// The metadata tools against thin-provisioning-tools (metadata-tools.json) and issue 17's overheads (read-path.json,
// startup.json, cow.json): docs/benchmarks-engine.md's sections and README's headlines. Used by render-figures.mjs.
import { n } from './figures-format.mjs';

const TOOL = { restore: 'thin_restore', check: 'thin_check', dump: 'thin_dump', ls: 'thin_ls', 'ls-held': 'thin_ls' };
/** How a row is named in the table (a run measures `ls` a second time with a metadata snapshot held). */
const WHAT = { 'ls-held': 'ls (metadata snapshot held)' };
const mib = (b) => `${(b / 1048576).toFixed(0)} MiB`;
const secs = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms} ms`);
const millions = (m) => `${(m / 1e6).toLocaleString('en-US')} M`;

export function metadataTools(f) {
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

export function metadataToolsHeadline(f) {
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

export function readPath(f) {
  const { rows } = readVsRaw(f);
  return [
    `${n(f.blocks)} provisioned 64 KiB blocks, random 4 KiB-aligned offsets, page cache warm; median of ${f.rounds} interleaved rounds of ${n(f.perRound)} reads, timed by ${f.clock === 'cpu' ? "the process's CPU time" : 'the wall clock'}; load average ${f.loadAverage} on 2 shared cores (noisy).`,
    '',
    "| case | ns per read | against fs.readSync on the pool's data file |",
    '|---|---|---|',
    ...rows.map((r) => `| ${r.name} | ${n(r.nsPerOp)} | ${r.ratio.toFixed(2)}${r.name === 'volume.readSync' ? ' (goal >= 0.92)' : ''} |`),
  ].join('\n');
}

export function startup(f) {
  return [
    `\`thinpool snapshot\` on a pool with ${f.volumes} volumes against \`node -e ""\`, whole processes, interleaved, medians of ${f.runs} runs; load average ${f.loadAverage} on 2 shared cores (noisy).`,
    '',
    '| measure | node -e "" | thinpool snapshot | ratio (goal <= 1.3x) |',
    '|---|---|---|---|',
    `| wall time | ${f.nodeWallMs.toFixed(0)} ms | ${f.snapshotWallMs.toFixed(0)} ms | ${(f.snapshotWallMs / f.nodeWallMs).toFixed(2)}x |`,
    `| CPU time (user + system) | ${f.nodeCpuMs.toFixed(0)} ms | ${f.snapshotCpuMs.toFixed(0)} ms | ${(f.snapshotCpuMs / f.nodeCpuMs).toFixed(2)}x |`,
  ].join('\n');
}

export function cow(f) {
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

export function overheadsHeadline([read, start, cw]) {
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
