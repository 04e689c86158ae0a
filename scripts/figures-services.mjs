// The NBD server over TLS (nbd-tls.json, docs/nbd.md) and containerd with each snapshotter (containerd.json,
// docs/benchmarks.md). Used by render-figures.mjs.

/** bench/nbd/tls.ts runs (`--figures=docs/figures/nbd-tls.json --as=NAME`): one table per run, ratios against nbdkit of the same run. */
export function nbdTls(f) {
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
export function containerdRuns(f) {
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
