/**
 * The one gate for everything a test needs from the machine: external tools (thin-provisioning-tools,
 * e2fsprogs, qemu-utils, ...) and other prerequisites (kernel overlayfs, root, /dev/fuse, loop devices).
 *
 *   const hasThin = needTool('thin_check', 'thin-provisioning-tools');
 *   test.skipIf(!hasThin)('...', () => { ... });
 *
 *   const canMount = needPrerequisite('kernel overlayfs', overlayUnavailable());
 *
 * Locally a missing prerequisite skips the tests that need it, with a message saying what is missing and how to
 * get it; in CI (`CI=true`) it throws instead, so a broken `.ci/run` or runner cannot turn into a green run of
 * skipped tests. Every skip in test/ goes through here (test/repo/skips.test.ts checks that).
 */
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';

export interface ToolStatus {
  name: string;
  found: boolean;
  /** Absolute path of the executable when found. */
  path?: string;
}

const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];
const cache = new Map<string, ToolStatus>();
const warned = new Set<string>();

function isExecutable(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Looks for an executable named `name` on PATH, then in /usr/local/sbin, /usr/sbin and /sbin. */
export function toolStatus(name: string): ToolStatus {
  const hit = cache.get(name);
  if (hit !== undefined) return hit;
  let result: ToolStatus = { name, found: false };
  if (name.includes('/')) {
    if (isExecutable(name)) result = { name, found: true, path: path.resolve(name) };
  } else {
    const dirs = (process.env.PATH ?? '').split(path.delimiter).filter((d) => d !== '');
    for (const dir of [...dirs, ...EXTRA_DIRS]) {
      const file = path.join(dir, name);
      if (isExecutable(file)) {
        result = { name, found: true, path: file };
        break;
      }
    }
  }
  cache.set(name, result);
  return result;
}

/** The absolute path of a tool, or throws if it is not installed. */
export function toolPath(name: string): string {
  const st = toolStatus(name);
  if (!st.found || st.path === undefined) throw new Error(`${name} not found`);
  return st.path;
}

/** True under CI (`CI=true`), where no test may be skipped. */
export function inCI(): boolean {
  return process.env.CI === 'true';
}

/**
 * True when `missing` is undefined (or null): the prerequisite `what` is there. Otherwise `missing` says what is
 * wrong and how to fix it: in CI this throws, locally it prints once `skipping WHAT: MISSING` and returns false.
 */
export function needPrerequisite(what: string, missing: string | null | undefined): boolean {
  if (missing === undefined || missing === null) return true;
  if (inCI()) {
    throw new Error(`${what} is unavailable in CI (${missing}); fix the runner or .ci/run instead of skipping tests`);
  }
  const key = `${what}\0${missing}`;
  if (!warned.has(key)) {
    warned.add(key);
    console.warn(`skipping ${what}: ${missing}`);
  }
  return false;
}

/**
 * True when the tool is present. When absent: in CI (`CI=true`) throws, otherwise prints once
 * `skipping NAME: not found (Debian package PKG)` and returns false.
 */
export function needTool(name: string, debianPackage: string): boolean {
  return needPrerequisite(name, toolStatus(name).found ? undefined : `not found (Debian package ${debianPackage})`);
}
