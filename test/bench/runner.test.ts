// bench/run.ts picks the benches to run by the rule in its opening comment: `_` helpers, a folder with its own
// run.js is one bench (its other modules are not run), the runner itself is not a bench. Checked on a made-up
// tree and on the built bench folder (the compare suite's library modules, among them the ext4 worker that
// crashes when started on its own, must not be run). Nothing is run: benchList only lists. `--record` is checked
// with runBenches on two planted scripts (no real bench runs): the Markdown it writes.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { benchList, runBenches } from '../../bench/run.js';
import { requireFreshBuild } from '../support/dist.js';
import { projectRoot } from '../support/oracle.js';

const tree = mkdtempSync(join(tmpdir(), 'tp-bench-runner-'));
afterAll(() => rmSync(tree, { recursive: true, force: true }));
for (const f of [
  'run.js',
  'top.js',
  'top.d.ts',
  'top.js.map',
  'eng/_lib.js',
  'eng/a.js',
  'eng/b.js',
  '_shared/x.js',
  'suite/run.js',
  'suite/lib/report.js',
  'suite/systems/worker.js',
  'suite/extra.js',
  'group/inner/run.js',
  'group/inner/mod.js',
  'group/plain.js',
]) {
  mkdirSync(dirname(join(tree, f)), { recursive: true });
  writeFileSync(join(tree, f), '');
}

test('every bench, without helpers, suite modules or the runner', () => {
  expect(benchList([], tree)).toEqual(['eng/a.js', 'eng/b.js', 'group/inner/run.js', 'group/plain.js', 'suite/run.js', 'top.js']);
});

test('a filter selects a folder, a suite or one file, in any of the spellings', () => {
  expect(benchList(['suite'], tree)).toEqual(['suite/run.js']);
  expect(benchList(['eng'], tree)).toEqual(['eng/a.js', 'eng/b.js']);
  expect(benchList(['eng/b', 'bench/eng/a.ts', 'dist/bench/eng/b.js'], tree)).toEqual(['eng/b.js', 'eng/a.js']);
  expect(benchList(['group'], tree)).toEqual(['group/inner/run.js', 'group/plain.js']);
});

test('naming a helper, a suite module or the runner is an error that says what it is', () => {
  expect(() => benchList(['suite/systems/worker'], tree)).toThrow(
    'suite/systems/worker.js is not a bench: a module of the bench suite/run.js',
  );
  expect(() => benchList(['suite/extra.js'], tree)).toThrow('a module of the bench suite/run.js');
  expect(() => benchList(['eng/_lib'], tree)).toThrow('eng/_lib.js is not a bench: a helper');
  expect(() => benchList(['run'], tree)).toThrow('run.js is not a bench: the runner itself');
  expect(() => benchList(['nothing-here'], tree)).toThrow('no bench matches "nothing-here"');
});

test('the built bench folder: compare is one bench, its modules and the helpers are not run', () => {
  requireFreshBuild();
  const all = benchList([], join(projectRoot, 'dist/bench'));
  expect(all).toContain('compare/run.js');
  expect(all).toContain('cli-startup.js');
  expect(all).toContain('engine/io.js');
  expect(all.filter((f) => f.startsWith('compare/'))).toEqual(['compare/run.js']);
  expect(all.filter((f) => f === 'run.js' || f.split('/').some((p) => p.startsWith('_')))).toEqual([]);
  expect(benchList(['compare'], join(projectRoot, 'dist/bench'))).toEqual(['compare/run.js']);
});

test("--record: each bench's output, exit status and seconds in a text block, under a header line", async () => {
  const dir = join(tree, 'rec');
  mkdirSync(dir);
  // Output with a fence of its own, on stdout, then (later, so the order is sure) on stderr; the second bench fails.
  writeFileSync(
    join(dir, 'say.js'),
    "console.log('\\n## say ' + process.argv.slice(2).join(' ')); console.log('```'); setTimeout(() => console.error('on stderr'), 200);",
  );
  writeFileSync(join(dir, 'fail.js'), "console.log('failing'); process.exit(3);");
  const record = join(dir, 'run.md');
  const runs = await runBenches(['say.js', 'fail.js'], ['--quick'], {
    root: dir,
    record,
    command: 'node dist/bench/run.js rec --quick --record run.md',
    echo: false,
  });
  expect(runs.map((r) => [r.name, r.status])).toEqual([
    ['say.js', 0],
    ['fail.js', 3],
  ]);
  const md = readFileSync(record, 'utf8');
  const [head, ...rest] = md.split('\n');
  expect(head).toMatch(
    /^Recorded by `node dist\/bench\/run.js rec --quick --record run.md`: commit [0-9a-f]+(\+changes)?, \d{4}-\d\d-\d\d, \d+ CPUs, load average [\d.]+ before and [\d.]+ after, flags: --quick\.$/,
  );
  const body = rest.join('\n');
  expect(body).toMatch(/\*\*say\.js\*\*: exit status 0, [\d.]+ s\n\n````text\n## say --quick\n```\non stderr\n````\n/);
  expect(body).toMatch(/\*\*fail\.js\*\*: exit status 3, [\d.]+ s\n\n```text\nfailing\n```\n/);
  expect(body).toMatch(/\n2 benches, 1 passed, [\d.]+ s in all\.\n$/);
});
