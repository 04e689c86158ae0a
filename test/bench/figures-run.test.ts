// bench/figures-run.ts: a bench's run merged into its figures JSON (what scripts/render-figures.mjs renders):
// runs under other names kept, the same name replaced, the commit measured and the date added.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { argValue, figuresTarget, recordRun } from '../../bench/figures-run.js';

const dir = mkdtempSync(join(tmpdir(), 'tp-figures-run-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('a run is merged under its name with the commit and date; other runs stay, the same name is replaced', () => {
  const file = join(dir, 'f.json');
  writeFileSync(file, `${JSON.stringify({ note: 'kept', runs: { old: { x: 1 } } })}\n`);
  recordRun(file, 'a', { x: 2 });
  recordRun(file, 'b', { x: 3 });
  recordRun(file, 'a', { x: 4, rows: [1, 2] });
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  expect(doc.note).toBe('kept');
  expect(Object.keys(doc.runs)).toEqual(['old', 'a', 'b']);
  expect(doc.runs.old).toEqual({ x: 1 });
  expect(doc.runs.b.x).toBe(3);
  expect(doc.runs.a.x).toBe(4);
  expect(doc.runs.a.rows).toEqual([1, 2]);
  const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  expect(doc.runs.a.commit === head || doc.runs.a.commit === `${head}+changes`).toBe(true);
  expect(doc.runs.a.date).toBe(new Date().toISOString().slice(0, 10));
});

test('a file that does not exist yet is created with the one run', () => {
  const file = join(dir, 'new.json');
  recordRun(file, 'first', { y: 1 });
  expect(Object.keys(JSON.parse(readFileSync(file, 'utf8')).runs)).toEqual(['first']);
});

test('--figures and --as in either form; --figures without --as is refused', () => {
  expect(figuresTarget(['node', 'b.js'])).toEqual({});
  expect(figuresTarget(['node', 'b.js', '--figures', 'f.json', '--as', 'x'])).toEqual({ file: 'f.json', as: 'x' });
  expect(figuresTarget(['node', 'b.js', '--figures=f.json', '--as=x'])).toEqual({ file: 'f.json', as: 'x' });
  expect(() => figuresTarget(['node', 'b.js', '--figures=f.json'])).toThrow('--figures FILE needs --as NAME');
  expect(argValue('--reps', ['--reps', '3'])).toBe('3');
  expect(argValue('--reps', ['--reps=4'])).toBe('4');
  expect(argValue('--reps', ['--quick'])).toBeUndefined();
});
