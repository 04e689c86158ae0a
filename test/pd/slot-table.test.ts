// The metadata cache's block -> slot table (src/pd/slot-table.ts) against a Map: random sets, overwrites,
// deletes (backward-shift deletion keeps every other entry findable, also across the table's wrap-around),
// validation marks, and block numbers past 2^32, on a table filled up to its capacity's half.
import { expect, test } from 'vitest';
import { Core } from '../../src/core/wasm.js';
import { NOT_NODE, SlotTable } from '../../src/pd/slot-table.js';
import { seededRng } from '../support/rng.js';

test('the slot table agrees with a Map through random sets, deletes and validation marks', () => {
  const core = new Core(32, 0); // 64 entries: half of them in use at most
  const t = new SlotTable(core);
  expect(core.tableCap).toBe(64);
  for (let seed = 1; seed <= 40; seed++) {
    t.clear();
    const rng = seededRng(seed);
    const model = new Map<number, { slot: number; vs: number }>();
    // Few distinct blocks, so collisions, chains and wrap-around are frequent; some above 2^32.
    const pick = seededRng(seed * 7919);
    const blocks = Array.from({ length: 48 }, (_, i) => (i % 5 === 0 ? 2 ** 32 * (1 + (i % 3)) + i : Math.floor(pick() * 4096)));
    for (let step = 0; step < 800; step++) {
      const b = blocks[Math.floor(rng() * blocks.length)]!;
      const r = rng();
      if (r < 0.45 && (model.size < 32 || model.has(b))) {
        const slot = Math.floor(rng() * 32);
        const vs = rng() < 0.5 ? NOT_NODE : 8 * (1 + Math.floor(rng() * 3));
        t.set(b, slot, vs);
        model.set(b, { slot, vs });
      } else if (r < 0.75) {
        t.delete(b);
        model.delete(b);
      } else if (r < 0.85) {
        const vs = 4 + Math.floor(rng() * 20);
        t.setValidated(b, vs);
        const m = model.get(b);
        if (m) m.vs = vs;
      }
      for (const x of blocks) {
        const m = model.get(x);
        if (t.get(x) !== (m ? m.slot : -1))
          expect.fail(`seed ${seed} step ${step}: block ${x} in slot ${t.get(x)}, the model says ${m?.slot ?? -1}`);
        if (t.validatedAs(x) !== (m ? m.vs : NOT_NODE))
          expect.fail(`seed ${seed} step ${step}: block ${x} validated as ${t.validatedAs(x)}, the model says ${m?.vs ?? NOT_NODE}`);
      }
    }
  }
  t.set(7, 3);
  expect(t.validatedAs(7)).toBe(NOT_NODE);
  t.clear();
  expect(t.get(7)).toBe(-1);
});
