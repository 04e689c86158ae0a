// A lone tarball given to `image import` is either an image archive (OCI, docker save) or one layer: source.ts
// tells them apart by the archive's top-level names, read with the project's own tar reader, so a layer import
// loads no tar-stream (its module loading was a fixed cost of every such command). Run in a fresh process on the
// built package, where the module cache shows what was loaded.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { cleanup, tempDir } from '../cli/helpers.js';
import { requireFreshBuild } from '../support/dist.js';
import { makeTar } from './support.js';

const work = tempDir('tp-lone-layer-');
afterAll(() => cleanup(work));
const SOURCE = join(import.meta.dirname, '../../dist/src/images/source.js');

function classify(path: string): { layers: number; tarStreamLoaded: boolean } {
  const script = `
    import { createRequire } from 'node:module';
    const { readSource } = await import(${JSON.stringify(SOURCE)});
    const s = await readSource([${JSON.stringify(path)}]);
    const loaded = Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('/tar-stream/'));
    s.cleanup?.();
    // A file handle left open by the reading is closed by Node on garbage collection, with a warning.
    globalThis.gc();
    await new Promise((r) => setTimeout(r, 50));
    console.log(JSON.stringify({ layers: s.layers.length, tarStreamLoaded: loaded }));`;
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stderr, 'no file handle left open').not.toContain('Closing file descriptor');
  return JSON.parse(r.stdout);
}

test('a lone layer tarball is one layer, told apart without loading tar-stream', async () => {
  requireFreshBuild();
  const layer = join(work, 'layer.tar');
  writeFileSync(
    layer,
    await makeTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/a', body: Buffer.from('a\n') },
    ]),
  );
  expect(classify(layer)).toEqual({ layers: 1, tarStreamLoaded: false });
});

test('a docker save archive of that layer is unpacked (with tar-stream) into its one layer', async () => {
  requireFreshBuild();
  const layerTar = await makeTar([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/a', body: Buffer.from('a\n') },
  ]);
  const config = Buffer.from(
    JSON.stringify({ rootfs: { type: 'layers', diff_ids: [`sha256:${createHash('sha256').update(layerTar).digest('hex')}`] } }),
  );
  const archive = join(work, 'image.tar');
  writeFileSync(
    archive,
    await makeTar([
      { name: 'l1/layer.tar', body: layerTar },
      { name: 'cfg.json', body: config },
      { name: 'manifest.json', body: Buffer.from(JSON.stringify([{ Config: 'cfg.json', Layers: ['l1/layer.tar'], RepoTags: ['x:1'] }])) },
    ]),
  );
  expect(classify(archive)).toEqual({ layers: 1, tarStreamLoaded: true });
});
