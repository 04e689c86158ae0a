// The mutation-testing configs name files that exist: every test file (or glob) in vitest.mutate.config.ts, and
// every script, source, test and doc path stryker.config.mjs mentions (its comments included: they tell a reader
// what to run). A deleted or renamed file left in either would make `npm run mutate` test less than it says,
// or send a reader to a script that is not there.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { expect, test } from 'vitest';
import { projectRoot } from '../support/oracle.js';

const PATH = /\b(?:test|scripts|src|docs)\/[\w./*-]+\.(?:ts|mjs|md)\b/g;

function named(file: string): string[] {
  return [...readFileSync(join(projectRoot, file), 'utf8').matchAll(PATH)].map((m) => m[0]);
}

/** Whether a path exists; a `*` may stand for any run of characters in the last part. */
function exists(rel: string): boolean {
  if (!rel.includes('*')) return existsSync(join(projectRoot, rel));
  const dir = dirname(rel);
  if (dir.includes('*')) throw new Error(`glob in a folder name is not handled: ${rel}`);
  const last = rel.slice(dir.length + 1).replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp(`^${last.replaceAll('*', '.*')}$`);
  return existsSync(join(projectRoot, dir)) && readdirSync(join(projectRoot, dir)).some((e) => re.test(e));
}

test('every file named by vitest.mutate.config.ts and stryker.config.mjs exists', () => {
  const paths = [...new Set([...named('vitest.mutate.config.ts'), ...named('stryker.config.mjs')])];
  // The pattern finds what it is for (a change of the configs' form would otherwise leave nothing to check).
  expect(paths).toContain('test/thin/pool.test.ts');
  expect(paths).toContain('test/pd/*.test.ts');
  expect(paths).toContain('scripts/render-figures.mjs');
  expect(paths.filter((p) => !exists(p))).toEqual([]);
});

test('the check sees a missing file and a glob that matches nothing', () => {
  expect(exists('test/thin/no-such.test.ts')).toBe(false);
  expect(exists('test/pd/*.nothing.ts')).toBe(false);
  expect(exists('test/pd/*.test.ts')).toBe(true);
});
