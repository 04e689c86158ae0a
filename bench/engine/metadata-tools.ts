/**
 * The metadata tools against the C++ ones (thin-provisioning-tools, Debian package of that name), whole
 * processes, on the same XML and the same metadata, in the same run: `thinpool restore` vs `thin_restore`,
 * `thinpool check` vs `thin_check`, `thinpool dump` vs `thin_dump`, `thinpool ls` vs `thin_ls` (and once more
 * with a metadata snapshot held, thin_ls reading a copy of that metadata: row `ls-held`), at 1 M and 5 M
 * mappings by default (`--sizes=1,5,20`: millions of mappings; `--quick`: 0.1 M).
 *
 * Each figure is the median wall time of the runs (commands alternate, thinpool first in odd runs) and the ratio
 * thinpool / C++ (below 1: thinpool is faster), with the peak RSS of every CLI run from `/usr/bin/time -v`
 * ("Maximum resident set size"; the largest over the runs).
 *
 * The XML (written once per size, streamed): device 0 maps half the mappings, virtual blocks 0.. to data blocks
 * in a scattered order (so thin_dump prints single mappings, not ranges); device 1, its snapshot, maps the same
 * virtual blocks, nine in ten to the same data blocks and every tenth to a block of its own (time 1). The C++
 * tools check, dump and list the metadata `thinpool restore` wrote (thin_check passing on it is part of the
 * run); `thin_restore` restores the same XML into a file of the same size. The two dumps must be byte-equal.
 *
 * With THINPOOL_FIGURES_DIR set, the figures are merged into $THINPOOL_FIGURES_DIR/metadata-tools.json (one entry
 * per size, replaced when that size is measured again), which scripts/render-figures.mjs renders into the docs.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, openSync, readFileSync, statSync, writeFileSync, writeSync, ftruncateSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QUICK, args, fmtBytes, fmtMs, header, median, note, scratchDir, table } from './_lib.js';

const bin = fileURLToPath(new URL('../../../bin/thinpool.js', import.meta.url));
const sizesArg = args.find((a) => a.startsWith('--sizes='));
const SIZES = QUICK ? [0.1] : sizesArg ? sizesArg.slice(8).split(',').map(Number) : [1, 5];

interface Run {
  ms: number;
  rssBytes: number;
}

/** Run a command under /usr/bin/time -v; wall time measured here, peak RSS from time's report. */
function timed(cmd: string, argv: string[], stdout?: string): Run {
  const fd = stdout === undefined ? 'ignore' : openSync(stdout, 'w');
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-v', cmd, ...argv], {
    stdio: ['ignore', fd, 'pipe'],
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const ms = performance.now() - t0;
  if (typeof fd === 'number') closeSync(fd);
  const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr ?? '');
  if (r.status !== 0 || m === null) {
    throw new Error(`${cmd} ${argv.join(' ')} failed (exit ${r.status}): ${(r.stderr ?? '').split('\n').slice(0, 5).join(' / ')}`);
  }
  return { ms, rssBytes: Number(m[1]) * 1024 };
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Write the XML described in the header; returns nr_data_blocks. */
function writeXml(path: string, mappings: number): number {
  const half = Math.floor(mappings / 2);
  const own = Math.ceil(half / 10);
  const nrData = half + own + Math.ceil(half / 10);
  let stride = Math.floor(half * 0.618) | 1;
  while (gcd(stride, half) !== 1) stride += 2;
  const fd = openSync(path, 'w');
  let buf = '';
  const put = (s: string): void => {
    buf += s;
    if (buf.length > 1 << 20) {
      writeSync(fd, buf);
      buf = '';
    }
  };
  put(`<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="${nrData}">\n`);
  put(`  <device dev_id="0" mapped_blocks="${half}" transaction="1" creation_time="0" snap_time="1">\n`);
  for (let v = 0; v < half; v++) put(`    <single_mapping origin_block="${v}" data_block="${(v * stride) % half}" time="0"/>\n`);
  put('  </device>\n');
  put(`  <device dev_id="1" mapped_blocks="${half}" transaction="2" creation_time="1" snap_time="1">\n`);
  let k = 0;
  for (let v = 0; v < half; v++) {
    if (v % 10 === 9) put(`    <single_mapping origin_block="${v}" data_block="${half + k++}" time="1"/>\n`);
    else put(`    <single_mapping origin_block="${v}" data_block="${(v * stride) % half}" time="0"/>\n`);
  }
  put('  </device>\n</superblock>\n');
  writeSync(fd, buf);
  closeSync(fd);
  return nrData;
}

interface Pair {
  what: string;
  ours: Run[];
  theirs: Run[];
}

interface SizeFigures {
  mappings: number;
  xmlBytes: number;
  metadataBytes: number;
  runs: number;
  date: string;
  loadAverage: number;
  rows: Array<{ what: string; oursMs: number; theirsMs: number; ratio: number; oursRssBytes: number; theirsRssBytes: number }>;
}

function measure(millions: number): SizeFigures {
  const n = Math.round(millions * 1_000_000);
  const dir = scratchDir(`metadata-tools-${millions}m`);
  const xml = join(dir, 'in.xml');
  writeXml(xml, n);
  const xmlBytes = statSync(xml).size;
  const runs = QUICK ? 1 : millions <= 1 ? 3 : millions <= 5 ? 2 : 1;
  const load0 = loadavg()[0];
  const node = process.execPath;
  const pairs: Pair[] = ['restore', 'check', 'dump', 'ls', 'ls-held'].map((what) => ({ what, ours: [], theirs: [] }));
  const [restore, check, dump, ls, lsHeld] = pairs;
  let metadataBytes = 0;
  for (let r = 0; r < runs; r++) {
    const pool = join(dir, `pool${r}`);
    const theirsMd = join(dir, `thin${r}.md`);
    const oursFirst = r % 2 === 0;
    // restore: ours sizes its metadata; thin_restore gets a file of the same size.
    const ourRestore = (): void => void restore.ours.push(timed(node, [bin, 'restore', xml, pool]));
    const theirRestore = (): void => {
      const fd = openSync(theirsMd, 'w');
      ftruncateSync(fd, metadataBytes);
      closeSync(fd);
      restore.theirs.push(timed('thin_restore', ['-i', xml, '-o', theirsMd, '-q']));
    };
    ourRestore();
    metadataBytes = statSync(join(pool, 'metadata')).size;
    theirRestore();
    const md = join(pool, 'metadata');
    const both = (p: Pair, ours: () => Run, theirs: () => Run): void => {
      if (oursFirst) {
        p.ours.push(ours());
        p.theirs.push(theirs());
      } else {
        p.theirs.push(theirs());
        p.ours.push(ours());
      }
    };
    both(
      check,
      () => timed(node, [bin, 'check', pool]),
      () => timed('thin_check', [md]),
    );
    const ourXml = join(dir, `ours${r}.xml`);
    const theirXml = join(dir, `theirs${r}.xml`);
    both(
      dump,
      () => timed(node, [bin, 'dump', pool], ourXml),
      () => timed('thin_dump', [md], theirXml),
    );
    if (!readFileSync(ourXml).equals(readFileSync(theirXml)))
      throw new Error(`thinpool dump and thin_dump differ at ${millions} M mappings`);
    both(
      ls,
      () => timed(node, [bin, 'ls', pool, '--json'], join(dir, 'ls.json')),
      () => timed('thin_ls', ['--format', 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS', md], join(dir, 'thin_ls.txt')),
    );
    // ls again with a metadata snapshot held (thinpool then counts owners over every device's whole tree):
    // thin_ls reads a copy of the same metadata, snapshot included.
    const reserve = spawnSync(node, [bin, 'metadata-snap', 'reserve', pool], { encoding: 'utf8' });
    if (reserve.status !== 0) throw new Error(`metadata-snap reserve failed: ${reserve.stderr}`);
    const heldMd = join(dir, `held${r}.md`);
    copyFileSync(md, heldMd);
    both(
      lsHeld,
      () => timed(node, [bin, 'ls', pool, '--json'], join(dir, 'ls-held.json')),
      () => timed('thin_ls', ['--format', 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS', heldMd], join(dir, 'thin_ls-held.txt')),
    );
    spawnSync('rm', ['-rf', pool, theirsMd, heldMd, ourXml, theirXml]);
  }
  const loadAverage = Math.max(load0, loadavg()[0]);
  const rows = pairs.map((p) => {
    const o = median(p.ours.map((x) => x.ms));
    const t = median(p.theirs.map((x) => x.ms));
    return {
      what: p.what,
      oursMs: Math.round(o),
      theirsMs: Math.round(t),
      ratio: Number((o / t).toFixed(2)),
      oursRssBytes: Math.max(...p.ours.map((x) => x.rssBytes)),
      theirsRssBytes: Math.max(...p.theirs.map((x) => x.rssBytes)),
    };
  });
  return {
    mappings: n,
    xmlBytes,
    metadataBytes,
    runs,
    date: new Date().toISOString().slice(0, 10),
    loadAverage: Number(loadAverage.toFixed(2)),
    rows,
  };
}

function main(): void {
  if (spawnSync('thin_restore', ['-V']).status !== 0) {
    note('thin_restore not found: install the Debian package thin-provisioning-tools');
    process.exitCode = 1;
    return;
  }
  header(
    'Metadata tools against thin-provisioning-tools',
    `sizes: ${SIZES.map((s) => `${s} M`).join(', ')} mappings (2 devices, scattered data blocks); whole processes, peak RSS from /usr/bin/time -v`,
  );
  const out: SizeFigures[] = [];
  for (const s of SIZES) {
    const f = measure(s);
    out.push(f);
    const tool: Record<string, string> = {
      restore: 'thin_restore',
      check: 'thin_check',
      dump: 'thin_dump',
      ls: 'thin_ls',
      'ls-held': 'thin_ls',
    };
    table(
      `${s} M mappings (XML ${fmtBytes(f.xmlBytes)}, metadata ${fmtBytes(f.metadataBytes)}, median of ${f.runs}, load average ${f.loadAverage})`,
      ['command', 'thinpool', 'C++ tool', 'ratio', 'thinpool peak RSS', 'C++ peak RSS'],
      f.rows.map((r) => [
        `${r.what} vs ${tool[r.what]}`,
        fmtMs(r.oursMs),
        fmtMs(r.theirsMs),
        `${r.ratio.toFixed(2)}x`,
        fmtBytes(r.oursRssBytes),
        fmtBytes(r.theirsRssBytes),
      ]),
    );
  }
  const figDir = process.env.THINPOOL_FIGURES_DIR;
  if (figDir !== undefined && !QUICK) {
    const path = join(figDir, 'metadata-tools.json');
    const prev = existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as { sizes: SizeFigures[] }).sizes : [];
    const merged = [...prev.filter((p) => !out.some((o) => o.mappings === p.mappings)), ...out].sort((a, b) => a.mappings - b.mappings);
    writeFileSync(
      path,
      `${JSON.stringify({ bench: 'bench/engine/metadata-tools.ts', machine: '2 cores shared with other jobs', sizes: merged }, null, 2)}\n`,
    );
    note(`figures merged into ${path}`);
  }
}

main();
