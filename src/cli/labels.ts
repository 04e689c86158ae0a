/**
 * `--label K=V` and `--unlabel K` arguments, checked before a pool is opened (usage errors, exit 2).
 *
 * Rules: a key is 1-255 characters without "=", white space or control characters; a value is up to 4096
 * characters without control characters. Keys starting "thinpool." are reserved for the layers that own volumes
 * (images, containers, receive) and are refused here.
 */
import { UsageError, q } from './io.js';

const RESERVED = 'thinpool.';

/** commander collector for repeatable options. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function checkLabelKey(key: string, option: string): void {
  // eslint-disable-next-line no-control-regex
  if (key.length === 0 || key.length > 255 || /[=\s\x00-\x1f\x7f]/.test(key)) {
    throw new UsageError(`${option}: bad label key ${q(key)}: use 1-255 characters without "=", spaces or control characters`);
  }
  if (key.startsWith(RESERVED))
    throw new UsageError(`${option}: label keys starting "${RESERVED}" are reserved for thinpool's own layers: choose another key`);
}

/** Parse repeated `--label K=V` values into a record (a later K wins). */
export function parseLabels(values: unknown, option = '--label'): Record<string, string> {
  const out: Record<string, string> = {};
  if (values === undefined) return out;
  for (const v of values as string[]) {
    const eq = v.indexOf('=');
    if (eq < 0) throw new UsageError(`${option} ${q(v)} is not KEY=VALUE`);
    const key = v.slice(0, eq);
    const value = v.slice(eq + 1);
    checkLabelKey(key, option);
    // eslint-disable-next-line no-control-regex
    if (value.length > 4096 || /[\x00-\x1f\x7f]/.test(value))
      throw new UsageError(`${option}: label value of ${q(key)} must be at most 4096 characters without control characters`);
    out[key] = value;
  }
  return out;
}

/** Parse repeated `--unlabel K` values. */
export function parseUnlabels(values: unknown): string[] {
  const keys = (values as string[] | undefined) ?? [];
  for (const k of keys) checkLabelKey(k, '--unlabel');
  return keys;
}
