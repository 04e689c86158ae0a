// trim, extend and space through the command line (issue 9).
import { afterEach, expect, test } from 'vitest';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { main } from '../../src/cli/main.js';
import { verifyMetadataFile } from '../support/pool-check.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const sink = (f: (s: string) => void) =>
    new Writable({
      write(c, _e, cb) {
        f(String(c));
        cb();
      },
    });
  const code = await main(argv, {
    stdout: sink((s) => {
      out += s;
    }) as never,
    stderr: sink((s) => {
      err += s;
    }) as never,
  });
  return { code, out, err };
}

test('extend grows the pool; shrinking is refused; space shows and changes the policy; trim releases nothing on a clean pool', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-cli-space-'));
  dirs.push(dir);
  const pool = join(dir, 'pool');
  expect((await run('init', pool, '--size', '64M')).code).toBe(0);
  const r = await run('extend', pool, '--size', '128M', '--metadata-size', '4M');
  expect(r.code, r.err).toBe(0);
  expect(r.out).toMatch(/data: 64 MiB -> 128 MiB/);
  expect(statSync(join(pool, 'data')).size).toBe(128 * 1024 * 1024);
  const shrink = await run('extend', pool, '--size', '32M');
  expect(shrink.code).toBe(1);
  expect(shrink.err).toMatch(/shrinking is not supported/);
  expect((await run('extend', pool)).code).toBe(2);
  const set = await run('space', pool, '--auto-extend', 'on', '--auto-extend-max', '1G', '--data-thresholds', '70,85', '--json');
  expect(set.code, set.err).toBe(0);
  expect(JSON.parse(set.out)).toMatchObject({ autoExtend: { enabled: true, maxBytes: 1024 ** 3 }, thresholds: { data: [70, 85] } });
  const show = await run('space', pool);
  expect(show.out).toMatch(/auto-extend: +on: at 80% grow by 20% up to 1 GiB/);
  expect((await run('space', pool, '--discard-passdown', 'maybe')).code).toBe(2);
  const t = await run('trim', pool);
  expect(t.code, t.err).toBe(0);
  expect(t.out).toMatch(/released \d+ unused blocks/);
  const st = await run('status', pool, '--json');
  expect(JSON.parse(st.out).lowWater).toEqual({ data: 0, metadata: 0 });
  verifyMetadataFile(join(pool, 'metadata'));
});

test('a write that takes data use past a threshold succeeds and warns once on stderr', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-cli-space-'));
  dirs.push(dir);
  const pool = join(dir, 'pool');
  expect((await run('init', pool, '--size', '1M')).code).toBe(0);
  expect((await run('create', pool, 'v', '--size', '1M')).code).toBe(0);
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(dir, 'img'), Buffer.alloc(13 * 64 * 1024, 1));
  const r = await run('write', pool, 'v', join(dir, 'img'));
  expect(r.code, r.err).toBe(0);
  expect(r.err.trimEnd().split('\n')).toEqual([
    expect.stringMatching(/^thinpool: warning: data use of .* reached 80% \(13 of 16 blocks\)/),
  ]);
  verifyMetadataFile(join(pool, 'metadata'));
});
