// Usage errors for the commands not in bad-input.test.ts (trim, extend, space, serve, bench, and the image,
// container and fs command groups), generated for every command and subcommand: missing and extra arguments,
// unknown options, bad sizes / percentages / on-off values and other option values. Each gets one line on stderr
// starting "thinpool CMD: ", the right exit status, and the pool's files hashed before and after are identical.
// The master pool, the command table and expectFails: test/cli/bad-input-fixture.ts.
//
// serve: only argument and open errors (it fails before listening; a guard stops a server that starts anyway).
// bench: only usage errors; the benchmark itself is never run.
import { existsSync, mkdirSync, readdirSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Cmd, expectFails, expectOneLineErrorNoStdout, ok, useBadInputPools } from './bad-input-fixture.js';
import { needTool } from '../support/tools.js';
import { cleanup, cli, flipByte, hashPool, holdLock, type CliResult } from './helpers.js';

const haveTools = needTool('mkfs.ext4', 'e2fsprogs') && needTool('e2fsck', 'e2fsprogs');
const { root, master, small, layer1, children, CMDS, copyPool } = useBadInputPools(haveTools);

let copies = 0; // numbers serve sockets and bench directories
const SERVE_ARGV = (p: string): string[] => ['serve', p, 'v', '--socket', join(root, `serve-${copies++}.sock`)];
const BENCH_ARGV = (): string[] => [
  'bench',
  '--scenario',
  'small-write',
  '--out',
  join(root, 'bench-out'),
  '--work',
  join(root, 'bench-work'),
];

/** Indices of the positional arguments within argv (command words, options and their values skipped). */
function positionalIdx(argv: string[], words: number): number[] {
  const idx: number[] = [];
  for (let i = words; i < argv.length; i++) {
    if (argv[i].startsWith('--')) {
      i++;
      continue;
    }
    idx.push(i);
  }
  return idx;
}

describe.skipIf(!haveTools)('bad input for the newer commands', () => {
  // ---- missing and extra arguments, unknown options: exit 2 ----
  type UsageCase = [string, string, (p: string) => string[]];
  const usageCases: UsageCase[] = [];
  const groupUsageCases: UsageCase[] = [];
  for (const c of [
    ...CMDS.filter((x) => x.name !== 'space (change)'),
    { name: 'serve', argv: SERVE_ARGV, writes: false, positional: 2, required: 1, variadic: true },
    { name: 'bench', argv: BENCH_ARGV, writes: false, positional: 0 },
  ] as Cmd[]) {
    const words = c.group ? 2 : 1;
    const to = c.group ? groupUsageCases : usageCases;
    const n = positionalIdx(c.argv('POOL'), words).length;
    for (let keep = (c.required ?? c.positional) - 1; keep >= 0 && n > 0; keep--) {
      to.push([
        c.name,
        `only ${keep} of ${c.required ?? c.positional} required argument(s)`,
        (p) => {
          const argv = c.argv(p);
          const drop = positionalIdx(argv, words).slice(keep);
          return argv.filter((_a, i) => !drop.includes(i));
        },
      ]);
    }
    if (!c.variadic) to.push([c.name, 'an extra argument', (p) => [...c.argv(p), 'extra']]);
    to.push([c.name, 'an unknown option', (p) => [...c.argv(p), '--frobnicate']]);
    to.push([c.name, 'an unknown short option', (p) => [...c.argv(p), '-Z']]);
  }
  for (const [name, opt] of [
    ['extend', '--size'],
    ['image import', '--fs-size'],
    ['space', '--data-thresholds'],
    ['space', '--auto-extend'],
    ['fs put', '--mode'],
    ['serve', '--listen'],
    ['serve', '--socket'],
    ['bench', '--scenario'],
  ] as const) {
    const base =
      name === 'serve' ? (p: string) => ['serve', p] : name === 'bench' ? () => ['bench'] : CMDS.find((c) => c.name === name)!.argv;
    const strip = (argv: string[]): string[] => {
      const i = argv.indexOf(opt);
      return i < 0 ? argv : [...argv.slice(0, i), ...argv.slice(i + 2)];
    };
    (name.includes(' ') ? groupUsageCases : usageCases).push([name, `${opt} without its value`, (p) => [...strip(base(p)), opt]]);
  }
  usageCases.push(['extend', 'neither --size nor --metadata-size', (p) => ['extend', p]]);

  describe('missing and extra arguments, unknown options: exit 2, one line, pool unchanged', () => {
    test.each(usageCases)('%s: %s', async (name, _what, f) => {
      const r = await expectFails(master, f(master), 2);
      if (!/neither/.test(_what)) expect(r.stderr).toMatch(new RegExp(`\\(see "thinpool ${name} --help"\\)$`, 'm'));
    });
    // The group subcommands give the right exit status and one line, but see the next block for the prefix.
    test.each(groupUsageCases)('%s: %s', async (name, _what, f) => {
      const r = await cli(f(master));
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr.startsWith(`thinpool ${name.split(' ')[0]}`), r.stderr).toBe(true);
      expect(r.stdout).toBe('');
    });
    // Fixed (was: "thinpool image: missing required argument 'NAME' (see "thinpool image --help")"): parse
    // errors inside a group name the subcommand, in the prefix and in the help hint.
    test.each(groupUsageCases)('%s: %s names the subcommand', async (name, _what, f) => {
      const r = await expectFails(master, f(master), 2);
      expect(r.stderr).toMatch(new RegExp(`\\(see "thinpool ${name} --help"\\)$`, 'm'));
    });

    test.each(['image', 'container', 'fs'])('%s with an unknown subcommand', async (g) => {
      await expectFails(master, [g, 'frobnicate', master], 2, /unknown command 'frobnicate'/, { cmd: g });
    });
    // Fixed (was: the group's help on stdout, exit 0): a missing subcommand is a usage error, as a missing command.
    test.each(['image', 'container', 'fs'])('%s with no subcommand exits 2', async (g) => {
      const r = await cli([g]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
    });
  });

  // ---- bad sizes, percentages, on/off values and other option values ----
  describe('bad option values: exit 2, pool unchanged', () => {
    const BAD_SIZES = ['', 'abc', '10X', '-1', '1.5', '0x10', '1e3', '12 34', '5KiBB', '99999999999999999999'];
    const sizeSites: Array<[string, (p: string, v: string) => string[]]> = [
      ['extend --size', (p, v) => ['extend', p, '--size', v]],
      ['extend --metadata-size', (p, v) => ['extend', p, '--metadata-size', v]],
      ['image import --fs-size', (p, v) => ['image', 'import', p, 'app2', layer1, '--fs-size', v]],
      ['space --auto-extend-max', (p, v) => ['space', p, '--auto-extend-max', v]],
    ];
    const BAD_PERCENTS = ['', ' ', '0', '-5', '101', 'abc', '50%', '80,,90', '80,abc', 'NaN', '1e400', 'Infinity'];
    const percentSites: Array<[string, (p: string, v: string) => string[]]> = [
      ['space --data-thresholds', (p, v) => ['space', p, '--data-thresholds', v]],
      ['space --metadata-thresholds', (p, v) => ['space', p, '--metadata-thresholds', v]],
      ['space --auto-extend-at', (p, v) => ['space', p, '--auto-extend-at', v]],
    ];
    const BAD_ON_OFF = ['', 'maybe', '1', '0', 'onn', 'of', 'on,off'];
    const onOffSites: Array<[string, (p: string, v: string) => string[]]> = [
      ['space --discard-passdown', (p, v) => ['space', p, '--discard-passdown', v]],
      ['space --auto-extend', (p, v) => ['space', p, '--auto-extend', v, '--auto-extend-max', '1G']],
    ];
    const cases: Array<[string, string, (p: string, v: string) => string[], RegExp]> = [];
    for (const [s, f] of sizeSites) for (const v of BAD_SIZES) cases.push([s, v, f, /--(size|metadata-size|fs-size|auto-extend-max)/]);
    for (const [s, f] of percentSites) for (const v of BAD_PERCENTS) cases.push([s, v, f, /percent/]);
    for (const [s, f] of onOffSites) for (const v of BAD_ON_OFF) cases.push([s, v, f, /is on or off/]);
    for (const v of ['', '0', '-5', 'abc', '50%', 'NaN'])
      cases.push(['space --auto-extend-percent', v, (p, x) => ['space', p, '--auto-extend-percent', x], /percent/]);
    for (const v of ['', 'never', 'ERROR', 'error,wait'])
      cases.push(['space --when-full', v, (p, x) => ['space', p, '--when-full', x], /--when-full is error or wait/]);
    for (const v of ['', 'abc', '8', '999', '-1', '77777'])
      cases.push(['fs put --mode', v, (p, x) => ['fs', 'put', p, 'c1', '/etc/x', small, '--mode', x], /--mode .*octal/]);
    // Values that parse but are not acceptable there.
    cases.push(['extend --size', '0', sizeSites[0][1], /--size/]);
    cases.push(['image import --fs-size', '0', sizeSites[2][1], /--fs-size/]);
    cases.push(['space --auto-extend-max', '0', sizeSites[3][1], /--auto-extend-max/]);
    cases.push([
      'space --auto-extend on --auto-extend-max',
      '1M (not above the data device)',
      (p) => ['space', p, '--auto-extend', 'on', '--auto-extend-max', '1M'],
      /--auto-extend-max larger than the data device/,
    ]);
    cases.push(['space --auto-extend on', 'without --auto-extend-max', (p) => ['space', p, '--auto-extend', 'on'], /--auto-extend-max/]);

    test.each(cases)('%s %j', async (_site, v, f, pattern) => {
      await expectFails(master, f(master, v), 2, pattern);
    });

    // Fixed: values that used to be accepted and changed the pool. --auto-extend-at "80,90" silently used 80;
    // --auto-extend-percent took "Infinity" and "1e400"; fs put --mode was parseInt(text, 8), which ignored
    // trailing garbage ("644abc" became 0644, "0x1ff" 0, "1.5" 01). --mode now takes octal digits only.
    const accepted: Array<[string, string, (p: string, v: string) => string[], RegExp]> = [
      ['space --auto-extend-at', '80,90', (p, v) => ['space', p, '--auto-extend-at', v], /--auto-extend-at/],
      ['space --auto-extend-percent', 'Infinity', (p, v) => ['space', p, '--auto-extend-percent', v], /--auto-extend-percent/],
      ['space --auto-extend-percent', '1e400', (p, v) => ['space', p, '--auto-extend-percent', v], /--auto-extend-percent/],
      ['fs put --mode', '644abc', (p, v) => ['fs', 'put', p, 'c1', '/etc/x', small, '--mode', v], /--mode/],
      ['fs put --mode', '0x1ff', (p, v) => ['fs', 'put', p, 'c1', '/etc/x', small, '--mode', v], /--mode/],
      ['fs put --mode', '1.5', (p, v) => ['fs', 'put', p, 'c1', '/etc/x', small, '--mode', v], /--mode/],
      ['fs put --mode', '+644', (p, v) => ['fs', 'put', p, 'c1', '/etc/x', small, '--mode', v], /--mode/],
      ['fs put --mode', ' 644', (p, v) => ['fs', 'put', p, 'c1', '/etc/x', small, '--mode', v], /--mode/],
      ['fs put --mode', 'rw-r--r--', (p, v) => ['fs', 'put', p, 'c1', '/etc/x', small, '--mode', v], /--mode/],
    ];
    test.each(accepted)('%s %j is refused', async (_site, v, f, pattern) => {
      const pool = copyPool(); // it may succeed: not on the shared master
      await expectFails(pool, f(pool, v), 2, pattern);
    });
    test('fs put --mode takes octal digits: 644, 0755, 4755, 0600, 0', async () => {
      const pool = copyPool();
      for (const m of ['644', '0755', '4755', '0600', '0']) {
        await ok(['fs', 'put', pool, 'c1', '/etc/m', small, '--mode', m]);
        const line = (await ok(['fs', 'ls', pool, 'c1', '/etc', '--long', '--json'])).stdout;
        const st = (JSON.parse(line) as Array<{ path: string; mode: number }>).find((e) => e.path === '/etc/m')!;
        expect(st.mode, m).toBe(parseInt(m, 8));
      }
      cleanup(pool);
    });

    test('extend: shrinking the data or metadata device is refused (exit 1)', async () => {
      await expectFails(master, ['extend', master, '--size', '8M'], 1, /is smaller than the data device .*shrinking is not supported/);
      await expectFails(
        master,
        ['extend', master, '--metadata-size', '1M'],
        1,
        /is smaller than the metadata device .*shrinking is not supported/,
      );
    });
    // Fixed (was: silently grown to the 15.9 GiB dm-thin limit instead): a size beyond the limit is a usage error.
    test('extend: a metadata device beyond the dm-thin limit is refused', async () => {
      const pool = copyPool();
      try {
        const r = await cli(['extend', pool, '--metadata-size', '32G']);
        expectOneLineErrorNoStdout(r, 2, 'extend', /--metadata-size/);
      } finally {
        cleanup(pool);
      }
    });
    // Fixed (was: exit 1, "I/O error: mkfs.ext4 failed: /tmp/...: Not enough space to build proposed
    // filesystem"): a --fs-size too small for mkfs.ext4 is a usage error naming the option and the minimum.
    test.each(['4K', '200K', '1048575'])('image import: an --fs-size of %s, too small for a filesystem, is a usage error', async (v) => {
      await expectFails(master, ['image', 'import', master, 'app2', layer1, '--fs-size', v], 2, /--fs-size .*too small .*at least 1M/);
    });
    test('image import: the smallest --fs-size makes a working filesystem', async () => {
      const pool = copyPool();
      await ok(['image', 'import', pool, 'tiny', layer1, '--fs-size', '1M']);
      expect((await ok(['fs', 'ls', pool, 'tiny', '/new'])).stdout).toBe('file\n');
      cleanup(pool);
    });
  });

  // ---- serve: argument and open errors only; it must never start listening here ----
  describe('serve fails fast without listening', () => {
    /** Run serve; if it has not returned after 10 s it is serving: stop it (its SIGINT handler) and fail. */
    async function serveGuarded(argv: string[]): Promise<CliResult> {
      let timer: NodeJS.Timeout | undefined;
      const run = cli(argv);
      const timeout = new Promise<'timeout'>((res) => {
        timer = setTimeout(() => res('timeout'), 10_000);
      });
      const r = await Promise.race([run, timeout]);
      clearTimeout(timer);
      if (r === 'timeout') {
        (process.emit as (ev: string) => boolean)('SIGINT');
        await run;
        throw new Error(`${argv.join(' ')} started serving`);
      }
      return r;
    }
    async function serveFails(pool: string, argv: string[], exit: number, pattern: RegExp): Promise<void> {
      const before = hashPool(pool);
      const t = Date.now();
      const r = await serveGuarded(argv);
      expectOneLineErrorNoStdout(r, exit, 'serve', pattern);
      expect(Date.now() - t).toBeLessThan(5000);
      expect(hashPool(pool)).toEqual(before);
      for (const f of readdirSync(root)) expect(f.endsWith('.sock'), f).toBe(false);
    }
    const sock = (): string => join(root, `serve-${copies++}.sock`);
    test('--listen and --socket together', async () => {
      await serveFails(
        master,
        ['serve', master, '--listen', '127.0.0.1:1', '--socket', sock()],
        2,
        /--listen and --socket cannot be used together/,
      );
    });
    test.each(['abc:xyz', 'x', ':', '', '65536', ':-1', 'host:', '[::1]', '1.2.3.4:99999', ' 80', '80 ', '1e3', '0x50'])(
      'a bad --listen %j',
      async (v) => {
        await serveFails(master, ['serve', master, '--listen', v], 2, /bad --listen .*expected HOST:PORT, :PORT or PORT/);
      },
    );
    test('an unknown pool', async () => {
      await serveFails(join(root, 'nope'), ['serve', join(root, 'nope'), '--socket', sock()], 1, /no pool at .*no such directory/);
    });
    test('a directory that is not a pool', async () => {
      const d = join(root, 'serve-empty');
      mkdirSync(d, { recursive: true });
      await serveFails(d, ['serve', d, '--socket', sock()], 1, /is not a thinpool pool \(no metadata file\)/);
    });
    test('an unknown volume', async () => {
      await serveFails(master, ['serve', master, 'v', 'nope', '--socket', sock()], 1, /no volume named "nope"/);
    });
    test.each(['locked', 'corrupt superblock', 'truncated metadata'] as const)('a %s pool', async (cond) => {
      const pool = copyPool();
      if (cond === 'locked') children.push(holdLock(pool));
      if (cond === 'corrupt superblock') flipByte(join(pool, 'metadata'), 100);
      if (cond === 'truncated metadata') truncateSync(join(pool, 'metadata'), 8192);
      await serveFails(pool, ['serve', pool, '--socket', sock()], 1, cond === 'locked' ? /is open in process \d+/ : /damaged|superblock/);
    });
    // Fixed (was: the engine's message without a remedy): serve explains open errors as the other commands do.
    test('a locked pool says what to do', async () => {
      const pool = copyPool();
      children.push(holdLock(pool));
      await serveFails(
        pool,
        ['serve', pool, '--socket', sock()],
        1,
        /is open in process \d+: wait for it to finish \(or stop it\) and retry/,
      );
    });
  });

  // ---- bench: usage errors only; the benchmark never runs ----
  describe('bench usage errors', () => {
    test.each([
      ['an unknown scenario', ['--scenario', 'nope']],
      ['an unknown scenario among known ones', ['--scenario', 'nope,small-write']],
      ['a scenario name in capitals', ['--scenario', 'SMALL-WRITE']],
    ])('%s exits non-zero fast, one line', async (_n, args) => {
      const work = join(root, `bench-work-${copies++}`);
      mkdirSync(work);
      const out = join(root, `bench-out-${copies++}`);
      const t = Date.now();
      const r = await cli(['bench', ...args, '--out', out, '--work', work]);
      expect(Date.now() - t).toBeLessThan(10_000);
      expect(r.code).not.toBe(0);
      expectOneLineErrorNoStdout(
        r,
        r.code,
        'bench',
        /unknown scenario .*(known: |choose from )small-write, deep-read, create, many, throughput, teardown/,
      );
      expect(existsSync(out)).toBe(false);
    });
    // Fixed (was: found only after the systems were probed, 5-6 lines on the process's stderr, a directory left
    // in --work, exit 1): an unknown --scenario is a fast usage error.
    test('an unknown scenario is a usage error: exit 2, nothing else printed, nothing left behind', async () => {
      const work = join(root, `bench-work-${copies++}`);
      mkdirSync(work);
      // What the command writes to the process's own stderr, around the CLI's stream.
      const direct: string[] = [];
      const real = process.stderr.write;
      process.stderr.write = ((chunk: unknown, ...rest: unknown[]) => {
        direct.push(String(chunk));
        return (real as (...a: unknown[]) => boolean).call(process.stderr, chunk, ...rest);
      }) as typeof process.stderr.write;
      let r: CliResult;
      try {
        r = await cli(['bench', '--scenario', 'nope', '--out', join(root, 'bench-out-x'), '--work', work]);
      } finally {
        process.stderr.write = real;
      }
      expect(direct.join('')).toBe('');
      expect(readdirSync(work)).toEqual([]);
      expectOneLineErrorNoStdout(r, 2, 'bench');
    });
  });
});
