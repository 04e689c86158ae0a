/**
 * A crash suite's figures (docs/crash-safety.md, "Other suites"): `recordSuiteFigures(key, counts)`, called at the
 * top of a test file, counts the tests run and failed (with `passedNames`, the names of those that passed) and the
 * suite's wall time, and when THINPOOL_FIGURES_DIR is set hands them, with what `counts()` gives at the end, to
 * recordSuite of scripts/figures-crash-suites.mjs, which merges them into crash-suites.json under `key`.
 */
import { loadavg } from 'node:os';
import { afterAll, afterEach, beforeAll } from 'vitest';

const FIGURES = new URL('../../scripts/figures-crash-suites.mjs', import.meta.url).href;

interface FiguresModule {
  recordSuite(key: string, run: Record<string, unknown>): void;
}

export function recordSuiteFigures(
  key: string,
  counts: () => Record<string, unknown> = () => ({}),
  opts: { passedNames?: boolean } = {},
): void {
  const run = { started: 0, loadAtStart: 0, tests: 0, failures: 0 };
  const passed: string[] = [];
  beforeAll(() => Object.assign(run, { started: performance.now(), loadAtStart: loadavg()[0] }));
  afterEach(({ task }) => {
    run.tests++;
    if (task.result?.state === 'fail') run.failures++;
    if (task.result?.state === 'pass') passed.push(task.name);
  });
  afterAll(async () => {
    const { started, ...r } = run;
    const figures = (await import(FIGURES)) as FiguresModule;
    figures.recordSuite(key, { ...r, ...(opts.passedNames ? { passed } : {}), ms: Math.round(performance.now() - started), ...counts() });
  });
}
