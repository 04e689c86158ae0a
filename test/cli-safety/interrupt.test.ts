// What an interrupted command leaves behind in the host's file system. Blocks written but never committed are
// free in the committed space map; they must not keep host space: a command stopped by SIGINT/SIGTERM releases
// them itself (and says in one line what it kept and dropped); one killed outright (SIGKILL) leaves them to the
// next command, which releases them on open (read-only commands leave word for the next writer). In every case
// the data file's allocation ends within one block of the committed usage, without `thinpool trim`.
//
// Runs the built CLI (dist/), as a user's shell would: a real process, a real signal.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { allocatedBytes } from '../../src/io/file-device.js';
import { cleanup, cli, tempDir } from '../cli/helpers.js';
import { needTool } from '../support/tools.js';
import { makeTar, pattern } from '../images/support.js';

const ROOT = join(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/thinpool.js');
const BLOCK = 64 * 1024;
const work = tempDir('tp-interrupt-');
afterAll(() => cleanup(work));

/** A file of `mib` MiB with no all-zero block (every block gets provisioned). */
function bigFile(path: string, mib: number): string {
  if (existsSync(path)) return path;
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < mib; i++) {
    chunk.fill((i % 251) + 1);
    chunk.writeUInt32LE(i, 0);
    writeSync(fd, chunk);
  }
  closeSync(fd);
  return path;
}

/** Run the CLI; once the data file holds at least `atBytes` more than before, send `signal`. */
function runAndSignal(
  args: string[],
  dataFile: string,
  atBytes: number,
  signal: NodeJS.Signals,
): Promise<{ code: number | null; signal: string | null; stderr: string; sent: boolean }> {
  const start = allocatedBytes(dataFile);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let sent = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const poll = setInterval(() => {
      if (!sent && allocatedBytes(dataFile) - start >= atBytes) {
        sent = true;
        child.kill(signal);
      }
    }, 5);
    child.on('error', reject);
    child.on('exit', (code, sig) => {
      clearInterval(poll);
      resolve({ code, signal: sig, stderr, sent });
    });
  });
}

async function usedBytes(pool: string): Promise<number> {
  const r = await cli(['status', pool, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { data: { usedBytes: number } }).data.usedBytes;
}

/** The data file holds no more than the committed usage plus one block. */
async function expectNoLeftover(pool: string): Promise<void> {
  const used = await usedBytes(pool);
  const held = allocatedBytes(join(pool, 'data'));
  expect(held, `data file holds ${held} bytes, committed usage ${used}`).toBeLessThanOrEqual(used + BLOCK);
}

let n = 0;
async function newPool(): Promise<string> {
  const pool = join(work, `pool${n++}`);
  const r = await cli(['init', pool, '--size', '4G', '--metadata-size', '16M']);
  expect(r.code, r.stderr).toBe(0);
  // Committed data that must survive every interruption.
  expect((await cli(['create', pool, 'keep', '--size', '1M'])).code).toBe(0);
  expect((await cli(['write', pool, 'keep'], { stdin: Buffer.alloc(256 * 1024, 9) })).code).toBe(0);
  return pool;
}

const commands: [string, (pool: string, img: string) => string[]][] = [
  ['import', (pool, img) => ['import', pool, 'big', img]],
  ['write', (pool, img) => ['write', pool, 'target', img]],
];

describe.each(commands)('%s interrupted', (name, argv) => {
  const prepare = async (pool: string): Promise<void> => {
    if (name === 'write') expect((await cli(['create', pool, 'target', '--size', '2G'])).code).toBe(0);
  };

  test.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('by %s: exit %i, one line saying what was kept and dropped, the written blocks released at once', async (sig, exit) => {
    const pool = await newPool();
    await prepare(pool);
    const img = bigFile(join(work, 'big.img'), 1024);
    const before = await usedBytes(pool);
    const r = await runAndSignal(argv(pool, img), join(pool, 'data'), 32 << 20, sig);
    expect(r.sent, `the command finished before the signal: ${r.stderr}`).toBe(true);
    expect(r.code, r.stderr).toBe(exit);
    expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `^thinpool ${name}: interrupted by ${sig}: kept .* as of its last commit \\(transaction \\d+\\); dropped everything this command wrote and released the [\\d.]+ [KMG]iB it had written from the data file\\n$`,
      ),
    );
    // At once, before any other command:
    const held = allocatedBytes(join(pool, 'data'));
    expect(held).toBeLessThanOrEqual(before + BLOCK);
    expect(await usedBytes(pool)).toBe(before);
    const check = await cli(['check', pool]);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect((await cli(['read', pool, 'keep', '--length', '4'])).stdoutBytes).toEqual(Buffer.alloc(4, 9));
  });

  test('by SIGKILL: the next command releases the written blocks (a read-only one passes the word on)', async () => {
    const pool = await newPool();
    await prepare(pool);
    const img = bigFile(join(work, 'big.img'), 1024);
    const r = await runAndSignal(argv(pool, img), join(pool, 'data'), 32 << 20, 'SIGKILL');
    expect(r.sent).toBe(true);
    expect(r.signal).toBe('SIGKILL');
    const used = await usedBytes(pool); // a read-only command: it cannot release, it leaves word
    expect(allocatedBytes(join(pool, 'data'))).toBeGreaterThan(used + (16 << 20));
    const next = await cli(['create', pool, 'after', '--size', '1M']);
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).toMatch(
      /^thinpool: warning: .* was not closed by its last writer: released [\d.]+ [KMG]iB \(\d+ blocks\) it had written but never committed\n$/,
    );
    await expectNoLeftover(pool);
    expect((await cli(['check', pool])).code).toBe(0);
  });
});

const haveMkfs = needTool('mkfs.ext4', 'e2fsprogs');

describe.skipIf(!haveMkfs)('image import interrupted', () => {
  const bigLayer = async (sig: string): Promise<string> => {
    const dir = join(work, `layers-${sig}`);
    mkdirSync(dir, { recursive: true });
    const layer = join(dir, 'big.tar');
    writeFileSync(
      layer,
      await makeTar([
        { name: 'big1', body: pattern(96 << 20, 7) },
        { name: 'big2', body: pattern(96 << 20, 8) },
      ]),
    );
    return layer;
  };

  test.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('by %s: exit %i, one line, no image and no layer volume left, the written blocks released at once', async (sig, exit) => {
    const pool = await newPool();
    const before = await usedBytes(pool);
    const r = await runAndSignal(
      ['image', 'import', pool, 'app', await bigLayer(sig), '--fs-size', '512M'],
      join(pool, 'data'),
      24 << 20,
      sig,
    );
    expect(r.sent, `the import finished before the signal: ${r.stderr}`).toBe(true);
    expect(r.code, r.stderr).toBe(exit);
    expect(r.stderr).toMatch(
      new RegExp(
        `^thinpool image import: interrupted by ${sig}: kept .* as of its last commit \\(transaction \\d+\\); dropped everything this command wrote and released the [\\d.]+ [KMG]iB it had written from the data file\\n$`,
      ),
    );
    expect(allocatedBytes(join(pool, 'data'))).toBeLessThanOrEqual(before + BLOCK);
    expect(await usedBytes(pool)).toBe(before);
    const images = await cli(['image', 'ls', pool, '--json']);
    expect(JSON.parse(images.stdout)).toEqual([]);
    const vols = await cli(['ls', pool, '--json']);
    expect((JSON.parse(vols.stdout) as Array<{ name: string }>).map((v) => v.name)).toEqual(['keep']);
    expect((await cli(['check', pool])).code).toBe(0);
  });

  test('by SIGKILL: the next command releases what it wrote', async () => {
    const pool = await newPool();
    const r = await runAndSignal(
      ['image', 'import', pool, 'app', await bigLayer('SIGKILL'), '--fs-size', '512M'],
      join(pool, 'data'),
      24 << 20,
      'SIGKILL',
    );
    expect(r.sent, `the import finished before the signal: ${r.stderr}`).toBe(true);
    expect(r.signal).toBe('SIGKILL');
    const next = await cli(['create', pool, 'after', '--size', '1M']);
    expect(next.code, next.stderr).toBe(0);
    await expectNoLeftover(pool);
    expect((await cli(['check', pool])).code).toBe(0);
  });
});
