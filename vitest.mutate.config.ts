// The fast engine suites, for mutation testing (stryker.config.mjs; `npm run mutate`): the tests that drive
// the pool, the metadata, the persistent-data layer and the checker in memory or on small files, without the
// long soak-style suites (cache pressure, crash points, fuzzing) that would multiply the run time per mutant.
// MUTATE_TESTS=glob[,glob...] narrows the tests to those that exercise the file being mutated (a run over one
// file need not start every suite).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: process.env.MUTATE_TESTS
      ? process.env.MUTATE_TESTS.split(',')
      : [
          'test/pd/*.test.ts',
          'test/thin/pool.test.ts',
          'test/thin/metadata-refusals.test.ts',
          'test/thin/check.test.ts',
          'test/thin/check-thin-trees.test.ts',
          'test/thin/check-walk.test.ts',
          'test/thin/check-space-maps.test.ts',
          'test/thin/check-metadata-space-map.test.ts',
          'test/thin/check-state-edges.test.ts',
          'test/thin/check-state-shared.test.ts',
          'test/thin/check-state-errors.test.ts',
          'test/thin/check-entry-points.test.ts',
          'test/thin/metadata-inspect.test.ts',
          'test/thin/metadata-engine.test.ts',
          'test/thin/metadata-devices.test.ts',
          'test/thin/model.test.ts',
          'test/thin/volume.test.ts',
          'test/thin/volumes.test.ts',
          'test/thin/volumes-rollback.test.ts',
          'test/thin/lifecycle.test.ts',
          'test/thin/pool-api.test.ts',
          'test/thin/grow-release.test.ts',
          'test/thin/extend-growth.test.ts',
          'test/thin/transaction.test.ts',
          'test/thin/pool-state.test.ts',
          'test/thin/data-path.test.ts',
          'test/thin/data-path-edges.test.ts',
          'test/thin/data-path-corrupt.test.ts',
          'test/thin/data-path-runs.test.ts',
          'test/thin/data-path-writes.test.ts',
          'test/thin/pending-copies.test.ts',
          'test/thin/pending-copies-ranges.test.ts',
          'test/thin/data-flush.test.ts',
          'test/thin/event-gate.test.ts',
          'test/thin/core-trap.test.ts',
          'test/thin/space.test.ts',
          'test/thin/bounded-walks.test.ts',
          'test/thin/dump-pieces.test.ts',
          'test/thin/usage.test.ts',
          'test/crash/out-of-space.test.ts',
          'test/crash/metadata-full.test.ts',
          'test/fuzz/fuzz-regressions.test.ts',
          'test/crash/regressions.test.ts',
        ],
    env: { THINPOOL_MODEL_RUNS: '6' },
    testTimeout: 120000,
    hookTimeout: 120000,
  },
});
