// bench/_ab.ts, the A/B of two builds: how a command is filled in for a side and run, and what is summed up.
// Building a commit's tree takes a minute, so the whole tool is run only without its arguments here (it must
// refuse and say how to use it); its runs are recorded by hand when a change is measured.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { fill, summary } from '../../bench/_ab.js';
import { requireFreshBuild } from '../support/dist.js';
import { projectRoot } from '../support/oracle.js';

test('{root}, {side} and {i} are filled in for each side and run', () => {
  const side = { side: 'old' as const, rev: 'abc1234', root: '/tmp/thinpool-ab/abc1234' };
  expect(fill('node {root}/bin/thinpool.js image import p img-{side}-{i} l.tar; echo {root}', side, 3)).toBe(
    'node /tmp/thinpool-ab/abc1234/bin/thinpool.js image import p img-old-3 l.tar; echo /tmp/thinpool-ab/abc1234',
  );
});

test('the summary is each side median and new / old', () => {
  expect(summary([10, 30, 20], [5, 15, 10, 20])).toEqual({ oldMs: 20, newMs: 12.5, ratio: 0.625 });
});

test('without --old or a command after --, the tool refuses with its usage', () => {
  requireFreshBuild();
  const ab = join(projectRoot, 'dist/bench/_ab.js');
  for (const args of [[], ['--old', 'HEAD'], ['--', 'true']]) {
    const r = spawnSync(process.execPath, [ab, ...args], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('usage: node dist/bench/_ab.js --old REV');
  }
});
