// The two helpers every asynchronous request path is built from (src/io/block-device.ts): `allParts` joins the
// parts of one request, `started` makes what the synchronous start throws a rejection, as an async function
// would. A caller that attaches .then/.catch to the result (the NBD server's READ) must never see a throw.
import { describe, expect, it } from 'vitest';
import { allParts, started } from '../../src/io/block-device.js';

const later = <T>(v: T, ms = 5): Promise<T> => new Promise((r) => setTimeout(() => r(v), ms));

describe('allParts', () => {
  it('with no parts is already fulfilled', async () => {
    let done = false;
    void allParts([]).then(() => {
      done = true;
    });
    await Promise.resolve();
    expect(done).toBe(true);
  });

  it('with one part is that part itself', () => {
    const p = later(undefined);
    expect(allParts([p])).toBe(p);
  });

  it('with several parts waits for the last, and fulfils with nothing', async () => {
    const order: number[] = [];
    const parts = [5, 20, 1].map((ms, i) => later(undefined, ms).then(() => void order.push(i)));
    await expect(allParts(parts)).resolves.toBeUndefined();
    expect(order.sort()).toEqual([0, 1, 2]);
  });

  it('rejects with the first rejection', async () => {
    const bad = new Error('object 3 unreadable');
    const parts = [later(undefined, 10), Promise.reject(bad), later(undefined, 1)];
    await expect(allParts(parts)).rejects.toBe(bad);
  });
});

describe('started', () => {
  it('returns the promise the start made', () => {
    const p = later(undefined);
    expect(started(() => p)).toBe(p);
  });

  it('turns a synchronous throw into a rejection, never a throw', async () => {
    const bad = new Error('pool is closed');
    let r: Promise<void> | undefined;
    expect(() => {
      r = started(() => {
        throw bad;
      });
    }).not.toThrow();
    await expect(r).rejects.toBe(bad);
  });
});
