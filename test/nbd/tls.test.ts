// NBD over TLS with the real clients: libnbd (nbdinfo, nbdcopy), fio's nbd engine and qemu-img, with pre-shared
// keys made by psktool and X.509 certificates made by certtool. Refusals as the protocol says (FORCEDTLS), and a
// per-identity export allow-list. Every server listens on a random loopback port or a socket in a temp dir.
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ThinPool } from '../../src/thin/pool.js';
import { NbdServer } from '../../src/nbd/server.js';
import { readCertificateDir, readPskFile } from '../../src/nbd/tls.js';
import { needTool } from '../support/tools.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import { assembleRead, RawClient } from './raw-client.js';
import { filePool, MiB, run, runOk, tempDir } from './support.js';
import { makeCertificates, makePskFile } from './tls-support.js';

const hasPsktool = needTool('psktool', 'gnutls-bin');
const hasCerttool = needTool('certtool', 'gnutls-bin');
const hasNbdinfo = needTool('nbdinfo', 'libnbd-bin');
const hasNbdcopy = needTool('nbdcopy', 'libnbd-bin');
const hasQemu = needTool('qemu-img', 'qemu-utils');
const hasFio = needTool('fio', 'fio');

const ACK = 1,
  REP_SERVER = 2,
  ERR_POLICY = 0x80000002,
  ERR_INVALID = 0x80000003,
  ERR_TLS_REQD = 0x80000005,
  ERR_UNKNOWN = 0x80000006;
const OPT_EXPORT_NAME = 1,
  OPT_ABORT = 2,
  OPT_LIST = 3,
  OPT_INFO = 6,
  OPT_GO = 7,
  OPT_STRUCTURED = 8,
  OPT_SET_META = 10;
const READ = 0,
  WRITE = 1;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe.skipIf(!hasPsktool || !hasCerttool || !hasNbdinfo || !hasNbdcopy)('NBD over TLS', () => {
  let tmp: ReturnType<typeof tempDir>;
  let pool: ThinPool;
  let server: NbdServer;
  let port: number;
  let sock: string;
  let keyFile: string;
  let keys: Map<string, Buffer>;
  let pki: Awaited<ReturnType<typeof makeCertificates>>;
  const logs: string[] = [];
  const tcp = (name: string, id = 'alice', file = keyFile) => `nbds://${id}@127.0.0.1:${port}/${name}?tls-psk-file=${file}`;

  beforeAll(async () => {
    tmp = tempDir('tp-nbd-tls-');
    pool = filePool(tmp.dir, [
      { name: 'a', size: 64 * MiB },
      { name: 'b', size: 16 * MiB },
      { name: 'secret', size: 16 * MiB },
    ]);
    keyFile = join(tmp.dir, 'keys.psk');
    keys = await makePskFile(keyFile, ['alice', 'bob']);
    pki = await makeCertificates(tmp.dir);
    server = new NbdServer(pool, {
      log: (m) => logs.push(m),
      tls: { mode: 'require', psk: readPskFile(keyFile), certificates: readCertificateDir(pki.server), allow: new Map([['bob', ['b']]]) },
    });
    port = (await server.listen({ host: '127.0.0.1', port: 0 })).port!;
    sock = (await server.listen({ path: join(tmp.dir, 'nbd.sock') })).path!;
  });

  afterAll(async () => {
    await server?.close();
    pool?.closeSync();
    if (pool) verifyMetadataFile(join(tmp.dir, 'pool', 'metadata'));
    tmp?.cleanup();
  });

  test('nbdinfo over TLS with a PSK (TCP and Unix socket) and with X.509; an identity sees only its exports', async () => {
    const info = await runOk('nbdinfo', [tcp('a')]);
    expect(info).toContain('with TLS');
    expect(info).toMatch(/export-size: 67108864/);
    const unix = await runOk('nbdinfo', ['--size', `nbds+unix://alice@/b?socket=${sock}&tls-psk-file=${keyFile}`]);
    expect(unix.trim()).toBe(String(16 * MiB));
    const x509 = await runOk('nbdinfo', ['--size', `nbds://localhost:${port}/a?tls-certificates=${pki.client}`]);
    expect(x509.trim()).toBe(String(64 * MiB));
    const all = await runOk('nbdinfo', ['--list', tcp('')]);
    for (const n of ['a', 'b', 'secret']) expect(all).toContain(`export="${n}"`);
    // bob may use "b" only: the others are neither listed nor opened.
    const bobs = await runOk('nbdinfo', ['--list', tcp('', 'bob')]);
    expect(bobs).toContain('export="b"');
    expect(bobs).not.toContain('export="a"');
    expect(bobs).not.toContain('export="secret"');
    expect((await run('nbdinfo', ['--size', tcp('secret', 'bob')])).code).not.toBe(0);
    expect((await runOk('nbdinfo', ['--size', tcp('b', 'bob')])).trim()).toBe(String(16 * MiB));
  });

  test('nbdcopy round trips over TLS (TCP with PSK, Unix socket with PSK, TCP with X.509)', async () => {
    const src = join(tmp.dir, 'src.raw');
    const img = Buffer.alloc(8 * MiB);
    randomBytes(3 * MiB).copy(img, 0);
    randomBytes(MiB).copy(img, 6 * MiB);
    writeFileSync(src, img);
    await runOk('nbdcopy', [src, tcp('a')]);
    const back = join(tmp.dir, 'back.raw');
    await runOk('nbdcopy', [`nbds+unix://alice@/a?socket=${sock}&tls-psk-file=${keyFile}`, back]);
    expect(sha(readFileSync(back).subarray(0, img.length))).toBe(sha(img));
    const back2 = join(tmp.dir, 'back2.raw');
    await runOk('nbdcopy', [`nbds://localhost:${port}/a?tls-certificates=${pki.client}`, back2]);
    expect(sha(readFileSync(back2).subarray(0, img.length))).toBe(sha(img));
    // Zero runs stay holes over TLS too.
    expect(pool.list().find((v) => v.name === 'a')!.mappedBytes).toBe(4 * MiB);
  });

  test.skipIf(!hasQemu)('qemu-img with a tls-creds-psk object (and tls-creds-x509): convert in and out, compare', async () => {
    const qdir = join(tmp.dir, 'qemu-psk');
    mkdirSync(qdir, { recursive: true });
    writeFileSync(join(qdir, 'keys.psk'), `alice:${keys.get('alice')!.toString('hex')}\n`);
    const obj = `tls-creds-psk,id=tls0,endpoint=client,dir=${qdir},username=alice`;
    const target = (name: string) => `driver=nbd,host=127.0.0.1,port=${port},export=${name},tls-creds=tls0`;
    const src = join(tmp.dir, 'q-src.raw');
    const img = randomBytes(4 * MiB);
    writeFileSync(src, img);
    await runOk('qemu-img', ['convert', '-n', '--object', obj, '-f', 'raw', '--target-image-opts', src, target('b')]);
    const info = await runOk('qemu-img', ['info', '--object', obj, '--image-opts', target('b')]);
    expect(info).toContain(`virtual size: 16 MiB`);
    const out = join(tmp.dir, 'q-out.raw');
    await runOk('qemu-img', ['convert', '--object', obj, '--image-opts', target('b'), '-O', 'raw', out]);
    expect(sha(readFileSync(out).subarray(0, img.length))).toBe(sha(img));
    // X.509: qemu checks the server's certificate against the CA in DIR/ca-cert.pem.
    const x509 = `tls-creds-x509,id=tls1,endpoint=client,dir=${pki.client}`;
    const out2 = join(tmp.dir, 'q-out2.raw');
    await runOk('qemu-img', [
      'convert',
      '--object',
      x509,
      '--image-opts',
      `driver=nbd,host=localhost,port=${port},export=b,tls-creds=tls1`,
      '-O',
      'raw',
      out2,
    ]);
    expect(sha(readFileSync(out2).subarray(0, img.length))).toBe(sha(img));
  });

  test.skipIf(!hasFio)('fio verify over TLS with X.509 (TCP and Unix socket)', async () => {
    // fio's nbd engine passes only a URI, and libnbd refuses URI parameters that read local files (tls-psk-file=,
    // tls-certificates=) unless the program allows them, which fio does not. So fio gets its CA from libnbd's
    // default place, $HOME/.pki/libnbd (for root it is /etc/pki/libnbd, shared by the machine: as root the
    // test runs fio as nobody with a HOME of its own instead).
    const home = mkdtempSync(join(tmpdir(), 'tp-nbd-tls-home-'));
    const fioServer = new NbdServer(pool, { tls: { mode: 'require', certificates: readCertificateDir(pki.server) }, socketMode: 0o666 });
    try {
      mkdirSync(join(home, '.pki', 'libnbd'), { recursive: true });
      writeFileSync(join(home, '.pki', 'libnbd', 'ca-cert.pem'), pki.ca);
      for (const d of [home, join(home, '.pki'), join(home, '.pki', 'libnbd')]) chmodSync(d, 0o755);
      chmodSync(join(home, '.pki', 'libnbd', 'ca-cert.pem'), 0o644);
      const fport = (await fioServer.listen({ host: '127.0.0.1', port: 0 })).port!;
      const fsock = (await fioServer.listen({ path: join(home, 'nbd.sock') })).path!;
      const asUser = process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--'] : [];
      for (const uri of [`nbds://localhost:${fport}/a`, `nbds+unix:///a?socket=${fsock}&tls-hostname=localhost`]) {
        const argv = [
          ...asUser,
          'env',
          `HOME=${home}`,
          'fio',
          '--name=t',
          '--ioengine=nbd',
          `--uri=${uri}`,
          `--directory=${home}`,
          '--output-format=json',
          '--verify_state_save=0',
          '--rw=randwrite',
          '--bs=4k',
          '--iodepth=16',
          '--size=8M',
          '--offset=16M',
          '--verify=crc32c',
          '--do_verify=1',
          '--verify_fatal=1',
        ];
        const r = await run(argv[0], argv.slice(1), { timeoutMs: 120000 });
        expect(r.code, `${uri}: ${r.stderr}`).toBe(0);
        const job = (
          JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as {
            jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[];
          }
        ).jobs[0];
        expect(job.error).toBe(0);
        expect(job.write.io_bytes).toBe(8 * MiB);
        expect(job.read.io_bytes).toBe(8 * MiB);
      }
    } finally {
      await fioServer.close();
      rmSync(home, { recursive: true, force: true });
    }
  });

  test('refused: a wrong key, an unknown identity, a plain-text client; the server keeps serving and nothing is written', async () => {
    const wrong = join(tmp.dir, 'wrong.psk');
    writeFileSync(wrong, `alice:${randomBytes(32).toString('hex')}\n`);
    const stranger = join(tmp.dir, 'stranger.psk');
    await makePskFile(stranger, ['mallory']);
    const before = pool.list().map((v) => [v.name, v.mappedBytes]);
    const src = join(tmp.dir, 'junk.raw');
    writeFileSync(src, randomBytes(MiB));
    const failed = logs.filter((l) => l.includes('TLS handshake failed')).length;
    expect((await run('nbdcopy', [src, tcp('secret', 'alice', wrong)])).code).not.toBe(0);
    expect((await run('nbdcopy', [src, tcp('secret', 'mallory', stranger)])).code).not.toBe(0);
    expect(logs.filter((l) => l.includes('TLS handshake failed')).length).toBeGreaterThanOrEqual(failed + 2);
    // A plain-text client: libnbd gets TLS_REQD and gives up; nothing is listed in plain text.
    const plain = await run('nbdcopy', [src, `nbd://127.0.0.1:${port}/secret`]);
    expect(plain.code).not.toBe(0);
    const list = await run('nbdinfo', ['--list', `nbd://127.0.0.1:${port}`]);
    expect(list.stdout).not.toContain('export="secret"');
    expect(pool.list().map((v) => [v.name, v.mappedBytes])).toEqual(before);
    // ... and still serves a client with the right key.
    expect((await runOk('nbdinfo', ['--size', tcp('secret')])).trim()).toBe(String(16 * MiB));
  });

  test('FORCEDTLS byte by byte: options before STARTTLS get TLS_REQD, EXPORT_NAME closes, then STARTTLS works', async () => {
    const c = await RawClient.connect({ port });
    await c.greeting();
    for (const [code, data] of [
      [OPT_LIST, Buffer.alloc(0)],
      [OPT_STRUCTURED, Buffer.alloc(0)],
      [OPT_INFO, RawClient.goData('a')],
      [OPT_GO, RawClient.goData('a')],
      [OPT_SET_META, RawClient.metaData('a', ['base:allocation'])],
      [99, Buffer.alloc(3)],
    ] as const) {
      c.sendOption(code, data);
      const r = (await c.optionReplies())!;
      expect(
        r.map((x) => [x.code, x.type]),
        `option ${code}`,
      ).toEqual([[code, ERR_TLS_REQD]]);
    }
    c.sendOption(5, Buffer.from('x'));
    expect((await c.optionReplies())!.map((x) => x.type)).toEqual([ERR_INVALID]);
    expect(await c.startTls({ identity: 'alice', key: keys.get('alice')! })).toBeNull();
    // Over TLS: everything works, a second STARTTLS is invalid, TLS_REQD is never sent.
    c.sendOption(5);
    expect((await c.optionReplies())!.map((x) => x.type)).toEqual([ERR_INVALID]);
    c.sendOption(OPT_LIST);
    const names = (await c.optionReplies())!;
    expect(names.filter((x) => x.type === REP_SERVER).length).toBe(3);
    expect(names[names.length - 1].type).toBe(ACK);
    c.sendOption(OPT_STRUCTURED);
    expect((await c.optionReplies())!.map((x) => x.type)).toEqual([ACK]);
    c.sendOption(OPT_GO, RawClient.goData('b'));
    expect((await c.optionReplies())!.pop()!.type).toBe(ACK);
    const data = randomBytes(5000);
    c.send(WRITE, 0, 1n, 12345, data.length, data);
    expect((await c.reply())!.error).toBe(0);
    c.send(READ, 0, 2n, 12345, data.length);
    expect(assembleRead((await c.reply())!, 12345, data.length).equals(data)).toBe(true);
    c.close();

    // EXPORT_NAME in plain text: the connection is closed (it cannot be answered with an error), and a WRITE
    // sent behind it is never applied.
    const before = pool.list().find((v) => v.name === 'secret')!.mappedBytes;
    const d = await RawClient.connect({ port });
    await d.greeting();
    d.write(
      Buffer.concat([
        (() => {
          const h = Buffer.alloc(16);
          h.writeBigUInt64BE(0x49484156454f5054n);
          h.writeUInt32BE(OPT_EXPORT_NAME, 8);
          h.writeUInt32BE(6, 12);
          return h;
        })(),
        Buffer.from('secret'),
        RawClient.request(WRITE, 0, 1n, 0, 4096, Buffer.alloc(4096, 0xab)),
      ]),
    );
    expect(await d.waitClosed()).toBe(true);
    expect(pool.list().find((v) => v.name === 'secret')!.mappedBytes).toBe(before);
    // ABORT before TLS is answered and the connection ends.
    const e = await RawClient.connect({ port });
    await e.greeting();
    e.sendOption(OPT_ABORT);
    expect((await e.optionReplies())!.map((x) => x.type)).toEqual([ACK]);
    expect(await e.waitClosed()).toBe(true);
    // bob over TLS: GO on an export he may not use is UNKNOWN, as for an export that does not exist.
    const f = await RawClient.connect({ port });
    await f.greeting();
    expect(await f.startTls({ identity: 'bob', key: keys.get('bob')! })).toBeNull();
    f.sendOption(OPT_GO, RawClient.goData('a'));
    expect((await f.optionReplies())!.pop()!.type).toBe(ERR_UNKNOWN);
    f.close();
    // X.509 with Node's client: certificate checked against the CA.
    const g = await RawClient.connect({ port });
    const r = await g.negotiate('a', { tls: { ca: pki.ca } });
    expect(r.size).toBe(64 * MiB);
    g.close();
  });

  test('TLS offered but not required: plain and TLS clients both served; without TLS configured STARTTLS is POLICY', async () => {
    const on = new NbdServer(pool, { tls: { mode: 'on', psk: readPskFile(keyFile) } });
    const p = (await on.listen({ port: 0 })).port!;
    const off = new NbdServer(pool);
    const q = (await off.listen({ port: 0 })).port!;
    try {
      expect((await runOk('nbdinfo', ['--size', `nbd://127.0.0.1:${p}/b`])).trim()).toBe(String(16 * MiB));
      const t = await runOk('nbdinfo', [`nbds://alice@127.0.0.1:${p}/b?tls-psk-file=${keyFile}`]);
      expect(t).toContain('with TLS');
      const c = await RawClient.connect({ port: q });
      await c.greeting();
      c.sendOption(5);
      expect((await c.optionReplies())!.map((x) => x.type)).toEqual([ERR_POLICY]);
      c.sendOption(OPT_LIST);
      expect((await c.optionReplies())!.pop()!.type).toBe(ACK);
      c.close();
    } finally {
      await on.close();
      await off.close();
    }
  });
});
