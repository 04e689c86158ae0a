// Runs the node:test example (node-test/sample.test.mjs) with `node --test` against the built package.
import { expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const root = fileURLToPath(new URL('../../', import.meta.url));
const sample = join(root, 'test/testing/node-test/sample.test.mjs');

/** dist/src/testing is built and not older than src/testing. */
function built(): boolean {
  const src = join(root, 'src/testing');
  const dist = join(root, 'dist/src/testing');
  if (!existsSync(join(dist, 'index.js'))) return false;
  return readdirSync(src).filter((f) => f.endsWith('.ts')).every((f) => {
    const js = join(dist, f.replace(/\.ts$/, '.js'));
    return existsSync(js) && statSync(js).mtimeMs >= statSync(join(src, f)).mtimeMs;
  });
}

const ok = built();
if (!ok) console.warn('skipping: dist/src/testing is missing or older than src/testing (run `npm run build`)');

test.skipIf(!ok && process.env.CI !== 'true')('the node:test example passes under `node --test`', () => {
  const r = spawnSync(process.execPath, ['--test', sample], { encoding: 'utf8', cwd: root });
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  expect(r.stdout).toMatch(/# pass 2/);
  expect(r.stdout).toMatch(/# fail 0/);
});
