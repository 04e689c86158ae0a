// Number formats shared by the figure renderers (scripts/render-figures.mjs and its figures-*.mjs modules).

/** A count with thousands separators: 12,345. */
export const n = (x) => x.toLocaleString('en-US');
/** a as a percentage of b, one decimal; `-` when b is 0. */
export const pct = (a, b) => (b === 0 ? '-' : `${((100 * a) / b).toFixed(1)} %`);
/** An object of counts as "key count, key count". */
export const list = (o) =>
  Object.entries(o)
    .map(([k, v]) => `${k} ${n(v)}`)
    .join(', ');
