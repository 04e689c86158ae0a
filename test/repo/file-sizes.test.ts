/**
 * Small files: no tracked code file anywhere in the repository (src/ and assembly/, but also tests, benches,
 * scripts, bin/ and CI) is over MAX_LINES lines, the limit test/layers.test.ts holds src/ to along with its
 * layer rules. Fixtures and docs are data and prose, not code, and are not counted.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { MAX_LINES } from '../support/layers.js';
import { projectRoot } from '../support/oracle.js';
import { needTool, toolPath } from '../support/tools.js';

const hasGit = needTool('git', 'git');

/** Code: TypeScript and JavaScript sources and shell scripts, and the CI entry point; not test/fixtures. */
const isCode = (f: string): boolean => (/\.(ts|mts|cts|js|mjs|cjs|sh)$/.test(f) || f === '.ci/run') && !f.startsWith('test/fixtures/');

/** Lines of a text as `wc -l` counts them after adding a final newline if one is missing. */
const lines = (text: string): number => (text === '' ? 0 : text.split('\n').length - (text.endsWith('\n') ? 1 : 0));

test.skipIf(!hasGit)(`no tracked code file is over ${MAX_LINES} lines`, () => {
  const r = spawnSync(toolPath('git'), ['ls-files', '-z'], { cwd: projectRoot, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  expect(r.status, r.stderr).toBe(0);
  const code = r.stdout.split('\0').filter((f) => f !== '' && isCode(f));
  expect(code.length).toBeGreaterThan(100);
  const over = code
    .map((f) => ({ f, n: lines(readFileSync(path.join(projectRoot, f), 'utf8')) }))
    .filter(({ n }) => n > MAX_LINES)
    .map(({ f, n }) => `${f}: ${n} lines`);
  expect(over, 'split these by concept').toEqual([]);
});

test('the count is that of wc -l, and the filter keeps code and leaves fixtures', () => {
  expect([lines(''), lines('a'), lines('a\n'), lines('a\nb'), lines('a\nb\n')]).toEqual([0, 1, 1, 2, 2]);
  expect(['src/a.ts', 'scripts/x.mjs', 'bin/thinpool.js', '.ci/run', 'test/x/y.test.ts'].every(isCode)).toBe(true);
  expect(['docs/a.md', 'test/fixtures/dm-thin/a.xml', 'test/fixtures/x.ts', 'package.json'].some(isCode)).toBe(false);
});
