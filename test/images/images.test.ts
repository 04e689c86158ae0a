// Images and containers on thin snapshots: import (layer tarballs, OCI layout, docker save), merged views
// against a reference extraction, e2fsck on every volume, shared layers, history sizes, containers.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tar from 'tar-stream';
import { ThinPool } from '../../src/thin/pool.js';
import { ImageStore } from '../../src/images/images.js';
import { OWNER, OWNER_LABEL } from '../../src/images/snapshotter.js';
import { withFs } from '../../src/images/fs-worker.js';
import { needTool } from '../support/tools.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import { dirTree, distinctBytes, expectFsck, fsTree, makeTar, pattern, referenceExtract, threeLayers, type TEntry } from './support.js';

const haveTools = needTool('mkfs.ext4', 'e2fsprogs') && needTool('e2fsck', 'e2fsprogs');
const work = mkdtempSync(join(tmpdir(), 'tp-images-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const FS_SIZE = 128 * 1024 * 1024;
const layers = threeLayers();

function sha(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

async function writeLayerFiles(dir: string, ls: TEntry[][], gzipFirst = true): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const out: string[] = [];
  for (const [i, l] of ls.entries()) {
    const p = join(dir, `layer${i}.tar${gzipFirst && i === 0 ? '.gz' : ''}`);
    writeFileSync(p, await makeTar(l, { gzip: gzipFirst && i === 0 }));
    out.push(p);
  }
  return out;
}

/** An OCI image layout directory of the given layers (gzipped blobs), with a history. */
async function writeOciLayout(dir: string, ls: TEntry[][]): Promise<void> {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = (b: Buffer): string => {
    const d = sha(b);
    writeFileSync(join(dir, 'blobs', 'sha256', d.slice(7)), b);
    return d;
  };
  const descs = [];
  const diffIds = [];
  for (const l of ls) {
    const plain = await makeTar(l);
    diffIds.push(sha(plain));
    const gz = await makeTar(l, { gzip: true });
    descs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: put(gz), size: gz.length });
  }
  const history = [
    { created: '2024-01-01T00:00:00Z', created_by: 'ADD rootfs.tar /' },
    { created: '2024-01-02T00:00:00Z', created_by: 'ENV A=1', empty_layer: true },
    ...ls.slice(1).map((_, i) => ({ created: `2024-01-0${i + 3}T00:00:00Z`, created_by: `RUN step ${i + 2}` })),
  ];
  const config = Buffer.from(
    JSON.stringify({
      created: '2024-01-05T00:00:00Z',
      architecture: 'amd64',
      os: 'linux',
      config: { Env: ['A=1'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history,
    }),
  );
  const cfg = put(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfg, size: config.length },
      layers: descs,
    }),
  );
  const md = put(manifest);
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: md, size: manifest.length }],
    }),
  );
}

/** A docker save archive of the given layers. */
async function writeDockerSave(file: string, ls: TEntry[][]): Promise<void> {
  const files: TEntry[] = [];
  const diffIds: string[] = [];
  const paths: string[] = [];
  for (const [i, l] of ls.entries()) {
    const t = await makeTar(l);
    diffIds.push(sha(t));
    files.push({ name: `l${i}/layer.tar`, body: t });
    paths.push(`l${i}/layer.tar`);
  }
  const config = Buffer.from(
    JSON.stringify({
      created: '2024-02-01T00:00:00Z',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: ls.map((_, i) => ({ created_by: `docker step ${i}` })),
    }),
  );
  files.push({ name: 'config.json', body: config });
  files.push({ name: 'manifest.json', body: JSON.stringify([{ Config: 'config.json', RepoTags: ['test:latest'], Layers: paths }]) });
  writeFileSync(file, await makeTar(files));
}

describe.skipIf(!haveTools)('images on thin snapshots', () => {
  let pool: ThinPool;
  let store: ImageStore;
  const poolDir = join(work, 'pool');
  let layerFiles: string[];

  beforeAll(async () => {
    pool = ThinPool.formatSync(poolDir, { size: 1024 * 1024 * 1024 });
    store = new ImageStore(pool, { size: FS_SIZE });
    layerFiles = await writeLayerFiles(join(work, 'layers'), layers);
  });
  afterAll(() => {
    if (!pool.isClosed) pool.closeSync();
    verifyMetadataFile(join(poolDir, 'metadata'));
  });

  test("imports a list of layer tarballs; every layer's merged view equals the reference extraction", async () => {
    const r = await store.import('app', layerFiles);
    expect(r.applied).toBe(3);
    expect(r.reused).toBe(0);
    const im = store.image('app');
    expect(im.chainIds).toHaveLength(3);
    for (let n = 1; n <= 3; n++) {
      const ref = join(work, `ref-${n}`);
      referenceExtract(ref, layers.slice(0, n));
      const vol = store.snapshotter.volume(im.chainIds[n - 1]);
      expect(vol.readOnly).toBe(true);
      const got = await withFs(vol, (fs) => fsTree(fs, { times: true }));
      expect(got).toEqual(dirTree(ref, { times: true }));
      expectFsck(vol, work);
    }
    // Owners, hard links and file sizes survive.
    await withFs(store.snapshotter.volume(im.chainIds[2]), async (fs) => {
      const motd = (await fs.lstat('/etc/motd'))!;
      expect([motd.uid, motd.gid, motd.mode]).toEqual([7, 8, 0o640]);
      const run = (await fs.lstat('/opt/app/run'))!;
      expect(run.ino).toBe(motd.ino);
      expect(run.nlink).toBe(2);
      const hard = (await fs.lstat('/bin/tool-hard'))!;
      expect([hard.uid, hard.gid, hard.size]).toEqual([1000, 100, 70000]);
      expect((await fs.lstat('/data/big.bin'))!.size).toBe(1024 * 1024 + 100);
    });
  });

  test('a committed layer cannot be written through any path', async () => {
    const im = store.image('app');
    const vol = store.snapshotter.volume(im.chainIds[1]);
    expect(() => vol.writeSync(Buffer.alloc(512), 0)).toThrow(/read-only/);
    expect(() => vol.discardSync(0, 65536)).toThrow(/read-only/);
    // Plain pool calls cannot delete, resize or unseal a layer: it belongs to the images layer (EBUSY).
    const owned = { code: 'EBUSY', message: expect.stringMatching(/belongs to images/) };
    expect(() => pool.resizeSync(vol.id, vol.sizeBytes * 2)).toThrow(expect.objectContaining(owned));
    expect(() => pool.deleteSync(vol.id)).toThrow(expect.objectContaining(owned));
    expect(() => pool.updateSync(vol.id, { readOnly: false })).toThrow(expect.objectContaining(owned));
    expect(() => pool.updateSync(vol.id, { name: 'renamed' })).toThrow(expect.objectContaining(owned));
    // Even acting as the owner, a committed layer is never resized (read-only).
    expect(() => pool.resizeSync(vol.id, vol.sizeBytes * 2, { owner: OWNER })).toThrow(/read-only/);
    expect(pool.volume(vol.id).readOnly).toBe(true);
    expect(store.snapshotter.has(im.chainIds[1])).toBe(true);
    await withFs(vol, async (fs) => {
      await expect(fs.writeFile('/x', Buffer.from('x'))).rejects.toThrow(/read-only/);
      await expect(fs.rmrf('/etc')).rejects.toThrow(/read-only/);
    });
    expect(() => store.snapshotter.commit('again', im.chainIds[1])).toThrow(/only an active/);
  });

  test("history: newest first, sizes add up to the pool's usage of the image", () => {
    const im = store.image('app');
    const rows = store.history('app');
    expect(rows.map((r) => r.layer)).toEqual([...im.chainIds].reverse());
    const total = rows.reduce((n, r) => n + r.size, 0);
    const vols = im.chainIds.map((c) => store.snapshotter.volume(c));
    expect(total).toBe(distinctBytes(vols));
    // Only this image and the hidden base filesystem it was formatted from (shared by all images, what it
    // still holds alone is the mkfs metadata the bottom layer rewrote) are in the pool so far.
    const base = pool.list().filter((v) => v.labels['thinpool.images/role'] === 'base');
    expect(base).toHaveLength(1);
    expect(base[0].readOnly).toBe(true);
    expect(total + base[0].exclusiveBytes).toBe(pool.status().dataBlocks.used * pool.blockSize);
    expect(base[0].exclusiveBytes).toBeLessThan(1024 * 1024);
    // The layer with the 3 MiB file adds at least that much; the top layer adds little.
    expect(rows[2].size).toBeGreaterThanOrEqual(3 * 1024 * 1024);
    expect(rows[0].size).toBeLessThan(1024 * 1024);
  });

  test("a second image sharing two base layers adds only its own layer's blocks", async () => {
    const used0 = pool.status().dataBlocks.used;
    const own: TEntry[] = [
      { name: 'srv/', type: 'directory' },
      { name: 'srv/index.html', body: 'x'.repeat(300000) },
    ];
    const files = [layerFiles[0], layerFiles[1], (await writeLayerFiles(join(work, 'other'), [own], false))[0]];
    const r = await store.import('other', files);
    expect([r.applied, r.reused]).toEqual([1, 2]);
    const im = store.image('other');
    const app = store.image('app');
    expect(im.chainIds.slice(0, 2)).toEqual(app.chainIds.slice(0, 2));
    const added = (pool.status().dataBlocks.used - used0) * pool.blockSize;
    const rows = store.history('other');
    expect(added).toBe(rows[0].size);
    expect(added).toBeLessThan(1024 * 1024);
    const ref = join(work, 'ref-other');
    referenceExtract(ref, [layers[0], layers[1], own]);
    expect(await withFs(store.snapshotter.volume(im.chainIds[2]), fsTree)).toEqual(dirTree(ref));
  });

  test('containers: create is a snapshot, writes stay private, diff, commit, rm frees exactly its exclusive blocks', async () => {
    const t0 = performance.now();
    await store.createContainer('app', 'web');
    expect(performance.now() - t0).toBeLessThan(1000);
    const vol = store.containerVolume('web');
    expect(vol.readOnly).toBe(false);
    await withFs(vol, async (fs) => {
      await fs.writeFile('/etc/hostname', Buffer.from('container\n'));
      await fs.writeFile('/var/log/app.log', Buffer.alloc(200000, 1));
      await fs.rmrf('/gone.txt');
      await fs.rmrf('/cache');
    });
    // The merged view: the reference plus the same changes.
    const ref = join(work, 'ref-web');
    referenceExtract(ref, [
      ...layers,
      [
        { name: 'etc/hostname', body: 'container\n' },
        { name: 'var/', type: 'directory' },
        { name: 'var/log/', type: 'directory' },
        { name: 'var/log/app.log', body: Buffer.alloc(200000, 1) },
        { name: '.wh.gone.txt' },
        { name: '.wh.cache' },
      ],
    ]);
    expect(await withFs(vol, fsTree)).toEqual(dirTree(ref));
    expectFsck(vol, work);
    // The image did not change.
    const top = store.snapshotter.volume(store.image('app').chainIds[2]);
    expect(await withFs(top, fsTree)).toEqual(dirTree(join(work, 'ref-3')));

    const changes = await store.diff('web');
    expect(changes).toEqual([
      { kind: 'D', path: '/cache' },
      { kind: 'C', path: '/etc' },
      { kind: 'C', path: '/etc/hostname' },
      { kind: 'D', path: '/gone.txt' },
      { kind: 'A', path: '/var' },
      { kind: 'A', path: '/var/log' },
      { kind: 'A', path: '/var/log/app.log' },
    ]);

    // Commit: a new image whose top layer is the container's state.
    const im2 = await store.commitContainer('web', 'app-v2');
    expect(im2.chainIds.slice(0, 3)).toEqual(store.image('app').chainIds);
    const l4 = store.snapshotter.volume(im2.chainIds[3]);
    expect(l4.readOnly).toBe(true);
    expect(await withFs(l4, fsTree)).toEqual(dirTree(ref));
    expect(store.history('app-v2')[0].createdBy).toMatch(/container commit web/);

    // A second container; rm returns exactly its exclusive blocks.
    await store.createContainer('app-v2', 'worker');
    await withFs(store.containerVolume('worker'), (fs) => fs.writeFile('/tmp/scratch', Buffer.alloc(500000, 9)));
    const exclusive = store.containerUsage('worker');
    expect(exclusive).toBeGreaterThan(500000);
    const before = pool.status().dataBlocks.used;
    const freed = await store.removeContainer('worker');
    expect(freed).toBe(exclusive);
    expect((before - pool.status().dataBlocks.used) * pool.blockSize).toBe(exclusive);

    for (const c of ['web']) expectFsck(store.containerVolume(c), work);
    await expect(store.removeImage('app')).rejects.toThrow(/used by container/);
  });

  test('imports an OCI layout directory and a docker save archive; reuses the layers already there', async () => {
    const oci = join(work, 'oci');
    await writeOciLayout(oci, layers);
    const r = await store.import('oci-app', [oci]);
    expect([r.applied, r.reused]).toEqual([0, 3]);
    const rows = store.history('oci-app');
    expect(rows.map((x) => x.createdBy)).toEqual(['RUN step 3', 'RUN step 2', 'ENV A=1', 'ADD rootfs.tar /']);
    expect(rows[2]).toMatchObject({ layer: '<missing>', size: 0 });
    expect(store.image('oci-app').config).toEqual({ Env: ['A=1'] });

    const fresh = threeLayers(100000).map((l, i) => (i === 0 ? [...l, { name: 'docker-marker', body: 'd' }] : l));
    const saved = join(work, 'save.tar');
    await writeDockerSave(saved, fresh);
    const r2 = await store.import('docker-app', [saved]);
    expect([r2.applied, r2.reused]).toEqual([3, 0]);
    const ref = join(work, 'ref-docker');
    referenceExtract(ref, fresh);
    const im = store.image('docker-app');
    expect(await withFs(store.snapshotter.volume(im.chainIds[2]), (fs) => fsTree(fs, { times: true }))).toEqual(
      dirTree(ref, { times: true }),
    );
    for (const c of im.chainIds) expectFsck(store.snapshotter.volume(c), work);
  });

  test('bad input: a clear error and nothing left behind', async () => {
    const snapState = JSON.stringify(pool.getExtension('snapshotter'));
    const imgState = JSON.stringify(pool.getExtension('images'));
    const vols = pool
      .list()
      .map((v) => v.name)
      .sort();
    const used = pool.status().dataBlocks.used;
    const dir = join(work, 'bad');
    mkdirSync(dir, { recursive: true });
    const good = await makeTar([
      { name: 'new/', type: 'directory' },
      { name: 'new/file', body: 'z'.repeat(100000) },
    ]);
    const cases: Array<[string, string[], RegExp]> = [];
    // truncated tar (a second layer after a good, new one: the first must be rolled back too)
    writeFileSync(join(dir, 'good.tar'), good);
    writeFileSync(join(dir, 'trunc.tar'), (await makeTar([{ name: 'f', body: 'y'.repeat(50000) }])).subarray(0, 20000));
    cases.push(['truncated', [join(dir, 'good.tar'), join(dir, 'trunc.tar')], /truncated or corrupt/]);
    // corrupt gzip
    const gz = await makeTar([{ name: 'f', body: 'q'.repeat(50000) }], { gzip: true });
    gz[gz.length - 30] ^= 0xff;
    writeFileSync(join(dir, 'corrupt.tar.gz'), gz);
    cases.push(['corrupt gzip', [join(dir, 'good.tar'), join(dir, 'corrupt.tar.gz')], /truncated or corrupt|incorrect|invalid/i]);
    // ../ escaping the root
    const esc = await makeTar([{ name: 'a/../../etc/evil', body: 'x' }]);
    writeFileSync(join(dir, 'escape.tar'), esc);
    cases.push(['escape', [join(dir, 'good.tar'), join(dir, 'escape.tar')], /escapes the root/]);
    // writing through an absolute symlink of a lower layer
    writeFileSync(join(dir, 'through.tar'), await makeTar([{ name: 'etc/abs-link/x', body: 'x' }]));
    cases.push(['symlink write path', [...layerFiles.slice(0, 2), join(dir, 'good.tar'), join(dir, 'through.tar')], /symbolic link/]);
    for (const [what, files, re] of cases) {
      await expect(store.import(`bad-${what.replace(/\W/g, '-')}`, files), what).rejects.toThrow(re);
    }
    // A layer whose digest does not match (OCI layout with a tampered blob; another with a wrong diff id).
    const oci = join(work, 'oci-bad');
    await writeOciLayout(oci, [[{ name: 'only', body: 'one' }]]);
    const { readdirSync, readFileSync } = await import('node:fs');
    const index = JSON.parse(readFileSync(join(oci, 'index.json'), 'utf8'));
    const manifest = JSON.parse(readFileSync(join(oci, 'blobs', 'sha256', index.manifests[0].digest.slice(7)), 'utf8'));
    const layerBlob = join(oci, 'blobs', 'sha256', manifest.layers[0].digest.slice(7));
    writeFileSync(layerBlob, await makeTar([{ name: 'only', body: 'two' }], { gzip: true }));
    await expect(store.import('bad-digest', [oci])).rejects.toThrow(/does not match/);
    expect(readdirSync(oci).length).toBeGreaterThan(0);
    await expect(store.createContainer('no-such-image', 'c1')).rejects.toThrow(/no image named/);
    // A layer that does not fit in the filesystem (a new 16 MiB base is made for it, and rolled back too).
    const small = new ImageStore(pool, { size: 16 * 1024 * 1024 });
    writeFileSync(join(dir, 'huge.tar'), await makeTar([{ name: 'huge', body: pattern(20 * 1024 * 1024, 9) }]));
    await expect(small.import('too-big', [join(dir, 'huge.tar')])).rejects.toThrow(/probably full/);
    await expect(store.import('x', [join(dir, 'missing.tar')])).rejects.toThrow(/does not exist/);

    expect(JSON.stringify(pool.getExtension('snapshotter'))).toBe(snapState);
    expect(JSON.stringify(pool.getExtension('images'))).toBe(imgState);
    expect(
      pool
        .list()
        .map((v) => v.name)
        .sort(),
    ).toEqual(vols);
    expect(pool.status().dataBlocks.used).toBe(used);
  });

  test('volumes an interrupted import left behind are collected by the next import', async () => {
    const top = store.image('app').chainIds[2];
    pool.snapshotSync(store.snapshotter.stat(top).volume, 'sn-orphan', { labels: { [OWNER_LABEL]: OWNER } });
    pool.commitSync();
    const r = await store.import('app-again', layerFiles);
    expect([r.applied, r.reused]).toEqual([0, 3]);
    expect(pool.has('sn-orphan')).toBe(false);
    // A plain delete of an image layer is refused; the images code paths (removeImage) still delete them.
    expect(() => pool.deleteSync(store.snapshotter.stat(store.image('app-again').chainIds[2]).volume)).toThrow(/belongs to images/);
    await store.removeImage('app-again');
  });

  test('state survives reopening the pool; removing images frees their layers', async () => {
    pool.closeSync();
    verifyMetadataFile(join(poolDir, 'metadata'));
    pool = ThinPool.openSync(poolDir);
    store = new ImageStore(pool, { size: FS_SIZE });
    expect(store.images().map((i) => i.name)).toEqual(['app', 'app-v2', 'docker-app', 'oci-app', 'other']);
    expect(store.containers().map((c) => c.name)).toEqual(['web']);
    expect(await withFs(store.containerVolume('web'), async (fs) => (await fs.readFile('/etc/hostname')).toString())).toBe('container\n');
    const used = pool.status().dataBlocks.used;
    const freed = await store.removeImage('docker-app');
    expect(freed).toBeGreaterThan(100000);
    expect((used - pool.status().dataBlocks.used) * pool.blockSize).toBe(freed);
    pool.commitSync();
  });
});

void tar;
