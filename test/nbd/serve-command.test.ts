// `thinpool serve` as a function: startup errors, the default export, read-only, shutdown commits and closes.
import { randomBytes } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { ThinPool } from '../../src/thin/pool.js';
import { parseListen, serveCommand, type ServeCommandOptions } from '../../src/nbd/serve-command.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import { assembleRead, RawClient } from './raw-client.js';
import { MiB, tempDir } from './support.js';

class Sink {
  text = '';
  write(s: string): boolean {
    this.text += s;
    return true;
  }
}

let tmp: ReturnType<typeof tempDir>;
let dir: string;

beforeEach(() => {
  tmp = tempDir();
  dir = join(tmp.dir, 'pool');
  const pool = ThinPool.formatSync(dir, { size: 64 * MiB });
  pool.createThinSync('a', { size: 8 * MiB });
  pool.createThinSync('b', { size: 4 * MiB });
  pool.closeSync();
});

afterEach(() => tmp.cleanup());

function start(extra: Partial<ServeCommandOptions>) {
  const out = new Sink();
  const err = new Sink();
  const ac = new AbortController();
  let uri = '';
  let result!: Promise<number>;
  const listening = new Promise<void>((resolve) => {
    const done = serveCommand({
      pool: dir,
      names: [],
      listen: '127.0.0.1:0',
      stdout: out,
      stderr: err,
      signal: ac.signal,
      onListening: (u) => {
        uri = u;
        resolve();
      },
      ...extra,
    });
    void done.then(() => resolve());
    result = done;
  });
  return {
    out,
    err,
    stop: () => ac.abort(),
    listening,
    get uri() {
      return uri;
    },
    get result() {
      return result;
    },
  };
}

describe('serveCommand', () => {
  test('parseListen', () => {
    expect(parseListen('10809')).toEqual({ host: '127.0.0.1', port: 10809 });
    expect(parseListen(':0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseListen('localhost:99')).toEqual({ host: 'localhost', port: 99 });
    expect(parseListen('[::1]:5')).toEqual({ host: '::1', port: 5 });
    expect(() => parseListen('a:b')).toThrow(/bad --listen/);
  });

  test('startup errors: unknown volume, bad --listen, bad --busy-poll-us, --listen with --socket, no pool', async () => {
    const a = start({ names: ['nosuch'] });
    expect(await a.result).toBe(1);
    expect(a.err.text).toContain('no volume named "nosuch"');
    const b = start({ listen: 'x:y' });
    expect(await b.result).toBe(2);
    const c = start({ socket: join(tmp.dir, 's'), listen: ':1' });
    expect(await c.result).toBe(2);
    for (const bad of ['abc', '-1', '1001', '1.5']) {
      const e = start({ busyPollUs: bad });
      expect(await e.result).toBe(2);
      expect(e.err.text).toContain(`bad --busy-poll-us "${bad}"`);
    }
    // --write-back: rados:// pools only, a size, not with --read-only.
    const w = start({ writeBack: '1M' });
    expect(await w.result).toBe(2);
    expect(w.err.text).toContain('--write-back applies to rados:// pools only');
    const wr = start({ pool: 'rados://tp/x', writeBack: '1M', readOnly: true });
    expect(await wr.result).toBe(2);
    expect(wr.err.text).toContain('--write-back and --read-only cannot be used together');
    const wz = start({ pool: 'rados://tp/x', writeBack: 'lots' });
    expect(await wz.result).toBe(2);
    expect(wz.err.text).toContain('--write-back');
    const w0 = start({ writeBack: '0' }); // 0: off, accepted for any pool
    await w0.listening;
    expect(w0.out.text).not.toContain('write-back');
    w0.stop();
    expect(await w0.result).toBe(0);
    const d = start({ pool: join(tmp.dir, 'none') });
    expect(await d.result).toBe(1);
    expect(d.err.text).toContain('cannot open pool');
    // The pool is not left locked by the failed starts.
    ThinPool.openSync(dir).closeSync();
  });

  test('one named volume is the default export; shutdown commits, closes the pool, resolves 0', async () => {
    const s = start({ names: ['a'] });
    await s.listening;
    expect(s.out.text).toMatch(/^serving 1 export on nbd:\/\/127\.0\.0\.1:\d+: a\n$/);
    const port = Number(/:(\d+)$/.exec(s.uri)![1]);
    const c = await RawClient.connect({ port });
    const { size } = await c.negotiate('');
    expect(size).toBe(8 * MiB);
    const data = randomBytes(70000);
    c.send(1, 0, 1n, 12345, data.length, data);
    expect((await c.reply())!.error).toBe(0);
    // Only the named volume is exported.
    const d = await RawClient.connect({ port });
    await expect(d.negotiate('b', { meta: false })).rejects.toThrow(/GO failed/);
    d.close();
    s.stop();
    expect(await s.result).toBe(0);
    expect(await c.waitClosed()).toBe(true);
    verifyMetadataFile(join(dir, 'metadata'));
    const pool = ThinPool.openSync(dir);
    const back = Buffer.alloc(data.length);
    pool.volume('a').readSync(back, 12345);
    expect(back.equals(data)).toBe(true);
    pool.closeSync();
  });

  test('unix socket, all volumes, --read-only', async () => {
    const sock = join(tmp.dir, 'nbd.sock');
    const s = start({ socket: sock, listen: undefined, readOnly: true });
    await s.listening;
    expect(s.out.text).toContain('serving 2 exports (read-only) on nbd+unix:///?socket=');
    const c = await RawClient.connect({ path: sock });
    const { flags } = await c.negotiate('b');
    expect(flags & 2).toBe(2);
    c.send(1, 0, 1n, 0, 4, Buffer.alloc(4, 1));
    expect((await c.reply())!.error).toBe(1);
    c.send(0, 0, 2n, 0, 4096);
    expect(assembleRead((await c.reply())!, 0, 4096).equals(Buffer.alloc(4096))).toBe(true);
    s.stop();
    expect(await s.result).toBe(0);
  });

  test('TLS and safety flags: bad combinations are usage errors, non-loopback needs --tls require or --insecure', async () => {
    const psk = join(tmp.dir, 'keys.psk');
    const key = randomBytes(32);
    writeFileSync(psk, `alice:${key.toString('hex')}\n`);
    const cases: [Partial<ServeCommandOptions>, number, RegExp][] = [
      [{ tls: 'maybe' }, 2, /bad --tls "maybe"/],
      [{ tls: 'require' }, 2, /--tls require needs --tls-psk FILE/],
      [{ tlsPsk: psk }, 2, /need --tls on or --tls require/],
      [{ tls: 'on', tlsPsk: psk, tlsAllow: ['nocolon'] }, 2, /bad --tls-allow/],
      [{ listen: '0.0.0.0:0' }, 2, /not a loopback address, without --tls require/],
      [{ listen: '0.0.0.0:0', tls: 'on', tlsPsk: psk }, 2, /not a loopback address/],
      [{ socketMode: '9z' }, 2, /bad --socket-mode/],
      [{ maxConnections: '0' }, 2, /bad --max-connections/],
      [{ handshakeTimeout: 'x' }, 2, /bad --handshake-timeout/],
      [{ tls: 'require', tlsPsk: join(tmp.dir, 'none.psk') }, 1, /cannot read PSK file/],
      [{ tls: 'require', tlsCertificates: join(tmp.dir, 'nodir') }, 1, /certificate directory .* does not exist/],
      [{ tls: 'on', tlsPsk: psk, tlsAllow: ['bob:a'] }, 1, /identity "bob", which is not in the PSK file/],
    ];
    for (const [extra, code, msg] of cases) {
      const r = start(extra);
      expect(await r.result, JSON.stringify(extra)).toBe(code);
      expect(r.err.text).toMatch(msg);
    }
    writeFileSync(join(tmp.dir, 'bad.psk'), 'alice:nothex\n');
    const bad = start({ tls: 'on', tlsPsk: join(tmp.dir, 'bad.psk') });
    expect(await bad.result).toBe(1);
    expect(bad.err.text).toMatch(/line 1: expected IDENTITY:HEXKEY/);
    ThinPool.openSync(dir).closeSync();

    // --insecure serves a wildcard address in plain text; --tls require serves it over TLS only.
    const ins = start({ listen: '0.0.0.0:0', insecure: true });
    await ins.listening;
    expect(ins.out.text).toMatch(/on nbd:\/\/0\.0\.0\.0:\d+/);
    ins.stop();
    expect(await ins.result).toBe(0);
    const req = start({ listen: '0.0.0.0:0', tls: 'require', tlsPsk: psk, tlsAllow: ['alice:b'] });
    await req.listening;
    expect(req.out.text).toMatch(/TLS required on nbds:\/\/0\.0\.0\.0:\d+/);
    const port = Number(/:(\d+)$/.exec(req.uri)![1]);
    const c = await RawClient.connect({ port });
    await c.greeting();
    c.sendOption(3);
    expect((await c.optionReplies())!.map((x) => x.type)).toEqual([0x80000005]);
    expect(await c.startTls({ identity: 'alice', key })).toBeNull();
    c.sendOption(7, RawClient.goData('a'));
    expect((await c.optionReplies())!.pop()!.type).toBe(0x80000006);
    c.sendOption(7, RawClient.goData('b'));
    expect((await c.optionReplies())!.pop()!.type).toBe(1);
    c.close();
    req.stop();
    expect(await req.result).toBe(0);

    // The socket file is private by default; --socket-mode widens it.
    const sock = join(tmp.dir, 'm.sock');
    const m = start({ socket: sock, listen: undefined, socketMode: '660' });
    await m.listening;
    expect(statSync(sock).mode & 0o777).toBe(0o660);
    m.stop();
    expect(await m.result).toBe(0);
  });
});
