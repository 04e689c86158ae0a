// The WASM boundary's contract (assembly/abi.ts): the host's generated copy is current, a core built from it
// passes the start-up check, and a core or a host with one offset changed is refused with EABI naming it.
import { describe, test, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ABI_FIELDS, S_RESULT } from '../../src/core/abi.js';
import { checkAbi, type AbiExports } from '../../src/core/abi-check.js';
import { Core } from '../../src/core/wasm.js';
import { ThinpoolError } from '../../src/errors.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** The exports of a compiled core, instantiated with inert imports (only its layout exports are called). */
function exportsOf(wasm: Uint8Array): AbiExports {
  const none = () => 0;
  const imports = {
    env: { memory: new WebAssembly.Memory({ initial: 1, maximum: 1 }), abort: none },
    host: { node: none, block: none, create: none, forget: none, dataFreed: none },
  };
  return new WebAssembly.Instance(new WebAssembly.Module(wasm), imports).exports as AbiExports;
}

function refusal(f: () => void): ThinpoolError {
  try {
    f();
  } catch (e) {
    if (e instanceof ThinpoolError) return e;
    throw e;
  }
  throw new Error('the ABI check accepted a mismatch');
}

describe('ABI between assembly/ and src/core/', () => {
  test('src/core/abi.ts and assembly/abi-layout.ts are what scripts/gen-abi.mjs makes of assembly/abi.ts', () => {
    const r = spawnSync(process.execPath, [join(root, 'scripts/gen-abi.mjs'), '--check'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  });

  test("the built core has exactly the host's fields: a Core starts", () => {
    const core = new Core(16, 64);
    expect(core.x.abiFieldCount()).toBe(ABI_FIELDS.length);
    expect(() => checkAbi(core.x, 'built')).not.toThrow();
  });

  test('a host with one offset changed refuses the core, naming the field', () => {
    const core = new Core(16, 64);
    const host = ABI_FIELDS.map(([name, v]) => [name, name === 'S_RESULT' ? v + 4 : v] as const);
    const e = refusal(() => checkAbi(core.x, 'built', host));
    expect(e.code).toBe('EABI');
    expect(e.message).toContain(`S_RESULT is ${S_RESULT} in the core and ${S_RESULT + 4} in the host`);
    expect(e.message).toContain('npm run build');
  });

  test('a core without layout exports (built before the check) is refused', () => {
    expect(refusal(() => checkAbi({}, 'old')).code).toBe('EABI');
  });

  test('a core whose field count differs is refused', () => {
    const core = new Core(16, 64);
    const e = refusal(() => checkAbi(core.x, 'built', ABI_FIELDS.slice(0, -1)));
    expect(e.code).toBe('EABI');
    expect(e.message).toContain(`${ABI_FIELDS.length} fields in the core, ${ABI_FIELDS.length - 1} in the host`);
  });

  describe('a core compiled with one offset changed in assembly/abi.ts', () => {
    let dir = '';
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'tp-abi-'));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    test('is refused by the host with EABI naming the field', () => {
      cpSync(join(root, 'assembly'), join(dir, 'assembly'), { recursive: true });
      const abi = join(dir, 'assembly/abi.ts');
      const src = readFileSync(abi, 'utf8');
      const line = `export const S_RESULT: usize = ${S_RESULT};`;
      expect(src).toContain(line);
      writeFileSync(abi, src.replace(line, `export const S_RESULT: usize = ${S_RESULT + 8};`));
      const out = join(dir, 'core.wasm');
      const asc = spawnSync(
        process.execPath,
        [
          join(root, 'node_modules/assemblyscript/bin/asc.js'),
          join(dir, 'assembly/index.ts'),
          '-o',
          out,
          '--runtime',
          'stub',
          '--importMemory',
          '--initialMemory',
          '1',
          '--noAssert',
          '--enable',
          'simd,bulk-memory',
          '-O1',
        ],
        { encoding: 'utf8' },
      );
      expect(asc.status, asc.stderr).toBe(0);
      const e = refusal(() => checkAbi(exportsOf(readFileSync(out)), 'at core.wasm'));
      expect(e.code).toBe('EABI');
      expect(e.message).toContain(`S_RESULT is ${S_RESULT + 8} in the core and ${S_RESULT} in the host`);
    }, 120_000);
  });
});
