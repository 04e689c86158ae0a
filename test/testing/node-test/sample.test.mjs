// The node:test example of docs/testing.md, run as is against the built package (dist/):
//   node --test test/testing/node-test/sample.test.mjs
// (test/testing/node-test.test.ts runs it from vitest when dist/ is up to date.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { goldenSuite, volumeDigest } from '../../../dist/src/testing/index.js'; // 'thinpool/testing' in your project

const dir = mkdtempSync(join(tmpdir(), 'golden-'));
const image = join(dir, 'golden.img');
const content = Buffer.alloc(8 * 1024 * 1024);
content.write('golden header', 0);
content.write('golden tail', content.length - 100);
writeFileSync(image, content);

const disks = goldenSuite({ image, store: 'temp' }); // or store: 'memory' (the default)
let goldenDigest;
before(async () => {
  await disks.setup();
  goldenDigest = volumeDigest(disks.golden);
});
after(async () => {
  assert.equal(volumeDigest(disks.golden), goldenDigest); // no test changed the golden image
  await disks.teardown(); // removes the pool's temporary directory
  rmSync(dir, { recursive: true, force: true });
});

test('a test changes its own fork', () =>
  disks.withFork(async (fork) => {
    fork.writeSync(Buffer.from('changed!'), 0);
    const out = join(dir, 'fork.img');
    await fork.exportTo(out); // a sparse file, for tools that need a path
    assert.equal(readFileSync(out).subarray(0, 13).toString(), 'changed!eader');
  }));

test('the next test starts from the golden image again', async () => {
  const fork = disks.fork();
  try {
    const head = Buffer.alloc(13);
    fork.readSync(head, 0);
    assert.equal(head.toString(), 'golden header');
  } finally {
    await fork.dispose();
  }
});
