/**
 * Names with a meaning in a union branch (AUFS conventions, also used by Docker's layer tarballs):
 * - `.wh.NAME` in a directory hides NAME of the branches below (a whiteout);
 * - `.wh..wh..opq` in a directory makes it opaque: the directories of the same path below are not merged in.
 * A character device 0/0 (kernel overlayfs's whiteout) is read as a whiteout too.
 */
import type { Stats } from 'node:fs';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

export function whiteoutName(name: string): string {
  return WHITEOUT_PREFIX + name;
}

/** A name the merged view never shows (whiteouts, the opaque marker, AUFS's private `.wh..wh.*` entries). */
export function isMetaName(name: string): boolean {
  return name.startsWith(WHITEOUT_PREFIX);
}

/** NAME hidden by a `.wh.NAME` entry, or undefined. */
export function whitedOutName(name: string): string | undefined {
  if (!name.startsWith(WHITEOUT_PREFIX) || name.startsWith(WHITEOUT_PREFIX + WHITEOUT_PREFIX)) return undefined;
  return name.slice(WHITEOUT_PREFIX.length);
}

/** Kernel overlayfs whiteout: a character device with device number 0/0. */
export function isOverlayWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}
