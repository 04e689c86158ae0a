// Times in tar headers: pax `mtime` carries a fraction; the entry's time is cut to the millisecond, never
// rounded into the next second (a file read back a second later than tar wrote it: seen in the fidelity test).
import { spawnSync } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { paxTimeMs, readTar } from '../../src/images/tar-reader.js';
import { needTool } from '../support/tools.js';

describe('pax times', () => {
  test('the fraction is cut to whole milliseconds, not rounded', () => {
    expect(paxTimeMs('1796611314.9996')).toBe(1796611314999);
    expect(paxTimeMs('1796611314.999999999')).toBe(1796611314999);
    expect(paxTimeMs('1796611314.5')).toBe(1796611314500);
    expect(paxTimeMs('1796611314.')).toBe(1796611314000);
    expect(paxTimeMs('1796611314')).toBe(1796611314000);
    expect(paxTimeMs('0.001')).toBe(1);
    expect(paxTimeMs('-12.5')).toBe(-12500);
    expect(paxTimeMs('12a')).toBeNaN();
    expect(paxTimeMs('')).toBeNaN();
    expect(paxTimeMs('1e9')).toBeNaN();
  });

  const work = mkdtempSync(join(tmpdir(), 'tp-tartimes-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  test.runIf(needTool('tar', 'tar'))('GNU tar (posix format) writes a time .9996 s past a second: read back in that second', async () => {
    writeFileSync(join(work, 'late'), 'x');
    writeFileSync(join(work, 'whole'), 'y');
    const sh = (c: string) => spawnSync('bash', ['-euc', c], { cwd: work, encoding: 'utf8' });
    expect(sh(`touch -d @1796611314.9996 late && touch -d @1796611000 whole`).status).toBe(0);
    const t = sh('tar --format=posix -cf t.tar late whole');
    expect(t.status, t.stderr).toBe(0);
    const got: Record<string, number> = {};
    for await (const e of readTar(createReadStream(join(work, 't.tar')))) got[e.header.name] = e.header.mtimeMs;
    expect(got).toEqual({ late: 1796611314999, whole: 1796611000000 });
  });
});
