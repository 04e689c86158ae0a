// The README's first command on a fresh copy of the repository, with an empty npm cache (no earlier npx or
// exec cache): after `npm install` (the one build), the demo must run the built command and rebuild nothing.
// (`npx thinpool demo` inside the repository used to install the repository into npm's exec cache, which ran
// `prepare`, a full AssemblyScript + TypeScript rebuild, before the demo printed anything.)
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, test } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const work = mkdtempSync(join(tmpdir(), 'tp-first-run-'));

afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The indented command right under "## Quick start". */
function quickStartCommand(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Quick start'));
  const m = /^ {4}(\S.*)$/m.exec(section);
  if (!m) throw new Error('README.md has no indented command under "## Quick start"');
  return m[1].trim();
}

/** Modification times of every file under dir, apart from the V8 code cache. */
function mtimes(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      // V8's code cache (bin/thinpool.js) is written by any run of a command not yet cached: not a build.
      if (e.isDirectory()) {
        if (e.name !== '.v8-cache') walk(p);
      } else out.set(relative(dir, p), statSync(p).mtimeMs);
    }
  };
  walk(dir);
  return out;
}

test('the Quick start command runs the demo on a fresh copy without rebuilding or installing anything', () => {
  const command = quickStartCommand();
  const steps = command.split('&&').map((s) => s.trim());
  // The first step is the install that builds once; the copy below already holds what it leaves: dist/, build/
  // and node_modules/ (linked).
  expect(steps[0]).toBe('npm install');
  const rest = steps.slice(1).join(' && ');
  expect(rest).not.toMatch(/\bnpx\b/); // npx inside the repository installs the repository into its exec cache

  const clone = join(work, 'clone');
  const skip = new Set(['node_modules', '.git', 'thinpool-demo', 'thinpool-bench', 'tmp']);
  cpSync(root, clone, { recursive: true, filter: (src) => !skip.has(relative(root, src).split('/')[0]) });
  symlinkSync(join(root, 'node_modules'), join(clone, 'node_modules'), 'dir');
  const before = new Map([
    ...mtimes(join(clone, 'dist')),
    ...[...mtimes(join(clone, 'build'))].map(([k, v]) => [`build/${k}`, v] as const),
  ]);
  const cache = join(work, 'npm-cache');

  const r = spawnSync('sh', ['-c', rest], {
    cwd: clone,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, npm_config_cache: cache, npm_config_update_notifier: 'false', npm_config_offline: 'true' },
  });
  expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  expect(r.stdout).toMatch(/A tour of thinpool in thinpool-demo\//);
  expect(r.stdout).toMatch(/\$ thinpool status thinpool-demo\/pool/);
  expect(r.stdout).not.toMatch(/asc assembly|tsc -p|> thinpool@[^ ]+ (build|prepare)/);
  const after = new Map([...mtimes(join(clone, 'dist')), ...[...mtimes(join(clone, 'build'))].map(([k, v]) => [`build/${k}`, v] as const)]);
  expect(after).toEqual(before);
  // Nothing was installed into npm's exec cache.
  expect(existsSync(join(cache, '_npx'))).toBe(false);
  expect(existsSync(join(clone, 'thinpool-demo', 'pool', 'metadata'))).toBe(true);
});

test('a copy whose WASM core is missing says so and how to build it, and no pool check is suggested', () => {
  const copy = join(work, 'no-core');
  for (const d of ['bin', 'dist', 'package.json']) cpSync(join(root, d), join(copy, d), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'), 'dir');
  const r = spawnSync(process.execPath, [join(copy, 'bin', 'thinpool.js'), 'init', join(work, 'p'), '--size', '16M'], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, THINPOOL_CODE_CACHE: '0' },
  });
  expect(r.status, r.stderr).toBe(1);
  expect(r.stderr.trim()).toMatch(/^thinpool init: WASM core not built \(.*build\/thinpool\.wasm\): run npm install$/);
  expect(existsSync(join(work, 'p', 'metadata'))).toBe(false);
});
