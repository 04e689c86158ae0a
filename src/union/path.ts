/** Paths inside the merged view: '/'-separated, relative to the union root; '' (or '/') is the root. */
import { UnionError } from './errors.js';

/** Split a merged-view path into components, refusing '..' and names the union reserves. */
export function components(path: string): string[] {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  for (const p of parts) {
    if (p === '..') throw new UnionError('EINVAL', `'..' in union path ${path}`);
    if (p.startsWith('.wh.')) throw new UnionError('EINVAL', `reserved name ${p} in union path ${path}`);
  }
  return parts;
}
