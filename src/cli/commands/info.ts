/**
 * ls, status, map, diff: read-only views of a pool. Each opens the pool for reading (withPool 'read'),
 * prints what it read (one JSON document with --json where offered) and changes nothing on disk.
 */
import type { ThinPool } from '../../thin/pool.js';
import { formatTable, writeStdout } from '../io.js';
import type { Ctx } from '../io.js';
import { humanSize, withPool, type ReadMetadataOptions } from '../pool.js';
import { holePunchPath, type HolePunchPath } from '../../io/file-device.js';
import { READ_AHEAD_BYTES } from '../../io/read-ahead-device.js';
import { usageCacheBlocks } from '../../thin/usage.js';

/** What `status` says about how freed blocks go back to the host. */
function holePunchText(p: HolePunchPath): string {
  switch (p) {
    case 'native':
      return 'native helper (fallocate(2) in-process)';
    case 'fallocate':
      return 'util-linux fallocate(1), one process per range: the native helper is not built (npm skipped the install script? see "npm install-scripts approve thinpool", then "npm rebuild thinpool")';
    case 'none':
      return 'unavailable: freed blocks keep their host space (install util-linux, or build the native helper with "npm rebuild thinpool")';
  }
}

function json(v: unknown): string {
  return JSON.stringify(v, null, 2) + '\n';
}

type Listed = Awaited<ReturnType<ThinPool['list']>>[number];

function lsJson(v: Listed): Record<string, unknown> {
  return {
    name: v.name ?? null,
    id: v.id,
    sizeBytes: v.sizeBytes,
    mappedBytes: v.mappedBytes,
    exclusiveBytes: v.exclusiveBytes,
    sharedBytes: v.sharedBytes,
    origin: v.originName ?? (v.origin !== undefined ? `#${v.origin}` : null),
    originId: v.origin ?? null,
    createdAt: v.createdAt ?? null,
    readOnly: v.readOnly,
    labels: v.labels,
  };
}

/**
 * Volumes as a forest of origins: a volume whose origin is gone (deleted, or never known) is a root; children
 * in id order under their origin.
 */
function forest(vols: Listed[]): Array<{ v: Listed; depth: number; prefix: string }> {
  const ids = new Set(vols.map((v) => v.id));
  const kids = new Map<number, Listed[]>();
  const roots: Listed[] = [];
  for (const v of [...vols].sort((a, b) => a.id - b.id)) {
    if (v.origin !== undefined && ids.has(v.origin) && v.origin !== v.id) {
      const k = kids.get(v.origin) ?? [];
      k.push(v);
      kids.set(v.origin, k);
    } else roots.push(v);
  }
  const out: Array<{ v: Listed; depth: number; prefix: string }> = [];
  const seen = new Set<number>();
  const walk = (v: Listed, depth: number, lead: string, last: boolean): void => {
    if (seen.has(v.id)) return; // a cycle in the catalog's origins: shown once
    seen.add(v.id);
    out.push({ v, depth, prefix: depth === 0 ? '' : `${lead}${last ? '└─ ' : '├─ '}` });
    const k = kids.get(v.id) ?? [];
    k.forEach((c, i) => {
      walk(c, depth + 1, depth === 0 ? '' : `${lead}${last ? '   ' : '│  '}`, i === k.length - 1);
    });
  };
  for (const r of roots) walk(r, 0, '', true);
  for (const v of vols) if (!seen.has(v.id)) walk(v, 0, '', true);
  return out;
}

function treeJson(vols: Listed[]): unknown[] {
  const nodes = new Map<number, Record<string, unknown> & { children: unknown[] }>();
  const out: unknown[] = [];
  const stack: Array<Record<string, unknown> & { children: unknown[] }> = [];
  for (const { v, depth } of forest(vols)) {
    const n = { ...lsJson(v), children: [] as unknown[] };
    nodes.set(v.id, n);
    stack.length = depth;
    if (depth === 0) out.push(n);
    else stack[depth - 1]!.children.push(n);
    stack.push(n);
  }
  return out;
}

export async function ls(ctx: Ctx, [dir]: string[], opts: Record<string, unknown>): Promise<number> {
  // The usage walk reads each unshared node about once, nearly in file order: read ahead, into a cache sized
  // for it (usage.ts).
  const read: ReadMetadataOptions = { cacheBlocks: usageCacheBlocks, readAheadBytes: READ_AHEAD_BYTES };
  const vols = await withPool(ctx, dir, 'read', (pool) => pool.list(), { read });
  if (opts.json) {
    await writeStdout(ctx.io, json(opts.tree ? treeJson(vols) : vols.map(lsJson)));
    return 0;
  }
  const sz = (n: number): string => (opts.bytes ? String(n) : humanSize(n));
  const ordered = opts.tree ? forest(vols) : vols.map((v) => ({ v, depth: 0, prefix: '' }));
  const rows = ordered.map(({ v, prefix }) => [
    prefix + (v.name ?? `#${v.id}`),
    String(v.id),
    sz(v.sizeBytes),
    sz(v.mappedBytes),
    sz(v.exclusiveBytes),
    sz(v.sharedBytes),
    v.originName ?? (v.origin !== undefined ? `#${v.origin}` : '-'),
    v.createdAt ? v.createdAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-',
    v.readOnly ? 'ro' : 'rw',
  ]);
  await writeStdout(
    ctx.io,
    formatTable(['NAME', 'ID', 'SIZE', 'MAPPED', 'EXCLUSIVE', 'SHARED', 'ORIGIN', 'CREATED', 'MODE'], rows, [
      'left',
      'right',
      'right',
      'right',
      'right',
      'right',
      'left',
      'left',
      'left',
    ]),
  );
  return 0;
}

/** The pool's own mode (this command opened it read-only, which is not the pool's mode). */
function poolMode(st: { mode: string; needsCheck: boolean }): string {
  if (st.mode === 'fail') return 'fail';
  return st.needsCheck ? 'read-only' : 'write';
}

export async function status(ctx: Ctx, [dir]: string[], opts: Record<string, unknown>): Promise<number> {
  const st = await withPool(ctx, dir, 'read', (pool) => pool.status());
  const bs = st.blockSize;
  const pct = (u: number, t: number): string => (t === 0 ? '0.0' : ((u / t) * 100).toFixed(1));
  if (opts.json) {
    await writeStdout(
      ctx.io,
      json({
        blockSize: bs,
        data: {
          usedBytes: st.dataBlocks.used * bs,
          totalBytes: st.dataBlocks.total * bs,
          freeBytes: st.dataBlocks.free * bs,
          usedBlocks: st.dataBlocks.used,
          totalBlocks: st.dataBlocks.total,
          percent: Number(pct(st.dataBlocks.used, st.dataBlocks.total)),
        },
        metadata: {
          usedBytes: st.metadataBlocks.used * 4096,
          totalBytes: st.metadataBlocks.total * 4096,
          freeBytes: st.metadataBlocks.free * 4096,
          usedBlocks: st.metadataBlocks.used,
          totalBlocks: st.metadataBlocks.total,
          percent: Number(pct(st.metadataBlocks.used, st.metadataBlocks.total)),
        },
        transactionId: st.transactionId,
        heldMetadataSnapshot: st.heldMetadataRoot,
        mode: poolMode(st),
        needsCheck: st.needsCheck,
        volumes: st.volumes,
        lowWater: st.lowWater,
        discardPassdown: st.discardPassdown,
        holePunching: holePunchPath(),
      }),
    );
    return 0;
  }
  const rows = [
    [
      'data',
      `${humanSize(st.dataBlocks.used * bs)} used of ${humanSize(st.dataBlocks.total * bs)} (${pct(st.dataBlocks.used, st.dataBlocks.total)}%), ${st.dataBlocks.used}/${st.dataBlocks.total} blocks`,
    ],
    [
      'metadata',
      `${humanSize(st.metadataBlocks.used * 4096)} used of ${humanSize(st.metadataBlocks.total * 4096)} (${pct(st.metadataBlocks.used, st.metadataBlocks.total)}%), ${st.metadataBlocks.used}/${st.metadataBlocks.total} blocks`,
    ],
    ['block size', humanSize(bs)],
    ['volumes', String(st.volumes)],
    ['transaction id', String(st.transactionId)],
    ['metadata snapshot', st.heldMetadataRoot === null ? 'none' : `held at block ${st.heldMetadataRoot}`],
    [
      'low-water',
      `data ${st.lowWater.data ? `above ${st.lowWater.data}%` : 'below every threshold'}, metadata ${st.lowWater.metadata ? `above ${st.lowWater.metadata}%` : 'below every threshold'}`,
    ],
    ['hole punching', holePunchText(holePunchPath())],
    ['mode', poolMode(st) + (st.needsCheck ? ' (needs_check is set: run "thinpool check")' : '')],
  ];
  await writeStdout(ctx.io, rows.map(([k, v]) => `${(k + ':').padEnd(19)}${v}`).join('\n') + '\n');
  return 0;
}

export async function map(ctx: Ctx, [dir, name]: string[], opts: Record<string, unknown>): Promise<number> {
  const { extents, bs } = await withPool(ctx, dir, 'read', (pool) => ({ extents: pool.volume(name).map(), bs: pool.blockSize }));
  if (opts.json) {
    await writeStdout(
      ctx.io,
      json(
        extents.map((e) => ({
          offsetBytes: e.offsetBytes,
          lengthBytes: e.lengthBytes,
          vblock: e.offsetBytes / bs,
          blocks: e.lengthBytes / bs,
          dblock: e.dblock,
        })),
      ),
    );
    return 0;
  }
  const sz = (n: number): string => (opts.bytes ? String(n) : humanSize(n));
  const rows = extents.map((e) => [
    sz(e.offsetBytes),
    sz(e.lengthBytes),
    String(e.offsetBytes / bs),
    String(e.lengthBytes / bs),
    String(e.dblock),
  ]);
  await writeStdout(
    ctx.io,
    formatTable(['OFFSET', 'LENGTH', 'VBLOCK', 'BLOCKS', 'DATA_BLOCK'], rows, ['right', 'right', 'right', 'right', 'right']),
  );
  return 0;
}

export async function diff(ctx: Ctx, [dir, a, b]: string[], opts: Record<string, unknown>): Promise<number> {
  const { ranges, bs } = await withPool(ctx, dir, 'read', (pool) => ({ ranges: pool.diff(a, b), bs: pool.blockSize }));
  const shown = opts.all ? ranges : ranges.filter((r) => r.kind !== 'same');
  if (opts.json) {
    await writeStdout(
      ctx.io,
      json(shown.map((r) => ({ kind: r.kind, begin: r.begin, length: r.length, offsetBytes: r.begin * bs, lengthBytes: r.length * bs }))),
    );
    return 0;
  }
  const sz = (n: number): string => (opts.bytes ? String(n) : humanSize(n));
  const rows = shown.map((r) => [r.kind, String(r.begin), String(r.length), sz(r.begin * bs), sz(r.length * bs)]);
  await writeStdout(
    ctx.io,
    formatTable(['KIND', 'BEGIN', 'BLOCKS', 'OFFSET', 'LENGTH'], rows, ['left', 'right', 'right', 'right', 'right']),
  );
  return 0;
}
