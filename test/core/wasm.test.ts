// src/core/wasm.ts: the Core's fixed memory layout (regions in order, aligned, inside memory, none
// overlapping), u64 values across the u32 view, and the typed error each status of the core becomes.
import { describe, expect, test } from 'vitest';
import { S_D_NR_BLOCKS, S_ERR_BLOCK, S_NR_META, Status } from '../../src/core/abi.js';
import { Core } from '../../src/core/wasm.js';
import { ThinpoolError, type ErrorCode } from '../../src/errors.js';

describe('Core', () => {
  test('the layout: regions in order, 4 KiB pages and slots aligned, all inside the fixed memory', () => {
    for (const [slots, meta] of [
      [16, 64],
      [64, 1000],
      [300, 16320 * 3 + 5],
    ]) {
      const c = new Core(slots, meta);
      const regions: [string, number, number][] = [
        ['param', c.param, 4096],
        ['scratch', c.scratch, 4096],
        ['state', c.state, 4096],
        ['slots', c.slotBase, slots * 4096],
        ['counts', c.countsBase, meta * 4],
        ['committed', c.committedBase, meta],
        ['txflags', c.txflagsBase, meta],
        ['touched', c.touchedBase, meta * 4],
        ['slot table', c.tableBase, c.tableCap * 16],
        ['refs', c.refBase, slots],
        ['dirty', c.dirtyBase, slots],
        ['kinds', c.kindBase, slots],
        ['marks', c.marksBase, slots * 4],
        ['data space map table', c.dsmTableBase, meta * 16],
      ];
      for (let i = 1; i < regions.length; i++) {
        const [prev, at, len] = regions[i - 1];
        expect(regions[i][1], `${regions[i][0]} after ${prev}`).toBeGreaterThanOrEqual(at + len);
      }
      const [, last, lastLen] = regions[regions.length - 1];
      expect(last + lastLen).toBeLessThanOrEqual(c.memory.buffer.byteLength);
      expect(c.x.heapBase()).toBeLessThanOrEqual(c.param);
      for (const [name, at] of regions) if (['param', 'scratch', 'state', 'slots'].includes(name)) expect(at % 4096, name).toBe(0);
      expect(c.touchedBase % 16).toBe(0);
      expect(c.marksBase % 4).toBe(0);
      expect(c.tableCap).toBeGreaterThanOrEqual(2 * slots);
      expect(c.tableCap & (c.tableCap - 1)).toBe(0);
      expect(c.slotAddr(slots - 1)).toBe(c.slotBase + (slots - 1) * 4096);
    }
  });

  test('a layout above 2 GiB is refused with EINVAL before any memory is made', () => {
    expect(() => new Core(600_000, 64)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  test('u64 and setU64 round-trip exact integers up to 2^53 - 1 through the two u32 halves', () => {
    const c = new Core(16, 64);
    const at = c.param + 8;
    for (const v of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER]) {
      c.setU64(at, v);
      expect(c.u64(at)).toBe(v);
      expect(c.dv.getBigUint64(at, true)).toBe(BigInt(v));
    }
  });

  describe('throwStatus: each status of the core becomes a typed error', () => {
    const c = new Core(16, 64);
    c.u32[(c.state + S_NR_META) >>> 2] = 64;
    c.setU64(c.state + S_D_NR_BLOCKS, 1000);

    function thrown(status: number, structure = 'test tree'): ThinpoolError {
      c.setU64(c.state + S_ERR_BLOCK, 42);
      try {
        c.throwStatus(status, structure);
      } catch (e) {
        if (e instanceof ThinpoolError) return e;
        throw e;
      }
      throw new Error('throwStatus returned');
    }

    const cases: [number, ErrorCode, RegExp][] = [
      [Status.NO_METADATA_SPACE, 'ENOSPC_METADATA', /out of metadata space \(64 blocks, the last \d+ reserved/],
      [Status.METADATA_FULL, 'ENOSPC_METADATA', /all 64 blocks in use/],
      [Status.REF_UNDERFLOW, 'ECORRUPT', /reference count underflow in space map \(block 42\)/],
      [Status.REF_BEYOND, 'EBADBLOCKNR', /reference to block 42 beyond the metadata device in test tree/],
      [Status.DATA_BEYOND, 'ECORRUPT', /data block 42 beyond the data device \(1000 blocks\) in test tree/],
      [Status.DATA_REF_MISSING, 'ECORRUPT', /data block 42 has bitmap value 3 but no ref-count entry/],
      [Status.DATA_REF_UNDERFLOW, 'ECORRUPT', /data block 42 reference count underflow in test tree/],
      [Status.NO_DATA_SPACE, 'ENOSPC_DATA', /out of data space \(1000 blocks/],
      [Status.DATA_SHRINK, 'EINVAL', /cannot shrink \(1000 -> 42 blocks\)/],
      [
        Status.DATA_MAP_TOO_BIG,
        'EINVAL',
        /data device of 42 blocks needs more space-map bitmaps than the metadata device has blocks \(64\)/,
      ],
      [Status.TOO_DEEP, 'ECYCLE', /test tree deeper than 16 levels \(block 42; cycle\?\)/],
      [Status.NESTED_TOO_DEEP, 'EFAILED', /btree updates nested too deeply in test tree \(block 42\)/],
      [Status.WORK_OVERFLOW, 'EFAILED', /tree deletion stack overflow in test tree \(block 42\)/],
    ];
    test.each(cases)('status %i: %s', (status, code, message) => {
      const e = thrown(status);
      expect(e.code).toBe(code);
      expect(e.message).toMatch(message);
    });

    test('HOST_ERROR rethrows the error the host recorded, once; without one it names the structure', () => {
      const cause = new ThinpoolError('EIO', 'disk gone');
      c.hostFailed(cause);
      expect(thrown(Status.HOST_ERROR)).toBe(cause);
      const e = thrown(Status.HOST_ERROR);
      expect(e.code).toBe('EFAILED');
      expect(e.message).toMatch(/host failed during an update of test tree \(block 42\)/);
    });
  });
});
