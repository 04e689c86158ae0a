// FileDevice's two request paths: the native helper's pread/pwrite (used whenever the helper is built) and
// node:fs (without it). The block-device contract runs on both; a write the kernel refuses (a file-size limit,
// EFBIG) fails on both as a typed EIO naming the file and the errno, and leaves the bytes before it written.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeHelpers } from '../../src/io/native.js';
import type { FileDevice as FileDeviceClass } from '../../src/io/file-device.js';
import { seededBytes } from '../support/rng.js';

let tmp: string;
let seq = 0;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'tp-file-io-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A FileDevice class from a fresh module graph in which the native helper is disabled (node:fs paths). */
async function fsOnlyFileDevice(): Promise<typeof FileDeviceClass> {
  vi.resetModules();
  vi.stubEnv('THINPOOL_NO_NATIVE', '1');
  try {
    const native = await import('../../src/io/native.js');
    expect(native.nativeHelpers()).toBeNull(); // cached as absent for this module graph
    return (await import('../../src/io/file-device.js')).FileDevice;
  } finally {
    vi.unstubAllEnvs();
  }
}

describe('FileDevice request paths', () => {
  it('the native helper offers pread and pwrite (CI builds it: the fast path is the one tested)', () => {
    const native = nativeHelpers();
    if (native === null) {
      if (process.env.CI === 'true')
        expect.fail('the native helper is not built (npm run install; needs a C compiler: Debian package build-essential)');
      return;
    }
    expect(typeof native.pread).toBe('function');
    expect(typeof native.pwrite).toBe('function');
  });

  for (const path of ['native', 'node:fs'] as const) {
    it(`${path}: unaligned reads and writes, pieces larger than one write call, reads past the end as zeros`, async () => {
      const Dev = path === 'native' ? (await import('../../src/io/file-device.js')).FileDevice : await fsOnlyFileDevice();
      const dev = Dev.create(join(tmp, `dev-${seq++}`), 2 * 1024 * 1024);
      const big = seededBytes(700 * 1024 + 3, 1); // more than one 256 KiB write call, odd length
      dev.write(big, 12345);
      const back = new Uint8Array(big.length);
      dev.read(back, 12345);
      expect(Buffer.from(back).equals(Buffer.from(big))).toBe(true);
      // A read of a view with a byte offset fills exactly that view.
      const host = new Uint8Array(100).fill(0xee);
      dev.read(host.subarray(10, 20), 12345);
      expect([...host.subarray(10, 20)]).toEqual([...big.subarray(0, 10)]);
      expect(host[9]).toBe(0xee);
      expect(host[20]).toBe(0xee);
      // A write from a view writes only the view's bytes.
      dev.write(big.subarray(5, 9), 0);
      const four = new Uint8Array(6);
      dev.read(four, 0);
      expect([...four]).toEqual([...big.subarray(5, 9), 0, 0]);
      // Grown past the file's end by a write, then a read across the end: the rest reads as zeros.
      dev.write(new Uint8Array([7, 7]), dev.sizeBytes);
      const tail = new Uint8Array(8).fill(1);
      dev.read(tail, dev.sizeBytes - 2);
      expect([...tail]).toEqual([7, 7, 0, 0, 0, 0, 0, 0]);
      dev.close();
    });
  }

  for (const native of [true, false]) {
    it(`a write the kernel refuses fails as a typed EIO naming the file and the errno (${native ? 'native' : 'node:fs'})`, () => {
      const register = fileURLToPath(new URL('../support/ts-register.mjs', import.meta.url));
      const src = fileURLToPath(new URL('../../src/io/file-device.ts', import.meta.url));
      const file = join(tmp, `limited-${seq++}`);
      // The child ignores SIGXFSZ, so a write past RLIMIT_FSIZE fails with EFBIG instead of killing it.
      const script = `
        process.on('SIGXFSZ', () => {});
        const { FileDevice } = await import(${JSON.stringify(src)});
        const dev = FileDevice.create(${JSON.stringify(file)}, 4096);
        dev.write(new Uint8Array(4096).fill(1), 0);
        try { dev.write(new Uint8Array(300 * 1024).fill(2), 0); console.log('no error'); }
        catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }
        const back = new Uint8Array(4096); dev.read(back, 0);
        console.log(back.every((b) => b === 2) ? 'head written' : 'head not written');
      `;
      // ulimit -f counts 512-byte blocks in dash: 64 KiB.
      const r = spawnSync(
        'sh',
        ['-c', 'ulimit -f 128 && exec "$0" "$@"', process.execPath, '--import', register, '--input-type=module', '-e', script],
        {
          encoding: 'utf8',
          env: { ...process.env, ...(native ? {} : { THINPOOL_NO_NATIVE: '1' }) },
        },
      );
      expect(r.status, r.stderr).toBe(0);
      const [err, head] = r.stdout.trim().split('\n');
      const e = JSON.parse(err) as { code: string; message: string };
      expect(e.code).toBe('EIO');
      expect(e.message).toContain(file);
      expect(e.message).toContain('EFBIG');
      // The bytes before the limit landed (a short write was continued up to it).
      expect(head).toBe('head written');
    });
  }
});
