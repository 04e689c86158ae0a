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
 */
import { test as baseTest } from 'vitest';
import type { Fork, Golden, GoldenStore } from './store.js';
import { GoldenSuite, type GoldenSuiteOptions } from './suite.js';

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
