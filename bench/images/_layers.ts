/**
 * The layers of the image benches (a helper: its `_` keeps the runner from running it): bench/images/import.ts and
 * the A/B setup bench/ab/_image-setup.ts build the same ~100 MiB, four-layer image from them (plain tar layers:
 * many small files, 1 MiB files, one 10 MiB file, whiteouts).
 */
import { randomBytes } from 'node:crypto';
import tar from 'tar-stream';

const MiB = 1024 * 1024;

export interface E {
  name: string;
  body?: Buffer;
  type?: 'file' | 'directory';
}

export async function makeTar(entries: E[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const end = new Promise<void>((r) => pack.on('end', () => r()));
  for (const e of entries) {
    await new Promise<void>((res, rej) =>
      pack.entry(
        {
          name: e.name,
          type: e.type ?? 'file',
          mode: e.type === 'directory' ? 0o755 : 0o644,
          size: e.body?.length ?? 0,
          mtime: new Date(1700000000000),
        },
        e.body ?? Buffer.alloc(0),
        (err) => (err ? rej(err) : res()),
      ),
    );
  }
  pack.finalize();
  await end;
  return Buffer.concat(chunks);
}

/** A layer: `small` files of 4-64 KiB and `mib` files of 1 MiB under dir, plus extra entries. */
export function layer(dir: string, small: number, mib: number, extra: E[] = []): E[] {
  const out: E[] = [{ name: `${dir}/`, type: 'directory' }];
  for (let i = 0; i < small; i++) out.push({ name: `${dir}/s${i}.dat`, body: randomBytes(4096 * (1 + (i % 16))) });
  for (let i = 0; i < mib; i++) out.push({ name: `${dir}/m${i}.bin`, body: randomBytes(MiB) });
  return [...out, ...extra];
}

/** The four layers of the bench's image; `k` divides their sizes (5: the --quick image of about 20 MiB). */
export function benchLayers(k = 1): E[][] {
  return [
    layer('usr/lib', Math.round(300 / k), Math.round(30 / k)),
    layer('usr/share', Math.round(300 / k), Math.round(20 / k)),
    layer('opt', Math.round(300 / k), Math.round(10 / k), [{ name: 'usr/lib/.wh.s1.dat' }, { name: 'usr/lib/.wh.m1.bin' }]),
    [
      { name: 'srv/', type: 'directory' },
      { name: 'srv/big.bin', body: randomBytes(Math.round(10 / k) * MiB) },
    ],
  ];
}
