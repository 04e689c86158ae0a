// The package as npm packs it: what the tarball holds, and that every relative link in README.md and docs/
// resolves to a file inside it (a user who installed the package has no src/, test/ or ../ of the repository).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, test } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface PackedFile {
  path: string;
  size: number;
}

let files: PackedFile[] = [];
let paths = new Set<string>();

beforeAll(() => {
  // --ignore-scripts: pack the dist/ and build/ already built (prepare would rebuild them).
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  files = (JSON.parse(r.stdout) as { files: PackedFile[] }[])[0].files;
  paths = new Set(files.map((f) => f.path));
});

describe('npm pack contents', () => {
  test('the built code, its declarations, the WASM core, the CLI, the native helper sources, docs and LICENSE', () => {
    for (const p of [
      'package.json',
      'README.md',
      'LICENSE',
      'bin/thinpool.js',
      'bin/package.json',
      'dist/src/cli/thinpool.cjs',
      'build/thinpool.wasm',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/cli/main.js',
      'dist/src/testing/vitest.js',
      'dist/src/testing/index.js',
      'dist/src/images/index.js',
      'dist/bench/compare/run.js',
      'native/thinpool_native.c',
      'native/binding.gyp',
      'scripts/build-native.mjs',
      'docs/cli.md',
    ])
      expect(paths.has(p), p).toBe(true);
  });

  test('every export and the bin point at packed files', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      exports: Record<string, string>;
      bin: Record<string, string>;
      main: string;
      types: string;
    };
    for (const target of [...Object.values(pkg.exports), ...Object.values(pkg.bin), pkg.main, pkg.types]) {
      expect(paths.has(normalize(target)), target).toBe(true);
    }
  });

  test('no WAT text, no tests, no TypeScript sources, no source maps, no build leftovers', () => {
    const unwanted = files
      .map((f) => f.path)
      .filter(
        (p) =>
          p.endsWith('.wat') ||
          p.endsWith('.map') ||
          /(^|\/)test\//.test(p) ||
          /\.test\.[jt]s$/.test(p) ||
          (p.endsWith('.ts') && !p.endsWith('.d.ts')) ||
          (p.startsWith('src/') && !p.startsWith('src/snapshotter/proto/')) ||
          p.startsWith('assembly/') ||
          p.startsWith('native/build/') ||
          p.startsWith('node_modules/'),
      );
    expect(unwanted).toEqual([]);
  });

  test('LICENSE is the license package.json names', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { license: string };
    expect(pkg.license).toBe('MIT');
    expect(readFileSync(join(root, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n/);
  });

  test('vitest is an optional peer dependency (only thinpool/vitest needs it)', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    expect(pkg.peerDependencies?.vitest).toBeTypeOf('string');
    expect(pkg.peerDependenciesMeta?.vitest).toEqual({ optional: true });
    expect(pkg.dependencies?.vitest).toBeUndefined();
  });
});

/** Relative link targets in a markdown file: [text](target) and <img src="target">, without #anchors. */
function relativeLinks(text: string): string[] {
  const out: string[] = [];
  const code = /```[\s\S]*?```/g; // fenced code is not markdown
  const body = text.replace(code, '');
  for (const m of body.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.push(m[1]);
  for (const m of body.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)) out.push(m[1]);
  for (const m of body.matchAll(/<img[^>]*\bsrc="([^"]+)"/g)) out.push(m[1]);
  return out.filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t) && !t.startsWith('#')).map((t) => decodeURI(t.replace(/#.*$/, '')));
}

describe('the command list', () => {
  test('README.md names every command `thinpool --help` lists, and no other', () => {
    const help = spawnSync(process.execPath, [join(root, 'bin', 'thinpool.js'), '--help'], { encoding: 'utf8' });
    expect(help.status, help.stderr).toBe(0);
    const section = help.stdout.slice(help.stdout.indexOf('Commands:'));
    const listed = [...section.matchAll(/^ {2}([a-z][a-z-]*)/gm)]
      .map((m) => m[1])
      .filter((c) => c !== 'help')
      .sort();
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const block = readme.slice(readme.indexOf('## The command line'));
    const para = block.slice(0, block.indexOf('every command has'));
    const named = [...para.matchAll(/`([^`]+)`/g)]
      .flatMap((m) =>
        m[1]
          .replace(/^thinpool /, '')
          .split('|')
          .map((x) => x.trim()),
      )
      .sort();
    expect(named).toEqual(listed);
  });
});

describe('links in the shipped documentation', () => {
  test('every relative link in README.md and docs/*.md resolves to a packed file', () => {
    const docs = [...paths].filter((p) => p === 'README.md' || (p.startsWith('docs/') && p.endsWith('.md')));
    expect(docs.length).toBeGreaterThan(5);
    const broken: string[] = [];
    let checked = 0;
    for (const doc of docs) {
      for (const target of relativeLinks(readFileSync(join(root, doc), 'utf8'))) {
        checked++;
        const resolved = normalize(join(dirname(doc), target)).replace(/\/$/, '');
        const inside = !resolved.startsWith('..') && (paths.has(resolved) || [...paths].some((p) => p.startsWith(`${resolved}/`)));
        if (!inside) broken.push(`${doc}: ${target}`);
      }
    }
    expect(broken).toEqual([]);
    expect(checked).toBeGreaterThan(20);
  });

  test('the link finder sees links, reference links and images, and skips URLs and code', () => {
    expect(
      relativeLinks(
        'a [x](docs/a.md#b) [y](https://e.org/z) ![p](plots/c.svg "t")\n[r]: ../up.md\n```\n[no](code.md)\n```\n<img src="i.png">',
      ),
    ).toEqual(['docs/a.md', 'plots/c.svg', '../up.md', 'i.png']);
  });
});
