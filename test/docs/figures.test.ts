// The figures in the docs are the checked-in runs' figures: the generated sections of docs/crash-safety.md and
// docs/testing-the-engine.md equal what scripts/render-figures.mjs makes of docs/figures/*.json.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

test('the checked-in figure tables equal what the script renders from the checked-in JSON', () => {
  const r = spawnSync(process.execPath, ['scripts/render-figures.mjs', '--check'], { cwd: root, encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
});
