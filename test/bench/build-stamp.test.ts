// scripts/build-stamp.mjs (the last step of `npm run build`): dist/build-stamp.json names the commit the build was
// made from and the code files that differed from it, which bench/figures-run.ts stamps recorded runs with.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { needTool } from '../support/tools.js';

const hasGit = needTool('git', 'git');
const work = mkdtempSync(join(tmpdir(), 'tp-build-stamp-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

test.skipIf(!hasGit)('the stamp names the commit, and the code files changed since it (not docs or tests)', () => {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: work, encoding: 'utf8' }).trim();
  git('init', '-q');
  git('config', 'user.email', 't@example.com');
  git('config', 'user.name', 't');
  cpSync(join(import.meta.dirname, '../../scripts/build-stamp.mjs'), join(work, 'scripts/build-stamp.mjs'));
  writeFileSync(join(work, 'README.md'), 'x\n');
  git('add', '.');
  git('commit', '-qm', 'first');
  const stamp = () => {
    execFileSync(process.execPath, [join(work, 'scripts/build-stamp.mjs')]);
    return JSON.parse(readFileSync(join(work, 'dist/build-stamp.json'), 'utf8'));
  };
  const head = git('rev-parse', '--short', 'HEAD');
  expect(stamp()).toMatchObject({ commit: head, changed: [] });
  writeFileSync(join(work, 'README.md'), 'y\n'); // docs: not code
  expect(stamp().changed).toEqual([]);
  writeFileSync(join(work, 'scripts/build-stamp.mjs'), `${readFileSync(join(work, 'scripts/build-stamp.mjs'), 'utf8')}\n`);
  cpSync(join(work, 'README.md'), join(work, 'src/new.ts'));
  expect(stamp().changed.sort()).toEqual(['scripts/build-stamp.mjs', 'src/new.ts']);
});
