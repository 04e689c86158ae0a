// The write-back queue of a RADOS device (rados-device.ts) against an I/O context of our own, no cluster: a
// queued write whose request fails to start (librados refuses it, or the call throws) fails the device as a
// failed acknowledgement would: the next flush and write report it, nothing stays counted in flight, and
// nothing throws out of the event loop's turn that sent it.
import { expect, test } from 'vitest';
import { isThinpoolError, type ThinpoolError } from '../../src/errors.js';
import { RadosDevice } from '../../src/io/rados-device.js';
import { FakeRadosIo } from '../support/fake-rados-io.js';
import { turns } from '../support/turns.js';

/** An in-memory I/O context whose asynchronous writes start as `mode` says. */
function fakeIo(mode: 'throws' | 'rejects' | 'ok'): FakeRadosIo {
  const f = new FakeRadosIo();
  f.startFailure = mode === 'ok' ? null : mode;
  return f;
}

/** Asynchronous writes asked of the I/O context so far. */
const sent = (f: FakeRadosIo): number => f.callsOf('aioWrite').length;

test.each(['throws', 'rejects'] as const)(
  'a queued write whose request %s fails the device, and nothing is left in flight',
  async (mode) => {
    const f = fakeIo(mode);
    const dev = RadosDevice.create(f.io, 'q', 1 << 20, { objectSize: 64 * 1024, writeBackBytes: 1 << 20 });
    await dev.writeAsync(new Uint8Array(4096).fill(1), 0); // reported done: queued, not sent
    expect(sent(f)).toBe(0);
    expect(dev.unacknowledgedBytes).toBe(4096);
    await turns(); // sent now: the failure must not escape this turn
    await turns();
    expect(sent(f)).toBe(1);
    expect(dev.unacknowledgedBytes).toBe(0);
    let code = 'no error';
    try {
      dev.flush();
    } catch (e) {
      expect(isThinpoolError(e)).toBe(true);
      code = (e as ThinpoolError).code;
    }
    expect(code).toBe('EIO');
    await expect(dev.writeAsync(new Uint8Array(1), 0)).rejects.toMatchObject({ code: 'EIO' });
  },
);

test('queued writes go out at the next turn, in order, once each; flush sends what is still queued', async () => {
  const f = fakeIo('ok');
  const dev = RadosDevice.create(f.io, 'q', 1 << 20, { objectSize: 64 * 1024, writeBackBytes: 1 << 20 });
  for (let i = 0; i < 3; i++) await dev.writeAsync(new Uint8Array(4096).fill(i + 1), i * 4096);
  expect(sent(f)).toBe(0);
  await turns();
  expect(sent(f)).toBe(3);
  expect(dev.unacknowledgedBytes).toBe(0);
  await dev.writeAsync(new Uint8Array(4096), 0);
  dev.flush(); // in the same turn: flush sends it first
  expect(sent(f)).toBe(4);
  await turns();
  expect(sent(f)).toBe(4); // the scheduled send found nothing left
});
