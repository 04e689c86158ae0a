/** Byte sizes: parse "64K", "64KiB", "10G", "1TiB", "1.5M", "512" and format as IEC. */
import { ThinpoolError } from './errors.js';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  ki: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
  t: 1024 ** 4,
  ti: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1000 ** 4,
  p: 1024 ** 5,
  pi: 1024 ** 5,
  pib: 1024 ** 5,
  pb: 1000 ** 5,
  s: 512, // sectors
};

export function parseSize(text: string | number, what = 'size'): number {
  if (typeof text === 'number') {
    if (!Number.isSafeInteger(text) || text < 0) throw new ThinpoolError('EINVAL', `${what} must be a whole number of bytes, got ${text}`);
    return text;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new ThinpoolError('EINVAL', `${what}: cannot parse "${text}" (use bytes or a suffix: 64K, 64KiB, 10G, 1TiB, 1GB)`);
  }
  const v = Number(m[1]) * unit;
  if (!Number.isSafeInteger(Math.round(v)) || Math.round(v) !== v) {
    throw new ThinpoolError('EINVAL', `${what}: "${text}" is not a whole number of bytes`);
  }
  return v;
}

export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`;
}
