// The rados sections of the docs (docs/rados.md): bench/rados/speed.ts, depth.ts and completions.ts runs, rendered
// from docs/figures/rados*.json. Used by render-figures.mjs.

import { n } from './figures-format.mjs';

/** How fio reached `thinpool serve` in a run: recorded since the benches moved to a Unix socket, TCP before. */
const hopOf = (r) => r.hop ?? 'TCP on 127.0.0.1';
/**
 * bench/rados/speed.ts runs (`--figures=docs/figures/rados.json --as=NAME`): one row per run and case, the runs in
 * the order recorded (a table that stays readable however many runs there are).
 */
export function rados(f) {
  const names = Object.keys(f.runs);
  const ops = (x) => n(Math.round(x));
  return [
    names
      .map((k) => {
        const r = f.runs[k];
        return `Run "${k}": commit ${r.commit}, ${r.date}, ${r.sizeMiB} MiB volume and image, ${n(r.ops)} operations per case, median of ${r.reps} rounds, ${r.cluster}, fio to thinpool serve over ${hopOf(r)}, load average ${r.loadAverage} on 2 shared cores.`;
      })
      .join(' '),
    '',
    '| run | case | librbd op/s | thinpool rados op/s | **ratio** | thinpool file op/s | rados/file |',
    '|---|---|---:|---:|---:|---:|---:|',
    ...names.flatMap((k) =>
      f.runs[k].rows.map(
        (r) =>
          `| ${k} | 4K rand ${r.kind} QD${r.depth} | ${ops(r.rbd)} | ${ops(r.rados)} | **${(r.rados / r.rbd).toFixed(2)}** | ${ops(r.file)} | ${(r.rados / r.file).toFixed(2)} |`,
      ),
    ),
    ...radosInProcess(f, ops),
    ...radosReadOnly(f, ops),
    ...radosModes(f, ops),
    ...radosHop(f, ops),
    ...radosCpu(f),
    ...radosBudget(f),
  ].join('\n');
}

/**
 * A table of the rows (of every run) that `keep` selects, one line each by `line(run name, row)`, after an
 * introducing sentence; nothing when no run has such rows (a measurement older runs did not make).
 */
function section(f, keep, line, intro, head) {
  const rows = Object.entries(f.runs).flatMap(([k, r]) => r.rows.filter(keep).map((x) => line(k, x)));
  if (rows.length === 0) return [];
  const cells = head.split(' | ');
  const align = `|---|---|${'---:|'.repeat(cells.length - 2)}`;
  return ['', intro, '', `| ${cells.join(' | ')} |`, align, ...rows];
}

const caseOf = (x) => `4K rand ${x.kind} QD${x.depth}`;

/**
 * Runs that measured the library in the bench's own process (no NBD hop, as `rbd bench` has none), with the share
 * of the library's rate that fio through `thinpool serve` keeps.
 */
function radosInProcess(f, ops) {
  // Writes against librbd with its cache off: the library's writes, like serve's by default, are acknowledged by the cluster.
  const lib = (x) => (x.kind === 'write' ? x.rbdNoCache : x.rbd);
  return section(
    f,
    (x) => x.inProcess !== undefined,
    (k, x) =>
      `| ${k} | ${caseOf(x)} | ${ops(lib(x))} | ${ops(x.inProcess)} | **${(x.inProcess / lib(x)).toFixed(2)}** | ${Math.round(x.inProcessCpuUs)} | ${(x.rados / x.inProcess).toFixed(2)} |`,
    "Without a hop on either side: `rbd bench` is librbd in its own process; the same requests from the bench's process through thinpool's library (`volume.read`/`volume.write`, as many in flight as the queue depth, on a third rados: pool written in full; writes against librbd with its cache off, since the library's are acknowledged by the cluster), with the library's CPU per request (its whole process) and what fio through `thinpool serve` keeps of the library's rate:",
    'run | case | librbd op/s (writes: cache off) | thinpool library op/s | **library / librbd** | library CPU µs/op | serve via fio / library',
  );
}

/** Runs that measured `thinpool serve --read-only` (reads of a read-only view) beside the writer's serve. */
function radosReadOnly(f, ops) {
  return section(
    f,
    (x) => x.radosReadOnly !== undefined,
    (k, x) =>
      `| ${k} | ${caseOf(x)} | ${ops(x.rbd)} | ${ops(x.rados)} | ${ops(x.radosReadOnly)} | **${(x.radosReadOnly / x.rbd).toFixed(2)}** | ${(x.radosReadOnly / x.rados).toFixed(2)} |`,
    'Read-only: `thinpool serve --read-only` of a pool nothing writes during the run (a read-only view takes no lock and checks its reads against the superblock, asynchronous reads sharing one check per batch of completions; see "Reading beside the writer"):',
    'run | case | librbd op/s | thinpool serve op/s | serve --read-only op/s | **read-only / librbd** | read-only / serve',
  );
}

/** Runs that measured librbd behind qemu-nbd (fio through it): the same NBD hop on both sides. */
function radosHop(f, ops) {
  return section(
    f,
    (x) => x.qemuNbd !== undefined,
    (k, x) =>
      `| ${k} | ${caseOf(x)} | ${ops(x.qemuNbd)} | ${ops(x.rados)} | **${(x.rados / x.qemuNbd).toFixed(2)}** | ${Math.round(x.qemuCpuUs)} | ${Math.round(x.radosCpuUs)} |`,
    "Through the same hop: fio's nbd engine against `qemu-nbd` serving the RBD image with librbd (`--cache=none`: its cache off, every write acknowledged by the cluster) and against `thinpool serve` (its default), with each server process's CPU per request:",
    'run | case | qemu-nbd + librbd op/s | thinpool serve op/s | **ratio** | qemu-nbd CPU µs/op | thinpool serve CPU µs/op',
  );
}

/** Runs that measured CPU per request (each side's whole process). */
function radosCpu(f) {
  return section(
    f,
    (x) => x.rbdCpuUs !== undefined && x.radosCpuUs !== undefined,
    (k, x) =>
      `| ${k} | ${caseOf(x)} | ${Math.round(x.rbdCpuUs)} | ${Math.round(x.radosCpuUs)} | ${(x.radosCpuUs / x.rbdCpuUs).toFixed(2)} |`,
    "CPU per request, each side's whole process with all its threads (librados's included): `rbd bench` (less a run of one request per thread: its start-up) and `thinpool serve` (around fio's run; the NBD hop is on its side). The OSD, the client and the server share the same two cores, so what one request costs weighs on the rate, most at queue depth 16:",
    'run | case | librbd CPU µs/op | thinpool serve CPU µs/op | serve / librbd',
  );
}

/** Microseconds with one decimal. */
const us = (v) => v.toFixed(1);

/** Whether a row measured the whole machine's CPU (runs since "cpu-budget", with a started cluster). */
const hasMachineCpu = (x) => x?.osdCpuUsRbd !== undefined && x.fioCpuUs !== undefined && x.fileCpuUs !== undefined;

/** A row's CPU per request on the whole machine: librbd's side (rbd bench + OSD) and thinpool's (fio + serve + OSD). */
function machineCpu(x) {
  const rbd = x.rbdCpuUs + x.osdCpuUsRbd;
  const tp = x.fioCpuUs + x.radosCpuUs + x.osdCpuUsRados;
  // The rate the goal asks for, 0.8 of librbd's, at the same CPU per second as librbd's run: the machine's CPU per
  // request may be at most librbd's / 0.8, so fio and serve together may use that less the OSD's.
  return { rbd, tp, budget: rbd / 0.8 - x.osdCpuUsRados, hop: x.fioCpuUs + x.fileCpuUs };
}

/**
 * Runs that measured the whole machine's CPU per request (a started cluster: the OSD's, fio's, and the file pool's
 * serve as the cost of the hop itself).
 */
function radosBudget(f) {
  return section(
    f,
    // QD16 reads: the case bound by CPU (at QD1 a request waits for the last; writes' librbd CPU is its cached mode's).
    (x) => x.kind === 'read' && x.depth === 16 && hasMachineCpu(x),
    (k, x) => {
      const m = machineCpu(x);
      return `| ${k} | ${caseOf(x)} | ${us(x.rbdCpuUs)} + ${us(x.osdCpuUsRbd)} = ${us(m.rbd)} | ${us(x.fioCpuUs)} + ${us(x.radosCpuUs)} + ${us(x.osdCpuUsRados)} = ${us(m.tp)} | ${(m.rbd / m.tp).toFixed(2)} | ${(x.rados / x.rbd).toFixed(2)} | ${us(m.budget)} | ${us(x.fioCpuUs + x.radosCpuUs)} | ${us(m.hop)} |`;
    },
    "Reads at queue depth 16, the whole machine's CPU per request (a started cluster): on librbd's side `rbd bench` and the OSD during its run; on thinpool's fio (its job's CPU as fio reports it: the NBD client), `thinpool serve` and the OSD during fio's run. On two cores shared by all of them, a rate follows the CPU each request costs: where the two columns of ratios agree, the run was bound by CPU. The last three columns: what fio and serve together may use per request for 0.8 of librbd's rate at librbd's CPU per second (librbd's total / 0.8, less the OSD's), what they used, and what the hop alone costs (fio and `thinpool serve` of a file pool, whose storage costs next to nothing):",
    'run | case | librbd: rbd bench + OSD µs/op | thinpool: fio + serve + OSD µs/op | CPU: librbd / thinpool | rate: thinpool / librbd | for 0.8: fio + serve at most | fio + serve | the hop alone: fio + file serve',
  );
}

/**
 * Runs that measured writes in both acknowledgement modes (librbd's cache off, thinpool serve --write-back): like
 * against like.
 */
function radosModes(f, ops) {
  return section(
    f,
    (x) => x.rbdNoCache !== undefined && x.radosWriteBack !== undefined,
    (k, x) =>
      `| ${k} | 4K rand write QD${x.depth} | ${ops(x.rbdNoCache)} | ${ops(x.rados)} | **${(x.rados / x.rbdNoCache).toFixed(2)}** | ${ops(x.rbd)} | ${ops(x.radosWriteBack)} | **${(x.radosWriteBack / x.rbd).toFixed(2)}** |`,
    "Writes, like against like: acknowledged by the cluster (librbd `--rbd_cache=false`, thinpool by default), and written behind (librbd's default cache, `thinpool serve --write-back 24M`):",
    'run | case | librbd, cache off op/s | thinpool op/s | **ratio** | librbd, cache on op/s | thinpool --write-back op/s | **ratio**',
  );
}

/**
 * What the runs with the library row say about the goal (0.8 of librbd), one sentence per run: through `thinpool
 * serve` against `rbd bench`, the library alone against it, and what fio through serve keeps of the library's rate.
 */
export function radosHopSummary(f) {
  const r2 = (x) => x.toFixed(2);
  const at = (r, kind, depth) => r.rows.find((x) => x.kind === kind && x.depth === depth);
  const pair = (r, kind, fn) => `${r2(fn(at(r, kind, 1)))} (QD1), ${r2(fn(at(r, kind, 16)))} (QD16)`;
  const runs = Object.entries(f.runs).filter(([, r]) => r.rows.some((x) => x.inProcess !== undefined));
  if (runs.length === 0) return 'No run with the library row recorded yet.';
  return runs
    .map(([k, r]) => {
      const keep = r.rows.map((x) => x.rados / x.inProcess);
      return (
        `Run "${k}", against \`rbd bench\`: through \`thinpool serve\`, reads ${pair(r, 'read', (x) => x.rados / x.rbd)}, ` +
        `cache-off writes ${pair(r, 'write', (x) => x.rados / x.rbdNoCache)}, written behind ${pair(r, 'write', (x) => x.radosWriteBack / x.rbd)}; ` +
        `the library alone, reads ${pair(r, 'read', (x) => x.inProcess / x.rbd)}, writes against librbd's cache off ${pair(r, 'write', (x) => x.inProcess / x.rbdNoCache)}; ` +
        `fio through serve keeps ${r2(Math.min(...keep))}-${r2(Math.max(...keep))} of the library's rate.` +
        budgetSentence(at(r, 'read', 16))
      );
    })
    .join(' ');
}

/** For a run that measured the whole machine's CPU: what 0.8 of librbd's QD16 read rate leaves fio and serve. */
function budgetSentence(x) {
  if (!hasMachineCpu(x)) return '';
  const m = machineCpu(x);
  return (
    ` QD16 reads cost the machine ${us(m.rbd)} µs each through librbd and ${us(m.tp)} through serve (CPU ratio ${(m.rbd / m.tp).toFixed(2)}, rate ratio ${(x.rados / x.rbd).toFixed(2)}): ` +
    `0.8 of librbd's rate at librbd's CPU per second leaves fio and serve ${us(m.budget)} µs per read together, ` +
    `against ${us(m.hop)} for the hop alone (fio and serve of a file pool) and ${us(x.rbdCpuUs)} for librbd's whole client.`
  );
}

/** bench/rados/depth.ts runs (`--figures=docs/figures/rados-depth.json --as=NAME`): the runs side by side. */
export function radosDepth(f) {
  const names = Object.keys(f.runs);
  const first = f.runs[names[0]];
  const ops = (x) => n(Math.round(x));
  const base = (r, row) => r.rows.find((x) => x.depth === r.rows[0].depth && x.qd === row.qd);
  return [
    names
      .map((k) => {
        const r = f.runs[k];
        const create =
          r.create === null
            ? ''
            : ` Snapshot creation (whole commands, median over the levels): thinpool snapshot ${n(r.create.thinpoolMs)} ms, rbd snap create + protect + clone ${n(r.create.rbdMs)} ms (**${(r.create.thinpoolMs / r.create.rbdMs).toFixed(2)}**).`;
        return `Run "${k}": commit ${r.commit}, ${r.date}, ${r.sizeMiB} MiB volume and image, chains of ${r.levels} levels (4 KiB written into each), ${n(r.ops)} reads per case, median of ${r.reps} rounds, ${r.cluster}, fio to thinpool serve over ${hopOf(r)}, load average ${r.loadAverage} on 2 shared cores.${create}`;
      })
      .join(' '),
    '',
    `| depth | QD | ${names.map((k) => `${k}: librbd op/s | thinpool op/s | **thinpool/librbd** | librbd vs depth ${f.runs[k].rows[0].depth} | thinpool vs depth ${f.runs[k].rows[0].depth}`).join(' | ')} |`,
    `|---:|---:|${names.map(() => '---:|---:|---:|---:|---:|').join('')}`,
    ...first.rows.map(
      (row) =>
        `| ${row.depth} | ${row.qd} | ${names
          .map((k) => {
            const r = f.runs[k];
            const x = r.rows.find((y) => y.depth === row.depth && y.qd === row.qd);
            if (x === undefined) return '- | - | - | - | -';
            const b = base(r, x);
            return `${ops(x.rbd)} | ${ops(x.thinpool)} | **${(x.thinpool / x.rbd).toFixed(2)}** | ${(x.rbd / b.rbd).toFixed(2)} | ${(x.thinpool / b.thinpool).toFixed(2)}`;
          })
          .join(' | ')} |`,
    ),
  ].join('\n');
}

export function radosCompletions(f) {
  const out = [];
  for (const [k, r] of Object.entries(f.runs)) {
    const q = (x) => (x === null || Number.isNaN(x) ? '-' : x.toFixed(2));
    const ops = (x) => (x === null ? '-' : n(Math.round(x)));
    // The process's CPU per request by path (all its threads, librados's included): runs since "cpu" record it.
    const cpu = r.rows.every((x) => x.cpuUs !== undefined);
    const cpuUs = (x) => (x === null ? '-' : us(x)); // null: a path the row does not run (sync at depth 16)
    out.push(
      `Run "${k}": commit ${r.commit}, ${r.date}, ${n(r.ops)} operations of 4 KiB per case, median of ${r.reps} rounds (paths alternating), ${r.cluster}, load average ${r.loadAverage} on 2 shared cores.`,
      '',
      `| I/O | depth | sync op/s | koffi op/s | native op/s | native / koffi | native / sync |${cpu ? ' CPU µs/op: sync | koffi | native |' : ''}`,
      `|---|---:|---:|---:|---:|---:|---:|${cpu ? '---:|---:|---:|' : ''}`,
      ...r.rows.map(
        (x) =>
          `| ${x.kind} | ${x.depth} | ${ops(x.rates.sync)} | ${ops(x.rates.koffi)} | ${ops(x.rates.native)} | ${q(x.rates.native / x.rates.koffi)} | ${x.rates.sync === null ? '-' : q(x.rates.native / x.rates.sync)} |` +
          (cpu ? ` ${cpuUs(x.cpuUs.sync)} | ${cpuUs(x.cpuUs.koffi)} | ${cpuUs(x.cpuUs.native)} |` : ''),
      ),
      '',
    );
  }
  return out.join('\n').trimEnd();
}
