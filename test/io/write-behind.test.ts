// FileDevice.writeBehind (bulk writers start the write-back of what they wrote, so that the commit's flush finds
// little left): every `bytes` written starts one write-back of the span written since the last; the bytes read
// back are the bytes written, whatever the order; 0 turns it off; a threshold that is not a byte count is EINVAL;
// a device without the native helper does nothing (and says so by its count).
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { FileDevice } from '../../src/io/index.js';
import { nativeHelpers } from '../../src/io/native.js';
import { fill } from '../support/model.js';

const tmp = fs.mkdtempSync(join(os.tmpdir(), 'tp-behind-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('FileDevice.writeBehind', () => {
  const helper = nativeHelpers()?.startWriteBack !== undefined;

  test('one write-back started per threshold of bytes written; the bytes are the bytes written', () => {
    const dev = FileDevice.create(join(tmp, 'a'), 4 * 1024 * 1024);
    try {
      dev.writeBehind(64 * 1024);
      const piece = 16 * 1024;
      const want = Buffer.from(fill(4 * 1024 * 1024, 3).buffer);
      // 40 pieces, backwards and then forwards: 10 thresholds of 64 KiB.
      const order = [...Array.from({ length: 20 }, (_, i) => 39 - i), ...Array.from({ length: 20 }, (_, i) => i)];
      for (const i of order) dev.write(want.subarray(i * piece, (i + 1) * piece), i * piece);
      expect(dev.writeBacksStarted).toBe(helper ? 10 : 0);
      dev.write(want.subarray(0, piece - 1), 0); // under the threshold: none started
      expect(dev.writeBacksStarted).toBe(helper ? 10 : 0);
      dev.flush();
      const back = Buffer.alloc(40 * piece);
      dev.read(back, 0);
      expect(back.equals(want.subarray(0, 40 * piece))).toBe(true);
      dev.writeBehind(0);
      for (let i = 0; i < 8; i++) dev.write(want.subarray(i * piece, (i + 1) * piece), i * piece);
      expect(dev.writeBacksStarted).toBe(helper ? 10 : 0);
    } finally {
      dev.close();
    }
  });

  test('a threshold that is not a byte count is refused', () => {
    const dev = FileDevice.create(join(tmp, 'b'), 1024 * 1024);
    try {
      for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])
        expect(() => dev.writeBehind(bad)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    } finally {
      dev.close();
    }
  });
});
