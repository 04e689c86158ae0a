#!/usr/bin/env node
// Writes dist/build-stamp.json at the end of `npm run build`: the commit the build was made from and which of the
// files that make the code (src/, assembly/, bench/, scripts/, bin/, the package and compiler configs) differed
// from it. Benchmarks stamp their recorded runs with it (bench/figures-run.ts commitMeasured), so a run names
// the code it measured, not whatever the working tree holds by the time it ends (docs or tests being edited
// meanwhile do not make a run "+changes"). Outside a git checkout the commit is "unknown".
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const CODE = ['src', 'assembly', 'bench', 'scripts', 'bin', 'package.json', 'package-lock.json', 'asconfig.json', 'tsconfig.json'];

function git(args) {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trimEnd();
  } catch {
    return undefined;
  }
}

const commit = git(['rev-parse', '--short', 'HEAD'])?.trim() || 'unknown';
const status = git(['status', '--porcelain', '--untracked-files=all', '--', ...CODE]) ?? '';
const changed = status === '' ? [] : status.split('\n').map((l) => l.slice(3));
mkdirSync(join(root, 'dist'), { recursive: true });
writeFileSync(join(root, 'dist/build-stamp.json'), `${JSON.stringify({ commit, changed, builtAt: new Date().toISOString() }, null, 2)}\n`);
