/**
 * Finding external tools (thin-provisioning-tools, e2fsprogs, qemu-utils, ...) for tests.
 *
 *   const hasThin = needTool('thin_check', 'thin-provisioning-tools');
 *   test.skipIf(!hasThin)('...', () => { ... });
 *
 * Locally a missing tool skips the tests that need it; in CI (`CI=true`) it fails instead, so a broken
 * `.ci/run` cannot turn into a green run of skipped tests.
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

/**
 * True when the tool is present. When absent: in CI (`CI=true`) throws, otherwise prints once
 * `skipping: NAME not found (Debian package PKG)` and returns false.
 */
export function needTool(name: string, debianPackage: string): boolean {
  if (toolStatus(name).found) return true;
  if (process.env.CI === 'true') {
    throw new Error(
      `${name} is missing in CI (Debian package ${debianPackage}); install it in .ci/run instead of skipping tests`,
    );
  }
  if (!warned.has(name)) {
    warned.add(name);
    console.warn(`skipping: ${name} not found (Debian package ${debianPackage})`);
  }
  return false;
}
