/**
 * Every skip in test/ goes through the one gate, `needTool` / `needPrerequisite` (test/support/tools.ts), which
 * prints why locally and fails under CI=true. So: no unconditional `.skip(` / `.todo(` and no `ctx.skip()`;
 * a `skipIf` / `runIf` only in a file that calls the gate itself or imports a support module that does. (The
 * summary reporter also counts any skipped test as a failure under CI=true; this catches the code earlier.)
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { projectRoot } from '../support/oracle.js';

const TEST_DIR = path.join(projectRoot, 'test');
const GATE = /\bneed(Tool|Prerequisite)\(/;

function* tsFiles(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* tsFiles(p);
    else if (e.name.endsWith('.ts')) yield p;
  }
}

/** Source without comments (line and block), so prose about skipping is not counted. */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

/** True when file calls the gate or imports (relatively) a module that does. */
function gated(file: string, text: string): boolean {
  if (GATE.test(code(text))) return true;
  for (const m of text.matchAll(/from '(\.{1,2}\/[^']+)\.js'/g)) {
    const dep = path.resolve(path.dirname(file), `${m[1]}.ts`);
    try {
      if (GATE.test(code(readFileSync(dep, 'utf8')))) return true;
    } catch {
      // not a TypeScript module of ours
    }
  }
  return false;
}

/** The problems with the skips in one file's text (exported shape kept simple for the self-test below). */
function problems(file: string, text: string): string[] {
  const out: string[] = [];
  const src = code(text);
  const rel = path.relative(projectRoot, file);
  for (const m of src.matchAll(/\.(skip|todo)\s*\(|\b(ctx|context|t)\.skip\s*\(/g)) {
    out.push(`${rel}: unconditional ${m[0].trim()} (use skipIf with needTool / needPrerequisite)`);
  }
  if (/\.(skipIf|runIf)\s*\(/.test(src) && !gated(file, text)) {
    out.push(`${rel}: skipIf/runIf without needTool / needPrerequisite behind it`);
  }
  return out;
}

test('every skip in test/ goes through needTool / needPrerequisite', () => {
  const found: string[] = [];
  let files = 0;
  for (const file of tsFiles(TEST_DIR)) {
    if (file === path.join(TEST_DIR, 'repo/skips.test.ts')) continue;
    files++;
    found.push(...problems(file, readFileSync(file, 'utf8')));
  }
  expect(files).toBeGreaterThan(50);
  expect(found).toEqual([]);
});

test('the scan finds what it is for', () => {
  const f = path.join(TEST_DIR, 'x/y.test.ts');
  expect(problems(f, "test.skip('a', () => {});")).toHaveLength(1);
  expect(problems(f, "describe.todo('a');")).toHaveLength(1);
  expect(problems(f, "test('a', (ctx) => { ctx.skip(); });")).toHaveLength(1);
  expect(problems(f, "const ok = existsSync('/x');\ntest.skipIf(!ok)('a', () => {});")).toHaveLength(1);
  expect(problems(f, "const ok = needTool('x', 'y');\ntest.skipIf(!ok)('a', () => {});")).toEqual([]);
  expect(problems(f, '// test.skip( in a comment\n')).toEqual([]);
});
