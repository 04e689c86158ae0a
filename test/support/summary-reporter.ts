/**
 * A vitest 4 reporter that prints, as the very last line of a run, a plain summary CI can read:
 *
 *   N passed, N failed, N skipped
 *
 * Counting: every test case by its final state (passed / failed / skipped, `todo` counts as skipped; a test
 * left pending by an interrupted run counts as failed). A test file or suite with its own errors (failed to
 * import or collect, or a failing beforeAll/afterAll hook) counts as one more failure, as does a file that never
 * ran. Each unhandled error counts as one failure.
 *
 * Under CI (`CI=true`) no test may be skipped: every skipped (or todo) test is listed by name and counted as a
 * failure, and the run's exit status becomes 1. (Prerequisite gates already throw in CI, see tools.ts; this
 * catches any skip that does not go through them.)
 */
import { relative } from 'node:path';
import type { SerializedError } from 'vitest';
import type { Reporter, TestModule, TestRunEndReason } from 'vitest/node';

export interface SummaryCounts {
  passed: number;
  failed: number;
  skipped: number;
}

export function countResults(
  testModules: ReadonlyArray<TestModule>,
  unhandledErrors: ReadonlyArray<SerializedError>,
  skippedNames: string[] = [],
): SummaryCounts {
  const c: SummaryCounts = { passed: 0, failed: 0, skipped: 0 };
  for (const mod of testModules) {
    let tests = 0;
    for (const test of mod.children.allTests()) {
      tests++;
      const state = test.result().state;
      if (state === 'passed') c.passed++;
      else if (state === 'skipped') {
        c.skipped++;
        skippedNames.push(`${relative(process.cwd(), mod.moduleId)} > ${test.fullName}`);
      } else c.failed++; // 'failed', or 'pending' in an interrupted run
    }
    if (mod.errors().length > 0) c.failed++;
    for (const suite of mod.children.allSuites()) {
      if (suite.errors().length > 0) c.failed++;
    }
    const state = mod.state();
    if (tests === 0 && mod.errors().length === 0 && (state === 'failed' || state === 'queued' || state === 'pending')) {
      c.failed++;
    }
  }
  c.failed += unhandledErrors.length;
  return c;
}

export function formatSummary(c: SummaryCounts): string {
  return `${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped`;
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError>, _reason: TestRunEndReason): void {
    const skipped: string[] = [];
    const c = countResults(testModules, unhandledErrors, skipped);
    if (process.env.CI === 'true' && c.skipped > 0) {
      process.stdout.write(`${c.skipped} skipped test(s), each a failure under CI=true:\n`);
      for (const name of skipped) process.stdout.write(`  skipped: ${name}\n`);
      c.failed += c.skipped;
      c.skipped = 0;
      process.exitCode = 1;
    }
    process.stdout.write(`${formatSummary(c)}\n`);
  }
}
