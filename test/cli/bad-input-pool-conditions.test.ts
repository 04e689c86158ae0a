// Pool conditions for the commands not in bad-input.test.ts (trim, extend, space, and the image, container and
// fs command groups), for every command and subcommand: each works on the master pool (the control); an unknown
// pool, a directory that is no pool, a locked pool, corrupt and truncated metadata, a corrupt catalog and a
// read-only pool directory (read-only commands must still work there); a full pool where the command writes.
// Each failure is one line on stderr starting "thinpool CMD: " with the right exit status, and the pool's files
// hashed before and after are identical. The master pool, the command table and expectFails:
// test/cli/bad-input-fixture.ts.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type Cmd, expectFails, ok, useBadInputPools } from './bad-input-fixture.js';
import { needTool } from '../support/tools.js';
import { SHARED_CONDS, type SharedCond, cli, conditionPools, expectUnderCondition, isSharedCond } from './helpers.js';

const haveTools = needTool('mkfs.ext4', 'e2fsprogs') && needTool('e2fsck', 'e2fsprogs');
const { root, small, layer0, layer1, children, CMDS, copyPool } = useBadInputPools(haveTools);

describe.skipIf(!haveTools)('bad input for the newer commands', () => {
  describe('every command works on the master pool (control)', () => {
    test.each(CMDS.map((c) => [c.name, c] as const))('%s', async (_n, c) => {
      const pool = copyPool();
      const r = await cli(c.argv(pool));
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    });
  });

  // ---- pool conditions, for every command ----
  describe('pool conditions, for every command', () => {
    type Cond = SharedCond | 'corrupt catalog';
    const conds: Cond[] = [...SHARED_CONDS, 'corrupt catalog'];
    let pools = new Map<string, string>();
    let undo: (() => void) | null = null;

    beforeAll(() => {
      ({ pools, undo } = conditionPools(root, () => copyPool(), children));
      const cat = copyPool();
      writeFileSync(join(cat, 'catalog.json'), '{"version": 1, "volumes": [tru');
      pools.set('corrupt catalog', cat);
    });
    afterAll(() => undo?.());

    const cases: Array<[string, Cond, Cmd]> = [];
    for (const cond of conds) for (const c of CMDS) cases.push([c.name, cond, c]);

    test.each(cases)('%s on a pool with %s', async (_name, cond, c) => {
      const pool = pools.get(cond)!;
      const argv = c.argv(pool);
      if (isSharedCond(cond)) await expectUnderCondition(cond, pool, argv, c.writes, (re) => expectFails(pool, argv, 1, re));
      else await expectFails(pool, argv, 1, /catalog/); // corrupt catalog
    });
  });

  // ---- a full pool ----
  describe('a full pool, where the command writes', () => {
    let pool = '';
    beforeAll(async () => {
      pool = join(root, 'full');
      await ok(['init', pool, '--size', '16M']);
      await ok(['image', 'import', pool, 'app', layer0, '--fs-size', '8M']);
      await ok(['container', 'create', pool, 'app', 'c1']);
      const st = JSON.parse((await ok(['status', pool, '--json'])).stdout) as { data: { free: number } } & Record<string, unknown>;
      const free = freeBytes(st);
      await ok(['create', pool, 'filler', '--size', String(free)]);
      await ok(['write', pool, 'filler', '-'], Buffer.alloc(free, 0x66));
      expect(freeBytes(JSON.parse((await ok(['status', pool, '--json'])).stdout))).toBe(0);
    });
    const cases: Array<[string, (p: string) => string[]]> = [
      ['fs put a new file into a container', (p) => ['fs', 'put', p, 'c1', '/etc/new', small]],
      ['fs put over a file shared with the image', (p) => ['fs', 'put', p, 'c1', '/etc/hostname', small]],
      ['fs rm of a file shared with the image (copy-on-write of its directory)', (p) => ['fs', 'rm', p, 'c1', '/etc/hostname']],
      ['image import of a new layer', (p) => ['image', 'import', p, 'big', layer1, '--fs-size', '8M']],
    ];
    test.each(cases)('%s: exit 1, one line, pool unchanged', async (_n, f) => {
      await expectFails(pool, f(pool), 1);
    });
    // Fixed (was: "node_ext2fs_umount EIO (29) args: [...]"): the pool's ENOSPC, which libext2fs saw as EIO, is
    // what the command reports, with what to do.
    test.each(cases)('%s: says the pool is full and what to do', async (_n, f) => {
      const r = await expectFails(
        pool,
        f(pool),
        1,
        /^thinpool [a-z ]+: pool .* is full: .*nothing was changed: free space with "thinpool container rm .*",? or grow the pool with "thinpool extend .* --size SIZE"$/m,
      );
      expect(r.stderr).not.toMatch(/node_ext2fs|EIO/);
    });
  });
});

/** Free data bytes from `status --json`, whatever its exact shape. */
function freeBytes(st: Record<string, unknown>): number {
  const d = (st.data ?? st.dataBlocks) as Record<string, number> | undefined;
  if (d && typeof d.freeBytes === 'number') return d.freeBytes;
  if (d && typeof d.free === 'number' && typeof st.blockSize === 'number') return d.free * st.blockSize;
  if (d && typeof d.total === 'number' && typeof d.used === 'number') return d.total - d.used;
  throw new Error(`cannot find the free data space in ${JSON.stringify(st)}`);
}
