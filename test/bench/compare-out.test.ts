// Where the comparison (bench/compare/run.ts, also `thinpool bench`) writes: a quick run never writes over the
// checked-in figures in docs/ (benchmark-results.json, benchmark-tables.md, plots/*.svg). Nothing is measured.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { USAGE, outputDir } from '../../bench/compare/run.js';
import { requireFreshBuild } from '../support/dist.js';
import { projectRoot } from '../support/oracle.js';

const docs = join(projectRoot, 'docs');

test('--out defaults to docs for a default or full run and to ./thinpool-bench for a quick one', () => {
  expect(outputDir('default', undefined)).toBe('docs');
  expect(outputDir('full', undefined)).toBe('docs');
  expect(outputDir('quick', undefined)).toBe('thinpool-bench');
  expect(outputDir('quick', '/tmp/somewhere')).toBe('/tmp/somewhere');
  expect(outputDir('default', docs)).toBe(docs);
  expect(USAGE).toContain('./thinpool-bench for --quick');
});

test('a quick run into the checked-in docs/ is refused, however it is spelled', () => {
  expect(() => outputDir('quick', docs)).toThrow('--quick would overwrite the checked-in figures');
  expect(() => outputDir('quick', `${docs}/`)).toThrow('--quick would overwrite the checked-in figures');
  expect(() => outputDir('quick', join(docs, 'plots', '..'))).toThrow('--quick would overwrite the checked-in figures');
});

test('the built commands refuse it before running anything, and leave docs/ alone', () => {
  requireFreshBuild();
  const before = statSync(join(docs, 'benchmark-results.json')).mtimeMs;
  for (const argv of [
    ['dist/bench/compare/run.js', '--quick', '--out', 'docs'],
    ['bin/thinpool.js', 'bench', '--quick', '--out', 'docs'],
  ]) {
    const r = spawnSync(process.execPath, argv, { cwd: projectRoot, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, `${argv.join(' ')}: ${r.stderr}`).toBe(2);
    expect(r.stderr).toContain('--quick would overwrite the checked-in figures');
    expect(r.stdout).toBe('');
  }
  expect(statSync(join(docs, 'benchmark-results.json')).mtimeMs).toBe(before);
});
