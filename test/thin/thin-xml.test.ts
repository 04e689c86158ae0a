import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { expandMappings, formatThinDumpXml, parseThinXml } from '../../src/thin/thin-xml.js';
import type { XmlSuperblock } from '../../src/thin/thin-xml.js';
import { expectedDumpFile, fixtureSource, GOOD_FIXTURES } from '../support/dm-thin-fixtures.js';
import { assertPoolMetadataValid, randomThinXml, seededRng, thinDumpText, thinRestore } from '../support/oracle.js';
import { needTool } from '../support/tools.js';

const hasThin =
  needTool('thin_restore', 'thin-provisioning-tools') &&
  needTool('thin_dump', 'thin-provisioning-tools') &&
  needTool('thin_check', 'thin-provisioning-tools');

/** thin_dump 0.9.0 outputs recorded from the fixtures (test/fixtures/dm-thin). */
const DUMP_FIXTURES = [...GOOD_FIXTURES.map((name) => expectedDumpFile(name)), fixtureSource('08-metadata-snap.dump-m.xml')].map((file) =>
  path.basename(file),
);

const HEAD = '<superblock uuid="" time="0" transaction="0" data_block_size="128" nr_data_blocks="10">\n';
const DEV = '<device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0">\n';

function parseError(text: string): string {
  try {
    parseThinXml(text);
  } catch (e) {
    expect(isThinpoolError(e, 'EXML')).toBe(true);
    return (e as Error).message;
  }
  throw new Error('parse did not fail');
}

describe('formatThinDumpXml reproduces thin_dump 0.9.0', () => {
  test.each(DUMP_FIXTURES)('%s', (name) => {
    const text = readFileSync(fixtureSource(name), 'utf8');
    const sb = parseThinXml(text, { checkDataBounds: !name.endsWith('dump-m.xml') });
    expect(formatThinDumpXml(sb)).toBe(text);
  });

  test('parsed fixture 02 has the expected values', () => {
    const sb = parseThinXml(readFileSync(expectedDumpFile('02-single-thin'), 'utf8'));
    expect(sb).toMatchObject({ uuid: '', time: 1, transaction: 3, flags: 0, version: 2, dataBlockSize: 128, nrDataBlocks: 1024 });
    expect(sb.devices).toHaveLength(1);
    const dev = sb.devices[0]!;
    expect(dev).toMatchObject({ devId: 1, mappedBlocks: 8, transaction: 0, creationTime: 0, snapTime: 0 });
    expect(dev.mappings[1]).toEqual({ vblock: 10, dblock: 5, length: 4, time: 1 });
    const flat = expandMappings(dev);
    expect(flat).toHaveLength(8);
    expect(flat.slice(0, 3)).toEqual([
      [0, 0, 0],
      [10, 5, 1],
      [11, 6, 1],
    ]);
    expect(flat[7]).toEqual([1000001, 1023, 1]);
  });

  test('coalesces singles into runs exactly like thin_dump', () => {
    const sb: XmlSuperblock = {
      uuid: 'ignored',
      time: 5,
      transaction: 2,
      flags: 0,
      version: 2,
      dataBlockSize: 128,
      nrDataBlocks: 100,
      devices: [
        {
          devId: 9,
          mappedBlocks: 0,
          transaction: 0,
          creationTime: 0,
          snapTime: 0,
          mappings: [],
        },
        {
          devId: 3,
          mappedBlocks: 7,
          transaction: 1,
          creationTime: 1,
          snapTime: 2,
          mappings: [
            { vblock: 2, dblock: 12, length: 1, time: 1 },
            { vblock: 0, dblock: 10, length: 1, time: 1 },
            { vblock: 1, dblock: 11, length: 1, time: 1 },
            { vblock: 3, dblock: 13, length: 1, time: 2 }, // other time: new run
            { vblock: 4, dblock: 20, length: 2, time: 2 }, // not data-contiguous: new run
            { vblock: 7, dblock: 22, length: 1, time: 2 }, // gap in virtual blocks: new run
          ],
        },
      ],
    };
    expect(formatThinDumpXml(sb)).toBe(
      '<superblock uuid="" time="5" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="100">\n' +
        '  <device dev_id="3" mapped_blocks="7" transaction="1" creation_time="1" snap_time="2">\n' +
        '    <range_mapping origin_begin="0" data_begin="10" length="3" time="1"/>\n' +
        '    <single_mapping origin_block="3" data_block="13" time="2"/>\n' +
        '    <range_mapping origin_begin="4" data_begin="20" length="2" time="2"/>\n' +
        '    <single_mapping origin_block="7" data_block="22" time="2"/>\n' +
        '  </device>\n' +
        '  <device dev_id="9" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0">\n' +
        '  </device>\n' +
        '</superblock>\n',
    );
  });
});

describe('parseThinXml follows thin_restore 0.9.0', () => {
  test('defaults: version 1, flags 0; range_mapping is one run; XML noise is accepted', () => {
    const sb = parseThinXml(
      '<?xml version="1.0"?>\n<!-- comment -->\n' +
        "<superblock uuid='' time='3' transaction='4' data_block_size='128' nr_data_blocks='10' metadata_snap='0'>" +
        DEV +
        '<range_mapping origin_begin="5" data_begin="2" length="3" time="1" />' +
        '</device></superblock>',
    );
    expect(sb).toMatchObject({ version: 1, flags: 0, time: 3, transaction: 4, metadataSnap: 0 });
    expect(sb.devices[0]!.mappings).toEqual([{ vblock: 5, dblock: 2, length: 3, time: 1 }]);
  });

  test('missing required attribute', () => {
    expect(parseError('<superblock uuid="" time="0" transaction="0" data_block_size="128"></superblock>')).toBe(
      'could not find attribute: nr_data_blocks',
    );
    expect(parseError(HEAD + '<device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0"/></superblock>')).toBe(
      'could not find attribute: snap_time',
    );
    expect(parseError(HEAD + DEV + '<single_mapping origin_block="0" time="0"/></device></superblock>')).toBe(
      'could not find attribute: data_block',
    );
  });

  test('unknown tag', () => {
    expect(parseError(HEAD + '<foo/></superblock>')).toBe('unknown tag type');
    expect(parseError(HEAD + DEV + '<bar a="1"></bar></device></superblock>')).toBe('unknown tag type');
  });

  test('duplicate device', () => {
    expect(parseError(HEAD + DEV + '</device>' + DEV + '</device></superblock>')).toBe('Device already exists');
  });

  test('other errors', () => {
    expect(parseError(HEAD + DEV + '<single_mapping origin_block="0" data_block="10" time="0"/></device></superblock>')).toBe(
      'mapping beyond end of data device (10 >= 10)',
    );
    expect(parseError(HEAD + DEV + '<range_mapping origin_begin="0" data_begin="8" length="3" time="0"/></device></superblock>')).toBe(
      'mapping beyond end of data device (10 >= 10)',
    );
    expect(parseError(HEAD + '<single_mapping origin_block="0" data_block="1" time="0"/></superblock>')).toBe('not in device');
    expect(parseError(DEV + '</device>')).toBe('missing superblock');
    expect(parseError(HEAD + DEV + '<single_mapping origin_block="0" data_block="x" time="0"/></device></superblock>')).toMatch(
      /^bad lexical cast/,
    );
    expect(parseError(HEAD + DEV)).toMatch(/no element found/);
    expect(parseError(HEAD + DEV + '</superblock>')).toMatch(/mismatched tag/);
    expect(parseError('')).toMatch(/no element found/);
  });
});

describe('thin_restore → thin_dump round trip', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'thinpool-xml-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const cases: Array<[string, number, Parameters<typeof randomThinXml>[1]]> = [
    ['small random pools', 1, {}],
    ['canonical input', 2, { canonical: true }],
    ['thousands of mappings', 3, { devices: 3, mappingsPerDevice: 4000 }],
  ];
  test.skipIf(!hasThin).each(cases)('%s', (_name, seed, opts) => {
    const rng = seededRng(seed);
    const rounds = opts?.mappingsPerDevice !== undefined ? 2 : 8;
    for (let i = 0; i < rounds; i++) {
      const { xml, sb } = randomThinXml(rng, opts);
      const expected = formatThinDumpXml(sb);
      // our parser reads the (noisy) input to the same content, mapped_blocks aside
      const parsed = parseThinXml(xml);
      for (const d of parsed.devices) d.mappedBlocks = d.mappings.reduce((s, m) => s + m.length, 0);
      expect(formatThinDumpXml(parsed)).toBe(expected);

      const meta = path.join(dir, `meta-${seed}-${i}.bin`);
      thinRestore(xml, meta, 16 * 1024 * 1024);
      assertPoolMetadataValid(meta); // the generator's output is valid metadata once restored
      const dumped = thinDumpText(meta);
      expect(dumped).toBe(expected);
      expect(parseThinXml(dumped)).toEqual(sb);
    }
  });
});
