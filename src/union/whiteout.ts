/** Writing whiteouts and opaque markers into the writable branch. */
import { closeSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Branch } from './branch.js';
import { OPAQUE_MARKER, whiteoutName } from './names.js';

function parentAndName(rel: string): [string, string] {
  const i = rel.lastIndexOf('/');
  return i < 0 ? ['', rel] : [rel.slice(0, i), rel.slice(i + 1)];
}

function touch(path: string): void {
  closeSync(openSync(path, 'w', 0o444));
}

/** Hide rel of the branches below the writable one. */
export function addWhiteout(upper: Branch, rel: string): void {
  const [dir, name] = parentAndName(rel);
  touch(join(upper.host(dir), whiteoutName(name)));
}

/** Drop the whiteout of rel (before creating rel again); true if there was one. */
export function removeWhiteout(upper: Branch, rel: string): boolean {
  const [dir, name] = parentAndName(rel);
  if (!upper.hasWhiteoutFile(dir, name)) return false;
  rmSync(join(upper.host(dir), whiteoutName(name)));
  return true;
}

/** Stop the directory rel of the writable branch from merging with the directories below. */
export function markOpaque(upper: Branch, rel: string): void {
  touch(join(upper.host(rel), OPAQUE_MARKER));
}

export { parentAndName };
