/**
 * A small SVG chart writer (no dependency): line charts over numeric x and grouped bar charts, with labelled
 * axes (units in the label), optional log scales, a legend, and "n/a" marks for skipped values.
 */
export type Format = (v: number) => string;

export interface Axis {
  label: string;
  log?: boolean;
  format?: Format;
}

export interface LineChart {
  kind: 'line';
  title: string;
  x: Axis;
  y: Axis;
  series: { name: string; points: [number, number][] }[];
  note?: string;
}

export interface BarChart {
  kind: 'bar';
  title: string;
  categories: string[];
  y: Axis;
  series: { name: string; values: (number | null)[] }[];
  note?: string;
}

export type Chart = LineChart | BarChart;

const W = 760;
const H = 440;
const M = { left: 92, right: 170, top: 48, bottom: 70 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function fmtNumber(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-2)) {
    const e = Math.floor(Math.log10(a));
    const m = v / 10 ** e;
    return Math.abs(m - 1) < 1e-9 ? `1e${e}` : `${+m.toFixed(1)}e${e}`;
  }
  if (a >= 1000) return `${+(v / 1000).toFixed(1)}k`;
  return String(+v.toPrecision(3));
}

export function fmtBytes(v: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  let x = v;
  while (Math.abs(x) >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  return `${+x.toPrecision(3)} ${units[u]}`;
}

interface Scale {
  map(v: number): number;
  ticks: number[];
}

function scale(lo: number, hi: number, a: number, b: number, log: boolean): Scale {
  if (log) {
    const l0 = Math.floor(Math.log10(lo));
    const l1 = Math.ceil(Math.log10(hi));
    const span = Math.max(1, l1 - l0);
    const ticks: number[] = [];
    const stride = Math.ceil(span / 8);
    for (let e = l0; e <= l0 + span; e += stride) ticks.push(10 ** e);
    return { map: (v) => a + ((Math.log10(v) - l0) / span) * (b - a), ticks };
  }
  if (hi === lo) hi = lo + 1;
  const raw = (hi - lo) / 6;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw)!;
  const t0 = Math.floor(lo / step) * step;
  const t1 = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let t = t0; t <= t1 + step / 2; t += step) ticks.push(+t.toPrecision(12));
  return { map: (v) => a + ((v - t0) / (t1 - t0)) * (b - a), ticks };
}

/** Powers of two as x ticks read better for sizes: use them when the axis formats bytes. */
function bytesTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log2(lo)); e <= Math.ceil(Math.log2(hi)); e++) out.push(2 ** e);
  const stride = Math.ceil(out.length / 9);
  return out.filter((_, i) => i % stride === 0);
}

function frame(c: Chart, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${esc(c.title)}</text>`,
    ...body,
    c.note ? `<text x="${M.left}" y="${H - 8}" font-size="10" fill="#555">${esc(c.note)}</text>` : '',
    '</svg>',
    '',
  ].join('\n');
}

function legend(names: string[]): string[] {
  return names.map((n, i) => {
    const y = M.top + 10 + i * 20;
    const x = W - M.right + 16;
    return `<rect x="${x}" y="${y - 9}" width="14" height="10" fill="${COLORS[i % COLORS.length]}"/><text x="${x + 20}" y="${y}">${esc(n)}</text>`;
  });
}

function yAxis(y: Axis, s: Scale, out: string[]): void {
  const f = y.format ?? fmtNumber;
  for (const t of s.ticks) {
    const py = s.map(t);
    out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${py}" y2="${py}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${M.left - 6}" y="${py + 4}" text-anchor="end">${esc(f(t))}</text>`);
  }
  const cy = (M.top + H - M.bottom) / 2;
  out.push(`<text transform="translate(18 ${cy}) rotate(-90)" text-anchor="middle">${esc(y.label)}${y.log ? ' (log scale)' : ''}</text>`);
  out.push(`<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}" stroke="black"/>`);
  out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${H - M.bottom}" y2="${H - M.bottom}" stroke="black"/>`);
}

function yRange(values: number[], log: boolean | undefined): [number, number] {
  const v = values.filter((x) => Number.isFinite(x) && (!log || x > 0));
  if (v.length === 0) return [log ? 1 : 0, 10];
  const lo = Math.min(...v);
  const hi = Math.max(...v);
  return log ? [lo, hi === lo ? hi * 10 : hi] : [Math.min(0, lo), hi];
}

export function lineSvg(c: LineChart): string {
  const out: string[] = [];
  const xs = c.series.flatMap((s) => s.points.map((p) => p[0])).filter((x) => !c.x.log || x > 0);
  const [ylo, yhi] = yRange(
    c.series.flatMap((s) => s.points.map((p) => p[1])),
    c.y.log,
  );
  const xlo = Math.min(...xs, xs.length ? Infinity : 1);
  const xhi = Math.max(...xs, xs.length ? -Infinity : 10);
  const sx = scale(xlo, xhi === xlo ? xlo * 2 : xhi, M.left, W - M.right, !!c.x.log);
  const sy = scale(ylo, yhi, H - M.bottom, M.top, !!c.y.log);
  yAxis(c.y, sy, out);
  const fx = c.x.format ?? fmtNumber;
  const xticks = c.x.format === fmtBytes && c.x.log ? bytesTicks(xlo, xhi) : sx.ticks;
  for (const t of xticks) {
    const px = sx.map(t);
    out.push(`<line x1="${px}" x2="${px}" y1="${H - M.bottom}" y2="${H - M.bottom + 5}" stroke="black"/>`);
    out.push(`<text x="${px}" y="${H - M.bottom + 18}" text-anchor="middle">${esc(fx(t))}</text>`);
  }
  out.push(
    `<text x="${(M.left + W - M.right) / 2}" y="${H - M.bottom + 40}" text-anchor="middle">${esc(c.x.label)}${c.x.log ? ' (log scale)' : ''}</text>`,
  );
  c.series.forEach((s, i) => {
    const col = COLORS[i % COLORS.length];
    const pts = s.points
      .filter((p) => Number.isFinite(p[1]) && (!c.y.log || p[1] > 0) && (!c.x.log || p[0] > 0))
      .sort((a, b) => a[0] - b[0]);
    if (pts.length > 1)
      out.push(
        `<polyline fill="none" stroke="${col}" stroke-width="2" points="${pts.map((p) => `${sx.map(p[0]).toFixed(1)},${sy.map(p[1]).toFixed(1)}`).join(' ')}"/>`,
      );
    for (const p of pts)
      out.push(
        `<circle cx="${sx.map(p[0]).toFixed(1)}" cy="${sy.map(p[1]).toFixed(1)}" r="3.5" fill="${col}"><title>${esc(`${s.name}: ${fx(p[0])} → ${(c.y.format ?? fmtNumber)(p[1])}`)}</title></circle>`,
      );
  });
  out.push(...legend(c.series.map((s) => s.name)));
  return frame(c, out);
}

export function barSvg(c: BarChart): string {
  const out: string[] = [];
  const [ylo, yhi] = yRange(
    c.series.flatMap((s) => s.values.filter((v): v is number => v !== null)),
    c.y.log,
  );
  const sy = scale(ylo, yhi, H - M.bottom, M.top, !!c.y.log);
  yAxis(c.y, sy, out);
  const groupW = (W - M.left - M.right) / Math.max(1, c.categories.length);
  const barW = (groupW * 0.8) / Math.max(1, c.series.length);
  const base = H - M.bottom;
  const f = c.y.format ?? fmtNumber;
  c.categories.forEach((cat, gi) => {
    const gx = M.left + gi * groupW + groupW * 0.1;
    out.push(`<text x="${M.left + (gi + 0.5) * groupW}" y="${base + 18}" text-anchor="middle">${esc(cat)}</text>`);
    c.series.forEach((s, si) => {
      const v = s.values[gi];
      const x = gx + si * barW;
      if (v === null || v === undefined || !Number.isFinite(v) || (c.y.log && v <= 0)) {
        out.push(
          `<text x="${x + barW / 2}" y="${base - 4}" text-anchor="middle" font-size="9" fill="#888" transform="rotate(-90 ${x + barW / 2} ${base - 4})">n/a</text>`,
        );
        return;
      }
      const top = Math.min(base, sy.map(v));
      out.push(
        `<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(base - top).toFixed(1)}" fill="${COLORS[si % COLORS.length]}"><title>${esc(`${s.name}, ${cat}: ${f(v)}`)}</title></rect>`,
      );
    });
  });
  out.push(...legend(c.series.map((s) => s.name)));
  return frame(c, out);
}

export function chartSvg(c: Chart): string {
  return c.kind === 'line' ? lineSvg(c) : barSvg(c);
}
