// Volume management (src/thin/volumes.ts) through the pool's interface: how a volume is named (name, id,
// "#id", a decimal string), the name, size and id rules, the owner label's guard on every verb, what update,
// delete, resize and snapshot keep in the catalog (and after a commit and reopen), devices no catalog record
// describes, half-received volumes, snapshot ancestry, in-use claims, and the figures list() gives. Rollback: volumes-rollback.test.ts.
import { expect, test } from 'vitest';
import { MAX_DEVICE_ID, ThinMetadata } from '../../src/thin/metadata.js';
import { ThinPool } from '../../src/thin/pool.js';
import { BS, devices, memoryPool, readVolume } from '../support/memory-pools.js';
import { thrownError } from '../support/thrown.js';
import { fill, keepOpen } from '../support/model.js';

/** A pool whose metadata holds the given thin devices (block i of device id mapped for i < blocks) and no catalog record. */
function barePool(devs: Array<[id: number, blocks: number]>) {
  const d = devices();
  const md = ThinMetadata.format(d.meta, { nrDataBlocks: 32, dataBlockSectors: BS / 512 });
  for (const [id, blocks] of devs) {
    md.createThin(id);
    for (let v = 0; v < blocks; v++) md.insertMapping(id, v, md.allocDataBlock());
  }
  md.commit();
  return ThinPool.openStorage({ metadata: keepOpen(d.meta), data: keepOpen(d.data), catalog: d.catalog });
}

const OWNED = { 'thinpool.owner': 'images' };

test('a volume is named by its name, its id, "#id" or a decimal string that names no volume; nothing else', () => {
  const { pool } = memoryPool();
  for (let i = 1; i <= 12; i++) pool.createThinSync(`v${i}`, { size: BS });
  expect(pool.volume(12).name).toBe('v12');
  expect(pool.volume('#12').name).toBe('v12');
  expect(pool.volume('12').name).toBe('v12');
  expect(pool.volume('#7').name).toBe('v7');
  expect(pool.volume('v7').id).toBe(7);
  for (const ref of ['x12', '12x', '#x', '1 2', '']) expect(pool.has(ref), ref).toBe(false);
  expect(thrownError(() => pool.volume(99))).toEqual({ code: 'ENOENT', message: 'no volume with device id 99' });
  expect(thrownError(() => pool.volume('x12'))).toEqual({ code: 'ENOENT', message: 'no volume named "x12"' });
  expect(thrownError(() => pool.volume('#99'))).toEqual({ code: 'ENOENT', message: 'no volume named "#99"' });
  pool.closeSync();
});

test('names and sizes are checked before anything changes, with messages naming the fault', () => {
  const { pool } = memoryPool();
  pool.createThinSync('a', { size: BS });
  const bad = thrownError(() => pool.createThinSync('a/b', { size: BS }));
  expect(bad.code).toBe('EINVAL');
  expect(bad.message).toMatch(/^bad volume name "a\/b": .+ \(.+\)$/);
  expect(thrownError(() => pool.createThinSync('a', { size: BS }))).toEqual({
    code: 'EEXIST',
    message: 'a volume named "a" already exists',
  });
  for (const size of [0, -512, 513, 512.5, 2 ** 53, Number.NaN]) {
    expect(
      thrownError(() => pool.createThinSync('b', { size })),
      String(size),
    ).toEqual({
      code: 'EINVAL',
      message: `volume size ${size} must be a positive multiple of 512 bytes`,
    });
    expect(thrownError(() => pool.resizeSync('a', size)).code, `resize to ${size}`).toBe('EINVAL');
  }
  expect(pool.list().map((v) => v.name)).toEqual(['a']);
  expect(pool.createThinSync('b', { size: 512 }).sizeBytes).toBe(512);
  pool.closeSync();
});

test('ids: the next after the highest, not a freed one; past the highest id the lowest free one', () => {
  const { pool } = memoryPool();
  for (const n of ['a', 'b', 'c']) pool.createThinSync(n, { size: BS });
  pool.deleteSync('a');
  expect(pool.createThinSync('d', { size: BS }).id).toBe(4);
  pool.closeSync();
  const high = barePool([
    [2, 0],
    [MAX_DEVICE_ID - 1, 0],
  ]);
  expect(high.createThinSync('top', { size: BS }).id).toBe(MAX_DEVICE_ID);
  expect(high.createThinSync('wrapped', { size: BS }).id).toBe(1);
  expect(high.snapshotSync('wrapped', 'next').id).toBe(3);
  high.closeSync();
});

test('a volume labelled thinpool.owner is deleted, resized, renamed, relabelled, made writable or rolled back only for its owner', () => {
  const { pool } = memoryPool();
  pool.createThinSync('layer', { size: BS, labels: OWNED });
  pool.snapshotSync('layer', 'snap');
  const refusals: Array<[string, () => void, string]> = [
    ['delete', () => pool.deleteSync('layer'), 'deleted'],
    ['resize', () => pool.resizeSync('layer', 2 * BS), 'resized'],
    ['rename', () => pool.renameSync('layer', 'other'), 'renamed, relabelled or made writable'],
    ['relabel', () => pool.updateSync('layer', { labels: {} }), 'renamed, relabelled or made writable'],
    ['writable', () => pool.updateSync('layer', { readOnly: false }), 'renamed, relabelled or made writable'],
    ['rollback', () => pool.rollbackSync('layer', 'snap'), 'rolled back'],
  ];
  for (const [what, fn, verb] of refusals) {
    expect(thrownError(fn), what).toEqual({
      code: 'EBUSY',
      message: `volume layer belongs to images: it cannot be ${verb} directly (use the images commands, e.g. "thinpool image rm" or "thinpool container rm")`,
    });
  }
  expect(thrownError(() => pool.deleteSync('layer', { owner: 'someone' })).code).toBe('EBUSY');
  // What keeps the owner label is not guarded: read-only, other labels beside the same owner.
  pool.updateSync('layer', { readOnly: true });
  pool.updateSync('layer', { labels: { ...OWNED, note: 'x' } });
  expect(pool.list().find((v) => v.name === 'layer')).toMatchObject({ readOnly: true, labels: { ...OWNED, note: 'x' } });
  // An unowned volume may be given an owner.
  pool.updateSync('snap', { labels: { 'thinpool.owner': 'containers' } });
  expect(thrownError(() => pool.deleteSync('snap')).code).toBe('EBUSY');
  pool.deleteSync('snap', { owner: 'containers' });
  pool.updateSync('layer', { readOnly: false }, { owner: 'images' });
  pool.resizeSync('layer', 2 * BS, { owner: 'images' });
  pool.renameSync('layer', 'layer2', { owner: 'images' });
  pool.deleteSync('layer2', { owner: 'images' });
  expect(pool.list()).toEqual([]);
  pool.closeSync();
});

test('update changes only what the patch names; a rename to the same name is no conflict', () => {
  const { pool, reopen } = memoryPool();
  pool.createThinSync('a', { size: BS, labels: { env: 'x' }, readOnly: true });
  pool.createThinSync('b', { size: BS });
  pool.renameSync('a', 'a');
  pool.renameSync('a', 'c');
  expect(pool.list()[0]).toMatchObject({ name: 'c', readOnly: true, labels: { env: 'x' } });
  expect(thrownError(() => pool.renameSync('c', 'b')).code).toBe('EEXIST');
  pool.updateSync('c', { labels: { env: 'y' } });
  expect(pool.list()[0]).toMatchObject({ name: 'c', readOnly: true, labels: { env: 'y' } });
  pool.updateSync('c', { readOnly: false });
  expect(pool.list()[0]).toMatchObject({ name: 'c', readOnly: false, labels: { env: 'y' } });
  expect('readOnly' in pool.recordOf(1)!).toBe(false);
  const again = reopen(pool);
  expect(again.list().map((v) => [v.name, v.readOnly, v.labels])).toEqual([
    ['c', false, { env: 'y' }],
    ['b', false, {}],
  ]);
  again.closeSync();
});

test('create and snapshot keep their own copy of the labels, the read-only flag, and the origin', () => {
  const { pool, reopen } = memoryPool();
  const labels = { env: 'x' };
  pool.createThinSync('a', { size: 3 * BS + 512, labels, readOnly: true });
  pool.createThinSync('w', { size: BS });
  pool.snapshotSync('a', 's', { labels: { tier: 'gold' }, readOnly: true });
  pool.snapshotSync('s', 's2');
  labels.env = 'changed';
  const again = reopen(pool);
  const byName = new Map(again.list().map((v) => [v.name, v]));
  expect(byName.get('a')).toMatchObject({ readOnly: true, labels: { env: 'x' }, sizeBytes: 3 * BS + 512 });
  expect(byName.get('w')).toMatchObject({ readOnly: false, labels: {} });
  expect(byName.get('s')).toMatchObject({ readOnly: true, labels: { tier: 'gold' }, sizeBytes: 3 * BS + 512, origin: 1, originName: 'a' });
  expect(byName.get('s2')).toMatchObject({ readOnly: false, labels: {}, origin: 3, originName: 's' });
  expect(again.isSnapshotOf('s2', 'a')).toBe(true);
  expect(again.isSnapshotOf('s', 'a')).toBe(true);
  expect(again.isSnapshotOf('a', 's')).toBe(false);
  expect(again.isSnapshotOf('s2', 'w')).toBe(false);
  expect(again.isSnapshotOf('w', 'a')).toBe(false);
  again.closeSync();
});

test('delete: the name is free again, its snapshots stand alone, also after a commit and reopen', () => {
  const { pool, reopen } = memoryPool();
  pool.createThinSync('a', { size: BS }).writeSync(fill(BS, 1), 0);
  pool.snapshotSync('a', 's');
  pool.commitSync();
  pool.deleteSync('a');
  expect(pool.list().map((v) => [v.name, v.origin, v.originName])).toEqual([['s', undefined, undefined]]);
  expect(pool.createThinSync('a', { size: 2 * BS }).sizeBytes).toBe(2 * BS);
  pool.deleteSync('a');
  const again = reopen(pool);
  expect(again.list().map((v) => [v.name, v.origin])).toEqual([['s', undefined]]);
  expect(again.recordOf(2)).toEqual(expect.not.objectContaining({ origin: expect.anything() }));
  expect(Buffer.compare(readVolume(again, 's', 0, BS), fill(BS, 1))).toBe(0);
  again.closeSync();
});

test('resize: shrinking unmaps past the end, growing over a partial block zeroes what lay past the old end', () => {
  const { pool, reopen } = memoryPool();
  const v = pool.createThinSync('v', { size: 4 * BS });
  v.writeSync(fill(4 * BS, 2), 0);
  expect(pool.list()[0].mappedBytes).toBe(4 * BS);
  pool.resizeSync('v', BS + BS / 4); // blocks 2 and 3 unmapped, block 1 kept (its tail hidden)
  expect(pool.list()[0]).toMatchObject({ sizeBytes: BS + BS / 4, mappedBytes: 2 * BS });
  pool.resizeSync('v', BS + BS / 2); // zeroes [1.25, 1.5) blocks
  expect(pool.list()[0].mappedBytes).toBe(2 * BS);
  pool.resizeSync('v', 4 * BS); // zeroes [1.5, 2) blocks; 2 and 3 stay unmapped
  expect(pool.list()[0]).toMatchObject({ sizeBytes: 4 * BS, mappedBytes: 2 * BS });
  const want = new Uint8Array(4 * BS);
  want.set(fill(4 * BS, 2).subarray(0, BS + BS / 4));
  expect(Buffer.compare(readVolume(pool, 'v', 0, 4 * BS), want)).toBe(0);
  pool.resizeSync('v', 8 * BS); // aligned growth: nothing to zero, the size alone changes
  pool.commitSync();
  const again = reopen(pool);
  expect(again.list()[0]).toMatchObject({ sizeBytes: 8 * BS, mappedBytes: 2 * BS });
  again.updateSync('v', { readOnly: true });
  expect(thrownError(() => again.resizeSync('v', BS))).toEqual({ code: 'EROFS', message: 'volume v is read-only: it cannot be resized' });
  again.closeSync();
});

test('devices without a catalog record: resized, renamed, deleted and listed under thinID', () => {
  const pool = barePool([
    [3, 2],
    [5, 1],
    [6, 0],
  ]);
  expect(pool.list().map((v) => [v.id, v.name, v.sizeBytes, v.mappedBytes, v.originName])).toEqual([
    [3, undefined, 2 * BS, 2 * BS, undefined],
    [5, undefined, BS, BS, undefined],
    [6, undefined, 0, 0, undefined],
  ]);
  pool.resizeSync(3, 4 * BS);
  expect(pool.recordOf(3)).toMatchObject({ id: 3, name: 'thin3', sizeBytes: 4 * BS, labels: {} });
  pool.updateSync(5, { labels: { k: 'v' } });
  expect(pool.recordOf(5)).toMatchObject({ id: 5, name: 'thin5', sizeBytes: BS, labels: { k: 'v' } });
  pool.renameSync(6, 'six');
  expect(pool.recordOf(6)).toMatchObject({ id: 6, name: 'six', sizeBytes: 0 });
  expect(pool.volume('six').id).toBe(6);
  pool.snapshotSync(5, 'snap5');
  expect(pool.isSnapshotOf('snap5', 3)).toBe(false);
  pool.deleteSync(5, { owner: 'anyone' });
  expect(pool.list().map((v) => v.name)).toEqual(['thin3', 'six', 'snap5']);
  pool.closeSync();
  const bare = barePool([
    [3, 2],
    [4, 1],
  ]);
  expect(thrownError(() => bare.rollbackSync(3, 4))).toEqual({
    code: 'EINVAL',
    message: '#4 is not a snapshot of #3: a volume rolls back only to its own snapshots (see "thinpool ls POOL --tree")',
  });
  expect(bare.isSnapshotOf(4, 3)).toBe(false);
  bare.resizeSync(4, BS + 512);
  bare.deleteSync(3);
  expect(bare.list().map((v) => [v.id, v.name, v.sizeBytes])).toEqual([[4, 'thin4', BS + 512]]);
  bare.closeSync();
});

test('volumes left half-received (owner "receive") are dropped, named, and nothing else is', () => {
  const { pool } = memoryPool();
  pool.createThinSync('keep', { size: BS, labels: OWNED });
  pool.createThinSync('half', { size: BS, labels: { 'thinpool.owner': 'receive' } });
  pool.createThinSync('half2', { size: BS, labels: { 'thinpool.owner': 'receive', other: 'x' } });
  expect(pool.dropIncompleteReceives()).toEqual(['half', 'half2']);
  expect(pool.list().map((v) => v.name)).toEqual(['keep']);
  expect(pool.dropIncompleteReceives()).toEqual([]);
  pool.closeSync();
});

test('claims: every holder is listed until it releases; releasing twice is harmless; a claimed volume is not rolled back', () => {
  const { pool } = memoryPool();
  pool.createThinSync('v', { size: BS });
  pool.snapshotSync('v', 's');
  const a = pool.claim('v', 'nbd');
  const b = pool.claim('v', 'backup');
  expect(pool.usersOf('v')).toEqual(['nbd', 'backup']);
  expect(thrownError(() => pool.rollbackSync('v', 's'))).toEqual({
    code: 'EBUSY',
    message: 'volume v is in use by nbd, backup: stop that first, then roll back',
  });
  a();
  expect(pool.usersOf('v')).toEqual(['backup']);
  a();
  expect(pool.usersOf('v')).toEqual(['backup']);
  b();
  b();
  expect(pool.usersOf('v')).toEqual([]);
  expect(pool.usersOf('s')).toEqual([]);
  pool.rollbackSync('v', 's');
  pool.closeSync();
});

test('list: mapped, exclusive and shared bytes per volume, in whole blocks', () => {
  const { pool } = memoryPool();
  const v = pool.createThinSync('v', { size: 4 * BS });
  v.writeSync(fill(3 * BS, 1), 0);
  pool.snapshotSync('v', 's');
  v.writeSync(fill(100, 2), 0); // block 0 copied: v holds it alone
  pool.createThinSync('empty', { size: BS });
  const got = pool.list().map((x) => [x.name, x.mappedBytes, x.exclusiveBytes, x.sharedBytes]);
  expect(got).toEqual([
    ['v', 3 * BS, BS, 2 * BS],
    ['s', 3 * BS, BS, 2 * BS],
    ['empty', 0, 0, 0],
  ]);
  pool.closeSync();
});

test("deleting a volume drops only its own snapshots' origin; an origin without a record is named by nothing", () => {
  const { pool } = memoryPool();
  pool.createThinSync('a', { size: BS });
  pool.snapshotSync('a', 's');
  pool.createThinSync('other', { size: BS });
  pool.deleteSync('other');
  expect(pool.list().map((v) => [v.name, v.origin, v.originName])).toEqual([
    ['a', undefined, undefined],
    ['s', 1, 'a'],
  ]);
  pool.closeSync();
  const bare = barePool([
    [3, 1],
    [4, 0],
  ]);
  bare.snapshotSync(3, 'snap');
  expect(bare.list().map((v) => [v.name, v.origin, v.originName])).toEqual([
    [undefined, undefined, undefined],
    [undefined, undefined, undefined],
    ['snap', 3, undefined],
  ]);
  expect(bare.isSnapshotOf('snap', 3)).toBe(true);
  expect(bare.isSnapshotOf('snap', 4)).toBe(false);
  bare.closeSync();
});

test('a catalog whose origins go round in a circle (edited by hand) still answers isSnapshotOf', () => {
  const d = devices();
  const storage = () => ({ metadata: keepOpen(d.meta), data: keepOpen(d.data), catalog: d.catalog });
  const pool = ThinPool.formatStorage(storage(), { size: 32 * BS, blockSize: BS });
  for (const n of ['a', 'b', 'c']) pool.createThinSync(n, { size: BS });
  pool.closeSync();
  const edited = d.catalog.readPublished()!;
  edited.volumes[0].origin = 2;
  edited.volumes[1].origin = 1;
  d.catalog.stage(edited, 'edited');
  d.catalog.publish();
  const again = ThinPool.openStorage(storage());
  expect(again.isSnapshotOf('a', 'b')).toBe(true);
  expect(again.isSnapshotOf('a', 'c')).toBe(false);
  expect(again.isSnapshotOf('b', 'c')).toBe(false);
  again.closeSync();
});

test('list while a metadata snapshot is held: a volume with nothing mapped shows zeros', async () => {
  const { pool } = memoryPool();
  pool.createThinSync('v', { size: 2 * BS }).writeSync(fill(BS, 1), 0);
  await pool.reserveMetadataSnap();
  pool.createThinSync('empty', { size: BS });
  expect(pool.list().map((x) => [x.name, x.mappedBytes, x.exclusiveBytes, x.sharedBytes])).toEqual([
    ['v', BS, BS, 0],
    ['empty', 0, 0, 0],
  ]);
  pool.closeSync();
});
