// Runs the node:test example (node-test/sample.test.mjs) with `node --test` against the built package (which
// must be fresh: requireFreshBuild).
import { expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { requireFreshBuild } from '../support/dist.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const sample = join(root, 'test/testing/node-test/sample.test.mjs');

test('the node:test example passes under `node --test`', () => {
  requireFreshBuild();
  const r = spawnSync(process.execPath, ['--test', sample], { encoding: 'utf8', cwd: root });
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  expect(r.stdout).toMatch(/# pass 2/);
  expect(r.stdout).toMatch(/# fail 0/);
});
