// The package as a user receives it: `npm pack`, then `npm install` of the tarball into an empty app without dev
// dependencies, then the README's library, vitest and node:test examples and its CLI command, run from that app.
// The examples are taken from README.md itself, so the README cannot drift from what works.
// Needs npm and the registry (or npm's cache) for the package's dependencies, as any user install does.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
let work = '';
let app = '';

interface Block {
  lang: string;
  text: string;
}

/** Fenced code blocks of README.md, in order. */
function codeBlocks(md: string): Block[] {
  return [...md.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1], text: m[2] }));
}

function readmeBlock(lang: string, marker: string): string {
  const b = codeBlocks(readme).find((x) => x.lang === lang && x.text.includes(marker));
  if (!b) throw new Error(`README.md has no \`\`\`${lang} block containing ${marker}`);
  return b.text;
}

function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; timeout?: number } = {},
): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, {
    cwd: opts.cwd ?? app,
    encoding: 'utf8',
    timeout: opts.timeout ?? 120_000,
    env: { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false', ...opts.env },
  });
}

const show = (r: SpawnSyncReturns<string>): string => `exit ${r.status} ${r.signal ?? ''}\n${r.stdout}\n${r.stderr}`;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'tp-pack-'));
  app = join(work, 'app');
  mkdirSync(app);
  const pack = run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: root });
  expect(pack.status, show(pack)).toBe(0);
  const tgz = join(work, (JSON.parse(pack.stdout) as { filename: string }[])[0].filename);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }, null, 2));
  const install = run('npm', ['install', '--omit=dev', '--prefer-offline', tgz], { timeout: 300_000 });
  expect(install.status, `npm install of the packed tarball failed (it needs the registry or npm's cache): ${show(install)}`).toBe(0);
  // A golden image for the testing examples: 4 MiB with data in two places.
  mkdirSync(join(app, 'fixtures'));
  const img = Buffer.alloc(4 << 20);
  img.write('golden block zero', 0);
  img.write('golden block forty', 40 * 65536);
  writeFileSync(join(app, 'fixtures', 'disk.img'), img);
}, 400_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('installed from npm pack into an empty app', () => {
  test('only the runtime dependencies are installed: no TypeScript, AssemblyScript or vitest', () => {
    const nm = join(app, 'node_modules');
    expect(existsSync(join(nm, 'thinpool', 'dist', 'src', 'index.js'))).toBe(true);
    expect(existsSync(join(nm, 'thinpool', 'build', 'thinpool.wasm'))).toBe(true);
    for (const dev of ['typescript', 'assemblyscript', 'vitest', 'vite', '@biomejs/biome'])
      expect(existsSync(join(nm, dev)), dev).toBe(false);
  });

  test("the README's library example runs", () => {
    writeFileSync(join(app, 'library.mjs'), readmeBlock('ts', "from 'thinpool';"));
    const r = run(process.execPath, ['library.mjs']);
    expect(r.status, show(r)).toBe(0);
    expect(r.stdout).toMatch(/kind: 'different', begin: 0, length: 1/);
    expect(r.stdout).toMatch(/transactionId/);
  });

  test("the README's node:test example passes under node --test", () => {
    writeFileSync(join(app, 'golden-node.test.mjs'), readmeBlock('js', "from 'node:test'"));
    const r = run(process.execPath, ['--test', 'golden-node.test.mjs']);
    expect(r.status, show(r)).toBe(0);
    expect(r.stdout).toMatch(/# pass 1\b/);
    expect(r.stdout).toMatch(/# fail 0\b/);
  });

  test('thinpool/vitest without vitest installed fails saying what to install', () => {
    const r = run(process.execPath, ['--input-type=module', '-e', "await import('thinpool/vitest')"]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(
      /thinpool\/vitest needs vitest \(4\.1 or later\), which is not installed: run "npm install --save-dev vitest"/,
    );
  });

  test("the README's vitest example passes once the app has vitest, and leaves no exported image behind", () => {
    // The app's own vitest (a user's dev dependency): the repository's copy, linked in.
    symlinkSync(join(root, 'node_modules', 'vitest'), join(app, 'node_modules', 'vitest'), 'dir');
    const example = readmeBlock('ts', "from 'thinpool/vitest'");
    expect(example, 'examples write where the test can clean up: os.tmpdir(), not a fixed /tmp path').not.toMatch(/['`"]\/tmp\//);
    writeFileSync(join(app, 'golden.test.ts'), example);
    const tmp = join(work, 'tmp');
    mkdirSync(tmp);
    const r = run(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', 'golden.test.ts'], {
      env: { TMPDIR: tmp, CI: 'true' },
    });
    expect(r.status, show(r)).toBe(0);
    expect(r.stdout).toMatch(/1 passed/);
    expect(readdirSync(tmp).filter((f) => f.startsWith('disk-under-test'))).toEqual([]);
  });

  test("the README's examples type-check with the README's TypeScript settings", () => {
    writeFileSync(join(app, 'library.ts'), readmeBlock('ts', "from 'thinpool';"));
    // The settings README.md gives ("module" NodeNext, "lib" with ESNext.Disposable, @types/node), the user's
    // @types/node standing in as the repository's copy.
    const settings =
      /"module": "NodeNext"/.test(readme) && /"lib": \["ES2022",\s*"ESNext\.Disposable"\]/.test(readme) && /@types\/node/.test(readme);
    expect(settings, 'README.md states module NodeNext, lib ES2022 + ESNext.Disposable and @types/node').toBe(true);
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify(
        {
          compilerOptions: {
            target: 'ES2022',
            module: 'NodeNext',
            moduleResolution: 'NodeNext',
            lib: ['ES2022', 'ESNext.Disposable'],
            strict: true,
            noEmit: true,
            types: ['node'],
            typeRoots: [join(root, 'node_modules', '@types')],
          },
          files: ['library.ts', 'golden.test.ts'],
        },
        null,
        2,
      ),
    );
    const r = run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json']);
    expect(r.status, show(r)).toBe(0);
  });

  test('thinpool image import and fs cat run the ext2fs worker thread from the installed package', () => {
    const layer = join(work, 'layer');
    mkdirSync(join(layer, 'etc'), { recursive: true });
    writeFileSync(join(layer, 'etc', 'hostname'), 'from the package\n');
    const tarball = join(work, 'layer.tar');
    const t = run('tar', ['-C', layer, '-cf', tarball, '.']);
    expect(t.status, show(t)).toBe(0);
    const env = { npm_config_offline: 'true' };
    const pool = join(work, 'images-pool');
    for (const args of [
      ['init', pool, '--size', '256M'],
      ['image', 'import', pool, 'app', tarball],
    ]) {
      const r = run('npx', ['--no-install', 'thinpool', ...args], { env });
      expect(r.status, show(r)).toBe(0);
    }
    const cat = run('npx', ['--no-install', 'thinpool', 'fs', 'cat', pool, 'app', '/etc/hostname'], { env });
    expect(cat.status, show(cat)).toBe(0);
    expect(cat.stdout).toBe('from the package\n');
  });

  test("npx thinpool demo (the README's command for installed users), and status names the hole-punching path", () => {
    expect(readme).toMatch(/^ {4}npx thinpool demo$/m);
    const r = run('npx', ['--no-install', 'thinpool', 'demo'], { env: { npm_config_offline: 'true' } });
    expect(r.status, show(r)).toBe(0);
    expect(r.stdout).toMatch(/A tour of thinpool/);
    expect(r.stdout).toMatch(/\$ thinpool status thinpool-demo\/pool/);
    const st = run('npx', ['--no-install', 'thinpool', 'status', 'thinpool-demo/pool', '--json'], { env: { npm_config_offline: 'true' } });
    expect(st.status, show(st)).toBe(0);
    expect(['native', 'fallocate', 'none']).toContain((JSON.parse(st.stdout) as { holePunching: string }).holePunching);
  });
});
