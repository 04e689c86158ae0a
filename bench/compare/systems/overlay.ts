/** Kernel overlayfs (what Docker's overlay2 uses): real mounts with lowerdir/upperdir/workdir. */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { now } from '../lib/stats.js';
import { trackMount, untrackMount } from '../lib/cleanup.js';

/** The kernel stacks at most this many lower layers (OVL_MAX_STACK). */
export const OVERLAY_MAX_LOWER = 500;

/** Why overlay mounts cannot run here, or undefined when they can (tries a real mount). */
export function overlayUnavailable(work: string): string | undefined {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  if (process.getuid?.() !== 0) return 'cannot mount (not root: mounting needs CAP_SYS_ADMIN)';
  try {
    if (!readFileSync('/proc/filesystems', 'utf8').includes('overlay')) return 'cannot mount (no overlay in /proc/filesystems)';
  } catch {
    /* try anyway */
  }
  const d = mkdtempSync(join(work, 'ovl-probe-'));
  try {
    for (const s of ['l', 'u', 'w', 'm']) mkdirSync(join(d, s));
    const r = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${d}/l,upperdir=${d}/u,workdir=${d}/w`, `${d}/m`], {
      encoding: 'utf8',
    });
    if (r.status !== 0) return `cannot mount (${(r.stderr || r.error?.message || 'mount failed').trim()})`;
    spawnSync('umount', [`${d}/m`]);
    return undefined;
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
}

export interface OverlayMount {
  mnt: string;
  /** Wall time of the mount(8) call, ms (includes starting the mount process). */
  ms: number;
  umount(): number;
}

/**
 * Mount lower (top first) with upper and work. Lower paths are given relative to cwd when cwd is set, which keeps
 * the option string of deep stacks under the one-page limit of mount(2).
 */
export function mountOverlay(lower: readonly string[], upper: string, work: string, mnt: string, cwd?: string): OverlayMount {
  mkdirSync(upper, { recursive: true });
  mkdirSync(work, { recursive: true });
  mkdirSync(mnt, { recursive: true });
  const t = now();
  const r = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower.join(':')},upperdir=${upper},workdir=${work}`, mnt], {
    cwd,
    encoding: 'utf8',
  });
  const ms = now() - t;
  if (r.status !== 0) throw new Error(`overlay mount failed: ${r.stderr.trim()}`);
  trackMount(mnt);
  return {
    mnt,
    ms,
    umount(): number {
      const t0 = now();
      const u = spawnSync('umount', [mnt], { encoding: 'utf8' });
      if (u.status !== 0) throw new Error(`umount ${mnt} failed: ${u.stderr.trim()}`);
      untrackMount(mnt);
      return now() - t0;
    },
  };
}
