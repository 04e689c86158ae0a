// `thinpool metadata-snap reserve|release`: the held metadata snapshot from the command line. The held view must
// be the pool at the reserve (bytes of the dump, and thin_dump -m as the oracle), it must keep what it references
// allocated (space), and refusals leave the pool byte-for-byte unchanged.
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { thinCheck, thinDumpText } from '../support/oracle.js';
import { needTool } from '../support/tools.js';
import { cleanup, cli, expectOneLineError, hashPool, tempDir } from './helpers.js';

const hasThin = needTool('thin_dump', 'thin-provisioning-tools');
const root = tempDir('tp-msnap-');
afterAll(() => cleanup(root));

async function ok(argv: string[], stdin?: string): Promise<string> {
  const r = await cli(argv, { stdin });
  expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

async function dataUsed(pool: string): Promise<number> {
  const st = JSON.parse(await ok(['status', pool, '--json'])) as { data: { usedBlocks: number } };
  return st.data.usedBlocks;
}

test('reserve holds the committed state: dump -m stays the pool at the reserve while the pool changes', async () => {
  const pool = join(root, 'p1');
  await ok(['init', pool, '--size', '64M']);
  await ok(['create', pool, 'a', '--size', '1M']);
  await ok(['write', pool, 'a'], 'x'.repeat(200_000));
  const atReserve = await ok(['dump', pool]);
  const usedAtReserve = await dataUsed(pool);

  const held = JSON.parse(await ok(['metadata-snap', 'reserve', pool, '--json'])) as { heldMetadataRoot: number };
  expect(held.heldMetadataRoot).toBeGreaterThan(0);
  const st = JSON.parse(await ok(['status', pool, '--json'])) as { heldMetadataSnapshot: number | null };
  expect(st.heldMetadataSnapshot).toBe(held.heldMetadataRoot);

  // Delete a, add b. (Writes over a's blocks would land in place: the held view keeps mappings, not data
  // contents, as in dm-thin.)
  await ok(['delete', pool, 'a']);
  await ok(['create', pool, 'b', '--size', '4M']);
  const live = await ok(['dump', pool]);
  expect(live).not.toBe(atReserve);
  const m = await ok(['dump', pool, '--metadata-snap']);
  // The held view is the state at the reserve; thin_dump -m prints nr_data_blocks="0" for it, as dm-thin does.
  expect(m.replace(/ nr_data_blocks="\d+"/, '')).toBe(atReserve.replace(/ nr_data_blocks="\d+"/, ''));
  // The held view keeps its blocks: a's blocks stay allocated although no live volume maps them.
  expect(usedAtReserve).toBe(4);
  expect(await dataUsed(pool)).toBe(usedAtReserve);
  if (hasThin) {
    const md = join(pool, 'metadata');
    expect(thinDumpText(md, { metadataSnap: true })).toBe(m);
    expect(thinCheck(md).status).toBe(0);
  }
  expect((await cli(['check', pool])).code).toBe(0);

  const rel = JSON.parse(await ok(['metadata-snap', 'release', pool, '--json'])) as { releasedMetadataRoot: number };
  expect(rel.releasedMetadataRoot).toBe(held.heldMetadataRoot);
  // Only the held view referenced a's blocks: released with it.
  expect(await dataUsed(pool)).toBe(0);
  expect((JSON.parse(await ok(['status', pool, '--json'])) as { heldMetadataSnapshot: number | null }).heldMetadataSnapshot).toBeNull();
  const afterRelease = await cli(['dump', pool, '--metadata-snap']);
  expect(afterRelease.code).not.toBe(0);
  expect((await cli(['check', pool])).code).toBe(0);
  if (hasThin) expect(thinCheck(join(pool, 'metadata')).status).toBe(0);
});

test('a second reserve and a release with nothing held are refused with one line, the pool unchanged', async () => {
  const pool = join(root, 'p2');
  await ok(['init', pool, '--size', '16M']);
  await ok(['create', pool, 'a', '--size', '1M']);
  let before = hashPool(pool);
  let r = await cli(['metadata-snap', 'release', pool]);
  expectOneLineError(r, 1, 'metadata-snap release', /holds no metadata snapshot/);
  expect(hashPool(pool)).toEqual(before);

  const text = await ok(['metadata-snap', 'reserve', pool]);
  expect(text).toMatch(/metadata snapshot held at block \d+/);
  before = hashPool(pool);
  r = await cli(['metadata-snap', 'reserve', pool]);
  expectOneLineError(r, 1, 'metadata-snap reserve', /already holds a metadata snapshot \(block \d+\): release it first/);
  expect(hashPool(pool)).toEqual(before);
  expect(await ok(['metadata-snap', 'release', pool])).toMatch(/released the metadata snapshot at block \d+/);
});

test('a missing pool is named', async () => {
  const r = await cli(['metadata-snap', 'reserve', join(root, 'nope')]);
  expectOneLineError(r, 1, 'metadata-snap reserve', /nope/);
});
