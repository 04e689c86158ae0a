import { test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { checkMetadata } from '../../src/thin/check.js';
import { seededRng, type Rng } from '../support/oracle.js';

function pick<T>(rng: Rng, xs: readonly T[]): T { return xs[Math.floor(rng() * xs.length)]!; }
test('repro', () => {
  const dev = new MemoryDevice(8 * 1024 * 1024);
  const md = ThinMetadata.format(dev, { nrDataBlocks: 20000, dataBlockSectors: 128 });
  const rng = seededRng(2);
  let nextId = 1;
  const model = new Map<number, Map<number, number>>();
  const verify = (what: string): boolean => {
    for (const [id, m] of model) {
      const got = new Map<number, number>();
      md.forEachMapping(id, (v, d) => got.set(v, d));
      for (const [v, d] of m) if (got.get(v) !== d) { console.log(what, 'dev', id, 'v', v, 'want', d, 'got', got.get(v)); return false; }
      if (got.size !== m.size) { console.log(what, 'size', id, got.size, m.size); return false; }
    }
    return true;
  };
  for (let s = 0; s < 300; s++) {
    const ids = md.deviceIds();
    const r = rng();
    let what = '';
    if (ids.length === 0 || r < 0.06) { what = `create ${nextId}`; model.set(nextId, new Map()); md.createThin(nextId++); }
    else if (r < 0.12 && ids.length < 8) { const o = pick(rng, ids); what = `snap ${nextId} of ${o}`; model.set(nextId, new Map(model.get(o))); md.createSnapshot(nextId++, o); }
    else if (r < 0.14 && ids.length > 2) { const o = pick(rng, ids); what = `delete ${o}`; model.delete(o); md.deleteDevice(o); }
    else if (r < 0.16) { if (md.heldRoot === 0) { what = 'reserve'; md.reserveMetadataSnap(); } else { what = 'release'; md.releaseMetadataSnap(); } }
    else if (r < 0.25) { what = 'commit'; md.commit(); const e = checkMetadata(md).errors; if (e.length) { console.log('check', JSON.stringify(e)); verify('after'); for (const id of md.deviceIds()) md.forEachMapping(id, (v, d, t) => { if (d === 256 || d === 310) console.log('dev', id, 'v', v, 'd', d, 't', t, md.details0(id).root); }); return; } }
    else if (r < 0.6) {
      const id = pick(rng, ids); const base = Math.floor(rng() * 3000); const n = 1 + Math.floor(rng() * 200);
      what = `insert ${id} ${base}+${n}`;
      for (let i = 0; i < n && md.dsm.nrFree > 0; i++) { const d = md.allocDataBlock(); md.insertMapping(id, base + i, d); model.get(id)!.set(base + i, d);
        }
    } else {
      const id = pick(rng, ids); const base = Math.floor(rng() * 3000); const n = 1 + Math.floor(rng() * 150);
      what = `remove ${id} ${base}+${n}`;
      for (let i = 0; i < n; i++) { md.removeMapping(id, base + i); model.get(id)!.delete(base + i); }
    }
    console.log(what);
  }
});
