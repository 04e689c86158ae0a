/**
 * A throwaway single-node Ceph cluster for tests and benchmarks: one monitor (no manager) and one OSD on
 * 127.0.0.1, everything under a fresh temp dir.
 *
 *   if (haveCeph()) { const c = await startCephCluster({ pools: ['tp'] }); ...; await c.stop(); }
 *
 * Contract:
 * - The monitor's two ports (msgr v2 and v1) are picked free at random on 127.0.0.1, so clusters of
 *   concurrent test runs never meet; a start that loses a port race is retried with new ports.
 * - Every wait is bounded (`timeoutMs`, default 60 s): a cluster that does not come up fails the start with the
 *   tail of the daemon's log, and what was started is stopped.
 * - Only the daemons this module spawned are signalled, by pid. A stopped daemon is gone when /proc/PID/stat
 *   is absent or shows a zombie (Z/X): PID 1 may reap slowly here, so `kill -0` is not a test.
 * - The daemons die with the process that started them (util-linux `setpriv --pdeathsig KILL`), so a test
 *   process killed before its `stop()` (a mutation run's timeout, a crash) leaves no daemon running; the next
 *   start removes the temp dirs such a process left (each names its owner's pid).
 * - `objectStore: 'memstore'` (default) is fastest and loses everything when the OSD stops; 'bluestore' keeps
 *   its data in a sparse file under the temp dir, so `killOsd()` + `startOsd()` models an OSD crash and restart.
 * - Clients (librados, `ceph`, `rados`, `rbd`) use `conf`: it names the admin keyring and gives each client
 *   process its own admin socket.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needTool } from './tools.js';

export interface CephClusterOptions {
  objectStore?: 'memstore' | 'bluestore';
  /** RADOS pools to create (8 placement groups each, size 1). */
  pools?: string[];
  /** Bound of each wait (cluster up, OSD up, stop). Default 60 s. */
  timeoutMs?: number;
  /** Extra `[global]` lines for ceph.conf. */
  extraConf?: string[];
}

export interface CephCluster {
  dir: string;
  /** ceph.conf for clients (admin keyring). */
  conf: string;
  /** The monitor's msgr v2 port. */
  port: number;
  /** `ceph` CLI with this cluster's conf; resolves to stdout, throws with stderr on failure. */
  ceph(args: string[]): Promise<string>;
  /** Any Ceph client tool (rados, rbd, ...) with this cluster's conf. */
  tool(cmd: string, args: string[]): Promise<string>;
  /** The running OSD's pid (0 when stopped). */
  osdPid(): number;
  /** SIGKILL the OSD and wait until it is gone. */
  killOsd(): Promise<void>;
  /** Start the OSD again (bluestore keeps its data) and wait until the monitor reports it up. */
  startOsd(): Promise<void>;
  /** Stop both daemons (SIGKILL: nothing of the cluster outlives it) and remove the temp dir. */
  stop(): Promise<void>;
}

/** True when the Ceph daemons and tools are installed (see needTool: a failure under CI=true). */
export function haveCeph(): boolean {
  return (
    needTool('ceph-mon', 'ceph-mon') &&
    needTool('ceph-osd', 'ceph-osd') &&
    needTool('ceph', 'ceph-common') &&
    needTool('ceph-authtool', 'ceph-common') &&
    needTool('monmaptool', 'ceph-common')
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a !== null ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

function exec(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
  });
}

/** Running: /proc/PID/stat exists and its state is not zombie/dead. */
export function processRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** util-linux setpriv (Debian's util-linux, essential), or null where it is missing: daemons then start bare. */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p)) ?? null;

async function waitGone(pid: number, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (processRunning(pid)) {
    if (Date.now() > end) throw new Error(`process ${pid} did not stop within ${timeoutMs} ms`);
    await sleep(20);
  }
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => !/^\s+\d+:/.test(l))
      .slice(-lines)
      .join('\n');
  } catch {
    return '(no log)';
  }
}

function confText(dir: string, fsid: string, v2: number, v1: number, opts: CephClusterOptions): string {
  const store = opts.objectStore ?? 'memstore';
  return [
    '[global]',
    `fsid = ${fsid}`,
    `mon host = [v2:127.0.0.1:${v2},v1:127.0.0.1:${v1}]`,
    'auth cluster required = cephx',
    'auth service required = cephx',
    'auth client required = cephx',
    'auth allow insecure global id reclaim = false',
    'paxos propose interval = 0.05',
    'osd pool default size = 1',
    'osd pool default min size = 1',
    'osd pool default pg num = 8',
    'osd pool default pgp num = 8',
    'mon allow pool size one = true',
    'mon allow pool delete = true',
    'mon warn on pool no redundancy = false',
    'osd crush chooseleaf type = 0',
    `keyring = ${dir}/keyring`,
    `run dir = ${dir}/run`,
    `admin socket = ${dir}/run/$name.$pid.asok`,
    `log file = ${dir}/log/$name.log`,
    `mon data = ${dir}/mon/$name`,
    `osd data = ${dir}/osd/$name`,
    `osd objectstore = ${store}`,
    'memstore device bytes = 4294967296',
    'bluestore block create = true',
    'bluestore block size = 4294967296',
    'bluestore fsck on mount = false',
    'bluestore cache size = 134217728',
    'osd memory target = 939524096',
    'osd op num shards = 1',
    'osd op num threads per shard = 2',
    ...(opts.extraConf ?? []),
    '[client]',
    `log file = ${dir}/log/client.log`,
    '',
  ].join('\n');
}

/** Start a cluster (see the module comment). Retries with new ports when the monitor cannot bind. */
export async function startCephCluster(opts: CephClusterOptions = {}): Promise<CephCluster> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(opts);
    } catch (e) {
      lastError = e;
      if (!String((e as Error).message).includes('bind')) break;
    }
  }
  throw lastError;
}

/**
 * Remove the directories of clusters whose starting process is gone (killed before it could stop them: its
 * daemons died with it, see `daemon`). Each directory names its owner in `owner`; one without it, or whose owner
 * runs, is left alone.
 */
function sweepOrphans(): void {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith('thinpool-ceph-')) continue;
    const dir = join(tmpdir(), name);
    try {
      const owner = Number(readFileSync(join(dir, 'owner'), 'utf8'));
      if (Number.isSafeInteger(owner) && owner > 0 && !processRunning(owner)) rmSync(dir, { recursive: true, force: true });
    } catch {
      /* no owner recorded, or removed meanwhile: not ours to judge */
    }
  }
}

async function startOnce(opts: CephClusterOptions): Promise<CephCluster> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  sweepOrphans();
  const dir = mkdtempSync(join(tmpdir(), 'thinpool-ceph-'));
  writeFileSync(join(dir, 'owner'), String(process.pid));
  const conf = join(dir, 'ceph.conf');
  const children: ChildProcess[] = [];
  let osdPid = 0;
  const osdId = 0;
  const fsid = randomUUID();
  const v2 = await freePort();
  let v1 = await freePort();
  while (v1 === v2) v1 = await freePort();
  for (const d of ['run', 'log', 'mon', `osd/osd.${osdId}`]) mkdirSync(join(dir, d), { recursive: true });
  writeFileSync(conf, confText(dir, fsid, v2, v1, opts));
  const ceph = (args: string[]) => exec('ceph', ['-c', conf, '--connect-timeout', '20', ...args], timeoutMs);
  const tool = (cmd: string, args: string[]) => exec(cmd, ['-c', conf, ...args], timeoutMs);

  const daemon = (cmd: string, args: string[]): ChildProcess => {
    // Through util-linux setpriv (it execs the daemon: the pid is the daemon's): the daemon gets SIGKILL when
    // the process that started it dies, so a test process killed before its afterAll (a mutation run's
    // timeout, a crash) leaves no cluster behind.
    const line = [cmd, '-c', conf, '-f', ...args];
    const child = SETPRIV
      ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', ...line], { stdio: 'ignore' })
      : spawn(cmd, line.slice(1), { stdio: 'ignore' });
    child.on('error', () => {
      /* reported through the wait's timeout and the log */
    });
    child.unref();
    children.push(child);
    return child;
  };
  const stopAll = async () => {
    for (const c of children) {
      if (c.pid !== undefined && processRunning(c.pid)) {
        try {
          process.kill(c.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    for (const c of children) if (c.pid !== undefined) await waitGone(c.pid, timeoutMs);
  };

  /** The epoch the OSD came up in, or -1 when the monitor has it down. */
  const osdUpFrom = async (): Promise<number> => {
    const out = JSON.parse(await ceph(['osd', 'dump', '--format', 'json'])) as {
      osds: Array<{ osd: number; up: number; up_from: number }>;
    };
    const o = out.osds.find((x) => x.osd === osdId);
    return o !== undefined && o.up === 1 ? o.up_from : -1;
  };
  let lastUpFrom = -1;
  /** Up, and in a later epoch than the instance before (a killed OSD stays "up" until its successor boots). */
  const waitOsdUp = async (child: ChildProcess) => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const upFrom = await osdUpFrom();
      if (upFrom > lastUpFrom) {
        lastUpFrom = upFrom;
        break;
      }
      if (child.pid === undefined || !processRunning(child.pid)) {
        throw new Error(`ceph-osd exited during start:\n${tail(join(dir, 'log', `osd.${osdId}.log`))}`);
      }
      if (Date.now() > end) throw new Error(`OSD not up within ${timeoutMs} ms:\n${tail(join(dir, 'log', `osd.${osdId}.log`))}`);
      await sleep(100);
    }
  };
  const startOsd = async () => {
    if (osdPid !== 0 && processRunning(osdPid)) throw new Error('the OSD is running');
    const child = daemon('ceph-osd', ['-i', String(osdId), '--keyring', join(dir, 'osd', `osd.${osdId}`, 'keyring')]);
    osdPid = child.pid ?? 0;
    await waitOsdUp(child);
  };

  try {
    const keyring = join(dir, 'keyring');
    await exec('ceph-authtool', ['--create-keyring', keyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *'], timeoutMs);
    await exec(
      'ceph-authtool',
      [keyring, '--gen-key', '-n', 'client.admin', '--cap', 'mon', 'allow *', '--cap', 'osd', 'allow *', '--cap', 'mgr', 'allow *'],
      timeoutMs,
    );
    const monmap = join(dir, 'monmap');
    await exec('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${v2},v1:127.0.0.1:${v1}]`, monmap], timeoutMs);
    await exec('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', monmap, '--keyring', keyring], timeoutMs);
    const mon = daemon('ceph-mon', ['-i', 'a']);
    const uuid = randomUUID();
    let id: string;
    try {
      id = (await ceph(['osd', 'new', uuid])).trim();
    } catch (e) {
      const log = tail(join(dir, 'log', 'mon.a.log'));
      throw new Error(`${(e as Error).message}\nmonitor ${mon.pid} ${processRunning(mon.pid ?? 0) ? 'running' : 'exited'}:\n${log}`);
    }
    if (id !== String(osdId)) throw new Error(`expected OSD id ${osdId}, the monitor gave ${id}`);
    const osdKeyring = join(dir, 'osd', `osd.${osdId}`, 'keyring');
    await exec('ceph-authtool', ['--create-keyring', osdKeyring, '--gen-key', '-n', `osd.${osdId}`], timeoutMs);
    await ceph(['auth', 'add', `osd.${osdId}`, 'osd', 'allow *', 'mon', 'allow profile osd', '-i', osdKeyring]);
    try {
      await exec('ceph-osd', ['-c', conf, '-i', String(osdId), '--mkfs', '--osd-uuid', uuid, '--keyring', osdKeyring], timeoutMs);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${tail(join(dir, 'log', `osd.${osdId}.log`))}`);
    }
    await startOsd();
    for (const p of opts.pools ?? []) await ceph(['osd', 'pool', 'create', p, '8']);
  } catch (e) {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  return {
    dir,
    conf,
    port: v2,
    ceph,
    tool,
    async killOsd() {
      if (osdPid === 0 || !processRunning(osdPid)) return;
      process.kill(osdPid, 'SIGKILL');
      await waitGone(osdPid, timeoutMs);
    },
    startOsd,
    osdPid: () => (osdPid !== 0 && processRunning(osdPid) ? osdPid : 0),
    async stop() {
      await stopAll();
      if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    },
  };
}
