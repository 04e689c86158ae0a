// Statistics the figures renderers share (scripts/figures-*.mjs), computed from the runs' recorded samples.

/** The median of xs (the mean of the middle two for an even count); null for no samples. */
export function median(xs) {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
