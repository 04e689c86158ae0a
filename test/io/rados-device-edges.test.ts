// RadosDevice (src/io/rados-device.ts) against an in-memory I/O context (test/support/fake-rados-io.ts): what
// its contract says beyond the BlockDevice contract suite (which runs it on a real cluster), case by case:
// arguments and descriptors it refuses and how the errors read, what destroy removes, what grows the size and
// when it is recorded, what is never asked of the cluster, and how asynchronous writes are sent and settled in
// both modes (acknowledged, and written behind).
import { describe, expect, it } from 'vitest';
import { ThinpoolError } from '../../src/errors.js';
import { objectName, RadosDevice } from '../../src/io/rados-device.js';
import { FakeRadosIo } from '../support/fake-rados-io.js';
import { caught } from '../support/thrown.js';
import { turns } from '../support/turns.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Whether a promise has settled after the microtasks queued so far have run. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await Promise.resolve();
  await Promise.resolve();
  return done;
}

describe('RadosDevice: what it refuses, and how the errors read', () => {
  it('takes object sizes that are powers of two from 4 KiB to 64 MiB, and nothing else', () => {
    const f = new FakeRadosIo();
    for (const bad of [2 * KiB, 4 * KiB - 1, 12 * KiB, 128 * MiB, 4096.5, Number.NaN]) {
      const e = caught(() => RadosDevice.create(f.io, `bad-${bad}`, MiB, { objectSize: bad }));
      expect(e.code).toBe('EINVAL');
      expect(e.message).toBe(`RADOS object size ${bad} must be a power of two from 4 KiB to 64 MiB`);
    }
    expect(f.objects.size).toBe(0); // nothing made for a refused size
    expect(RadosDevice.create(f.io, 'least', MiB, { objectSize: 4 * KiB }).objectSize).toBe(4 * KiB);
    expect(RadosDevice.create(f.io, 'most', MiB, { objectSize: 64 * MiB }).objectSize).toBe(64 * MiB);
  });

  it('refuses a descriptor object that is not one, naming the object', () => {
    const f = new FakeRadosIo();
    const enc = (x: unknown) => new TextEncoder().encode(typeof x === 'string' ? x : JSON.stringify(x));
    const good = { format: 'thinpool-rados-device', version: 1, sizeBytes: MiB, objectSize: 64 * KiB };
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['not-json', enc('{ half'), /JSON/],
      ['other-format', enc({ ...good, format: 'rbd' }), /not a device descriptor/],
      ['size-text', enc({ ...good, sizeBytes: '1048576' }), /not a device descriptor/],
      ['size-fraction', enc({ ...good, sizeBytes: 1.5 }), /not a device descriptor/],
      ['odd-objects', enc({ ...good, objectSize: 5000 }), /RADOS object size 5000 must be a power of two/],
    ];
    for (const [prefix, raw, why] of cases) {
      f.objects.set(prefix, raw);
      const e = caught(() => RadosDevice.open(f.io, prefix));
      expect(e.code).toBe('ECORRUPT');
      expect(e.message).toMatch(new RegExp(`^RADOS object ${prefix} is not a thinpool device descriptor: `));
      expect(e.message).toMatch(why);
      expect(e.cause).toBeInstanceOf(Error);
      expect(RadosDevice.exists(f.io, prefix)).toBe(true);
      expect(() => RadosDevice.destroy(f.io, prefix)).toThrow(/is not a thinpool device descriptor/);
    }
    f.objects.set('fine', enc(good));
    expect(RadosDevice.open(f.io, 'fine').sizeBytes).toBe(MiB);
  });

  it('names the object or device in EEXIST, ENOENT, ECLOSED, EROFS and a bad write-back size', () => {
    const f = new FakeRadosIo();
    RadosDevice.create(f.io, 'd', MiB).close();
    expect(caught(() => RadosDevice.create(f.io, 'd', MiB)).message).toBe('RADOS object d exists: a device is already there');
    const missing = caught(() => RadosDevice.open(f.io, 'nope'));
    expect([missing.code, missing.message]).toEqual(['ENOENT', 'no RADOS device nope (its descriptor object is missing)']);
    const ro = RadosDevice.open(f.io, 'd', { readOnly: true });
    const rofs = caught(() => ro.write(new Uint8Array(1), 0));
    expect([rofs.code, rofs.message]).toEqual(['EROFS', 'RADOS device d is open read-only']);
    ro.close();
    const closed = caught(() => ro.read(new Uint8Array(1), 0));
    expect([closed.code, closed.message]).toEqual(['ECLOSED', 'RADOS device d is closed']);
    for (const bad of [-1, 0.5]) {
      const e = caught(() => RadosDevice.open(f.io, 'd', { writeBackBytes: bad }));
      expect([e.code, e.message]).toEqual(['EINVAL', `write-back size ${bad} must be a whole number of bytes, 0 or more`]);
    }
  });
});

describe('RadosDevice: objects, sizes and what is asked of the cluster', () => {
  it('exists says whether the descriptor is there; destroy removes every object and tolerates none', () => {
    const f = new FakeRadosIo();
    expect(RadosDevice.exists(f.io, 'gone')).toBe(false);
    RadosDevice.destroy(f.io, 'gone'); // nothing there: nothing to do, no error
    const dev = RadosDevice.create(f.io, 'd', 256 * KiB, { objectSize: 64 * KiB });
    expect(RadosDevice.exists(f.io, 'd')).toBe(true);
    dev.write(new Uint8Array(256 * KiB).fill(7), 0);
    dev.close();
    f.objects.set('d-other', new Uint8Array(1)); // another device's object: not touched
    expect(f.objects.size).toBe(6);
    RadosDevice.destroy(f.io, 'd');
    expect([...f.objects.keys()]).toEqual(['d-other']);
    // Exactly its four data objects and the descriptor: no request for an object past the last.
    expect(f.callsOf('remove')).toEqual([0, 1, 2, 3].map((i) => `remove ${objectName('d', i)}`).concat('remove d'));
  });

  it('a write of nothing changes nothing, even past the end; a write past the end grows the size, recorded by flush', async () => {
    for (const writeBackBytes of [0, MiB]) {
      const f = new FakeRadosIo();
      const dev = RadosDevice.create(f.io, 'd', 64 * KiB, { objectSize: 64 * KiB, writeBackBytes });
      dev.write(new Uint8Array(0), 200 * KiB);
      await dev.writeAsync(new Uint8Array(0), 300 * KiB);
      expect(dev.sizeBytes).toBe(64 * KiB);
      expect(f.calls.filter((c) => !c.startsWith('writeFull'))).toEqual([]);
      await dev.writeAsync(new Uint8Array(10).fill(1), 64 * KiB - 5); // across the end: grows by 5
      expect(dev.sizeBytes).toBe(64 * KiB + 5);
      dev.write(new Uint8Array(10).fill(1), 64 * KiB); // the same, synchronously
      expect(dev.sizeBytes).toBe(64 * KiB + 10);
      await dev.writeAsync(new Uint8Array(10).fill(1), 100 * KiB);
      expect(dev.sizeBytes).toBe(100 * KiB + 10);
      dev.write(new Uint8Array(5).fill(2), 64 * KiB);
      expect(dev.sizeBytes).toBe(100 * KiB + 10); // inside the grown size: no change
      dev.flush();
      expect(RadosDevice.open(f.io, 'd').sizeBytes).toBe(100 * KiB + 10);
    }
  });

  it('flush records the size only when it changed, and never from a read-only device', () => {
    const f = new FakeRadosIo();
    const dev = RadosDevice.create(f.io, 'd', 64 * KiB, { objectSize: 64 * KiB });
    const descriptorWrites = () => f.callsOf('writeFull').length;
    expect(descriptorWrites()).toBe(1); // create
    dev.write(new Uint8Array(10), 0);
    dev.flush();
    expect(descriptorWrites()).toBe(1);
    dev.write(new Uint8Array(10), 64 * KiB);
    dev.flush();
    dev.flush();
    expect(descriptorWrites()).toBe(2);
    const ro = RadosDevice.open(f.io, 'd', { readOnly: true });
    dev.resize(256 * KiB); // the writer records a new size after the reader opened
    expect(descriptorWrites()).toBe(3);
    ro.flush();
    expect(descriptorWrites()).toBe(3);
    expect(RadosDevice.open(f.io, 'd').sizeBytes).toBe(256 * KiB);
  });

  it('bytes past the size are zeros without a request to the cluster; short objects are zero-filled', async () => {
    const f = new FakeRadosIo();
    const dev = RadosDevice.create(f.io, 'd', 128 * KiB, { objectSize: 64 * KiB });
    dev.write(new Uint8Array(10).fill(9), 0); // object 0 holds 10 bytes, object 1 nothing
    f.objects.set(objectName('d', 2), new Uint8Array(64 * KiB).fill(5)); // past the size: never read
    f.calls.length = 0;
    for (const read of [(b: Uint8Array) => dev.read(b, 0), (b: Uint8Array) => dev.readAsync(b, 0)]) {
      const b = new Uint8Array(192 * KiB).fill(0xa5);
      await read(b);
      const want = new Uint8Array(192 * KiB);
      want.fill(9, 0, 10);
      expect(Buffer.compare(b, want)).toBe(0);
    }
    expect(f.calls.filter((c) => c.includes(objectName('d', 2)))).toEqual([]);
    expect(dev.objectCount()).toBe(1); // object 0; object 2 lies past the size: not the device's
  });

  it('shrinking removes the objects past the new end and truncates the one across it; discard zeroes in place', () => {
    const f = new FakeRadosIo();
    const dev = RadosDevice.create(f.io, 'd', 256 * KiB, { objectSize: 64 * KiB });
    dev.write(new Uint8Array(256 * KiB).fill(4), 0);
    dev.discard(16 * KiB, 32 * KiB); // inside object 0: zeroed, its length kept
    expect(f.objects.get(objectName('d', 0))?.length).toBe(64 * KiB);
    dev.resize(96 * KiB);
    expect(f.objects.get(objectName('d', 1))?.length).toBe(32 * KiB); // nothing stored past the end
    expect([...f.objects.keys()].sort()).toEqual(['d', objectName('d', 0), objectName('d', 1)]);
    dev.resize(256 * KiB); // growing again exposes zeros
    const b = new Uint8Array(256 * KiB).fill(1);
    dev.read(b, 0);
    const want = new Uint8Array(256 * KiB).fill(4, 0, 96 * KiB);
    want.fill(0, 16 * KiB, 48 * KiB);
    expect(Buffer.compare(b, want)).toBe(0);
  });
});

describe('RadosDevice: asynchronous writes', () => {
  it('acknowledged (the default): sent at once, resolved only when acknowledged, rejected when the write fails', async () => {
    const f = new FakeRadosIo();
    const dev = RadosDevice.create(f.io, 'd', MiB, { objectSize: 64 * KiB });
    f.hold = true;
    const w = dev.writeAsync(new Uint8Array(100 * KiB).fill(3), 0);
    expect(f.callsOf('aioWrite')).toHaveLength(2); // both objects' pieces asked for before any turn
    expect(await settled(w)).toBe(false);
    f.release();
    await w;
    f.failWrites = new ThinpoolError('EFENCED', 'client is blocklisted');
    const failing = dev.writeAsync(new Uint8Array(10), 0);
    f.release();
    await expect(failing).rejects.toMatchObject({ code: 'EFENCED' });
    // Reported to that write's caller alone: the device is not failed (the pool above decides what follows).
    f.failWrites = null;
    f.hold = false;
    await dev.writeAsync(new Uint8Array(10).fill(8), 0);
    dev.flush();
    expect(f.objects.get(objectName('d', 0))?.[0]).toBe(8);
  });

  it('written behind: each write is sent at the turn after it was made, turn after turn', async () => {
    const f = new FakeRadosIo();
    const dev = RadosDevice.create(f.io, 'd', MiB, { objectSize: 64 * KiB, writeBackBytes: MiB });
    for (let i = 0; i < 3; i++) {
      await dev.writeAsync(new Uint8Array(4 * KiB).fill(i + 1), i * 4 * KiB);
      expect(f.callsOf('aioWrite')).toHaveLength(i); // reported done, not sent yet
      await turns();
      expect(f.callsOf('aioWrite')).toHaveLength(i + 1); // sent with no other request of the device
      expect(f.objects.get(objectName('d', 0))?.[i * 4 * KiB]).toBe(i + 1);
    }
    // Exactly at the bound is within it: still sent at the next turn, not at once.
    const atBound = RadosDevice.create(f.io, 'b', MiB, { objectSize: 64 * KiB, writeBackBytes: 4 * KiB });
    await atBound.writeAsync(new Uint8Array(4 * KiB).fill(1), 0);
    const sentB = () => f.calls.filter((c) => c === `aioWrite ${objectName('b', 0)}`).length;
    expect(sentB()).toBe(0);
    await turns();
    expect(sentB()).toBe(1);
  });

  it('written behind: a write that waits past the bound fails with the error of an older write that failed', async () => {
    const f = new FakeRadosIo();
    const dev = RadosDevice.create(f.io, 'd', MiB, { objectSize: 64 * KiB, writeBackBytes: 8 * KiB });
    f.hold = true;
    f.failWrites = new ThinpoolError('EIO', 'osd timed out');
    await dev.writeAsync(new Uint8Array(8 * KiB), 0); // within the bound: reported done
    await turns(); // sent (and to fail) at this turn
    f.failWrites = null;
    const past = dev.writeAsync(new Uint8Array(4 * KiB), 16 * KiB); // past it: sends, waits for the oldest
    expect(await settled(past)).toBe(false);
    f.release();
    await expect(past).rejects.toMatchObject({ code: 'EIO', message: 'osd timed out' });
    // Sticky until reopened: every later flush and write, synchronous or not, reports it.
    expect(() => dev.flush()).toThrow('osd timed out');
    expect(() => dev.write(new Uint8Array(1), 0)).toThrow('osd timed out');
    expect(() => dev.resize(MiB)).toThrow('osd timed out');
    await expect(dev.writeAsync(new Uint8Array(1), 0)).rejects.toMatchObject({ code: 'EIO' });
  });

  it('written behind: a write that cannot start fails the device with an error naming its object', async () => {
    const f = new FakeRadosIo();
    const dev = RadosDevice.create(f.io, 'd', MiB, { objectSize: 64 * KiB, writeBackBytes: MiB });
    f.startFailure = 'throws';
    await dev.writeAsync(new Uint8Array(10), 64 * KiB);
    await turns();
    const e = caught(() => dev.flush());
    expect(e.code).toBe('EIO');
    expect(e.message).toBe(`write to RADOS object ${objectName('d', 1)} could not start: TypeError: the cluster handle is gone`);
  });
});
