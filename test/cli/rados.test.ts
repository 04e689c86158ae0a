// The command line on rados://CEPH_POOL/NAME pools: every kind of command, ls-pools, dump-metadata + thin_check,
// metadata-snap reserve/release,
// `thinpool serve` of a rados: volume to qemu-io and fio in another process, a second writer refused with the
// holder named, and `lock break` fencing the serving process (its later writes fail and never land).
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { haveCeph } from '../support/ceph-cluster.js';
import { useCephCluster } from '../support/ceph-suite.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import { needTool } from '../support/tools.js';
import { run } from '../nbd/support.js';
import { cli, tempDir } from './helpers.js';

const BIN = join(import.meta.dirname, '../../bin/thinpool.js');

describe.skipIf(!haveCeph())('CLI on rados: pools', () => {
  const cluster = useCephCluster({ pools: ['tp'] });
  let tmp: string;
  const c = (args: string[], opts: { stdin?: string } = {}) => cli([...args, '--ceph-conf', cluster.ceph.conf], { ...opts, cwd: tmp });

  beforeAll(() => {
    tmp = tempDir('tp-cli-rados-');
  });

  test('init, create, write, read, snapshot, ls, status, ls-pools, check, dump-metadata (thin_check)', async () => {
    const p = 'rados://tp/one';
    expect((await c(['init', p, '--size', '1G', '--object-size', '1M'])).code).toBe(0);
    expect((await c(['init', p, '--size', '1G'])).stderr).toContain('already holds a thin pool');
    expect((await c(['create', p, 'v', '--size', '8M'])).code).toBe(0);
    expect((await c(['write', p, 'v', '--offset', '1M'], { stdin: 'hello rados' })).code).toBe(0);
    expect((await c(['snapshot', p, 'v', 's'])).code).toBe(0);
    const r = await c(['read', p, 's', '--offset', '1M', '--length', '11']);
    expect(r.stdout).toBe('hello rados');
    const ls = JSON.parse((await c(['ls', p, '--json'])).stdout) as Array<{ name: string }>;
    expect(ls.map((v) => v.name).sort()).toEqual(['s', 'v']);
    expect(JSON.parse((await c(['status', p, '--json'])).stdout).data.usedBlocks).toBe(1);
    const pools = JSON.parse((await c(['ls-pools', 'rados://tp', '--json'])).stdout) as Array<{ address: string; holder: unknown }>;
    expect(pools).toEqual([expect.objectContaining({ address: p, holder: null })]);
    const chk = await c(['check', p]);
    expect(chk.code, chk.stderr).toBe(0);
    expect(chk.stdout).toContain('OK: 2 volumes');
    expect((await c(['dump', p])).stdout).toContain('<superblock');
    const md = join(tmp, 'one.md');
    expect((await c(['dump-metadata', p, md])).code).toBe(0);
    verifyMetadataFile(md); // our strict checker, thin_check, thin_dump = our dump
    expect((await c(['dump-metadata', p, md])).code).toBe(2); // never overwrites
    // Errors: no such thin pool, no such Ceph pool, bad address.
    expect((await c(['ls', 'rados://tp/none'])).stderr).toContain('no thin pool at rados://tp/none');
    expect((await c(['ls', 'rados://nopool/x'])).stderr).toContain('no Ceph pool "nopool"');
    const bad = await c(['ls', 'rados://tp/a/b']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('use rados://CEPH_POOL/NAME');
  });

  test('metadata-snap reserve / release on a rados: pool: dump -m keeps the state at the reserve', async () => {
    const p = 'rados://tp/held';
    expect((await c(['init', p, '--size', '256M'])).code).toBe(0);
    expect((await c(['create', p, 'v', '--size', '4M'])).code).toBe(0);
    expect((await c(['write', p, 'v'], { stdin: 'x'.repeat(100_000) })).code).toBe(0);
    const atReserve = (await c(['dump', p])).stdout;
    const res = await c(['metadata-snap', 'reserve', p, '--json']);
    expect(res.code, res.stderr).toBe(0);
    expect((await c(['delete', p, 'v'])).code).toBe(0);
    expect((await c(['create', p, 'w', '--size', '1M'])).code).toBe(0);
    const m = await c(['dump', p, '--metadata-snap']);
    expect(m.code, m.stderr).toBe(0);
    expect(m.stdout.replace(/ nr_data_blocks="\d+"/, '')).toBe(atReserve.replace(/ nr_data_blocks="\d+"/, ''));
    // v's two blocks stay allocated while the held view maps them.
    expect(JSON.parse((await c(['status', p, '--json'])).stdout).data.usedBlocks).toBe(2);
    expect((await c(['metadata-snap', 'release', p])).code).toBe(0);
    expect(JSON.parse((await c(['status', p, '--json'])).stdout).data.usedBlocks).toBe(0);
    const chk = await c(['check', p]);
    expect(chk.code, chk.stderr).toBe(0);
  });

  // Twice: writes acknowledged by the cluster (the default), and written behind (--write-back, as librbd's cache).
  for (const writeBack of [null, '1M']) {
    test(`serve in another process${writeBack === null ? '' : ` with --write-back ${writeBack}`}: qemu-io and fio write through NBD; a second writer is refused; lock break fences the server`, async () => {
      const p = `rados://tp/served${writeBack === null ? '' : 'wb'}`;
      expect((await c(['init', p, '--size', '256M'])).code).toBe(0);
      expect((await c(['create', p, 'v', '--size', '32M'])).code).toBe(0);
      const wb = writeBack === null ? [] : ['--write-back', writeBack];
      const server: ChildProcess = spawn(
        process.execPath,
        [BIN, 'serve', p, '--listen', '127.0.0.1:0', '--ceph-conf', cluster.ceph.conf, ...wb],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      let err = '';
      server.stdout!.on('data', (d) => {
        out += d;
      });
      server.stderr!.on('data', (d) => {
        err += d;
      });
      const exited = new Promise<number | null>((resolve) => server.on('exit', (code) => resolve(code)));
      try {
        const deadline = Date.now() + 30_000;
        while (!/nbd:\/\/\S+:/.test(out)) {
          if (Date.now() > deadline || server.exitCode !== null) throw new Error(`serve did not start: ${out} ${err}`);
          await new Promise((r) => setTimeout(r, 50));
        }
        const uri = `${/(nbd:\/\/[^\s:]+:\d+)/.exec(out)![1]}/v`;
        if (writeBack !== null) expect(out).toContain('write-back 1 MiB');

        // The server holds the write lock: a writer in this process is refused with the holder named.
        const refused = await c(['create', p, 'w', '--size', '1M']);
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain(`open for writing by process ${server.pid} on host`);
        expect(refused.stderr).toMatch(new RegExp(`run "thinpool lock break ${p.replace(/\//g, '\\/')}"\n$`));
        const held = JSON.parse((await c(['ls-pools', 'rados://tp', '--json'])).stdout) as Array<{
          address: string;
          holder: { pid: number } | null;
        }>;
        expect(held.find((x) => x.address === p)?.holder?.pid).toBe(server.pid);

        if (needTool('qemu-io', 'qemu-utils')) {
          const w = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 64k', '-c', 'flush', uri]);
          expect(w.code, w.stderr + w.stdout).toBe(0);
        }
        if (needTool('fio', 'fio')) {
          const f = await run(
            'fio',
            [
              '--name=t',
              '--ioengine=nbd',
              `--uri=${uri}`,
              '--rw=randwrite',
              '--bs=4k',
              '--iodepth=16',
              '--size=4M',
              '--offset=8M',
              '--verify=crc32c',
              '--do_verify=1',
              '--verify_state_save=0',
              '--output-format=json',
            ],
            { timeoutMs: 120_000 },
          );
          expect(f.code, f.stderr).toBe(0);
          expect(JSON.parse(f.stdout.slice(f.stdout.indexOf('{'))).jobs[0].error).toBe(0);
        }
        // Reads need no lock: the committed 0x11 block is visible to a read-only opener.
        const before = await c(['read', p, 'v', '--length', '4']);
        if (needTool('qemu-io', 'qemu-utils')) expect(before.stdoutBytes).toEqual(Buffer.alloc(4, 0x11));

        // Break the lock: the server is fenced; its later writes fail and never land.
        const br = await c(['lock', 'break', p]);
        expect(br.code, br.stderr).toBe(0);
        expect(br.stdout).toContain(`process ${server.pid}`);
        expect((await c(['create', p, 'w', '--size', '1M'])).code).toBe(0); // the lock is free for a new writer
        if (needTool('qemu-io', 'qemu-utils')) {
          const late = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 0 64k', '-c', 'write -P 0x33 16M 64k', '-c', 'flush', uri]);
          expect(`${late.stdout}${late.stderr}`).toMatch(/error|failed/i);
          const now = await c(['read', p, 'v', '--length', '4']);
          expect(now.stdoutBytes).toEqual(Buffer.alloc(4, 0x11));
          const far = await c(['read', p, 'v', '--offset', '16M', '--length', '4']);
          expect(far.stdoutBytes).toEqual(Buffer.alloc(4, 0));
        }
      } finally {
        server.kill('SIGTERM');
        await exited;
      }
      const chk = await c(['check', p]);
      expect(chk.code, chk.stdout + chk.stderr).toBe(0);
    });
  }
});
