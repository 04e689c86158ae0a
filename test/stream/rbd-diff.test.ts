// The rbd diff stream codec: byte layouts of v1 and v2 as Ceph documents them (built here by hand, not with the
// encoder), round trips, bounded pieces, v2 skipping of unknown tags, and typed errors on every truncation and on
// corrupt records.
import { describe, expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { decodeDiff, DiffEncoder, type DiffRecord } from '../../src/stream/rbd-diff.js';

function le32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}
function le64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}
const tag = (c: string): Buffer => Buffer.from(c, 'latin1');

/** A v1 stream by hand: from "a", to "b", size 8192, 3 data bytes at 512, zero 1024+4096, end. */
function handV1(): Buffer {
  return Buffer.concat([
    Buffer.from('rbd diff v1\n'),
    tag('f'),
    le32(1),
    tag('a'),
    tag('t'),
    le32(1),
    tag('b'),
    tag('s'),
    le64(8192),
    tag('w'),
    le64(512),
    le64(3),
    Buffer.from([1, 2, 3]),
    tag('z'),
    le64(1024),
    le64(4096),
    tag('e'),
  ]);
}

/** The same in v2, with an unknown tag 'X' (5 bytes) and a protection record 'p' among the metadata. */
function handV2(): Buffer {
  return Buffer.concat([
    Buffer.from('rbd diff v2\n'),
    tag('f'),
    le64(5),
    le32(1),
    tag('a'),
    tag('t'),
    le64(5),
    le32(1),
    tag('b'),
    tag('X'),
    le64(5),
    Buffer.from('hello'),
    tag('p'),
    le64(1),
    Buffer.from([1]),
    tag('s'),
    le64(8),
    le64(8192),
    tag('w'),
    le64(19),
    le64(512),
    le64(3),
    Buffer.from([1, 2, 3]),
    tag('z'),
    le64(16),
    le64(1024),
    le64(4096),
    tag('e'),
  ]);
}

const expected: DiffRecord[] = [
  { type: 'from', name: 'a' },
  { type: 'to', name: 'b' },
  { type: 'size', size: 8192 },
  { type: 'write', offset: 512, data: Buffer.from([1, 2, 3]) },
  { type: 'zero', offset: 1024, length: 4096 },
  { type: 'end' },
];

async function decodeAll(chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, maxPiece?: number): Promise<DiffRecord[]> {
  const out: DiffRecord[] = [];
  for await (const r of decodeDiff(chunks, { maxPiece })) out.push(r.type === 'write' ? { ...r, data: Buffer.from(r.data) } : r);
  return out;
}

function encodeSample(version: 1 | 2): Buffer {
  const e = new DiffEncoder(version);
  return Buffer.concat([
    e.banner(),
    e.fromSnap('a'),
    e.toSnap('b'),
    e.size(8192),
    e.writeHeader(512, 3),
    Buffer.from([1, 2, 3]),
    e.zero(1024, 4096),
    e.end(),
  ]);
}

async function decodeError(bytes: Buffer): Promise<Error> {
  try {
    await decodeAll([bytes]);
  } catch (e) {
    return e as Error;
  }
  throw new Error('decoded without error');
}

describe('rbd diff codec', () => {
  test('the encoder writes the documented v1 bytes', () => {
    expect(encodeSample(1).equals(handV1())).toBe(true);
  });

  test('the encoder writes the documented v2 bytes (without the extra records)', () => {
    const hand = handV2();
    const withoutExtras = Buffer.concat([hand.subarray(0, 12 + 14 + 14), hand.subarray(12 + 14 + 14 + 14 + 10)]);
    expect(encodeSample(2).equals(withoutExtras)).toBe(true);
  });

  test.each([
    ['v1', handV1],
    ['v2', handV2],
  ])('decodes a hand-made %s stream, also one byte at a time', async (_v, make) => {
    expect(await decodeAll([make()])).toEqual(expected);
    const bytes = make();
    const single = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
    expect(await decodeAll(single)).toEqual(expected);
  });

  test('a data record is handed on in pieces no larger than maxPiece, with their offsets', async () => {
    const e = new DiffEncoder(1);
    const data = Buffer.alloc(10_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    const s = Buffer.concat([e.banner(), e.size(1 << 20), e.writeHeader(4096, data.length), data, e.end()]);
    const recs = await decodeAll([s], 3000);
    const pieces = recs.filter((r) => r.type === 'write') as Array<{ offset: number; data: Uint8Array }>;
    expect(pieces.map((p) => [p.offset, p.data.length])).toEqual([
      [4096, 3000],
      [7096, 3000],
      [10096, 3000],
      [13096, 1000],
    ]);
    expect(Buffer.concat(pieces.map((p) => p.data)).equals(data)).toBe(true);
  });

  test('bytes after the end record are not read', async () => {
    let pulled = 0;
    async function* src(): AsyncGenerator<Uint8Array> {
      pulled++;
      yield handV1();
      pulled++;
      yield Buffer.from('garbage');
    }
    expect(await decodeAll(src())).toEqual(expected);
    expect(pulled).toBe(1);
  });

  test.each([
    ['v1', handV1],
    ['v2', handV2],
  ])('every truncation of a %s stream is ESTREAM', async (_v, make) => {
    const full = make();
    for (let n = 0; n < full.length; n++) {
      const e = await decodeError(full.subarray(0, n));
      expect(isThinpoolError(e, 'ESTREAM'), `cut at ${n}: ${String(e)}`).toBe(true);
      expect(e.message).toMatch(n === 0 ? /empty/ : /truncated/);
    }
  });

  const corrupt: Array<[string, () => Buffer, RegExp]> = [
    ['a bad banner', () => Buffer.concat([Buffer.from('rbd diff v3\n'), tag('e')]), /banner/],
    ['an unknown tag in v1', () => Buffer.concat([Buffer.from('rbd diff v1\n'), tag('X'), le32(0), tag('e')]), /unknown record tag/],
    [
      'a data record before the size',
      () => Buffer.concat([Buffer.from('rbd diff v1\n'), tag('z'), le64(0), le64(512), tag('e')]),
      /before the size/,
    ],
    [
      'a data record past the size',
      () => Buffer.concat([Buffer.from('rbd diff v1\n'), tag('s'), le64(4096), tag('z'), le64(4096), le64(512), tag('e')]),
      /past the image size/,
    ],
    [
      'a metadata record after data',
      () =>
        Buffer.concat([Buffer.from('rbd diff v1\n'), tag('s'), le64(4096), tag('z'), le64(0), le64(512), tag('s'), le64(8192), tag('e')]),
      /after data/,
    ],
    [
      'a name longer than 4096 bytes',
      () => Buffer.concat([Buffer.from('rbd diff v1\n'), tag('t'), le32(5000), Buffer.alloc(5000, 0x61), tag('e')]),
      /name is 5000 bytes/,
    ],
    [
      'a v2 length that disagrees',
      () => Buffer.concat([Buffer.from('rbd diff v2\n'), tag('s'), le64(9), le64(4096), tag('e')]),
      /expected 8/,
    ],
    [
      'a v2 data length that disagrees',
      () =>
        Buffer.concat([
          Buffer.from('rbd diff v2\n'),
          tag('s'),
          le64(8),
          le64(4096),
          tag('w'),
          le64(16),
          le64(0),
          le64(3),
          Buffer.from([1, 2, 3]),
          tag('e'),
        ]),
      /expected 19/,
    ],
    [
      'an offset beyond 2^53',
      () => Buffer.concat([Buffer.from('rbd diff v1\n'), tag('s'), Buffer.alloc(8, 0xff), tag('e')]),
      /out of range/,
    ],
  ];
  test.each(corrupt)('%s is ESTREAM', async (_what, make, pattern) => {
    const e = await decodeError(make());
    expect(isThinpoolError(e, 'ESTREAM'), String(e)).toBe(true);
    expect(e.message).toMatch(pattern);
  });

  test('the encoder refuses a version other than 1 or 2 and names longer than 4096 bytes', () => {
    expect(() => new DiffEncoder(3 as 1)).toThrow(/version/);
    expect(() => new DiffEncoder(1).toSnap('x'.repeat(4097))).toThrow(/4096/);
  });
});
