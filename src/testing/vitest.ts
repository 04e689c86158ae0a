/**
 * thinpool/vitest: a vitest fixture giving every test its own copy-on-write fork of a golden image.
 *
 *   import { goldenTest } from 'thinpool/vitest';
 *   const test = goldenTest({ image: './fixtures/disk.img' });
 *   test('writes', async ({ fork }) => { fork.writeSync(data, 0); });
 *
 * Fixtures: `goldenStore` (file scope: the pool, made once per test file and disposed after it), `golden` (file
 * scope: the image loaded once), `fork` (test scope: a fresh fork, disposed after the test).
 * The returned test can be extended further with `.extend(...)`.
 *
 * vitest is an optional peer dependency (>= 4.1, for the scoped `.extend(name, options, fn)` form): when it is not
 * installed, importing this module fails with a ThinpoolError (ENOENT) saying how to install it or which
 * runner-neutral entry point (`thinpool/testing`) to use instead.
 */
import { ThinpoolError } from '../errors.js';
import type { Fork, Golden, GoldenStore } from './store.js';
import { GoldenSuite, type GoldenSuiteOptions } from './suite.js';

async function loadVitest(): Promise<typeof import('vitest')> {
  try {
    return await import('vitest');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err?.code === 'ERR_MODULE_NOT_FOUND' && /'vitest'/.test(String(err.message))) {
      throw new ThinpoolError(
        'ENOENT',
        'thinpool/vitest needs vitest (4.1 or later), which is not installed: run "npm install --save-dev vitest", or use goldenSuite from thinpool/testing with any other test runner',
        { cause: e },
      );
    }
    throw e;
  }
}

const { test: baseTest } = await loadVitest();
export type { GoldenSuiteOptions } from './suite.js';

export function goldenTest(options: GoldenSuiteOptions) {
  return baseTest
    .extend('goldenSuite', { scope: 'file' }, async ({}, { onCleanup }): Promise<GoldenSuite> => {
      const suite = new GoldenSuite(options);
      await suite.setup();
      onCleanup(() => suite.teardown());
      return suite;
    })
    .extend('goldenStore', { scope: 'file' }, async ({ goldenSuite }): Promise<GoldenStore> => goldenSuite.store)
    .extend('golden', { scope: 'file' }, async ({ goldenSuite }): Promise<Golden> => goldenSuite.golden)
    .extend('fork', async ({ goldenSuite }, { onCleanup }): Promise<Fork> => {
      const fork = goldenSuite.fork();
      onCleanup(() => fork.dispose());
      return fork;
    });
}
