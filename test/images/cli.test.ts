// The image, container and fs command groups, end to end through the CLI.
import { afterAll, describe, expect, test } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, tempDir, hashPool } from '../cli/helpers.js';
import { needTool } from '../support/tools.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import { makeTar, threeLayers } from './support.js';

const haveTools = needTool('mkfs.ext4', 'e2fsprogs') && needTool('e2fsck', 'e2fsprogs') && needTool('debugfs', 'e2fsprogs');
const work = tempDir('tp-images-cli-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.skipIf(!haveTools)('thinpool image / container / fs', () => {
  test('import, ls, history, container create/ls/diff/commit/rm, fs ls/cat/put/rm', async () => {
    const pool = join(work, 'pool');
    expect((await cli(['init', pool, '--size', '1G'])).code).toBe(0);
    const dir = join(work, 'layers');
    mkdirSync(dir);
    const files: string[] = [];
    for (const [i, l] of threeLayers(200000).entries()) {
      files.push(join(dir, `l${i}.tar.gz`));
      writeFileSync(files[i], await makeTar(l, { gzip: true }));
    }
    let r = await cli(['image', 'import', pool, 'app', ...files, '--fs-size', '64M']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/imported image app .*3 layers, 3 applied, 0 reused/);
    r = await cli(['image', 'ls', pool]);
    expect(r.stdout).toMatch(/^NAME\s+IMAGE ID\s+LAYERS\s+SIZE\s+CREATED\napp\s+[0-9a-f]{12}\s+3\s/);
    r = await cli(['image', 'history', pool, 'app', '--json']);
    const hist = JSON.parse(r.stdout) as Array<{ createdBy: string; sizeBytes: number }>;
    expect(hist.map((h) => h.createdBy)).toEqual([
      'thinpool image import l2.tar.gz',
      'thinpool image import l1.tar.gz',
      'thinpool image import l0.tar.gz',
    ]);

    expect((await cli(['fs', 'cat', pool, 'app', '/etc/hostname'])).stdout).toBe('layer two\n');
    r = await cli(['fs', 'ls', pool, 'app', '/bin', '-l']);
    expect(r.stdout).toMatch(/-rwxr-x---\s+0\s+0\s+5000\s+tool\n-rwxr-xr-x\s+1000\s+100\s+70000\s+tool-hard\n/);
    expect(r.stdout).toMatch(/sh -> tool/);
    // writes to a committed layer are refused, and the pool is untouched
    const before = hashPool(pool);
    r = await cli(['fs', 'put', pool, 'app', '/etc/x'], { stdin: 'nope' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/read-only/);
    expect(hashPool(pool)).toEqual(before);

    expect((await cli(['container', 'create', pool, 'app', 'c1'])).code).toBe(0);
    expect((await cli(['fs', 'put', pool, 'c1', '/etc/hostname'], { stdin: 'c1\n' })).code).toBe(0);
    expect((await cli(['fs', 'rm', pool, 'c1', '/gone.txt'])).code).toBe(0);
    expect((await cli(['fs', 'cat', pool, 'c1', '/etc/hostname'])).stdout).toBe('c1\n');
    expect((await cli(['fs', 'cat', pool, 'app', '/etc/hostname'])).stdout).toBe('layer two\n');
    r = await cli(['container', 'diff', pool, 'c1']);
    expect(r.stdout).toBe('C /etc\nC /etc/hostname\nD /gone.txt\n');
    r = await cli(['container', 'ls', pool]);
    expect(r.stdout).toMatch(/^NAME\s+IMAGE\s+VOLUME\s+CREATED\s+SIZE\nc1\s+app\s+sn-\d+\s/);
    // The volume ls names is the container's: the pool's own commands take it, and export by name writes the same disk.
    const listed = JSON.parse((await cli(['container', 'ls', pool, '--json'])).stdout) as {
      name: string;
      volume: string;
      volumeId: number;
    }[];
    expect(listed).toEqual([
      expect.objectContaining({ name: 'c1', volume: expect.stringMatching(/^sn-\d+$/), volumeId: expect.any(Number) }),
    ]);
    const byName = join(work, 'c1.img');
    const byVolume = join(work, 'c1-vol.img');
    r = await cli(['container', 'export', pool, 'c1', byName]);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect((await cli(['export', pool, listed[0].volume, byVolume])).code).toBe(0);
    expect(readFileSync(byName).equals(readFileSync(byVolume))).toBe(true);
    expect(execFileSync('debugfs', ['-R', 'cat /etc/hostname', byName], { stdio: ['ignore', 'pipe', 'ignore'] }).toString()).toBe('c1\n');
    expect(spawnSync('e2fsck', ['-fn', byName]).status).toBe(0);
    const imageDisk = join(work, 'app.img');
    expect((await cli(['image', 'export', pool, 'app', imageDisk])).code).toBe(0);
    expect(execFileSync('debugfs', ['-R', 'cat /etc/hostname', imageDisk], { stdio: ['ignore', 'pipe', 'ignore'] }).toString()).toBe(
      'layer two\n',
    );
    r = await cli(['container', 'export', pool, 'nope', byName]);
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/no container named "nope"/)]);
    r = await cli(['image', 'export', pool, 'nope', imageDisk]);
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/no image named "nope"/)]);
    r = await cli(['container', 'commit', pool, 'c1', 'app2']);
    expect(r.code).toBe(0);
    expect((await cli(['fs', 'cat', pool, 'app2', '/etc/hostname'])).stdout).toBe('c1\n');
    r = await cli(['container', 'rm', pool, 'c1']);
    expect(r.stdout).toMatch(/removed container c1 \(.* freed\)/);

    // errors: unknown image, bad source, escaping path
    r = await cli(['container', 'create', pool, 'nope', 'c2']);
    expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/no image named "nope"/)]);
    const trunc = join(dir, 'trunc.tar');
    writeFileSync(trunc, (await makeTar([{ name: 'f', body: 'x'.repeat(20000) }])).subarray(0, 5000));
    const before2 = hashPool(pool);
    r = await cli(['image', 'import', pool, 'bad', files[0], trunc]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/truncated or corrupt/);
    expect(hashPool(pool)).toEqual(before2);
    r = await cli(['fs', 'cat', pool, 'app', '../../etc/passwd']);
    expect(r.code).toBe(2);
    expect((await cli(['image', 'rm', pool, 'app2'])).code).toBe(0);
    expect((await cli(['image', 'ls', pool])).stdout).toMatch(/\napp\s/);
    verifyMetadataFile(join(pool, 'metadata'));
  }, 300_000); // about 20 CLI processes, each mounting ext4 in a worker: minutes on a loaded machine
});
