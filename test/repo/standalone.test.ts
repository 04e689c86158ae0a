/**
 * The repository stands alone: a clone with nothing beside it must build and pass its tests, so no tracked file
 * may read, link or mention the sibling reference folder that some development checkouts have next to the
 * project (the parent directory's `shared`). The fixtures, the format description and the checkers the tests
 * use all live in the repository (test/fixtures, docs/, src/thin/check.ts).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { projectRoot } from '../support/oracle.js';
import { needTool, toolPath } from '../support/tools.js';

const hasGit = needTool('git', 'git');

// Built from pieces so that this file does not match itself.
const PARENT = ['\\.\\.', 'shared'].join('/');
const FORBIDDEN = new RegExp(`${PARENT}\\b|\\bshared/(fixtures|tools|spec|notes)\\b`);

test.skipIf(!hasGit)('no tracked file mentions the sibling shared folder', () => {
  const r = spawnSync(toolPath('git'), ['ls-files', '-z'], { cwd: projectRoot, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  expect(r.status, r.stderr).toBe(0);
  const files = r.stdout.split('\0').filter((f) => f !== '');
  expect(files.length).toBeGreaterThan(100);
  const hits: string[] = [];
  for (const file of files) {
    const text = readFileSync(path.join(projectRoot, file)).toString('latin1');
    text.split('\n').forEach((line, i) => {
      if (FORBIDDEN.test(line)) hits.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  expect(hits).toEqual([]);
});

test('the pattern finds what it is for', () => {
  expect(FORBIDDEN.test(['see ', '..', '/sha', 'red/spec/x.md'].join(''))).toBe(true);
  expect(FORBIDDEN.test(['read ', 'sha', 'red', '/fixtures/dm-thin'].join(''))).toBe(true);
  expect(FORBIDDEN.test('shared subtrees, a shared/exclusive count')).toBe(false);
});
