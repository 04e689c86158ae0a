// The containerd snapshot model on a pool, without kernel mounts: what containerd expects and easily goes wrong
// (labels replaced on commit, update paths, parent rules, error codes, nanosecond times, filters), and that the
// model lives in the pool's catalog across a reopen.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ThinPool } from '../../src/thin/pool.js';
import { compileFilters, type Filterable } from '../../src/snapshotter/filters.js';
import { SnapshotStore } from '../../src/snapshotter/store.js';
import { needTool } from '../support/tools.js';
import { checkPool } from './support.js';

const MiB = 1024 * 1024;

describe('containerd filters', () => {
  const s = (name: string, kind: Filterable['kind'], parent: string, labels: Record<string, string> = {}): Filterable => ({
    name,
    kind,
    parent,
    labels,
  });
  const all = [s('a', 'committed', ''), s('b', 'active', 'a', { 'x.y': '1', k: 'v' }), s('c', 'view', 'a', { k: 'w' })];
  const names = (f: string[]) => all.filter(compileFilters(f)).map((x) => x.name);

  test('selectors, quoting, presence, AND within a filter, OR across filters', () => {
    expect(names([])).toEqual(['a', 'b', 'c']);
    expect(names(['kind==active'])).toEqual(['b']);
    expect(names(['parent!=""'])).toEqual(['b', 'c']);
    expect(names(['labels."x.y"==1'])).toEqual(['b']);
    expect(names(['labels.x.y'])).toEqual(['b']);
    expect(names(['labels.k'])).toEqual(['b', 'c']);
    expect(names(['labels.k!=v'])).toEqual(['a', 'c']);
    expect(names(['name~=/^[ab]$/'])).toEqual(['a', 'b']);
    expect(names(['kind==view', 'kind==committed'])).toEqual(['a', 'c']);
    expect(names(['parent==a,labels.k==w'])).toEqual(['c']);
    expect(names(['kind==nothing', ''])).toEqual(['a', 'b', 'c']);
  });

  test('malformed filters are EINVAL', () => {
    for (const f of ['kind=', 'kind==', '==x', 'kind==a b', 'labels."unterminated', 'name~=/(/']) {
      expect(() => compileFilters([f]), f).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    }
  });
});

const haveMkfs = needTool('mkfs.ext4', 'e2fsprogs') && needTool('debugfs', 'e2fsprogs');

describe.skipIf(!haveMkfs)('snapshot model on a pool', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-ctrd-store-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('containerd semantics, kept in the catalog', async () => {
    const pool = ThinPool.formatSync(join(dir, 'pool'), { size: 1024 * MiB });
    const st = new SnapshotStore(pool, 32 * MiB);
    const base = await st.ensureBase();
    expect(pool.volume(base).readOnly).toBe(true);
    expect(() => st.create('view', 'v', 'missing', {})).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    const a = st.create('active', 'a', '', { keep: 'me', empty: '' });
    expect(a).toMatchObject({ name: 'a', kind: 'active', parent: '', labels: { keep: 'me' } });
    expect(a.created).toBe(a.updated);
    expect(a.created > BigInt(Date.now() - 60000) * 1000000n).toBe(true);
    expect(() => st.create('active', 'a', '', {})).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    expect(() => st.create('active', 'child', 'a', {})).toThrow(expect.objectContaining({ code: 'EINVAL' }));

    const c = st.commit('c', 'a', { new: 'label' });
    expect(c).toMatchObject({ name: 'c', kind: 'committed', labels: { new: 'label' } });
    expect(c.created).toBe(c.updated);
    expect(c.created > a.created).toBe(true);
    expect(() => st.stat('a')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(() => st.commit('c2', 'c', {})).toThrow(expect.objectContaining({ code: 'EBUSY' }));

    st.create('active', 'b', 'c', {});
    st.create('view', 'v', 'c', {});
    expect(pool.volume(st.volumeOf('v')).readOnly).toBe(true);
    expect(() => st.remove('c')).toThrow(expect.objectContaining({ code: 'EBUSY', message: expect.stringContaining('remove') }));

    const u1 = st.update('b', { l1: 'v1', l2: 'v2', l3: 'v3' }, []);
    expect(u1.labels).toEqual({ l1: 'v1', l2: 'v2', l3: 'v3' });
    expect(u1.updated > u1.created).toBe(true);
    expect(st.update('b', { l1: 'updated', l4: 'v4' }, ['labels.l1', 'labels.l2']).labels).toEqual({ l1: 'updated', l3: 'v3' });
    expect(st.update('b', { only: 'this' }, ['labels']).labels).toEqual({ only: 'this' });
    expect(() => st.update('b', {}, ['parent'])).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(st.stat('b').parent).toBe('c');

    expect(st.list(['kind==view']).map((i) => i.name)).toEqual(['v']);
    expect(st.list(['parent!=""']).map((i) => i.name)).toEqual(['b', 'v']);

    // A write into b: b's own usage is that block; c's is the filesystem the base did not have.
    pool.volume(st.volumeOf('b')).writeSync(Buffer.alloc(4096, 1), 16 * MiB);
    expect(st.usage('b').size).toBe(pool.blockSize);
    expect(st.usage('c').size).toBe(0);

    // Reopened: the same model.
    const before = st.list();
    pool.closeSync();
    const again = ThinPool.openSync(join(dir, 'pool'));
    const st2 = new SnapshotStore(again, 32 * MiB);
    expect(st2.list()).toEqual(before);
    expect(st2.orphans()).toEqual([]);
    st2.remove('v');
    st2.remove('b');
    st2.remove('c');
    expect(st2.list()).toEqual([]);
    again.closeSync();
    expect(await checkPool(join(dir, 'pool'))).toEqual([]);
  });
});
