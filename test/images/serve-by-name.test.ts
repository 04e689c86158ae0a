// `thinpool serve POOL container/NAME image/NAME`: a container's and an image's disk served by their names. The
// oracle for the bytes is `container export` / `image export` of the same pool; nbdinfo says which is read-only.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { cli, tempDir } from '../cli/helpers.js';
import { requireFreshBuild } from '../support/dist.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import { needTool } from '../support/tools.js';
import { run, runOk } from '../nbd/support.js';
import { makeTar } from './support.js';

const BIN = join(import.meta.dirname, '../../bin/thinpool.js');
const haveTools = needTool('mkfs.ext4', 'e2fsprogs') && needTool('nbdinfo', 'libnbd-bin') && needTool('nbdcopy', 'libnbd-bin');
const work = tempDir('tp-serve-names-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Start `thinpool serve` in a child process; resolves once it prints its address. */
async function serve(args: string[]): Promise<{ child: ChildProcess; out: () => string; stop: () => Promise<number | null> }> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 30_000;
  while (!/^serving /m.test(out) && child.exitCode === null) {
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`serve did not start: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    out: () => out,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

describe.skipIf(!haveTools)('serve by container and image name', () => {
  test('container/NAME and image/NAME are exports with those names, holding the disks that export writes', async () => {
    requireFreshBuild();
    const pool = join(work, 'pool');
    expect((await cli(['init', pool, '--size', '512M'])).code).toBe(0);
    const layer = join(work, 'l0.tar');
    writeFileSync(layer, await makeTar([{ name: 'etc/greeting', body: 'hello from the image\n' }]));
    let r = await cli(['image', 'import', pool, 'app', layer, '--fs-size', '16M']);
    expect(r.code, r.stderr).toBe(0);
    expect((await cli(['container', 'create', pool, 'app', 'web'])).code).toBe(0);
    r = await cli(['fs', 'put', pool, 'web', '/note'], { stdin: 'written in the container\n' });
    expect(r.code, r.stderr).toBe(0);
    for (const [kind, name] of [
      ['container', 'web'],
      ['image', 'app'],
    ])
      expect((await cli([kind, 'export', pool, name, join(work, `${kind}.img`)])).code).toBe(0);

    const sock = join(work, 's.sock');
    const server = await serve([pool, 'container/web', 'image/app', '--socket', sock]);
    try {
      expect(server.out()).toContain('serving 2 exports');
      const list = await runOk('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${sock}`]);
      const exports = (JSON.parse(list) as { exports: Array<{ 'export-name': string; is_read_only: boolean }> }).exports;
      expect(exports.map((e) => e['export-name']).sort()).toEqual(['container/web', 'image/app']);
      expect(exports.find((e) => e['export-name'] === 'image/app')!.is_read_only).toBe(true);
      expect(exports.find((e) => e['export-name'] === 'container/web')!.is_read_only).toBe(false);
      for (const [exp, file] of [
        ['container/web', 'container.img'],
        ['image/app', 'image.img'],
      ]) {
        const copy = join(work, `copy-${file}`);
        await runOk('nbdcopy', [`nbd+unix:///${exp}?socket=${sock}`, copy]);
        expect(readFileSync(copy).equals(readFileSync(join(work, file))), exp).toBe(true);
      }
      // The container's disk differs from the image's: it holds /note.
      expect(readFileSync(join(work, 'container.img')).equals(readFileSync(join(work, 'image.img')))).toBe(false);
    } finally {
      expect(await server.stop()).toBe(0);
    }
    verifyMetadataFile(join(pool, 'metadata'));
  });

  test('an unknown container or image is refused at start, naming it', async () => {
    const pool = join(work, 'pool2');
    expect((await cli(['init', pool, '--size', '64M'])).code).toBe(0);
    for (const [name, pattern] of [
      ['container/nope', /no container named "nope"/],
      ['image/nope', /no image named "nope"/],
    ] as const) {
      const r = await run(process.execPath, [BIN, 'serve', pool, name, '--socket', join(work, 'x.sock')], { timeoutMs: 30_000 });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(pattern);
    }
  });
});
