// The native completion path of librados-aio.ts and how a process chooses its path, against a native helper of
// the test's own (vi.mock of src/io/native.js; a fresh module per test, as a fresh process would have): the
// helper's registration (missing functions, librados not loaded yet, another thread first), the environment's
// override, batches of completions (tokens unknown or repeated, a hook that throws), refused starts and drain.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { NativeHelpers } from '../../src/io/native.js';
import { turns } from '../support/turns.js';

type Aio = typeof import('../../src/io/librados-aio.js');

/** The helper's rados functions as the test steers them. */
class FakeNative {
  initRc = 0;
  inits = 0;
  startRc = 0;
  done: ((pairs: Int32Array) => void) | null = null;
  /** Tokens started and not yet reported, in order. */
  readonly pending: number[] = [];

  helpers(): NativeHelpers {
    return {
      punchHole: () => 0,
      seek: () => 0,
      radosAioInit: (done) => {
        this.inits++;
        if (this.initRc === 0) this.done = done;
        return this.initRc;
      },
      radosAioStart: (_w, _io, _oid, _view, _off, token) => {
        if (this.startRc < 0) return this.startRc;
        this.pending.push(token);
        return 0;
      },
      radosAioDrain: () => this.take(this.pending.length, 0),
    };
  }

  /** The (token, rc) pairs of the oldest `n` requests in flight, as one batch. */
  take(n: number, rc: number): Int32Array {
    return Int32Array.from(this.pending.splice(0, n).flatMap((t) => [t, rc]));
  }
}

let fake: FakeNative;
let helperMissing: 'all' | 'drain' | null = null;
vi.mock('../../src/io/native.js', () => ({
  nativeHelpers: () => {
    if (helperMissing === 'all') return null;
    const h = fake.helpers();
    if (helperMissing === 'drain') delete h.radosAioDrain;
    return h;
  },
}));

/** librados-aio.ts as a fresh process loads it. */
async function fresh(): Promise<Aio> {
  vi.resetModules();
  return import('../../src/io/librados-aio.js');
}

const noLib = {} as never; // the native path never calls koffi's functions
const req = { write: true, io: null, ioAddress: 1n, oid: 'o', buf: new Uint8Array(8), off: 0 };

afterEach(() => {
  helperMissing = null;
  delete process.env.THINPOOL_RADOS_AIO;
});

describe('choosing the completion path', () => {
  it('native when the helper registers; asked again while librados is not loaded yet (ENOENT)', async () => {
    fake = new FakeNative();
    fake.initRc = -2;
    const aio = await fresh();
    expect(aio.useCompletionPath('native')).toBe(false); // not loaded yet: not native now
    fake.initRc = 0;
    expect(aio.useCompletionPath('native')).toBe(true); // asked again, and registered
    expect(aio.completionPath()).toBe('native');
    expect(fake.inits).toBe(2);
    aio.useCompletionPath('native');
    expect(fake.inits).toBe(2); // registered once
  });

  it('koffi when the helper is missing, lacks a function, or another thread registered first (EBUSY)', async () => {
    for (const [missing, rc] of [
      ['all', 0],
      ['drain', 0],
      [null, -16],
    ] as const) {
      fake = new FakeNative();
      fake.initRc = rc;
      helperMissing = missing;
      const aio = await fresh();
      expect(aio.completionPath()).toBe('koffi');
      expect(aio.useCompletionPath('native')).toBe(false);
      expect(aio.useCompletionPath('koffi')).toBe(true);
    }
  });

  it('decided on first use: a first use before the helper can register (librados not loaded) keeps koffi', async () => {
    fake = new FakeNative();
    fake.initRc = -2;
    const aio = await fresh();
    expect(aio.completionPath()).toBe('koffi');
    fake.initRc = 0;
    expect(aio.completionPath()).toBe('koffi'); // fixed for the process, unless chosen again
    expect(aio.useCompletionPath('native')).toBe(true);
    expect(aio.completionPath()).toBe('native');
  });

  it('THINPOOL_RADOS_AIO=koffi takes koffi although native is there; without it native is the default', async () => {
    fake = new FakeNative();
    process.env.THINPOOL_RADOS_AIO = 'koffi';
    expect((await fresh()).completionPath()).toBe('koffi');
    process.env.THINPOOL_RADOS_AIO = 'native';
    expect((await fresh()).completionPath()).toBe('native');
    delete process.env.THINPOOL_RADOS_AIO;
    const aio = await fresh();
    expect(aio.completionPath()).toBe('native');
    const p = aio.submit(noLib, req);
    expect(aio.requestsStarted()).toEqual({ native: 1, koffi: 0 });
    fake.done!(fake.take(1, 0));
    await p;
  });

  it('the path cannot change while requests are in flight (EBUSY, naming how many)', async () => {
    fake = new FakeNative();
    const aio = await fresh();
    const ps = [aio.submit(noLib, req), aio.submit(noLib, req)];
    expect(() => aio.useCompletionPath('koffi')).toThrow('rados: 2 requests in flight: the completion path cannot change');
    fake.done!(fake.take(2, 0));
    await Promise.all(ps);
    expect(aio.useCompletionPath('koffi')).toBe(true);
  });
});

describe('the native path', () => {
  it('settles a batch: hooks before promises, unknown and repeated tokens skipped, a throwing hook stops no other', async () => {
    fake = new FakeNative();
    const aio = await fresh();
    const log: string[] = [];
    const ps = [0, 1, 2].map((i) =>
      aio
        .submit(noLib, req, (rc) => {
          log.push(`settle ${i} ${rc}`);
          if (i === 1) throw new Error('hook 1 failed');
        })
        .then((rc) => void log.push(`resolve ${i} ${rc}`)),
    );
    expect(aio.inFlightCount()).toBe(3);
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      const [t0, t1, t2] = fake.pending.splice(0);
      fake.done!(Int32Array.from([t1, -5, 999_999, 0, t0, 7, t1, 3, t2, 0]));
      await turns();
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    await Promise.all(ps);
    expect(log.slice(0, 3)).toEqual(['settle 1 -5', 'settle 0 7', 'settle 2 0']);
    expect(log).toEqual(expect.arrayContaining(['resolve 0 7', 'resolve 1 -5', 'resolve 2 0']));
    expect(log.filter((x) => x.startsWith('settle 1'))).toHaveLength(1); // the repeated token settles nothing again
    expect(uncaught).toEqual([new Error('hook 1 failed')]); // rethrown on its own, after the batch
    expect(aio.inFlightCount()).toBe(0);
  });

  it('a refused start settles at once with its error; waitAll drains what is in flight', async () => {
    fake = new FakeNative();
    const aio = await fresh();
    fake.startRc = -36;
    let hook = 0;
    expect(await aio.submit(noLib, req, (rc) => (hook = rc))).toBe(-36);
    expect([hook, aio.inFlightCount()]).toEqual([-36, 0]);
    expect(await aio.submit(noLib, req)).toBe(-36); // no hook: the promise alone
    fake.startRc = 0;
    const settled: number[] = [];
    const ps = [1, 2].map((i) => aio.submit(noLib, req, () => settled.push(i)));
    aio.waitAll(noLib);
    expect(settled).toEqual([1, 2]);
    expect(aio.inFlightCount()).toBe(0);
    expect(await Promise.all(ps)).toEqual([0, 0]);
  });
});
