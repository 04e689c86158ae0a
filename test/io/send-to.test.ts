// FileDevice.sendTo (sendfile from the device's file to another descriptor, what `thinpool read` uses for
// provisioned runs): the bytes land at the output's position and the position moves on, a range past the end of
// the file stops there (the caller writes the zeros), and an output sendfile does not serve (a file opened for
// appending) gets nothing and null (the caller reads and writes instead). Without the native helper every call
// is null.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { FileDevice } from '../../src/io/index.js';
import { nativeHelpers } from '../../src/io/native.js';
import { fill } from '../support/model.js';

const tmp = fs.mkdtempSync(join(os.tmpdir(), 'tp-send-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** n non-zero pseudo-random bytes (the model's fill), as a Buffer. */
const pattern = (n: number, seed: number): Buffer => Buffer.from(fill(n, seed).buffer);

describe('FileDevice.sendTo', () => {
  const helper = nativeHelpers()?.sendFile !== undefined;
  const size = 3 * 1024 * 1024 + 333;
  const bytes = pattern(size, 7);
  const src = join(tmp, 'src');
  fs.writeFileSync(src, bytes);

  test('bytes at the output position, which moves on; a range past the end of the file stops there', () => {
    const dev = FileDevice.open(src, { readOnly: true });
    const out = join(tmp, 'out');
    const fd = fs.openSync(out, 'w');
    try {
      fs.writeSync(fd, Buffer.from('head'));
      const sent = dev.sendTo(fd, 4097, 2 * 1024 * 1024 + 5);
      if (!helper) {
        expect(sent).toBeNull();
        return;
      }
      expect(sent).toBe(2 * 1024 * 1024 + 5);
      expect(dev.sendTo(fd, size - 10, 100)).toBe(10);
      fs.writeSync(fd, Buffer.from('tail'));
    } finally {
      fs.closeSync(fd);
      dev.close();
    }
    const want = Buffer.concat([
      Buffer.from('head'),
      bytes.subarray(4097, 4097 + 2 * 1024 * 1024 + 5),
      bytes.subarray(size - 10),
      Buffer.from('tail'),
    ]);
    expect(fs.readFileSync(out).equals(want)).toBe(true);
  });

  test('an output sendfile does not serve (opened for appending): null, nothing sent', () => {
    const dev = FileDevice.open(src, { readOnly: true });
    const out = join(tmp, 'append');
    fs.writeFileSync(out, 'x');
    const fd = fs.openSync(out, 'a');
    try {
      expect(dev.sendTo(fd, 0, 4096)).toBeNull();
    } finally {
      fs.closeSync(fd);
      dev.close();
    }
    expect(fs.readFileSync(out, 'utf8')).toBe('x');
  });

  test('a closed device refuses', () => {
    const dev = FileDevice.open(src, { readOnly: true });
    dev.close();
    expect(() => dev.sendTo(1, 0, 1)).toThrow(expect.objectContaining({ code: 'ECLOSED' }));
  });
});
