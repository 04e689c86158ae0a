/**
 * The shape of src/ stays as docs/architecture.md describes it: no file over 500 lines, imports only down the
 * layer order (nothing below the CLI imports src/cli), no import cycle (assembly/ excepted, see
 * test/support/layers.ts). The checker is shown to catch each kind of violation in a planted tree.
 */
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { checkTree, MAX_LINES } from './support/layers.js';

/**
 * Files over the limit, each with its size when listed: they may shrink, not grow; an entry goes when its file
 * is split. None today (images.ts, librados.ts, metadata.ts and thin-xml.ts were split by concept, issue 18).
 */
const OVERSIZED: Record<string, number> = {};

const SRC = join(import.meta.dirname, '..', 'src');

describe('src/ keeps its shape', () => {
  test('no oversized file, no import up the layers, no cycle, every file in a layer', () => {
    expect(checkTree(SRC, OVERSIZED).map((v) => v.message)).toEqual([]);
  });

  test('nothing in src/ but the metadata engine reaches its internals (tests and engine benchmarks may)', () => {
    const reach = readdirSync(SRC, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && f !== join('thin', 'metadata-engine.ts'))
      .filter((f) => /\binternals\(/.test(readFileSync(join(SRC, f), 'utf8')));
    expect(reach).toEqual([]);
  });

  test('the list of oversized files holds only files still over the limit', () => {
    const stale = Object.keys(OVERSIZED).filter((f) =>
      checkTree(SRC, { ...OVERSIZED, [f]: 0 }).every((v) => v.file !== f || v.kind !== 'size'),
    );
    expect(stale, 'split: remove these from OVERSIZED').toEqual([]);
  });
});

describe('the checker finds planted violations', () => {
  const dir = mkdtempSync(join(tmpdir(), 'thinpool-layers-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const put = (rel: string, text: string) => {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  };
  put('errors.ts', 'export const E = 1;\n');
  put('io/device.ts', "import { E } from '../errors.js';\nimport { N } from '../thin/names.js';\nexport const D = E + N;\n");
  put('thin/names.ts', 'export const N = 1;\n');
  put('thin/pool.ts', "import { D } from '../io/device.js';\nimport { V } from './volume.js';\nexport class ThinPool {}\n");
  put('thin/volume.ts', "import type { ThinPool } from './pool.js';\nexport const V = 1;\n");
  put('nbd/serve.ts', "// import { q } from '../cli/io.js'; (a comment is not an import)\nexport { q } from '../cli/io.js';\n");
  put('cli/io.ts', "import { ThinPool } from '../thin/pool.js';\nexport const q = (s: string) => s;\n");
  put('images/big.ts', 'export const x = 1;\n'.repeat(MAX_LINES + 1));
  put('images/fits.ts', 'export const x = 1;\n'.repeat(MAX_LINES));
  put('elsewhere/lost.ts', 'export {};\n');
  put('thin/said.ts', '/**\n * Names of volumes: what a name may hold, and the one place that checks it.\n */\nexport const S = 1;\n');
  put('thin/short.ts', '// names\nexport const T = 1;\n');
  const found = checkTree(dir);
  const of = (kind: string) => found.filter((v) => v.kind === kind).map((v) => v.message);

  test('an import up the layers (io into the pool, NBD into the CLI), not one in a comment', () => {
    expect(of('layer')).toEqual([
      'io/device.ts (io) imports thin/names.ts (pool and volumes), a higher layer',
      'nbd/serve.ts (NBD) imports cli/io.ts (CLI), a higher layer',
    ]);
  });

  test('an import cycle, here through a type-only import', () => {
    expect(of('cycle')).toEqual(['import cycle among thin/pool.ts, thin/volume.ts: make one of them depend on an interface instead']);
  });

  test('a file over the limit (and only that one), and an oversized allowance that does not grow', () => {
    expect(of('size')).toEqual([`images/big.ts has ${MAX_LINES + 1} lines (limit ${MAX_LINES}): split it by concept`]);
    expect(checkTree(dir, { 'images/big.ts': MAX_LINES + 1 }).filter((v) => v.kind === 'size')).toEqual([]);
    expect(checkTree(dir, { 'images/big.ts': MAX_LINES }).filter((v) => v.kind === 'size')).toHaveLength(1);
  });

  test('a file that does not open with its contract (none, or a word), and one that does', () => {
    const c = of('contract');
    expect(c).toContain('thin/short.ts does not open with its contract: start it with a comment saying what it owns and promises');
    expect(c).toContain('thin/names.ts does not open with its contract: start it with a comment saying what it owns and promises');
    expect(c.some((m) => m.startsWith('thin/said.ts') || m.startsWith('nbd/serve.ts'))).toBe(false);
  });

  test('a file in no layer', () => {
    expect(of('unplaced')).toEqual([
      'elsewhere/lost.ts is in no layer: place it in LAYERS (test/support/layers.ts) and docs/architecture.md',
    ]);
  });
});
