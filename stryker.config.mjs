// Mutation testing of the engine (docs/testing-the-engine.md): `npm run mutate`, not part of `npm test`.
// The files mutated are the engine's: metadata, the pool (every src/thin file that holds it, whatever its
// split), volumes, the persistent-data layer and the checker; the formats, tools and catalog around them are
// left out. MUTATE=glob[,glob...] narrows the run (e.g. MUTATE=src/pd/transaction-manager.ts).
// The tests are the fast engine suites (vitest.mutate.config.ts; test/repo/config-files.test.ts checks that every
// test file either config names exists). The JSON report feeds `node scripts/render-figures.mjs --mutation
// REPORT.json`, which merges it into docs/figures/mutation.json and writes the score table into
// docs/testing-the-engine.md.
const notEngine = [
  'catalog',
  'dump',
  'high-water',
  'lock',
  'names',
  'rados-pool',
  'restore',
  'space-policy',
  'superblock',
  'thin-xml',
  'usage',
  'xml-tokenizer',
];

export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutate.config.ts' },
  mutate: process.env.MUTATE
    ? process.env.MUTATE.split(',')
    : ['src/thin/*.ts', ...notEngine.map((n) => `!src/thin/${n}.ts`), 'src/pd/*.ts'],
  coverageAnalysis: 'perTest',
  concurrency: Number(process.env.MUTATE_CONCURRENCY ?? 2),
  timeoutMS: 30000,
  timeoutFactor: 2,
  reporters: ['json', 'clear-text', 'progress'],
  jsonReporter: { fileName: process.env.MUTATE_REPORT ?? 'reports/mutation/mutation.json' },
  ignorePatterns: ['reports', 'thinpool-bench', 'thinpool-demo', '.thinpool-demo', 'docs/plots'],
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
