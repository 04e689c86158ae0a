/** The merged listing of a directory: names of its branches' directories, top first, minus whiteouts. */
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { Branch } from './branch.js';
import { isMetaName, isOverlayWhiteout, whitedOutName } from './names.js';

export function mergedNames(dirs: readonly Branch[], rel: string): string[] {
  const names = new Set<string>();
  const hidden = new Set<string>();
  for (const b of dirs) {
    const hiddenBelow: string[] = [];
    for (const d of b.listTyped(rel)) {
      const wh = whitedOutName(d.name);
      if (wh !== undefined) {
        hiddenBelow.push(wh);
        continue;
      }
      if (isMetaName(d.name)) continue;
      if (d.isCharacterDevice() && isOverlayWhiteout(lstatSync(join(b.host(rel), d.name)))) {
        hiddenBelow.push(d.name);
        continue;
      }
      if (!hidden.has(d.name)) names.add(d.name);
    }
    for (const n of hiddenBelow) hidden.add(n);
  }
  return [...names].sort();
}
