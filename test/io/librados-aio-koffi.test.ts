// The koffi completion path of librados-aio.ts against a librados of our own (no cluster, no koffi): the test
// decides when each request completes and with what, so the bookkeeping a real cluster hides is visible: one
// waiter at a time on the oldest request, every completion found when it returns (in any order of completion),
// settle hooks before promises, waitAll during a pending wait, refused starts and completions that cannot be
// created, and each completion released exactly once, never before it completed.
import { afterEach, describe, expect, it } from 'vitest';
import type { Lib } from '../../src/io/librados-ffi.js';
import { type AioRequest, inFlightCount, requestsStarted, submit, useCompletionPath, waitAll } from '../../src/io/librados-aio.js';
import { turns } from '../support/turns.js';

interface Comp {
  id: number;
  started: boolean;
  done: boolean;
  rc: number;
  released: number;
  waiters: Array<() => void>;
}

/** The rados_aio_* calls the koffi path makes, as the test steers them. */
class FakeLib {
  readonly comps: Comp[] = [];
  createRc = 0;
  startRc = 0;
  /** What the waiter thread is blocked on, oldest first (a log of aioWaitCompleteAsync calls). */
  readonly waitedOn: number[] = [];

  /** Complete request `id` with `rc`; a waiter blocked on it returns at a later turn, as a koffi worker's would. */
  finish(id: number, rc: number): void {
    const c = this.comps[id];
    c.done = true;
    c.rc = rc;
    for (const w of c.waiters.splice(0)) setImmediate(w);
  }

  get lib(): Lib {
    const start = (_io: unknown, _oid: string, comp: Comp): number => {
      if (this.startRc < 0) return this.startRc;
      comp.started = true;
      return 0;
    };
    return {
      aioCreate: (_arg: unknown, _cb: unknown, out: unknown[]) => {
        if (this.createRc < 0) return this.createRc;
        const c: Comp = { id: this.comps.length, started: false, done: false, rc: 0, released: 0, waiters: [] };
        this.comps.push(c);
        out[0] = c;
        return 0;
      },
      aioWrite: start,
      aioRead: start,
      aioIsComplete: (c: Comp) => (c.done ? 1 : 0),
      aioGetReturn: (c: Comp) => {
        expect(c.done, `return value of request ${c.id} read before it completed`).toBe(true);
        return c.rc;
      },
      aioRelease: (c: Comp) => {
        expect(c.done || !c.started, `request ${c.id} released while librados still owns it`).toBe(true);
        c.released++;
      },
      aioWaitComplete: (c: Comp) => {
        if (!c.done) this.finish(c.id, 0); // blocks until the cluster answers: here, at once
        return 0;
      },
      aioWaitCompleteAsync: (c: Comp, cb: (err: unknown, rc: number) => void) => {
        this.waitedOn.push(c.id);
        const ret = () => cb(null, 0);
        if (c.done) setImmediate(ret);
        else c.waiters.push(ret);
      },
    } as unknown as Lib;
  }
}

const req = (write: boolean): AioRequest => ({ write, io: null, ioAddress: 0n, oid: 'o', buf: new Uint8Array(8), off: 0 });

describe('librados aio, koffi path (a librados of the test)', () => {
  afterEach(() => expect(inFlightCount()).toBe(0));

  it('is the path taken once chosen: every request counted on it', async () => {
    expect(useCompletionPath('koffi')).toBe(true);
    const f = new FakeLib();
    const before = requestsStarted();
    const p = submit(f.lib, req(false));
    f.finish(0, 8);
    expect(await p).toBe(8);
    const after = requestsStarted();
    expect([after.koffi - before.koffi, after.native - before.native]).toEqual([1, 0]);
  });

  it('one waiter on the oldest; what completed meanwhile settles with it, hooks first; each released once', async () => {
    useCompletionPath('koffi');
    const f = new FakeLib();
    const log: string[] = [];
    const ps = [0, 1, 2].map((i) =>
      submit(f.lib, req(i !== 1), (rc) => log.push(`settle ${i} ${rc}`)).then((rc) => void log.push(`resolve ${i} ${rc}`)),
    );
    expect(inFlightCount()).toBe(3);
    expect(f.waitedOn).toEqual([0]); // one waiter, on the oldest
    f.finish(1, -5); // a younger one first: nothing settles until the oldest returns
    await turns(3);
    expect(log).toEqual([]);
    f.finish(0, 8);
    await turns(3);
    expect(log.slice(0, 2)).toEqual(['settle 0 8', 'settle 1 -5']);
    expect(log).toContain('resolve 0 8');
    expect(log).toContain('resolve 1 -5');
    expect(f.waitedOn).toEqual([0, 2]); // then on the oldest left
    expect(f.comps.map((c) => c.released)).toEqual([1, 1, 0]);
    f.finish(2, 0);
    await Promise.all(ps);
    expect(log.indexOf('settle 2 0')).toBeLessThan(log.indexOf('resolve 2 0'));
    await turns(3);
    expect(f.comps.map((c) => c.released)).toEqual([1, 1, 1]);
  });

  it('waitAll while the waiter blocks: every hook settled when it returns; the waited one released after its wait', async () => {
    useCompletionPath('koffi');
    const f = new FakeLib();
    const settled: number[] = [];
    const ps = [0, 1, 2, 3].map((i) => submit(f.lib, req(true), () => settled.push(i)));
    expect(f.waitedOn).toEqual([0]);
    waitAll(f.lib);
    expect(settled).toEqual([0, 1, 2, 3]);
    expect(inFlightCount()).toBe(0);
    // Request 0 is still the waiter's: released once its wait returns, not before, not twice.
    expect(f.comps.map((c) => c.released)).toEqual([0, 1, 1, 1]);
    await Promise.all(ps);
    await turns(3);
    expect(f.comps.map((c) => c.released)).toEqual([1, 1, 1, 1]);
    expect(f.waitedOn).toEqual([0]); // nothing left to wait on
  });

  it('a request librados refuses to start settles at once with its error and is released', async () => {
    useCompletionPath('koffi');
    const f = new FakeLib();
    f.startRc = -22;
    let hook = 0;
    expect(await submit(f.lib, req(true), (rc) => (hook = rc))).toBe(-22);
    expect(hook).toBe(-22);
    expect(f.comps[0].released).toBe(1);
    expect(await submit(f.lib, req(false))).toBe(-22); // no hook: the promise alone
    expect(f.comps[1].released).toBe(1);
    expect(f.waitedOn).toEqual([]);
  });

  it('a completion that cannot be made rejects, typed, with nothing in flight', async () => {
    useCompletionPath('koffi');
    const f = new FakeLib();
    f.createRc = -12;
    await expect(submit(f.lib, req(false))).rejects.toMatchObject({ message: expect.stringContaining('cannot create an aio completion') });
    expect(f.comps).toEqual([]);
  });
});
