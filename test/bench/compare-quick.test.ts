// `thinpool bench --quick` in CI (issue 5): every scenario produces figures for every system that can run on
// this machine. Nothing about speed is asserted.
import { expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SCENARIOS, checkFigures, runCompare } from '../../bench/compare/run.js';

test('the comparison runs every scenario in quick mode and every runnable system produces figures', () => {
  const work = mkdtempSync(join(tmpdir(), 'tp-bench-quick-'));
  try {
    const lines: string[] = [];
    // containerd's scenario has its own test (containerd-bench.test.ts: it checks more, and takes a minute).
    const scenarios = SCENARIOS.map((s) => s.name).filter((n) => n !== 'containerd');
    const { results, unavailable } = runCompare({ mode: 'quick', work, scenarios, log: (s) => lines.push(s) });
    expect(results.length).toBeGreaterThanOrEqual(6);
    expect(checkFigures(results, unavailable), lines.join('\n')).toEqual([]);
    if (process.env.CI === 'true') {
      // CI installs qemu-utils and runs as root: every system must run there.
      expect(unavailable, 'systems skipped in CI').toEqual({});
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}, 300_000);
